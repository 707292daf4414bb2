package webui

import (
	"strings"
	"testing"

	"github.com/hydra-compute/hydra/compute"
)

const testSHA = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// TestDecodeWasmRequest: the flat wasm submit body, params as a string or as JSON, round-trips
// through EncodeJobRequest; bad fields are named.
func TestDecodeWasmRequest(t *testing.T) {
	spec, err := DecodeJobRequest([]byte(`{"kind":"wasm","module":"` + testSHA + `","items":1e9,"reduce":"sum","params":{"k": 3}}`))
	if err != nil {
		t.Fatal(err)
	}
	w := spec.Wasm
	if w == nil || w.Module != testSHA || w.Items != 1e9 || w.Reduce != compute.ReduceSum || w.Params != `{"k":3}` {
		t.Fatalf("%+v", w)
	}
	body, err := EncodeJobRequest(spec)
	if err != nil {
		t.Fatal(err)
	}
	back, err := DecodeJobRequest(body)
	if err != nil || *back.Wasm != *w {
		t.Fatalf("round trip %s: %+v %v", body, back.Wasm, err)
	}
	for body, want := range map[string]string{
		`{"kind":"wasm","items":5,"reduce":"sum"}`:                                     "module",
		`{"kind":"wasm","module":"` + testSHA + `","reduce":"sum"}`:                    "items",
		`{"kind":"wasm","module":"` + testSHA + `","items":1.5,"reduce":"sum"}`:        "items",
		`{"kind":"wasm","module":"` + testSHA + `","items":5,"reduce":"avg"}`:          "reduce",
		`{"kind":"wasm","module":"` + testSHA + `","items":5,"reduce":"sum","x":1}`:    "x",
		`{"kind":"wasm","module":"nothex","items":5,"reduce":"sum"}`:                   "module",
		`{"kind":"wasm","module":"` + testSHA + `","items":5,"reduce":"sum","seed":1}`: "seed",
	} {
		if _, err := DecodeJobRequest([]byte(body)); err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%s: %v, want an error about %s", body, err, want)
		}
	}
}
