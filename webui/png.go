package webui

import (
	"image/color"
	"math"
)

// Colouring is presentation (docs/design.md §4: the raw counts are the result).
// Only the integer escape count is stored, so the continuous ("smooth") look
// comes from the mapping: each count is placed at the midpoint of its share of
// the escaped pixels (histogram equalisation with a clip limit, so the palette
// spreads over the counts the picture actually has, whatever max_iter is,
// while big flat bands step gently), blended with the log-normalised count
// (so a count keeps its hue as max_iter grows), and looked up in a continuous
// gradient. Pixels that never escaped are black;
// rows not computed yet (count 0: no computed pixel escapes at n = 0) are
// transparent.

// gradientStops is a continuous palette (the familiar deep blue → white →
// gold → near black), interpolated with a smooth step between stops.
var gradientStops = []struct {
	at      float64
	r, g, b float64
}{
	{0.0, 0, 7, 100},
	{0.16, 32, 107, 203},
	{0.42, 237, 255, 255},
	{0.6425, 255, 170, 0},
	{0.8575, 0, 2, 0},
	{1.0, 0, 7, 100},
}

func gradient(t float64) color.NRGBA {
	t = math.Min(math.Max(t, 0), 1)
	for i := 1; i < len(gradientStops); i++ {
		a, b := gradientStops[i-1], gradientStops[i]
		if t > b.at && i < len(gradientStops)-1 {
			continue
		}
		u := (t - a.at) / (b.at - a.at)
		u = u * u * (3 - 2*u)
		mix := func(x, y float64) uint8 { return uint8(math.Round(x + (y-x)*u)) }
		return color.NRGBA{mix(a.r, b.r), mix(a.g, b.g), mix(a.b, b.b), 0xff}
	}
	return color.NRGBA{A: 0xff}
}

// mandelPalette returns the colour of every count 0…maxIter for an image whose counts have
// histogram hist (hist[n]: pixels of count n, counts above maxIter in hist[maxIter]).
func mandelPalette(hist []uint64, maxIter int) []color.NRGBA {
	// Each count's step along the palette is its share of the escaped pixels
	// (histogram equalisation), clipped so that a count covering a large flat
	// area (the first few counts of a wide view) moves the colour only a little:
	// neighbouring bands stay close and read as a gradient.
	const clip = 1.0 / 48
	var escaped uint64
	for n := 1; n < maxIter; n++ {
		escaped += hist[n]
	}
	step := make([]float64, maxIter)
	var total float64
	for n := 1; n < maxIter && escaped > 0; n++ {
		step[n] = min(float64(hist[n])/float64(escaped), clip)
		total += step[n]
	}
	lut := make([]color.NRGBA, maxIter+1) // lut[0] stays transparent: not computed
	lut[maxIter] = color.NRGBA{A: 0xff}   // never escaped
	logMax := math.Log(float64(max(maxIter, 2)))
	var below float64
	for n := 1; n < maxIter; n++ {
		eq := 0.0
		if total > 0 {
			eq = (below + step[n]/2) / total
		}
		below += step[n]
		lg := math.Log(float64(n)) / logMax
		lut[n] = gradient(0.85*eq + 0.15*lg)
	}
	return lut
}
