package model_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/fmgpu/fmgpu/internal/numtest"
)

// forwardRTol bounds MLP.Forward (float32) against the float64 reference:
// |got - want| <= forwardRTol (|want| + rms(want)), rms over the batch's
// outputs. Each output is a chain of short float32 dot products (at most 34
// terms here) whose rounding is about 1e-7 of the output's scale; the rms
// term stands for that scale, so that an output that happens to cancel
// near zero is judged against the size of the products that made it, not
// against its own.
const forwardRTol = 1e-5

func rms(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x * x
	}
	return math.Sqrt(s / float64(len(v)))
}

func TestForwardMatchesReference(t *testing.T) {
	b := newBackend(t)
	for ci, tc := range testCases {
		for _, rows := range testRows {
			t.Run(fmt.Sprintf("%s/rows=%d", tc.name, rows), func(t *testing.T) {
				m := newMLP(t, b, tc.cfg, uint64(100+ci))
				r := rand.New(rand.NewPCG(uint64(ci), uint64(rows)))
				bt := newBatch(r, rows, tc.cfg.Dim)
				x, tb := upload(b, bt.x), upload(b, bt.t)
				out := b.Alloc(rows * tc.cfg.Dim)
				m.Forward(rows, tb, x, out)
				if err := b.Sync(); err != nil {
					t.Fatal(err)
				}
				got := hostData(t, out)

				p := to64(hostData(t, m.Params()))
				in := refEmbed(tc.cfg, rows, to64(bt.x), to64(bt.t))
				want := refForward(tc.cfg, m.Tensors(), p, rows, in)
				scale := rms(want)
				worst := 0.0
				for i := range want {
					worst = math.Max(worst, math.Abs(float64(got[i])-want[i])/(math.Abs(want[i])+scale))
				}
				numtest.AllClose(t, "v", got, want, forwardRTol*scale, forwardRTol)
				t.Log(numtest.Describe("forward |got-want|/(|want|+rms)", worst, forwardRTol))
			})
		}
	}
}
