package compute

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Kind is a job kind: which kernel runs and what a work unit is.
type Kind string

// The job kinds. A π unit is one sample; a Mandelbrot unit is one image row.
const (
	KindPi         Kind = "pi"
	KindMandelbrot Kind = "mandelbrot"
)

// Limits on job specs: they keep a job's state and result bounded.
const (
	MaxPiSamples    = 1_000_000_000_000_000 // 1e15
	MaxPriority     = 100
	MaxJobName      = 200
	DefaultPriority = 1
)

// PiParams are the parameters of a Monte-Carlo π job (docs/design.md §4).
type PiParams struct {
	Samples uint64 `json:"samples"`
	Seed    uint64 `json:"seed"`
}

// JobSpec is what a user submits. Exactly one of Pi and Mandel is set, matching Kind. Priority
// (1–100, 0 meaning the default 1) weighs the job's share of the nodes when jobs run at once.
type JobSpec struct {
	Kind     Kind          `json:"kind"`
	Name     string        `json:"name,omitempty"`
	Priority int           `json:"priority,omitempty"`
	Pi       *PiParams     `json:"pi,omitempty"`
	Mandel   *MandelParams `json:"mandelbrot,omitempty"`
}

// Validate reports the first invalid field, named as the API names it, and why. A spec that
// passes can be run: its units, rows and payloads are within bounds.
func (s JobSpec) Validate() error {
	if s.Priority < 0 || s.Priority > MaxPriority {
		return fmt.Errorf("priority: %d is outside 1–%d", s.Priority, MaxPriority)
	}
	if len(s.Name) > MaxJobName {
		return fmt.Errorf("name: longer than %d bytes", MaxJobName)
	}
	if !utf8.ValidString(s.Name) || strings.ContainsFunc(s.Name, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return fmt.Errorf("name: must be printable UTF-8")
	}
	switch s.Kind {
	case KindPi:
		if s.Pi == nil || s.Mandel != nil {
			return fmt.Errorf("kind: pi needs the pi parameters only")
		}
		if s.Pi.Samples < 1 || s.Pi.Samples > MaxPiSamples {
			return fmt.Errorf("samples: %d is outside 1–%d", s.Pi.Samples, uint64(MaxPiSamples))
		}
	case KindMandelbrot:
		if s.Mandel == nil || s.Pi != nil {
			return fmt.Errorf("kind: mandelbrot needs the mandelbrot parameters only")
		}
		return s.Mandel.Validate()
	default:
		return fmt.Errorf("kind: %q is not a job kind (pi, mandelbrot)", s.Kind)
	}
	return nil
}

// TotalUnits is the size of the job's range [0, N): samples for π, rows for Mandelbrot.
func (s JobSpec) TotalUnits() uint64 {
	switch {
	case s.Kind == KindPi && s.Pi != nil:
		return s.Pi.Samples
	case s.Kind == KindMandelbrot && s.Mandel != nil:
		return uint64(s.Mandel.Height)
	}
	return 0
}

// EffectivePriority is Priority with 0 read as DefaultPriority.
func (s JobSpec) EffectivePriority() int {
	if s.Priority <= 0 {
		return DefaultPriority
	}
	return s.Priority
}
