package cli

import (
	"fmt"
	"strings"

	"github.com/fmgpu/fmgpu/gpu"
	"github.com/fmgpu/fmgpu/internal/sgemm"
)

// peakFields are the fields a CPU bench line adds after its gflops: the
// measured peak of the cores the backend runs on (sgemm.MeasuredPeak: the
// clock and FMA rate timed on this machine, not looked up) and the
// fraction of it reached. Other backends, and builds that cannot
// measure it, add nothing. gflops counts the network's multiply-adds as
// the direct computation does them (three times the forward's), so
// convolutions that take fewer (the CPU's Winograd ones) count at their
// effective rate: the fraction can pass what the FMA units did.
func peakFields(b gpu.Backend, gflops float64) string {
	in := b.Info()
	if strings.TrimSpace(in.Backend) != "cpu" {
		return ""
	}
	pk := sgemm.MeasuredPeak()
	cores := pk.Cores
	if in.Threads > 0 {
		cores = min(cores, in.Threads)
	}
	peak := pk.PerCore() * float64(cores)
	if peak <= 0 {
		return ""
	}
	return fmt.Sprintf(" peak_gflops=%.0f peak_frac=%.3f", peak, gflops/peak)
}
