package sgemm

import (
	"math/rand/v2"
	"runtime"
	"testing"
	"time"
)

// BenchmarkMicroKernel times the full-size micro-kernel alone on one core,
// with its operands in cache: the ceiling for the blocked driver.
func BenchmarkMicroKernel(b *testing.B) {
	defer SetKernel("")
	for _, name := range Kernels() {
		for _, variant := range []string{"rowA", "colA"} {
			b.Run("kernel="+name+"/"+variant, func(b *testing.B) {
				SetKernel(name)
				K := current.Load()
				const kc = 256
				r := rand.New(rand.NewPCG(1, 2))
				a := randSlice(r, K.mr*kc)
				bb := randSlice(r, kc*K.nr*8)
				c := make([]float32, K.mr*K.nr)
				kern, sa := K.rowA[K.mr-1], 4*kc
				if variant == "colA" {
					kern, sa = K.colA[K.mr-1], 4*K.mr
				}
				b.ResetTimer()
				start, cpu0 := time.Now(), cpuTime()
				for i := 0; i < b.N; i++ {
					q := i % 8
					kern(kc, &a[0], sa, &bb[q*kc*K.nr], 4*K.nr, &c[0], 4*K.nr, 1, 1)
				}
				reportGFLOPS(b, benchShape{m: K.mr, n: K.nr, k: kc}, time.Since(start), cpuTime()-cpu0)
			})
		}
	}
}

// TestMicroKernelPeak logs each kernel's full-size micro-kernel in cache
// (kc = 256, A and 8 B panels in L1 and L2) as a fraction of
// MeasuredPeak's per-core rate, both in the thread's CPU time:
//
//	go test -run MicroKernelPeak -v ./internal/sgemm
func TestMicroKernelPeak(t *testing.T) {
	pk := MeasuredPeak()
	if pk.GHz == 0 {
		t.Skip("no peak measured in this build")
	}
	defer SetKernel("")
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	for _, name := range Kernels() {
		SetKernel(name)
		K := current.Load()
		for _, variant := range []string{"rowA", "colA"} {
			const kc = 256
			r := rand.New(rand.NewPCG(1, 2))
			a := randSlice(r, K.mr*kc)
			bb := randSlice(r, kc*K.nr*8)
			c := make([]float32, K.mr*K.nr)
			kern, sa := K.rowA[K.mr-1], 4*kc
			if variant == "colA" {
				kern, sa = K.colA[K.mr-1], 4*K.mr
			}
			const calls = 4000
			best := time.Duration(1 << 62)
			for rep := 0; rep < 7; rep++ {
				t0 := threadTime()
				for i := 0; i < calls; i++ {
					q := i % 8
					kern(kc, &a[0], sa, &bb[q*kc*K.nr], 4*K.nr, &c[0], 4*K.nr, 1, 1)
				}
				best = min(best, threadTime()-t0)
			}
			gf := 2 * float64(K.mr*K.nr*kc*calls) / best.Seconds() / 1e9
			t.Logf("%-10s %s %2dx%d: %6.1f GFLOP/s = %3.0f%% of %.1f per core", name, variant, K.mr, K.nr, gf, 100*gf/pk.PerCore(), pk.PerCore())
		}
	}
}
