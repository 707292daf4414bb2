package webui

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/hydra-compute/hydra/compute"
)

// TestJobViewOfANewerKind: a client reads the job views of a newer server whose job kinds it
// does not know: the view's common fields (state, progress, name) are read and the parameters
// left out, as the client's doc says; a submit of that kind is still refused. Before, one such
// job in a list failed the whole `hydra jobs`.
func TestJobViewOfANewerKind(t *testing.T) {
	body := []byte(`{"kind":"raytrace","name":"scene","priority":3,"scene":"castle","id":"j1","state":"running",` +
		`"done_units":5,"total_units":10,"progress":0.5,"unit":"rays","nodes":[]}`)
	var v JobView
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("a newer kind's view: %v", err)
	}
	if v.Spec.Kind != "raytrace" || v.Spec.Name != "scene" || v.Spec.Priority != 3 || v.ID != "j1" ||
		v.State != compute.StateRunning || v.DoneUnits != 5 || v.Progress != 0.5 || v.Spec.Pi != nil || v.Spec.Mandel != nil || v.Spec.Wasm != nil {
		t.Fatalf("read %+v (spec %+v)", v, v.Spec)
	}
	if _, err := json.Marshal(v); err != nil {
		t.Fatalf("written again: %v", err)
	}
	var list []JobView
	if err := json.Unmarshal([]byte(`[`+string(body)+`,{"kind":"pi","samples":1000,"seed":"1","id":"j2","state":"done"}]`), &list); err != nil || len(list) != 2 || list[1].Spec.Pi == nil {
		t.Fatalf("a list with a newer kind: %v %+v", err, list)
	}
	if _, err := DecodeJobRequest([]byte(`{"kind":"raytrace"}`)); err == nil || !strings.Contains(err.Error(), "not a job kind") {
		t.Fatalf("a submit of an unknown kind: %v", err)
	}
}

// TestMissingStringFieldIsMissing: a wasm submit without its module or reduce is told the field
// is missing, as a missing number is; it was told "must be a string, not nothing".
func TestMissingStringFieldIsMissing(t *testing.T) {
	for body, want := range map[string]string{
		`{"kind":"wasm","items":3,"reduce":"sum"}`:                             "module: missing",
		`{"kind":"wasm","module":"` + strings.Repeat("a", 64) + `","items":3}`: "reduce: missing",
		`{"kind":"wasm","module":3,"items":3,"reduce":"sum"}`:                  "module: must be a string, not number",
	} {
		if _, err := DecodeJobRequest([]byte(body)); err == nil || err.Error() != want {
			t.Errorf("%s: %v, want %q", body, err, want)
		}
	}
}
