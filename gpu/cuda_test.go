package gpu_test

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
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
	// The device bundle's per-kernel table needs to know which tests ran
	// each kernel: every test's backend appends one line per kernel.
	cudaKernelLog = flag.String("cuda.kernellog", "", "append `test<TAB>PASS|FAIL<TAB>kernel<TAB>launches` lines for every CUDA backend a test made")
	kernelLogMu   sync.Mutex
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
	if *cudaKernelLog != "" {
		t.Cleanup(func() { logKernels(t, be) })
	}
	return be
}

func logKernels(t testing.TB, be gpu.Backend) {
	verdict := "PASS"
	if t.Failed() {
		verdict = "FAIL"
	}
	kernelLogMu.Lock()
	defer kernelLogMu.Unlock()
	f, err := os.OpenFile(*cudaKernelLog, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Error(err)
		return
	}
	defer f.Close()
	for k, s := range gpu.KernelStats(be) {
		fmt.Fprintf(f, "%s\t%s\t%s\t%d\n", t.Name(), verdict, k, s.Launches)
	}
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

// kernelNames lists the kernels of a CUDA backend's statistics, sorted and
// comma-separated ("-" for none or another backend).
func kernelNames(stats map[string]gpu.KernelStat) string {
	names := make([]string, 0, len(stats))
	for k := range stats {
		names = append(names, k)
	}
	if len(names) == 0 {
		return "-"
	}
	sort.Strings(names)
	return strings.Join(names, ",")
}

// fp32PeakTFLOPS is the device's fp32 FMA peak: SMs x fp32 lanes per SM x
// 2 flops x SM clock (64 lanes per SM on sm_80, 128 on sm_86 and later
// through sm_90); 0 when the device figures are unknown.
func fp32PeakTFLOPS(in gpu.DeviceInfo) float64 {
	if in.Multiprocessors == 0 || in.ClockKHz == 0 {
		return 0
	}
	lanes := 128.0
	if in.ComputeCapability == "8.0" {
		lanes = 64
	}
	return float64(in.Multiprocessors) * lanes * 2 * float64(in.ClockKHz) * 1e3 / 1e12
}

// TestCUDATransfersAllocateNothing: the copies a training step makes (its
// scalars uploaded, the loss read back every few steps, device copies and
// fills) allocate nothing on the Go heap, so that a long run on the GPU
// does not wake the garbage collector.
func TestCUDATransfersAllocateNothing(t *testing.T) {
	if raceDetector {
		t.Skip("allocation counts under -race include the detector's")
	}
	be := newCUDA(t)
	defer be.Close()
	a, b := be.Alloc(64), be.Alloc(64)
	host := make([]float32, 64)
	ops := map[string]func(){
		"upload":   func() { be.Upload(a, host) },
		"download": func() { be.Download(host, a) },
		"copy":     func() { be.Copy(b, a) },
		"fill":     func() { be.Fill(b, 1) },
		"sync":     func() { be.Sync() },
	}
	for name, op := range ops {
		op()
		if n := testing.AllocsPerRun(50, op); n != 0 {
			t.Errorf("%s allocates %.1f times, want 0", name, n)
		}
	}
	if err := be.Sync(); err != nil {
		t.Fatal(err)
	}
}
