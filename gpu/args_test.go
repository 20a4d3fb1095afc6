package gpu

import (
	"fmt"
	"math"
	"testing"

	"github.com/fmgpu/fmgpu/flow"
)

// Every backend accepts the same calls: each op's one argument check runs
// first on every backend, so a call panics on the CPU backend exactly when
// it panics on the device backend (here over a recording launcher: the Go
// side only). The cases are edges where the two used to disagree, and the
// checks' principle: an operand must hold what the op touches, and a nil
// or short operand the op does not touch is fine.
func TestBackendsAcceptTheSameCalls(t *testing.T) {
	dr := BatchDraw{Path: flow.DefaultSpec(flow.KindOT), Time: flow.DefaultTimeSampler(flow.TimeUniform), Seed: 1}
	bad := AdamStep{EMADecay: 0.5, Step: 1}
	gn := GroupNormShape{Batch: 1, C: 4, HW: 2, Groups: 2, Eps: 1e-5}
	cs := ConvShape{Batch: 1, InC: 1, H: 3, W: 3, OutC: 1, K: 3, Stride: 1, Pad: 1}
	cases := []struct {
		name  string
		panic bool
		call  func(be Backend, buf func(int) Buffer)
	}{
		// accepted: nothing touched is asked of an operand
		{"Gemm m = 0, B short", false, func(be Backend, buf func(int) Buffer) {
			be.Gemm(false, false, 0, 3, 3, 1, nil, 3, buf(0), 3, 0, nil, 3)
		}},
		{"Gemm n = 0, A short", false, func(be Backend, buf func(int) Buffer) {
			be.Gemm(false, false, 3, 0, 3, 1, buf(1), 3, nil, 1, 0, nil, 1)
		}},
		{"Gemm k = 0, A and B nil", false, func(be Backend, buf func(int) Buffer) {
			be.Gemm(true, true, 2, 2, 0, 1, nil, 2, nil, 1, 0.5, buf(4), 2)
		}},
		{"GemmBatched batch = 0", false, func(be Backend, buf func(int) Buffer) {
			be.GemmBatched(false, false, 0, 3, 3, 3, 1, nil, 3, 9, nil, 3, 9, 0, nil, 3, 9)
		}},
		{"Linear rows = 0, W nil", false, func(be Backend, buf func(int) Buffer) {
			be.Linear(0, 3, 4, nil, 3, nil, nil, ActSiLU, nil, nil)
		}},
		{"EmbedInput d = 0, x nil", false, func(be Backend, buf func(int) Buffer) {
			be.EmbedInput(2, 0, nil, buf(2), TimeEmbedding{Freqs: 2, Scale: 1, MaxPeriod: 100}, buf(8))
		}},
		{"BiasActBackward ActNone, pre nil", false, func(be Backend, buf func(int) Buffer) {
			be.BiasActBackward(ActNone, 2, 3, buf(6), nil, buf(6), buf(3))
		}},
		{"AdamEMA without EMA, ema nil", false, func(be Backend, buf func(int) Buffer) {
			be.AdamEMA(AdamStep{Step: 1, BiasCorr1: 1, BiasCorr2: 1}, buf(3), buf(3), buf(3), buf(3), nil, buf(1), buf(1))
		}},
		{"DrawBatch x0 and x1 nil", false, func(be Backend, buf func(int) Buffer) {
			be.DrawBatch(dr, buf(6), 3, 2, 4, nil, nil, buf(4), buf(8), buf(8))
		}},
		{"OneHot classes = 0", false, func(be Backend, buf func(int) Buffer) { be.OneHot(3, 0, buf(3), nil) }},
		{"UnitColumn rows = 0", false, func(be Backend, buf func(int) Buffer) { be.UnitColumn(0, 3, 7, nil) }},
		{"Copy from nil", false, func(be Backend, buf func(int) Buffer) { be.Copy(nil, nil) }},
		{"Conv2D batch 0", false, func(be Backend, buf func(int) Buffer) {
			s := cs
			s.Batch = 0
			be.Conv2D(s, nil, buf(9), nil, nil)
		}},
		{"CopyChannels n = 0", false, func(be Backend, buf func(int) Buffer) { be.CopyChannels(2, 5, 0, buf(10), 1, 1, buf(10), 1, 1) }},

		// rejected by both
		{"Gemm short C", true, func(be Backend, buf func(int) Buffer) {
			be.Gemm(false, false, 2, 2, 1, 1, buf(2), 1, buf(2), 2, 0, buf(3), 2)
		}},
		{"Gemm ldc < n", true, func(be Backend, buf func(int) Buffer) {
			be.Gemm(false, false, 2, 2, 1, 1, buf(2), 1, buf(2), 2, 0, buf(4), 1)
		}},
		{"GemmBatched negative batch", true, func(be Backend, buf func(int) Buffer) {
			be.GemmBatched(false, false, -1, 3, 3, 3, 1, nil, 3, 9, nil, 3, 9, 0, nil, 3, 9)
		}},
		{"GemmBatched overlapping C", true, func(be Backend, buf func(int) Buffer) {
			be.GemmBatched(false, false, 2, 3, 3, 3, 1, buf(18), 3, 9, buf(18), 3, 9, 0, buf(18), 3, 5)
		}},
		{"Linear short bias", true, func(be Backend, buf func(int) Buffer) {
			be.Linear(2, 3, 4, buf(6), 3, buf(12), buf(3), ActNone, nil, buf(8))
		}},
		{"Activate unknown", true, func(be Backend, buf func(int) Buffer) { be.Activate(Act(7), buf(3), buf(3)) }},
		{"EmbedInput negative freqs", true, func(be Backend, buf func(int) Buffer) {
			be.EmbedInput(2, 1, buf(2), buf(2), TimeEmbedding{Freqs: -1}, buf(8))
		}},
		{"OneHot negative classes", true, func(be Backend, buf func(int) Buffer) { be.OneHot(3, -1, buf(3), buf(3)) }},
		{"MSELoss loss nil", true, func(be Backend, buf func(int) Buffer) { be.MSELoss(buf(3), buf(3), 1, buf(3), nil) }},
		{"SumSquares out nil", true, func(be Backend, buf func(int) Buffer) { be.SumSquares(buf(3), nil) }},
		{"AdamEMA gradSumSq nil", true, func(be Backend, buf func(int) Buffer) {
			be.AdamEMA(bad, buf(3), buf(3), buf(3), buf(3), buf(3), nil, buf(1))
		}},
		{"AdamEMA short ema", true, func(be Backend, buf func(int) Buffer) {
			be.AdamEMA(bad, buf(3), buf(3), buf(3), buf(3), buf(2), buf(1), buf(1))
		}},
		{"PathTarget bad spec", true, func(be Backend, buf func(int) Buffer) {
			be.PathTarget(flow.Spec{Kind: flow.Kind(99)}, 1, 1, buf(1), buf(1), buf(1), buf(1), buf(1))
		}},
		{"DrawBatch no data rows", true, func(be Backend, buf func(int) Buffer) {
			be.DrawBatch(dr, buf(6), 0, 2, 4, nil, nil, buf(4), buf(8), buf(8))
		}},
		{"DrawBatch 2^32 data rows", true, func(be Backend, buf func(int) Buffer) {
			be.DrawBatch(dr, nil, math.MaxUint32+1, 0, 4, nil, nil, buf(4), nil, nil)
		}},
		{"DrawLabels short labels", true, func(be Backend, buf func(int) Buffer) {
			be.DrawLabels(dr, buf(2), 3, 4, 0, 0, buf(4))
		}},
		{"LinComb eight stages", true, func(be Backend, buf func(int) Buffer) {
			ks := make([]Buffer, 8)
			be.LinComb(buf(2), buf(2), 1, make([]float32, 8), ks)
		}},
		{"LinComb short stage", true, func(be Backend, buf func(int) Buffer) {
			be.LinComb(buf(2), buf(2), 1, []float32{1}, []Buffer{buf(1)})
		}},
		{"ErrorNorm out nil", true, func(be Backend, buf func(int) Buffer) {
			be.ErrorNorm(buf(2), buf(2), 1, nil, nil, 1, 1, nil)
		}},
		{"RowDot short out", true, func(be Backend, buf func(int) Buffer) { be.RowDot(3, 2, 1, buf(6), buf(6), 0, buf(2)) }},
		{"UnitColumn column past the end", true, func(be Backend, buf func(int) Buffer) { be.UnitColumn(2, 3, 3, buf(6)) }},
		{"Conv2D empty output", true, func(be Backend, buf func(int) Buffer) {
			s := cs
			s.Pad = 0
			s.H = 2
			be.Conv2D(s, buf(9), buf(9), nil, buf(9))
		}},
		{"Conv2DBackwardFilter short dbias", true, func(be Backend, buf func(int) Buffer) {
			s := cs
			s.OutC = 2
			be.Conv2DBackwardFilter(s, buf(9), buf(18), buf(18), buf(1))
		}},
		{"GroupNorm channels not in groups", true, func(be Backend, buf func(int) Buffer) {
			s := gn
			s.C = 3
			be.GroupNorm(s, buf(6), buf(3), buf(3), buf(6), buf(2), buf(2))
		}},
		{"GroupNormBackward short dbeta", true, func(be Backend, buf func(int) Buffer) {
			be.GroupNormBackward(gn, buf(8), buf(8), buf(4), buf(2), buf(2), buf(8), buf(4), buf(3))
		}},
		{"Upsample2x negative height", true, func(be Backend, buf func(int) Buffer) { be.Upsample2x(1, 1, -2, -2, buf(4), buf(16)) }},
		{"Upsample2xBackward short dy", true, func(be Backend, buf func(int) Buffer) { be.Upsample2xBackward(1, 1, 2, 2, buf(15), buf(4)) }},
		{"AddChannelBias short bias", true, func(be Backend, buf func(int) Buffer) { be.AddChannelBias(2, 2, 3, buf(12), buf(3), buf(12)) }},
		{"CopyChannels past the channels", true, func(be Backend, buf func(int) Buffer) { be.CopyChannels(1, 2, 2, buf(4), 2, 1, buf(8), 4, 0) }},
		{"Transpose short y", true, func(be Backend, buf func(int) Buffer) { be.Transpose(2, 2, 3, buf(12), buf(11)) }},
		{"Softmax short y", true, func(be Backend, buf func(int) Buffer) { be.Softmax(2, 3, buf(6), buf(5)) }},
		{"Upload past the end", true, func(be Backend, buf func(int) Buffer) { be.Upload(buf(2), make([]float32, 3)) }},
		{"Alloc negative", true, func(be Backend, buf func(int) Buffer) { be.Alloc(-1) }},
	}
	cpu := NewCPU(1)
	dev, _ := newRec()
	for _, c := range cases {
		for _, be := range []Backend{cpu, dev} {
			t.Run(fmt.Sprintf("%s/%s", c.name, be.Info().Backend), func(t *testing.T) {
				defer func() {
					if r := recover(); (r != nil) != c.panic {
						t.Errorf("panic %v, want a panic: %v", r, c.panic)
					}
				}()
				c.call(be, func(n int) Buffer { return be.Alloc(n) })
			})
		}
		if err := dev.Sync(); err != nil {
			t.Fatalf("%s: device: %v", c.name, err)
		}
	}
}
