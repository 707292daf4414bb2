package compute

import (
	"errors"
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
	KindWasm       Kind = "wasm" // a WebAssembly module mapped over items (docs/wasm.md)
)

// Limits on job specs: they keep a job's state and result bounded.
const (
	MaxPiSamples    = 1_000_000_000_000_000 // 1e15
	MaxPriority     = 100
	MaxJobName      = 200
	DefaultPriority = 1
	MaxWasmItems    = 1 << 62  // hydra_map takes signed 64-bit bounds
	MaxWasmParams   = 64 << 10 // bytes of a wasm job's params
)

// WasmParams are the parameters of a WebAssembly job (docs/wasm.md): the module's content
// address, the item count, the reducer, and the bytes hydra_init receives.
type WasmParams struct {
	Module string `json:"module"`
	Items  uint64 `json:"items"`
	Reduce Reduce `json:"reduce"`
	Params string `json:"params,omitempty"`
}

// Validate reports the first invalid field, named as the API names it.
func (w WasmParams) Validate() error {
	if len(w.Module) != 64 || strings.Trim(w.Module, "0123456789abcdef") != "" {
		return fmt.Errorf("module: %q is not a module's SHA-256 (64 lowercase hex digits)", w.Module)
	}
	if w.Items < 1 || w.Items > MaxWasmItems {
		return fmt.Errorf("items: %d is outside 1–%d", w.Items, uint64(MaxWasmItems))
	}
	if len(w.Params) > MaxWasmParams {
		return fmt.Errorf("params: %d bytes, limit %d", len(w.Params), MaxWasmParams)
	}
	if !utf8.ValidString(w.Params) {
		// A snapshot keeps the spec as JSON, which would turn the invalid bytes into U+FFFD:
		// a restored node would hand the module other params than one that replayed the log.
		return errors.New("params: not valid UTF-8")
	}
	return w.Reduce.Validate()
}

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
	Wasm     *WasmParams   `json:"wasm,omitempty"`
	// ChunkUnits, when set, fixes the job's chunks at this many units each (the last one may be
	// shorter): a job of many tiny tasks, as a Dask partition size fixes them, each chunk with a
	// result and commitment of its own. A lease then covers a run of whole chunks (as many as
	// the node computes in about a chunk target, at most MaxLeaseChunks), and the compute child
	// runs the run as one task, handing in each chunk's result apart, so tiny chunks do not cost
	// an exchange each. 0 (the default): chunks are sized to the node's rate.
	ChunkUnits uint64 `json:"chunk_units,omitempty"`
}

// MinPiChunkUnits is the smallest π chunk_units: below it (about 60 µs of work on a current
// core) handing a chunk in costs more than computing it.
const MinPiChunkUnits = 1 << 16

// MaxJobChunks bounds the chunks of a job with ChunkUnits: each is a result, a commitment and
// a history record kept on every node and in every snapshot (about 100 bytes each: 10 MB for a
// job at the cap). Without ChunkUnits a job's chunks are sized to the nodes' speed and number a
// few thousand at most.
const MaxJobChunks = 100_000

// MaxLeaseChunks bounds the chunks of one lease of a job with ChunkUnits: their results are
// handed in together, in one exchange (at most 256 results) and one log entry.
const MaxLeaseChunks = 256

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
		if s.Pi == nil || s.Mandel != nil || s.Wasm != nil {
			return fmt.Errorf("kind: pi needs the pi parameters only")
		}
		if s.Pi.Samples < 1 || s.Pi.Samples > MaxPiSamples {
			return fmt.Errorf("samples: %d is outside 1–%d", s.Pi.Samples, uint64(MaxPiSamples))
		}
	case KindMandelbrot:
		if s.Mandel == nil || s.Pi != nil || s.Wasm != nil {
			return fmt.Errorf("kind: mandelbrot needs the mandelbrot parameters only")
		}
		if err := s.Mandel.Validate(); err != nil {
			return err
		}
	case KindWasm:
		if s.Wasm == nil || s.Pi != nil || s.Mandel != nil {
			return fmt.Errorf("kind: wasm needs the wasm parameters only")
		}
		if err := s.Wasm.Validate(); err != nil {
			return err
		}
	default:
		return fmt.Errorf("kind: %q is not a job kind (pi, mandelbrot, wasm)", s.Kind)
	}
	return s.validateChunkUnits()
}

// validateChunkUnits checks ChunkUnits against the kind: π at least MinPiChunkUnits and at most
// a chunk's commitment (maxPiChunk), Mandelbrot at least a row; never more than the job. WebAssembly
// jobs do not take it (their items run in the child one chunk per task).
func (s JobSpec) validateChunkUnits() error {
	u := s.ChunkUnits
	if u == 0 {
		return nil
	}
	switch s.Kind {
	case KindPi:
		if u < MinPiChunkUnits || u > maxPiChunk {
			return fmt.Errorf("chunk_units: %d is outside %d–%d samples", u, MinPiChunkUnits, uint64(maxPiChunk))
		}
	case KindMandelbrot:
	default:
		return fmt.Errorf("chunk_units: not taken by %s jobs (pi and mandelbrot only)", s.Kind)
	}
	if u > s.TotalUnits() {
		return fmt.Errorf("chunk_units: %d is more than the job's %d units", u, s.TotalUnits())
	}
	if n := (s.TotalUnits()-1)/u + 1; n > MaxJobChunks {
		return fmt.Errorf("chunk_units: %d makes %d chunks, at most %d (each is a result stored on every node): take larger chunks or split the job", u, n, MaxJobChunks)
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
	case s.Kind == KindWasm && s.Wasm != nil:
		return s.Wasm.Items
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
