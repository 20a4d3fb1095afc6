package sgemm

import (
	"testing"
	"time"
)

// TestClock measures the core clock from a chain of dependent FMAs (4
// cycles each on Zen 4) and the single-core FMA throughput with zmm and
// ymm registers. It only logs: go test -run Clock -v ./internal/sgemm
func TestClock(t *testing.T) {
	if !fmaProbe("latency", 1) {
		t.Skip("no assembly in this build")
	}
	const n = 20_000_000
	best := func(kind string) float64 {
		b := time.Duration(1 << 62)
		for r := 0; r < 5; r++ {
			s := time.Now()
			fmaProbe(kind, n)
			b = min(b, time.Since(s))
		}
		return b.Seconds()
	}
	sec := best("latency")
	ghz := 32 * n / sec / 1e9
	t.Logf("dependent FMA chain: %.3f GHz (assuming 4-cycle FMA latency)", ghz)
	if fmaProbe("zmm", 1) {
		s := best("zmm")
		t.Logf("zmm FMA throughput: %.1f GFLOP/s per core = %.1f flop/cycle", 48*16*2*n/s/1e9, 48*16*2*n/s/1e9/ghz)
	}
	if fmaProbe("ymm", 1) {
		s := best("ymm")
		t.Logf("ymm FMA throughput: %.1f GFLOP/s per core = %.1f flop/cycle", 28*8*2*n/s/1e9, 28*8*2*n/s/1e9/ghz)
	}
}
