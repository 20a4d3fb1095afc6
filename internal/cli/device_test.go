package cli

import (
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fmgpu/fmgpu/gpu"
	"github.com/fmgpu/fmgpu/internal/cudadriver"
	"github.com/fmgpu/fmgpu/internal/fakecuda"
)

// Each state a machine can be in, as --device auto, --device cuda and info
// see it: the fake libcuda plays the GPU host and its failures, a missing
// path plays a host without the NVIDIA driver.
func TestDeviceChoice(t *testing.T) {
	if gpu.Flavor == "kernelsim" {
		t.Skip("the kernelsim build's CUDA backend is the simulator itself")
	}
	fake := fakecuda.Library(t)
	train := func(t *testing.T, device string) (int, string, string) {
		return fmgpu(t, "train", "--data", "moons", "--out", filepath.Join(t.TempDir(), "run"), "--steps", "4", "--batch", "16",
			"--hidden", "8", "--n-data", "200", "--warmup", "1", "--no-plot", "--device", device)
	}
	cases := []struct {
		name       string
		env        map[string]string
		autoOn     string // what auto's header names
		autoReason string // why auto's header says the CPU ("" when it is the GPU)
		cudaErr    string // --device cuda's error ("" when it trains)
	}{
		{"GPU host", map[string]string{cudadriver.LibraryEnv: fake}, "on cuda: fmgpu kernelsim (fake libcuda)", "", ""},
		{"no driver", map[string]string{cudadriver.LibraryEnv: "/nonexistent/libcuda.so.1"}, "on cpu",
			"(no GPU: no NVIDIA driver (/nonexistent/libcuda.so.1 not found))", "install the NVIDIA driver"},
		{"no device", map[string]string{cudadriver.LibraryEnv: fake, "FMGPU_FAKECUDA_INIT": "100"}, "on cpu",
			"(no GPU: no CUDA device (cuInit: CUDA_ERROR_NO_DEVICE))", "no CUDA device"},
		{"devices hidden", map[string]string{cudadriver.LibraryEnv: fake, "CUDA_VISIBLE_DEVICES": ""}, "on cpu",
			"(no GPU: no CUDA device", "CUDA_VISIBLE_DEVICES"},
		{"GPU too old", map[string]string{cudadriver.LibraryEnv: fake, "FMGPU_FAKECUDA_CC": "7.0"}, "on cpu",
			"(no GPU: a GPU these kernels run on (cuModuleLoadData: CUDA_ERROR_NO_BINARY_FOR_GPU))", "compute capability 8.0 or newer"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			code, stdout, stderr := train(t, "auto")
			if code != 0 {
				t.Fatalf("--device auto: exit %d: %s", code, stderr)
			}
			if !strings.Contains(stderr+stdout, c.autoOn) {
				t.Errorf("--device auto: want %q in\n%s%s", c.autoOn, stdout, stderr)
			}
			if c.autoReason == "" && strings.Contains(stderr, "no GPU") || !strings.Contains(stderr, c.autoReason) {
				t.Errorf("--device auto: want %q in stderr:\n%s", c.autoReason, stderr)
			}
			code, _, stderr = train(t, "cuda")
			if c.cudaErr == "" {
				if code != 0 {
					t.Errorf("--device cuda: exit %d: %s", code, stderr)
				}
			} else {
				lines := strings.Split(strings.TrimSpace(stderr), "\n")
				if code != 1 || len(lines) != 1 || !strings.Contains(stderr, c.cudaErr) || !strings.HasPrefix(lines[0], "fmgpu: --device cuda: no usable CUDA GPU") {
					t.Errorf("--device cuda: exit %d, stderr %q: want exit 1 and one line naming %q", code, stderr, c.cudaErr)
				}
			}
			code, stdout, stderr = fmgpu(t, "info")
			if code != 0 || !strings.Contains(stdout, "device cpu: cpu") || !strings.Contains(stdout, "device cuda: ") {
				t.Errorf("info: exit %d\n%s%s", code, stdout, stderr)
			}
		})
	}
}

// FMGPU_SGEMM_KERNEL naming a kernel this CPU lacks is refused, not
// ignored (the default kernel ran instead).
func TestBadSgemmKernelRefused(t *testing.T) {
	cmd := fmgpuProcess("sample", "--device", "cpu", "--checkpoint", filepath.Join(t.TempDir(), "none.safetensors"), "--out", filepath.Join(t.TempDir(), "s.npy"))
	cmd.Env = append(cmd.Env, "FMGPU_SGEMM_KERNEL=bogus")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != ExitUsage || !strings.Contains(string(out), `FMGPU_SGEMM_KERNEL="bogus": this CPU runs the kernels `) {
		t.Errorf("%v: %s", err, out)
	}
}
