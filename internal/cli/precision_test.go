package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fmgpu/fmgpu/gpu"
	"github.com/fmgpu/fmgpu/train"
)

// --precision on the commands that compute products: an unknown name and
// tf32 or bf16 on the CPU (which computes in fp32 only) are usage errors naming the
// flag; tf32x3, float32 accuracy, runs on the CPU and is recorded in the
// checkpoint, which a resumed run keeps unless --precision is given.
func TestPrecisionFlag(t *testing.T) {
	dir := t.TempDir()
	ck := tinyTrain(t, dir, "--device", "cpu", "--precision", "tf32x3")
	loaded, err := train.Load(ck)
	if err != nil {
		t.Fatal(err)
	}
	if p := loaded.Meta.Config.Precision; p != gpu.PrecisionTF32x3 {
		t.Errorf("checkpoint precision %s, want tf32x3", p)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"train", "--data", "moons", "--out", filepath.Join(dir, "a"), "--precision", "fp16"}, "--precision: unknown precision \"fp16\""},
		{[]string{"train", "--data", "moons", "--out", filepath.Join(dir, "c"), "--device", "cpu", "--precision", "bf16", "--quiet"}, "--precision bf16 on cpu"},
		{[]string{"sample", "--checkpoint", ck, "--n", "10", "--out", filepath.Join(dir, "s.npy"), "--device", "cpu", "--precision", "bf16"}, "--precision bf16 on cpu: gpu: precision bf16 is for a GPU's tensor cores"},
		{[]string{"likelihood", "--checkpoint", ck, "--data", "moons", "--n-data", "10", "--device", "cpu", "--precision", "bf16"}, "--precision bf16 on cpu"},
		{[]string{"bench", "--workload", "mlp256-b256", "--steps", "1", "--device", "cpu", "--precision", "bf16"}, "--precision bf16 on cpu"},
		{[]string{"train", "--data", "moons", "--out", filepath.Join(dir, "b"), "--device", "cpu", "--precision", "tf32", "--quiet"}, "--precision tf32 on cpu"},
		{[]string{"sample", "--checkpoint", ck, "--n", "10", "--out", filepath.Join(dir, "s.npy"), "--device", "cpu", "--precision", "tf32"}, "--precision tf32 on cpu"},
		{[]string{"likelihood", "--checkpoint", ck, "--data", "moons", "--n-data", "10", "--device", "cpu", "--precision", "tf32"}, "--precision tf32 on cpu"},
		{[]string{"bench", "--workload", "mlp256-b256", "--steps", "1", "--device", "cpu", "--precision", "tf32"}, "--precision tf32 on cpu"},
		{[]string{"sample", "--checkpoint", ck, "--n", "10", "--out", filepath.Join(dir, "t.npy"), "--precision", "fp16"}, "--precision"},
	} {
		code, _, stderr := fmgpu(t, c.args...)
		if code != 2 || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 saying %q", c.args, code, stderr, c.want)
		}
	}
	// Resumed without --precision: the checkpoint's.
	code, _, stderr := fmgpu(t, "train", "--out", dir, "--resume", "--steps", "70", "--device", "cpu", "--quiet")
	if code != 0 {
		t.Fatalf("resume: exit %d %s", code, stderr)
	}
	if loaded, err = train.Load(ck); err != nil || loaded.Meta.Config.Precision != gpu.PrecisionTF32x3 {
		t.Errorf("resumed without --precision: precision %s (%v), want the checkpoint's tf32x3", loaded.Meta.Config.Precision, err)
	}
	// Given: a change a resumed run may make, said on stderr.
	code, _, stderr = fmgpu(t, "train", "--out", dir, "--resume", "--steps", "80", "--device", "cpu", "--precision", "fp32")
	if code != 0 || !strings.Contains(stderr, `resuming with precision "fp32" (the checkpoint's was "tf32x3")`) {
		t.Errorf("resume with --precision fp32: exit %d, stderr %q", code, stderr)
	}
	if loaded, err = train.Load(ck); err != nil || loaded.Meta.Config.Precision != gpu.PrecisionFP32 {
		t.Errorf("resumed with --precision fp32: precision %s (%v)", loaded.Meta.Config.Precision, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "s.npy")); err == nil {
		t.Error("a refused sample wrote its output")
	}
}

// bf16 on the device backend (the kernelsim build's; the default build has
// no GPU here): a training records it in the checkpoint, launches the bf16
// kernels, and a resumed run without --precision keeps it.
func TestPrecisionBF16Resume(t *testing.T) {
	if gpu.Flavor != "kernelsim" {
		t.Skip("bf16 needs a device backend: the kernelsim build runs this test")
	}
	dir := t.TempDir()
	ck := tinyTrain(t, dir, "--device", "cuda", "--precision", "bf16", "--steps", "10", "--no-plot")
	loaded, err := train.Load(ck)
	if err != nil {
		t.Fatal(err)
	}
	if p := loaded.Meta.Config.Precision; p != gpu.PrecisionBF16 {
		t.Errorf("checkpoint precision %s, want bf16", p)
	}
	code, _, stderr := fmgpu(t, "train", "--out", dir, "--resume", "--steps", "15", "--device", "cuda", "--no-plot", "--quiet")
	if code != 0 {
		t.Fatalf("resume: exit %d %s", code, stderr)
	}
	if loaded, err = train.Load(ck); err != nil || loaded.Meta.Config.Precision != gpu.PrecisionBF16 {
		t.Errorf("resumed without --precision: precision %s (%v), want the checkpoint's bf16", loaded.Meta.Config.Precision, err)
	}
	if loaded.Meta.Step != 15 {
		t.Errorf("resumed to step %d, want 15", loaded.Meta.Step)
	}
}
