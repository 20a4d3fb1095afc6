package cli

import (
	"strconv"
	"strings"
	"testing"

	"github.com/fmgpu/fmgpu/gpu"
	"github.com/fmgpu/fmgpu/internal/fakecuda"
)

// benchFields runs bench and returns its line's fields.
func benchFields(t *testing.T, args ...string) map[string]string {
	t.Helper()
	code, stdout, stderr := fmgpu(t, append([]string{"bench"}, args...)...)
	if code != 0 {
		t.Fatalf("bench %v: exit %d: %s", args, code, stderr)
	}
	fields := map[string]string{}
	for _, f := range strings.Fields(strings.TrimSpace(stdout)) {
		if k, v, ok := strings.Cut(f, "="); ok {
			fields[k] = v
		}
	}
	return fields
}

func number(t *testing.T, fields map[string]string, k string) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(fields[k], 64)
	if err != nil {
		t.Fatalf("%s=%q: %v", k, fields[k], err)
	}
	return v
}

// bench --device cuda prints the kernels and graph launches of a step,
// measured here on the CPU (the fake libcuda's driver, or the kernelsim
// launcher in that build), and the training step of mlp256 stays within 14
// kernels (issue 17; 27 before the fused backward), replayed as one graph
// where the launcher records graphs.
func TestBenchKernelCounts(t *testing.T) {
	if testing.Short() {
		t.Skip("kernels on the CPU")
	}
	if gpu.Flavor == "cpu+cuda" {
		t.Setenv("FMGPU_LIBCUDA", fakecuda.Library(t))
	}
	f := benchFields(t, "--device", "cuda", "--workload", "mlp256-b256", "--steps", "3")
	kernels, graphs := number(t, f, "kernels_per_step"), number(t, f, "graph_launches_per_step")
	if number(t, f, "launches_per_step") != kernels {
		t.Errorf("launches_per_step %s, kernels_per_step %s: the same count", f["launches_per_step"], f["kernels_per_step"])
	}
	if kernels < 5 || kernels > 14 {
		t.Errorf("mlp256-b256: %g kernels a step, want at most 14", kernels)
	}
	wantGraphs := 1.0 // every timed step a replay
	if gpu.Flavor != "cpu+cuda" {
		wantGraphs = 0 // the kernelsim launcher runs eagerly
	}
	if graphs != wantGraphs {
		t.Errorf("mlp256-b256: %g graph launches a step, want %g", graphs, wantGraphs)
	}
	t.Logf("mlp256-b256: %g kernels, %g graph launches a step", kernels, graphs)
}
