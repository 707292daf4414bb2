package compute

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// decodeHeader runs readHeader on hdr as a snapshot's header of this version.
func decodeHeader(hdr []byte) (*restoredHeader, error) {
	b := binary.AppendUvarint(nil, uint64(len(hdr)))
	return readHeader(bufio.NewReader(bytes.NewReader(append(b, hdr...))), snapVersion)
}

// wholeHeader reads hdr as restore did before it read the header a job at a time: all of it
// unmarshalled at once (a JSON error is jerr), then the jobs built one after the other.
func wholeHeader(hdr []byte) (out *restoredHeader, jerr, err error) {
	var h snapHeader
	if err := json.Unmarshal(hdr, &h); err != nil {
		return nil, err, nil
	}
	b := &headerBuilder{version: snapVersion, out: &restoredHeader{jobs: map[string]*job{}, auditIx: map[uint64]Chunk{}}}
	for k := range h.Jobs {
		if err := b.addJob(&h.Jobs[k]); err != nil {
			return nil, nil, err
		}
	}
	h.Jobs = nil
	b.out.h = h
	if err := b.finish(); err != nil {
		return nil, nil, err
	}
	return b.out, nil, nil
}

// FuzzRestoreHeader: the header read a job at a time accepts exactly the headers that
// json.Unmarshal into a snapHeader accepted, in any order of their fields, and builds the same
// state from them as reading them whole did; it refuses the others, with the same error unless
// it is one of JSON. The one exception, a header with the jobs field twice, is refused.
func FuzzRestoreHeader(f *testing.F) {
	snap := fuzzSnapshot(f)
	hdr := headerOf(f, snap)
	f.Add(hdr)
	var m map[string]json.RawMessage
	if err := json.Unmarshal(hdr, &m); err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(`{"audit_seq": 9, "creds": ` + string(m["creds"]) + `, "JOBS": ` + string(m["jobs"]) + `, "seq": 100, "total_payload": 5}`))
	f.Add([]byte(`{"jobs": ` + string(m["jobs"]) + `, "seq": 1}`))       // a job's sequence after the state's
	f.Add([]byte(`{"jobs": ` + string(m["jobs"]) + `, "audit_seq": 1}`)) // an audit's ID after the state's
	f.Add([]byte(`{"total_payload": -1, "jobs": ` + string(m["jobs"]) + `}`))
	for _, s := range []string{
		``, ` `, `null`, ` null `, `{}`, `[]`, `5`, `"x"`, `true`, `{"jobs": null}`, `{"jobs": []}`, `{"jobs": {}}`,
		`{"jobs": 5}`, `{"jobs": "x"}`, `{"jobs": [null]}`, `{"jobs": [], "jobs": []}`, `{"jobs": [], "Jobs": null}`,
		`{} {}`, `{} x`, `{}]`, `{"seq": 1`, `{"seq": 1,}`, `{"jobs": [,]}`, `{"jobs": [1,]}`, `{"seq": "1"}`,
		`{"Seq": 5, "seq": 2, "jobs": []}`, `{"creds": [{"node": "a"}], "creds": [{"failed": 2}]}`,
		`{"seq": 1e2}`, `{"audit_policy": null, "x": [1, {"jobs": 1}]}`, "{\"jobs\": [], \"\xff\": 1}",
		`{"jobs": [{"id": 5}]}`, `{"job": []}`, `{"jobſ": []}`, `{"seq": 1, "SEQ": 2}`, `{"x": 1e400}`,
		`{"x": [1e999, "\u00e9", {"a": [true, null, -0.5]}], "seq": 3}`, `{"x": [}`, `{"x": {"a" 1}}`, `{"x": [1 2]}`,
		`{"creds": [{"node": "a", "kinds": {"pi": {}}}], "audit_policy": {}}`, `{"creds": 5}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, hdr []byte) {
		got, err := decodeHeader(hdr)
		want, jerr, werr := wholeHeader(hdr)
		switch {
		case jerr != nil:
			if err == nil {
				t.Fatalf("accepted a header json.Unmarshal refuses (%v): %q", jerr, hdr)
			}
		case err != nil && strings.Contains(err.Error(), "the jobs field twice"):
		case (err == nil) != (werr == nil) || (err != nil && err.Error() != werr.Error()):
			t.Fatalf("header %q: error %v; read whole: %v", hdr, err, werr)
		case err == nil && !reflect.DeepEqual(got, want):
			t.Fatalf("header %q: another state than read whole", hdr)
		}
	})
}

// TestRestoreHeaderRefused: what the header read a job at a time refuses, as json.Unmarshal and
// the limit did (and a header with the jobs field twice).
func TestRestoreHeaderRefused(t *testing.T) {
	snap := fuzzSnapshot(t)
	hdr := headerOf(t, snap)
	for name, c := range map[string]struct {
		snap []byte
		want string
	}{
		"over the limit": {append([]byte(snapMagic+"\x03"), binary.AppendUvarint(nil, maxSnapHeader+1)...), "exceeds the limit"},
		"truncated":      {withHeader(t, snap, hdr)[:len(snapMagic)+1+4+len(hdr)/2], "unexpected EOF"},
		"empty":          {withHeader(t, snap, nil), "unexpected EOF"},
		"unfinished":     {withHeader(t, snap, hdr[:len(hdr)-1]), "unexpected EOF"},
		"trailing":       {withHeader(t, snap, append(append([]byte(nil), hdr...), " {}"...)), "object after the header's JSON"},
		"trailing junk":  {withHeader(t, snap, append(append([]byte(nil), hdr...), " x"...)), "invalid character"},
		"an array":       {withHeader(t, snap, []byte(`[]`)), "cannot unmarshal array"},
		"jobs twice":     {withHeader(t, snap, []byte(`{"jobs": [], "JOBS": []}`)), "the jobs field twice"},
		"jobs a number":  {withHeader(t, snap, []byte(`{"jobs": 5}`)), "cannot unmarshal number"},
		"bad job":        {withHeader(t, snap, []byte(`{"jobs": [{"id": 5}]}`)), "cannot unmarshal number"},
		"seq later": {withHeader(t, snap, []byte(`{"jobs": [{"id": "a", "seq": 3, "spec": {"kind": "pi", "pi": {"samples": 10, "seed": 1}}, "status": "queued"}], "seq": 2}`)),
			"job a: sequence 3 after the state's 2"},
	} {
		err := newTestState(t).Restore(bytes.NewReader(c.snap))
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "restore: ") {
			t.Errorf("%s: %v, want an error with %q", name, err, c.want)
		}
	}
	// A null header is the empty header, as json.Unmarshal read it.
	st := newTestState(t)
	empty := append([]byte(snapMagic+"\x03\x04"), "null"...)
	if err := st.Restore(bytes.NewReader(append(empty, snapRecordEnd))); err != nil || len(st.Jobs()) != 0 {
		t.Fatalf("a null header: %v, %d jobs", err, len(st.Jobs()))
	}
}
