package child

import (
	"bytes"
	"encoding/binary"
	"slices"
	"strings"
	"testing"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/compute/audit"
	"github.com/hydra-compute/hydra/wire"
)

func sampleMessages() []message {
	spec := piSpec(1000, 7)
	ms := mandelSpec(64, 48, 100, -0.5, 0, 3)
	return []message{
		{kind: kindHello, h: header{Hello: &Hello{Protocol: protocolVersion, PID: 1, Priority: "x", KernelPath: "portable"}}},
		{kind: kindRun, h: header{Task: 1, Spec: &spec, Range: &compute.Range{Start: 0, End: 1000}, CPUs: 2, CPULimit: 50}},
		{kind: kindRun, h: header{Task: 2, Spec: &ms, Range: &compute.Range{Start: 3, End: 9}}},
		{kind: kindStop, h: header{Task: 1}},
		{kind: kindConfig, h: header{CPUs: 1, CPULimit: 25}},
		{kind: kindExit},
		{kind: kindProgress, h: header{Task: 1, Done: 77}},
		{kind: kindResult, h: header{Task: 1, Range: &compute.Range{Start: 0, End: 10}, ComputeSeconds: 0.5}, payload: compute.EncodePiPayload(3)},
		{kind: kindError, h: header{Task: 1, Err: "boom"}},
		{kind: kindResult, h: header{Task: 2, Range: &compute.Range{Start: 5, End: 20}, Parts: []partHead{
			{Range: compute.Range{Start: 5, End: 10}, Bytes: 2}, {Range: compute.Range{Start: 10, End: 20}, Bytes: 1}},
			Roots: []audit.Hash{{1}, {2}}}, payload: []byte("abc")},
		{kind: kindResult, h: header{Task: 3, Range: &compute.Range{Start: 0, End: 4}, Roots: []audit.Hash{{3}}}, payload: []byte("x")},
		{kind: kindRun, h: header{Task: 4, Spec: &spec, Range: &compute.Range{Start: 10, End: 90}, Spans: []compute.Range{{Start: 10, End: 20}, {Start: 50, End: 90}}}},
		{kind: kindResult, h: header{Task: 4, Range: &compute.Range{Start: 10, End: 90}, Parts: []partHead{
			{Range: compute.Range{Start: 10, End: 20}, Bytes: 1}, {Range: compute.Range{Start: 50, End: 90}, Bytes: 2}}}, payload: []byte("abc")},
	}
}

func TestMessageRoundTrip(t *testing.T) {
	for _, m := range sampleMessages() {
		b, err := encodeMessage(m)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeMessage(b)
		if err != nil {
			t.Fatalf("%q: %v", m.kind, err)
		}
		if got.kind != m.kind || got.h.Task != m.h.Task || !bytes.Equal(got.payload, m.payload) || !slices.Equal(got.h.Roots, m.h.Roots) {
			t.Fatalf("%q: round trip gave %+v", m.kind, got)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	bad := func(kind byte, h string, payload string) []byte {
		b := []byte{kind}
		b = binary.AppendUvarint(b, uint64(len(h)))
		return append(append(b, h...), payload...)
	}
	for name, b := range map[string][]byte{
		"empty":          nil,
		"short":          {'r'},
		"header overrun": {'r', 50, '{', '}'},
		"huge header":    binary.AppendUvarint([]byte{'r'}, 1<<40),
		"not json":       bad('r', "{nope", ""),
		"unknown kind":   bad('Z', "{}", ""),
		"run no spec":    bad('r', `{"task":1,"range":{"start":0,"end":5}}`, ""),
		"run task 0":     bad('r', `{"spec":{"kind":"pi","pi":{"samples":10,"seed":1}},"range":{"start":0,"end":5}}`, ""),
		"run past end":   bad('r', `{"task":1,"spec":{"kind":"pi","pi":{"samples":10,"seed":1}},"range":{"start":0,"end":11}}`, ""),
		"run empty":      bad('r', `{"task":1,"spec":{"kind":"pi","pi":{"samples":10,"seed":1}},"range":{"start":5,"end":5}}`, ""),
		"run bad spec":   bad('r', `{"task":1,"spec":{"kind":"mandelbrot","mandelbrot":{"width":0}},"range":{"start":0,"end":1}}`, ""),
		"cpu limit 101":  bad('c', `{"cpu_limit":101}`, ""),
		"cpus -1":        bad('c', `{"cpus":-1}`, ""),
		"payload on run": bad('s', `{}`, "xx"),
		"result no rng":  bad('R', `{"task":1}`, "x"),
		"result reverse": bad('R', `{"task":1,"range":{"start":5,"end":2}}`, "x"),
		"neg seconds":    bad('R', `{"task":1,"range":{"start":0,"end":2},"compute_seconds":-1}`, "x"),
		"hello wrong v":  bad('h', `{"hello":{"protocol":99}}`, ""),
		"error no text":  bad('e', `{"task":1}`, ""),
		"parts overlap":  bad('R', `{"task":1,"range":{"start":0,"end":4},"parts":[{"range":{"start":0,"end":2},"bytes":1},{"range":{"start":1,"end":4},"bytes":1}]}`, "xy"),
		"parts late":     bad('R', `{"task":1,"range":{"start":0,"end":4},"parts":[{"range":{"start":1,"end":4},"bytes":2}]}`, "xy"),
		"spans overlap":  bad('r', `{"task":1,"spec":{"kind":"pi","pi":{"samples":10,"seed":1}},"range":{"start":0,"end":9},"spans":[{"start":0,"end":5},{"start":4,"end":9}]}`, ""),
		"spans short":    bad('r', `{"task":1,"spec":{"kind":"pi","pi":{"samples":10,"seed":1}},"range":{"start":0,"end":9},"spans":[{"start":0,"end":5}]}`, ""),
		"spans late":     bad('r', `{"task":1,"spec":{"kind":"pi","pi":{"samples":10,"seed":1}},"range":{"start":0,"end":9},"spans":[{"start":2,"end":9}]}`, ""),
		"spans empty":    bad('r', `{"task":1,"spec":{"kind":"pi","pi":{"samples":10,"seed":1}},"range":{"start":0,"end":9},"spans":[{"start":0,"end":0},{"start":0,"end":9}]}`, ""),
		"spans mandel":   bad('r', `{"task":1,"spec":{"kind":"mandelbrot","mandelbrot":{"width":4,"height":4,"max_iter":10,"span":1}},"range":{"start":0,"end":2},"spans":[{"start":0,"end":2}]}`, ""),
		"spans on stop":  bad('s', `{"spans":[{"start":0,"end":2}]}`, ""),
		"parts short":    bad('R', `{"task":1,"range":{"start":0,"end":4},"parts":[{"range":{"start":0,"end":2},"bytes":2}]}`, "xy"),
		"parts bytes":    bad('R', `{"task":1,"range":{"start":0,"end":4},"parts":[{"range":{"start":0,"end":4},"bytes":3}]}`, "xy"),
		"parts empty":    bad('R', `{"task":1,"range":{"start":0,"end":4},"parts":[{"range":{"start":0,"end":0},"bytes":0},{"range":{"start":0,"end":4},"bytes":2}]}`, "xy"),
		"roots no parts": bad('R', `{"task":1,"range":{"start":0,"end":4},"roots":["abababababababababababababababababababababababababababababababab","abababababababababababababababababababababababababababababababab"]}`, "xy"),
		"roots parts":    bad('R', `{"task":1,"range":{"start":0,"end":4},"parts":[{"range":{"start":0,"end":2},"bytes":1},{"range":{"start":2,"end":4},"bytes":1}],"roots":["abababababababababababababababababababababababababababababababab"]}`, "xy"),
		"roots short":    bad('R', `{"task":1,"range":{"start":0,"end":4},"roots":["abab"]}`, "xy"),
		"roots on stop":  bad('s', `{"roots":["abababababababababababababababababababababababababababababababab"]}`, ""),
		"parts negative": bad('R', `{"task":1,"range":{"start":0,"end":4},"parts":[{"range":{"start":0,"end":2},"bytes":-1},{"range":{"start":2,"end":4},"bytes":3}]}`, "xy"),
	} {
		if _, err := decodeMessage(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// FuzzDecodeMessage: any bytes give a validated message or an error, never a panic; what
// decodes re-encodes to something that decodes to the same message.
func FuzzDecodeMessage(f *testing.F) {
	for _, m := range sampleMessages() {
		b, _ := encodeMessage(m)
		f.Add(b)
	}
	f.Add([]byte("R\x05{nope"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMessage(b)
		if err != nil {
			return
		}
		b2, err := encodeMessage(m)
		if err != nil {
			t.Fatalf("decoded message does not encode: %v", err)
		}
		m2, err := decodeMessage(b2)
		if err != nil || m2.kind != m.kind || m2.h.Task != m.h.Task || !bytes.Equal(m2.payload, m.payload) || !slices.Equal(m2.h.Roots, m.h.Roots) {
			t.Fatalf("re-encoded message differs: %v", err)
		}
	})
}

// TestChildSurvivesBadInput speaks to a real child: a malformed message (framing intact) is
// answered with an error and the child goes on; an oversized frame ends it with exit code 1.
func TestChildSurvivesBadInput(t *testing.T) {
	in, out, cmd := rawChild(t)
	if m := readMsg(t, out); m.kind != kindHello {
		t.Fatalf("first message %q", m.kind)
	}
	for _, junk := range [][]byte{[]byte("r\x03{}}"), {0xff}, []byte("q\x02{}")} {
		if err := wire.WriteFrame(in, junk); err != nil {
			t.Fatal(err)
		}
		if m := readMsg(t, out); m.kind != kindError {
			t.Fatalf("junk %q answered with %q", junk, m.kind)
		}
	}
	spec := piSpec(1000, 9)
	b, _ := encodeMessage(message{kind: kindRun, h: header{Task: 4, Spec: &spec, Range: &compute.Range{Start: 0, End: 1000}, CPUs: 1}})
	if err := wire.WriteFrame(in, b); err != nil {
		t.Fatal(err)
	}
	for {
		m := readMsg(t, out)
		if m.kind == kindProgress {
			continue
		}
		if m.kind != kindResult || m.h.Task != 4 {
			t.Fatalf("got %q %+v", m.kind, m.h)
		}
		if h, _ := compute.DecodePiResult(m.payload, compute.Range{Start: 0, End: 1000}); h != compute.PiHits(9, 0, 1000) {
			t.Fatal("wrong hits")
		}
		break
	}
	// A frame announcing more than the limit: the stream's framing is lost; the child exits 1.
	if _, err := in.Write(binary.AppendUvarint(nil, maxParentFrame+1)); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 1 {
		t.Fatalf("child after an oversized frame: %v", err)
	}
}

// TestRunWithLargestParams: a run of a wasm job whose params are the largest allowed and
// escape to six bytes each in JSON ('<' is \u003c) encodes and decodes: the header cap was 64
// KiB, so such a job's runs failed to encode, not as a module fault, and every node retried its
// chunks for ever.
func TestRunWithLargestParams(t *testing.T) {
	spec := compute.JobSpec{Kind: compute.KindWasm, Wasm: &compute.WasmParams{
		Module: strings.Repeat("ab", 32), Items: 10, Reduce: compute.ReduceSum, Params: strings.Repeat("<", compute.MaxWasmParams)}}
	if err := spec.Validate(); err != nil {
		t.Fatal(err)
	}
	b, err := encodeMessage(message{kind: kindRun, h: header{Task: 1, Spec: &spec, Range: &compute.Range{Start: 0, End: 10}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > maxParentFrame {
		t.Fatalf("a run of %d bytes, over the parent's frame cap %d", len(b), maxParentFrame)
	}
	m, err := decodeMessage(b)
	if err != nil || m.h.Spec == nil || m.h.Spec.Wasm.Params != spec.Wasm.Params {
		t.Fatalf("decode: %v", err)
	}
}
