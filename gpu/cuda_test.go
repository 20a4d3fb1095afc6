package gpu_test

import (
	"errors"
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/fmgpu/fmgpu/gpu"
	"github.com/fmgpu/fmgpu/gpu/gputest"
	"github.com/fmgpu/fmgpu/internal/fakecuda"
)

// The CUDA backend's tests run its real launcher (the driver loaded at run
// time) over the fake libcuda of kernels/fakecuda on any machine, and over
// the NVIDIA driver on a GPU host: `gpu.test -cuda.lib=libcuda.so.1`
// (scripts/gpu-run.sh does).

var (
	cudaSync = flag.Bool("cuda.sync", false, "wait for every kernel and check its error (pinpoints a faulting kernel)")
	cudaLib  = flag.String("cuda.lib", "", "driver library for the CUDA tests: empty for the fake libcuda (kernels run on the CPU), libcuda.so.1 for the NVIDIA driver")
)

func cudaLibrary(t testing.TB) string {
	if *cudaLib != "" {
		return *cudaLib
	}
	return fakecuda.Library(t)
}

func newCUDA(t testing.TB) gpu.Backend {
	be, err := gpu.NewCUDADriver(gpu.CUDAOptions{Library: cudaLibrary(t), SyncEachLaunch: *cudaSync})
	if err != nil {
		t.Fatal(err)
	}
	return be
}

func TestCUDAProbe(t *testing.T) {
	info, err := gpu.ProbeCUDADriver(gpu.CUDAOptions{Library: cudaLibrary(t)})
	if err != nil {
		t.Fatal(err)
	}
	if info.Backend != "cuda" || info.Name == "" || info.ComputeCapability == "" || info.MemoryBytes <= 0 ||
		info.Multiprocessors <= 0 || info.ClockKHz <= 0 {
		t.Errorf("ProbeCUDADriver() = %+v", info)
	}
	t.Logf("%+v", info)
}

// The conformance suite through the driver: every op against gputest's
// float64 references.
func TestCUDAConformance(t *testing.T) {
	gputest.Run(t, func(t *testing.T) gpu.Backend { return newCUDA(t) })
}

// The device report at GPU sizes: each op's error against the CPU backend
// and its GB/s (against a device-to-device copy) or TFLOP/s.
func TestCUDAReport(t *testing.T) {
	if testing.Short() || *cudaLib == "" {
		t.Skip("GPU-sized buffers: run with -cuda.lib=libcuda.so.1 on a GPU host")
	}
	be := newCUDA(t)
	defer be.Close()
	runDeviceReport(t, be, 1, 50*time.Millisecond)
}

// Each way the CUDA backend can fail to start is one error naming what is
// missing, never a crash: the fake driver plays each state.
func TestCUDAUnavailable(t *testing.T) {
	lib := fakecuda.Library(t)
	cases := []struct {
		name, library string
		env           map[string]string
		device        int
		want          string
	}{
		{"no driver library", "/nonexistent/libcuda.so.1", nil, 0, "no NVIDIA driver"},
		{"no device", lib, map[string]string{"FMGPU_FAKECUDA_INIT": "100"}, 0, "no CUDA device"},
		{"hidden devices", lib, map[string]string{"CUDA_VISIBLE_DEVICES": ""}, 0, "no CUDA device"},
		{"device ordinal", lib, nil, 3, "no CUDA device"},
		{"old GPU", lib, map[string]string{"FMGPU_FAKECUDA_CC": "7.5"}, 0, "compute capability 8.0 or newer"},
		{"driver mismatch", lib, map[string]string{"FMGPU_FAKECUDA_INIT": "803"}, 0, "a working NVIDIA driver"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			be, err := gpu.NewCUDADriver(gpu.CUDAOptions{Library: c.library, Device: c.device})
			if err == nil {
				be.Close()
				t.Fatal("started")
			}
			var u *gpu.CUDAUnavailable
			if !errors.As(err, &u) {
				t.Fatalf("error %T %v, want *gpu.CUDAUnavailable", err, err)
			}
			if !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q: want one line containing %q", err, c.want)
			}
		})
	}
}

func BenchmarkCUDA(b *testing.B) {
	gputest.Bench(b, func(b *testing.B) gpu.Backend { return newCUDA(b) })
}
