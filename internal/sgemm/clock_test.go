package sgemm

import (
	"math/rand/v2"
	"runtime"
	"testing"
	"time"
)

// TestClock measures what the kernels are designed around, in the
// thread's CPU time (a shared machine's other load does not slow it): the
// core clock (dependent integer adds, 1 cycle each), the FMA latency, the
// FMA throughput on zmm and ymm registers (MeasuredPeak), and the load
// ports (aligned and line-crossing zmm loads, broadcasts, FMAs with a
// broadcast memory operand). It only logs:
//
//	go test -run Clock -v ./internal/sgemm
func TestClock(t *testing.T) {
	if !fmaProbe("add", 1) {
		t.Skip("no assembly in this build")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	const n = 1_000_000
	ghz := 32 * n / bestProbe("add", n) / 1e9
	cycles := func(kind string) float64 { return bestProbe(kind, n) * ghz * 1e9 / n }
	t.Logf("core clock (dependent integer adds): %.3f GHz", ghz)
	t.Logf("FMA latency: %.2f cycles", cycles("latency")/8)
	p := MeasuredPeak()
	if fmaProbe("zmm", 1) {
		c := cycles("zmm")
		t.Logf("zmm FMA throughput: %.2f FMAs/cycle = %.1f flop/cycle = %.1f GFLOP/s per core", 48/c, 48*32/c, 48*32/c*ghz)
	}
	if fmaProbe("ymm", 1) {
		c := cycles("ymm")
		t.Logf("ymm FMA throughput: %.2f FMAs/cycle = %.1f flop/cycle = %.1f GFLOP/s per core", 28/c, 28*16/c, 28*16/c*ghz)
	}
	for _, l := range []struct{ kind, what string }{
		{"loadZMM", "aligned zmm loads"},
		{"loadZMMSplit", "zmm loads crossing a cache line"},
		{"loadBcast", "VBROADCASTSS loads"},
	} {
		if fmaProbe(l.kind, 1) {
			t.Logf("%s: %.2f per cycle", l.what, 16/cycles(l.kind))
		}
	}
	if fmaProbe("fmaBcast", 1) {
		t.Logf("FMAs with a broadcast memory operand: %.2f per cycle", 24/cycles("fmaBcast"))
	}
	t.Logf("MeasuredPeak: %.3f GHz x %.1f flop/cycle (%s) x %d cores = %.0f GFLOP/s",
		p.GHz, p.FlopPerCycle, p.ISA, p.Cores, p.GFLOPS())
}

// TestCaches logs the latency of dependent loads (a random cyclic chain of
// 64-byte lines) against the size of the working set: the steps show the
// cache sizes the blocking is designed around (48 KiB L1 and 1 MiB L2 per
// core on the Zen 5 guest). It only logs:
//
//	go test -run Caches -v ./internal/sgemm
func TestCaches(t *testing.T) {
	if !fmaProbe("add", 1) {
		t.Skip("no assembly in this build")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	const n = 1_000_000
	ghz := 32 * n / bestProbe("add", n) / 1e9
	r := rand.New(rand.NewPCG(1, 1))
	for kib := 16; kib <= 64<<10; kib *= 2 {
		lines := kib << 10 / 64
		next := make([]int64, lines*8) // one int64 used per 64-byte line
		perm := r.Perm(lines)
		for i := range perm {
			next[perm[i]*8] = int64(perm[(i+1)%lines] * 8)
		}
		const steps = 2_000_000
		best := time.Duration(1 << 62)
		for rep := 0; rep < 3; rep++ {
			p := int64(0)
			t0 := threadTime()
			for i := 0; i < steps; i++ {
				p = next[p]
			}
			best = min(best, threadTime()-t0)
			if p < 0 {
				t.Fatal(p)
			}
		}
		t.Logf("%6d KiB: %5.1f cycles a load", kib, best.Seconds()*ghz*1e9/steps)
	}
}
