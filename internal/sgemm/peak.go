package sgemm

import (
	"runtime"
	"sync"
	"time"
)

// Peak is this machine's floating-point peak for float32 multiply-adds,
// measured (not looked up): the core clock from a chain of dependent
// integer adds (1 cycle each), the FMA rate from loops of independent
// FMAs on zmm and ymm registers, both timed in the thread's CPU time, so
// that other processes on a shared machine slow neither.
type Peak struct {
	GHz          float64 // core clock while the probes ran
	FlopPerCycle float64 // best of the zmm and ymm FMA loops, one core
	ISA          string  // "zmm" or "ymm": the registers of that best; "" if unmeasured
	Cores        int     // Threads(): the cores the products run on
}

// PerCore is the peak of one core in GFLOP/s.
func (p Peak) PerCore() float64 { return p.GHz * p.FlopPerCycle }

// GFLOPS is the peak of all Cores in GFLOP/s (0 when unmeasured: a build
// without assembly).
func (p Peak) GFLOPS() float64 { return p.PerCore() * float64(p.Cores) }

var (
	peakOnce sync.Once
	peak     Peak
)

// MeasuredPeak measures the peak on first use (about 0.1 s of one core)
// and returns it.
func MeasuredPeak() Peak {
	peakOnce.Do(func() { peak = measurePeak() })
	return peak
}

func measurePeak() Peak {
	p := Peak{Cores: Threads()}
	if !hasAsm {
		return p
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	const n = 200_000 // 6.4M cycles, about 2 ms, per timing
	addSec := bestProbe("add", n)
	p.GHz = 32 * n / addSec / 1e9
	for _, isa := range []struct {
		kind string
		flop float64 // per iteration
	}{{"zmm", 48 * 16 * 2}, {"ymm", 28 * 8 * 2}} {
		sec := bestProbe(isa.kind, n)
		if sec == 0 {
			continue
		}
		if f := isa.flop * n / sec / 1e9 / p.GHz; f > p.FlopPerCycle {
			p.FlopPerCycle, p.ISA = f, isa.kind
		}
	}
	return p
}

// bestProbe runs probe kind (see fmaProbe) 7 times and returns the least
// thread CPU time of one run in seconds, 0 if this CPU lacks it.
func bestProbe(kind string, n int) float64 {
	if !fmaProbe(kind, 1) {
		return 0
	}
	best := time.Duration(1 << 62)
	for r := 0; r < 7; r++ {
		t0 := threadTime()
		fmaProbe(kind, n)
		best = min(best, threadTime()-t0)
	}
	return max(best.Seconds(), 1e-9)
}
