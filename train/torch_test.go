package train

import (
	"encoding/json"
	"math"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/fmgpu/fmgpu/data"
	"github.com/fmgpu/fmgpu/gpu"
)

// A checkpoint must be readable by PyTorch users without fmgpu: the script
// parses the safetensors header by hand and reads every tensor with
// torch.frombuffer (numpy when torch is absent), and loads the weights
// into an equivalent nn.Sequential when torch is there. Skipped when no
// python3 with numpy or torch is installed (CI installs python3-numpy).
func TestCheckpointReadableFromPython(t *testing.T) {
	py := pythonWith("torch")
	if py == "" {
		py = pythonWith("numpy")
	}
	if py == "" {
		t.Skip("no python3 with numpy or torch")
	}
	b := gpu.NewCPU(1)
	ds, _ := data.Builtin("moons", 500, 1)
	cfg := testConfig()
	cfg.Steps = 5
	tr, err := New(b, cfg, ds.X, ds.N)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		tr.Step()
	}
	path := filepath.Join(t.TempDir(), CheckpointName)
	if err := tr.Save(path, data.Fit(ds), DataInfo{Source: "moons", Rows: ds.N, Dim: ds.D}); err != nil {
		t.Fatal(err)
	}
	args := []string{scriptPath(t), path}
	if exec.Command(py, "-c", "import torch").Run() == nil { // nn.Sequential too
		args = append(args, "--torch-module")
	}
	out, err := exec.Command(py, args...).Output()
	if err != nil {
		t.Fatalf("read_checkpoint.py: %v", err)
	}
	var r struct {
		Library string
		Fmgpu   Meta
		Tensors map[string]struct {
			Dtype string
			Shape []int
			Sum   float64
		}
		TorchModule string `json:"torch_module"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	t.Logf("read with %s; module: %s", r.Library, r.TorchModule)
	if r.Fmgpu.Step != 5 || r.Fmgpu.Config.Model.Dim != 2 {
		t.Errorf("metadata read back as %+v", r.Fmgpu)
	}
	ck, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, pr := range []struct {
		prefix string
		vals   []float32
	}{{"", ck.Params}, {prefixEMA, ck.EMA}, {prefixM, ck.AdamM}, {prefixV, ck.AdamV}} {
		for _, ts := range ck.Tensors {
			got, ok := r.Tensors[pr.prefix+ts.Name]
			if !ok || got.Dtype != "F32" || len(got.Shape) != len(ts.Shape) {
				t.Fatalf("tensor %s: %+v", pr.prefix+ts.Name, got)
			}
			want := 0.0
			for _, v := range pr.vals[ts.Offset : ts.Offset+ts.Size()] {
				want += float64(v)
			}
			if math.Abs(got.Sum-want) > 1e-9*(1+math.Abs(want)) {
				t.Errorf("tensor %s: python sum %v, fmgpu %v", pr.prefix+ts.Name, got.Sum, want)
			}
		}
	}
}

// pythonWith finds a python3 that imports module: the one on PATH first,
// then the system's (Debian's python3-torch and python3-numpy install
// there, while PATH may lead to another interpreter).
func pythonWith(module string) string {
	for _, p := range []string{"python3", "/usr/bin/python3"} {
		if path, err := exec.LookPath(p); err == nil && exec.Command(path, "-c", "import "+module).Run() == nil {
			return path
		}
	}
	return ""
}

func scriptPath(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "scripts", "read_checkpoint.py")
}
