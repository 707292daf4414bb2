package webui

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/hydra-compute/hydra/compute"
)

// The submit body (POST /api/v1/jobs) is flat: the kind, the optional name and
// priority, and the kind's parameters side by side:
//
//	{"kind":"pi","samples":100000000000,"seed":"7"}
//	{"kind":"mandelbrot","width":3840,"height":2160,"center_x":-0.743643887,
//	 "center_y":0.131825904,"span":0.0002,"max_iter":5000}
//
// It is decoded field by field rather than through a struct so that uint64
// values stay exact (a float64 holds integers exactly only up to 2⁵³), a
// number such as 1e11 is accepted when it is an exact integer, and every error
// names its field.

// Field sets of the submit body, in the order the API documents them.
var (
	commonFields = []string{"kind", "name", "priority"}
	piFields     = []string{"samples", "seed", "chunk_units"}
	mandelFields = []string{"width", "height", "center_x", "center_y", "span", "max_iter", "chunk_units"}
	wasmFields   = []string{"module", "items", "reduce", "params"}
)

// maxSeed is the largest seed, 2⁶⁴−1, as the API spells it.
const maxSeed = "18446744073709551615"

// DecodeJobRequest parses a submit body into a job spec that passes
// compute.JobSpec.Validate. Its errors name the offending field and say why
// ("samples: 1.5 is not an integer…"), fit for a 400 answer. It is total:
// any input gives a spec or an error, never a panic.
func DecodeJobRequest(body []byte) (compute.JobSpec, error) {
	return decodeJobFields(body, true)
}

// EncodeJobRequest is DecodeJobRequest's inverse: the flat submit body of a
// spec, with the seed as a decimal string so that it survives JavaScript.
func EncodeJobRequest(spec compute.JobSpec) ([]byte, error) {
	return json.Marshal(flatParams(spec))
}

// piBody and mandelBody are the flat bodies as they are written (requests and
// job views alike); reading goes through decodeJobFields.
type piBody struct {
	Kind     compute.Kind `json:"kind"`
	Name     string       `json:"name,omitempty"`
	Priority int          `json:"priority,omitempty"`
	Samples  uint64       `json:"samples"`
	Seed     string       `json:"seed"`
	Chunk    uint64       `json:"chunk_units,omitempty"`
}

type mandelBody struct {
	Kind     compute.Kind `json:"kind"`
	Name     string       `json:"name,omitempty"`
	Priority int          `json:"priority,omitempty"`
	Width    int          `json:"width"`
	Height   int          `json:"height"`
	CenterX  float64      `json:"center_x"`
	CenterY  float64      `json:"center_y"`
	Span     float64      `json:"span"`
	MaxIter  int          `json:"max_iter"`
	Chunk    uint64       `json:"chunk_units,omitempty"`
}

type wasmBody struct {
	Kind     compute.Kind   `json:"kind"`
	Name     string         `json:"name,omitempty"`
	Priority int            `json:"priority,omitempty"`
	Module   string         `json:"module"`
	Items    uint64         `json:"items"`
	Reduce   compute.Reduce `json:"reduce"`
	Params   string         `json:"params,omitempty"`
}

type otherBody struct {
	Kind     compute.Kind `json:"kind"`
	Name     string       `json:"name,omitempty"`
	Priority int          `json:"priority,omitempty"`
}

func flatParams(s compute.JobSpec) any {
	switch {
	case s.Kind == compute.KindPi && s.Pi != nil:
		return piBody{s.Kind, s.Name, s.Priority, s.Pi.Samples, strconv.FormatUint(s.Pi.Seed, 10), s.ChunkUnits}
	case s.Kind == compute.KindMandelbrot && s.Mandel != nil:
		m := s.Mandel
		return mandelBody{s.Kind, s.Name, s.Priority, m.Width, m.Height, m.CenterX, m.CenterY, m.Span, m.MaxIter, s.ChunkUnits}
	}
	if s.Kind == compute.KindWasm && s.Wasm != nil {
		w := s.Wasm
		return wasmBody{s.Kind, s.Name, s.Priority, w.Module, w.Items, w.Reduce, w.Params}
	}
	return otherBody{s.Kind, s.Name, s.Priority}
}

// readObject reads one JSON object into its raw fields, refusing duplicate
// keys and anything after the object.
func readObject(body []byte) (map[string]json.RawMessage, []string, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil, errors.New("empty body: expected a JSON object")
		}
		return nil, nil, fmt.Errorf("invalid JSON body: %v", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, nil, errors.New("invalid JSON body: expected an object")
	}
	fields := map[string]json.RawMessage{}
	var order []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, fmt.Errorf("invalid JSON body: %v", err)
		}
		key, ok := tok.(string)
		if !ok {
			return nil, nil, errors.New("invalid JSON body: expected a field name")
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, nil, fmt.Errorf("invalid JSON body: %s: %v", key, err)
		}
		if _, dup := fields[key]; dup {
			return nil, nil, fmt.Errorf("%s: given more than once", key)
		}
		fields[key] = raw
		order = append(order, key)
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, nil, fmt.Errorf("invalid JSON body: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, nil, errors.New("invalid JSON body: trailing data after the object")
	}
	return fields, order, nil
}

// decodeJobFields reads a flat body. strict (requests) refuses unknown fields
// and runs compute's validation; lenient (job views read back by the client)
// skips both, so a client understands a newer server's views.
func decodeJobFields(body []byte, strict bool) (compute.JobSpec, error) {
	spec, err := decodeFields(body, strict)
	if err != nil {
		return compute.JobSpec{}, err
	}
	return spec, nil
}

func decodeFields(body []byte, strict bool) (compute.JobSpec, error) {
	var spec compute.JobSpec
	fields, order, err := readObject(body)
	if err != nil {
		return spec, err
	}
	kindRaw, ok := fields["kind"]
	if !ok {
		return spec, errors.New(`kind: missing ("pi", "mandelbrot" or "wasm")`)
	}
	var kind string
	if err := json.Unmarshal(kindRaw, &kind); err != nil || kindRaw[0] != '"' {
		return spec, errors.New(`kind: must be a string ("pi", "mandelbrot" or "wasm")`)
	}
	spec.Kind = compute.Kind(kind)
	var own []string
	switch spec.Kind {
	case compute.KindPi:
		own = piFields
	case compute.KindMandelbrot:
		own = mandelFields
	case compute.KindWasm:
		own = wasmFields
	default:
		// A view of a newer server's kind is read without its parameters (a
		// client shows its state and progress); a submit of it is refused.
		if strict {
			return spec, fmt.Errorf("kind: %q is not a job kind (pi, mandelbrot, wasm)", clip(kind))
		}
	}
	if strict {
		for _, k := range order {
			if !slices.Contains(commonFields, k) && !slices.Contains(own, k) {
				return spec, fmt.Errorf("%s: unknown field for a %s job (it takes %s)", clip(k), kind,
					strings.Join(append(slices.Clone(commonFields), own...), ", "))
			}
		}
	}
	f := fieldReader{fields: fields}
	if _, ok := fields["name"]; ok {
		spec.Name = f.str("name")
	}
	if _, ok := fields["priority"]; ok {
		spec.Priority = int(f.uint("priority", 1, compute.MaxPriority))
	}
	switch spec.Kind {
	case compute.KindPi:
		spec.Pi = &compute.PiParams{
			Samples: f.uint("samples", 1, compute.MaxPiSamples),
			Seed:    f.seed("seed"),
		}
	case compute.KindMandelbrot:
		spec.Mandel = &compute.MandelParams{
			Width:   int(f.uint("width", 1, compute.MaxMandelSide)),
			Height:  int(f.uint("height", 1, compute.MaxMandelSide)),
			CenterX: f.float("center_x"),
			CenterY: f.float("center_y"),
			Span:    f.float("span"),
			MaxIter: int(f.uint("max_iter", 1, compute.MaxMandelIter)),
		}
	case compute.KindWasm:
		w := &compute.WasmParams{Module: f.str("module"), Items: f.uint("items", 1, compute.MaxWasmItems)}
		w.Reduce = compute.Reduce(f.str("reduce"))
		w.Params = f.params("params")
		spec.Wasm = w
	}
	if _, ok := fields["chunk_units"]; ok {
		spec.ChunkUnits = f.uint("chunk_units", 1, compute.MaxPiSamples)
	}
	if f.err != nil {
		return spec, f.err
	}
	if strict {
		return spec, spec.Validate()
	}
	return spec, nil
}

// fieldReader reads typed fields and keeps the first error.
type fieldReader struct {
	fields map[string]json.RawMessage
	err    error
}

func (f *fieldReader) fail(format string, args ...any) {
	if f.err == nil {
		f.err = fmt.Errorf(format, args...)
	}
}

// number returns the field's JSON number literal, or "" after recording why
// there is none.
func (f *fieldReader) number(name string) string {
	raw, ok := f.fields[name]
	if !ok {
		f.fail("%s: missing", name)
		return ""
	}
	if t := jsonType(raw); t != "number" {
		f.fail("%s: must be a JSON number, not %s", name, t)
		return ""
	}
	return string(raw)
}

// uint reads an integer field within [lo, hi]. A number written with a
// fraction or an exponent is accepted only when it is an exact integer.
func (f *fieldReader) uint(name string, lo, hi uint64) uint64 {
	lit := f.number(name)
	if lit == "" {
		return 0
	}
	v, err := ParseUintExact(lit)
	switch {
	case errors.Is(err, errNotInteger):
		f.fail("%s: %s is not an integer (a number is accepted only if it is an exact integer)", name, clip(lit))
	case err != nil || v < lo || v > hi: // negative or beyond uint64: out of range too
		f.fail("%s: %s is outside %d–%d", name, clip(lit), lo, hi)
	default:
		return v
	}
	return 0
}

func (f *fieldReader) float(name string) float64 {
	lit := f.number(name)
	if lit == "" {
		return 0
	}
	v, err := strconv.ParseFloat(lit, 64)
	if err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
		f.fail("%s: %s is not a finite number", name, clip(lit))
		return 0
	}
	return v
}

func (f *fieldReader) str(name string) string {
	raw, ok := f.fields[name]
	if !ok {
		f.fail("%s: missing", name)
		return ""
	}
	var s string
	if jsonType(raw) != "a string" || json.Unmarshal(raw, &s) != nil {
		f.fail("%s: must be a string, not %s", name, jsonType(raw))
	}
	return s
}

// params reads a wasm job's optional params: a string is taken as is, any other JSON value (an
// object such as {"k":3}) as its JSON text.
func (f *fieldReader) params(name string) string {
	raw, ok := f.fields[name]
	if !ok || string(raw) == "null" {
		return ""
	}
	if jsonType(raw) == "a string" {
		return f.str(name)
	}
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		f.fail("%s: %v", name, err)
	}
	return b.String()
}

// seed reads a uint64 given as a JSON integer or as a decimal string.
func (f *fieldReader) seed(name string) uint64 {
	raw, ok := f.fields[name]
	if !ok {
		f.fail("%s: missing (an integer 0–%s, as a number or a decimal string)", name, maxSeed)
		return 0
	}
	var lit, digits string // digits: lit without leading zeros, for a string
	switch jsonType(raw) {
	case "number":
		lit = string(raw)
		digits = lit // JSON numbers have no leading zeros
	case "a string":
		if json.Unmarshal(raw, &lit) != nil {
			f.fail("%s: invalid string", name)
			return 0
		}
		if lit == "" || strings.TrimLeft(lit, "0123456789") != "" {
			f.fail("%s: %q is not a decimal integer 0–%s", name, clip(lit), maxSeed)
			return 0
		}
		if digits = strings.TrimLeft(lit, "0"); digits == "" {
			digits = "0"
		}
	default:
		f.fail("%s: must be an integer 0–%s, as a number or a decimal string, not %s", name, maxSeed, jsonType(raw))
		return 0
	}
	// A string with leading zeros is parsed without them so that the message says what is wrong with
	// it: out of range, or (in range) the zeros, which are refused because the job echoes the seed back
	// as given and each value has one spelling.
	v, err := ParseUintExact(digits)
	if errors.Is(err, errNotInteger) {
		f.fail("%s: %s is not an integer", name, clip(lit))
		return 0
	}
	if err != nil {
		f.fail("%s: %s is outside 0–%s", name, clip(lit), maxSeed)
		return 0
	}
	if digits != lit {
		f.fail("%s: %q has leading zeros (write %s)", name, clip(lit), digits)
		return 0
	}
	return v
}

// jsonType names the type of a raw JSON value for error messages.
func jsonType(raw json.RawMessage) string {
	if len(raw) == 0 {
		return "nothing"
	}
	switch c := raw[0]; {
	case c == '"':
		return "a string"
	case c == '{':
		return "an object"
	case c == '[':
		return "an array"
	case c == 't' || c == 'f':
		return "a boolean"
	case c == 'n':
		return "null"
	}
	return "number"
}

// clip shortens what a user sent before it goes into an error message.
func clip(s string) string {
	const max = 40
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}

var (
	errNotInteger = errors.New("not an integer")
	errNegative   = errors.New("negative")
	errTooLarge   = errors.New("too large for 64 bits")
	errSyntax     = errors.New("not a number")
)

// ParseUintExact parses a decimal number in JSON syntax ("100000000000",
// "1e11", "2.5e3") that must denote an exact non-negative integer below 2⁶⁴.
// It never rounds: "1.5" and "1e-3" are refused (not an integer), as are
// negative numbers and numbers of 2⁶⁴ or more. Huge exponents cost nothing.
func ParseUintExact(s string) (uint64, error) {
	neg := strings.HasPrefix(s, "-")
	rest := strings.TrimPrefix(s, "-")
	intPart, rest := spanDigits(rest)
	if intPart == "" || (len(intPart) > 1 && intPart[0] == '0') {
		return 0, errSyntax
	}
	var frac string
	if strings.HasPrefix(rest, ".") {
		frac, rest = spanDigits(rest[1:])
		if frac == "" {
			return 0, errSyntax
		}
	}
	exp, hugeExp := 0, 0 // hugeExp: ±1 when the exponent has more than 9 digits
	if rest != "" {
		if rest[0] != 'e' && rest[0] != 'E' {
			return 0, errSyntax
		}
		rest = rest[1:]
		sign := 1
		if rest != "" && (rest[0] == '+' || rest[0] == '-') {
			if rest[0] == '-' {
				sign = -1
			}
			rest = rest[1:]
		}
		digits, tail := spanDigits(rest)
		if digits == "" || tail != "" {
			return 0, errSyntax
		}
		digits = strings.TrimLeft(digits, "0")
		if len(digits) > 9 {
			hugeExp = sign
		} else if digits != "" {
			e, _ := strconv.Atoi(digits)
			exp = sign * e
		}
	}
	// The value is mant × 10^exp with mant the digits of the integer and fraction parts.
	mant := strings.TrimLeft(intPart+frac, "0")
	exp -= len(frac)
	trimmed := strings.TrimRight(mant, "0")
	exp += len(mant) - len(trimmed)
	mant = trimmed
	if mant == "" {
		return 0, nil // zero, whatever its sign and exponent
	}
	switch {
	case hugeExp < 0 || (hugeExp == 0 && exp < 0):
		return 0, errNotInteger // the last digit of mant is not zero and lies after the point
	case neg:
		return 0, errNegative
	case hugeExp > 0 || len(mant)+exp > 20:
		return 0, errTooLarge
	}
	var v uint64
	for i := 0; i < len(mant)+exp; i++ {
		d := uint64(0)
		if i < len(mant) {
			d = uint64(mant[i] - '0')
		}
		if v > (math.MaxUint64-d)/10 {
			return 0, errTooLarge
		}
		v = v*10 + d
	}
	return v, nil
}

func spanDigits(s string) (digits, rest string) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return s[:i], s[i:]
}
