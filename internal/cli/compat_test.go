package cli

import (
	"math"
	"path/filepath"
	"testing"

	"github.com/fmgpu/fmgpu/data"
	"github.com/fmgpu/fmgpu/internal/sgemm"
)

// TestCheckpointsOfEarlierVersions samples from checkpoints written at
// commit ae7b848 (testdata/ae7b848/README.md) and compares with the samples
// that version drew on an AVX-512 CPU. With the same product kernel the
// MLP's points are the same bits; the U-Net's may differ by the summation
// order of the convolution kernels the CPU picks, and either may differ on
// another kernel set, so those are held to 1e-4 (of the pixel range [-1, 1]
// for the U-Net, after four Euler steps).
func TestCheckpointsOfEarlierVersions(t *testing.T) {
	for _, c := range []struct {
		name  string
		args  []string
		exact bool
	}{
		{"mlp", []string{"-n", "64", "--seed", "3"}, sgemm.Kernel() == "avx512"},
		{"unet", []string{"-n", "4", "--seed", "3", "--steps", "4", "--solver", "euler"}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join("testdata", "ae7b848")
			out := filepath.Join(t.TempDir(), "samples.npy")
			args := append([]string{"sample", "--checkpoint", filepath.Join(dir, c.name+".safetensors"), "--out", out, "--quiet"}, c.args...)
			if code, _, stderr := fmgpu(t, args...); code != 0 {
				t.Fatalf("sample exit %d: %s", code, stderr)
			}
			got, err := data.LoadNPY(out)
			if err != nil {
				t.Fatal(err)
			}
			want, err := data.LoadNPY(filepath.Join(dir, c.name+"-samples.npy"))
			if err != nil {
				t.Fatal(err)
			}
			if got.N != want.N || got.D != want.D {
				t.Fatalf("samples %dx%d, want %dx%d", got.N, got.D, want.N, want.D)
			}
			worst := 0.0
			for i := range want.X {
				worst = math.Max(worst, math.Abs(float64(got.X[i])-float64(want.X[i])))
			}
			if c.exact && worst != 0 || worst > 1e-4 {
				t.Fatalf("samples differ from ae7b848's by up to %.3g (exact: %v)", worst, c.exact)
			}
		})
	}
}
