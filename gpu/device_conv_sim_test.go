//go:build kernelsim

package gpu_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/fmgpu/fmgpu/gpu"
)

// The filter gradient's long sums are split into chunks (a double sum of
// float partials): the result is the same bits whatever the harness's
// thread order and block parallelism. (Its values are the conformance
// suite's to check: gputest's convolutions with batch x positions above
// the chunk length go through the split.)
func TestDeviceConv2DFilterSplitDeterministic(t *testing.T) {
	s := gpu.ConvShape{Batch: 6, InC: 3, H: 30, W: 31, OutC: 5, K: 3, Stride: 1, Pad: 1}
	rng := rand.New(rand.NewPCG(3, 3))
	xs := make([]float32, s.Batch*s.InC*s.H*s.W)
	dys := make([]float32, s.Batch*s.OutC*s.OutH()*s.OutW())
	for i := range xs {
		xs[i] = float32(rng.NormFloat64())
	}
	for i := range dys {
		dys[i] = float32(rng.NormFloat64())
	}
	var runs [][]float32
	for _, o := range []gpu.KernelSimOptions{{Order: "forward", Threads: 1}, {Order: "reverse", Threads: 3}, {}} {
		be := newKernelSim(t, o)
		x, dy, dw, db := be.Alloc(len(xs)), be.Alloc(len(dys)), be.Alloc(s.OutC*s.InC*9), be.Alloc(s.OutC)
		be.Upload(x, xs)
		be.Upload(dy, dys)
		be.Conv2DBackwardFilter(s, x, dy, dw, db)
		got := make([]float32, dw.Len()+db.Len())
		be.Download(got[:dw.Len()], dw)
		be.Download(got[dw.Len():], db)
		if err := be.Sync(); err != nil {
			t.Fatal(err)
		}
		be.Close()
		runs = append(runs, got)
	}
	for i := 1; i < len(runs); i++ {
		for j := range runs[0] {
			if math.Float32bits(runs[i][j]) != math.Float32bits(runs[0][j]) {
				t.Errorf("run %d: element %d = %v, run 0 %v", i, j, runs[i][j], runs[0][j])
				break
			}
		}
	}
}
