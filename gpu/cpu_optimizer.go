package gpu

import (
	"math"

	"github.com/fmgpu/fmgpu/internal/sgemm"
)

// The CPU backend's Optimizer ops: sgemm's vectorized sum of squares and
// Adam step.

type optimizerState struct {
	sumSq sumSqTask
	adam  adamTask
}

type sumSqTask struct {
	x        []float32
	partials []float64
}

func (t *sumSqTask) setPartials(p []float64) { t.partials = p }

func (t *sumSqTask) run(lo, hi int) {
	for ch := lo; ch < hi; ch++ {
		t.partials[ch] = sgemm.SumSquares(t.x[ch*reduceChunk : min((ch+1)*reduceChunk, len(t.x))])
	}
}

func (c *CPU) SumSquares(x, out Buffer) {
	n := checkSumSquares(x, out)
	c.optimizer.sumSq = sumSqTask{x: host(x)}
	host(out)[0] = float32(c.reduce(&c.optimizer.sumSq, n, 1))
}

type adamTask struct {
	k               sgemm.AdamConsts
	p, g, m, v, ema []float32
}

func (t *adamTask) run(lo, hi int) {
	var ed []float32
	if t.ema != nil {
		ed = t.ema[lo:hi]
	}
	sgemm.Adam(&t.k, t.p[lo:hi], t.g[lo:hi], t.m[lo:hi], t.v[lo:hi], ed)
}

func (c *CPU) AdamEMA(s AdamStep, params, grads, m, v, ema, gradSumSq, status Buffer) {
	n := checkAdamEMA(s, params, grads, m, v, ema, gradSumSq, status)
	s = s.hostScalars()
	gss := float64(host(gradSumSq)[0])
	if math.IsNaN(gss) || math.IsInf(gss, 0) {
		if st := host(status); st[0] == 0 {
			st[0] = float32(s.Step)
		}
		return
	}
	clip := float32(1)
	if s.MaxGradNorm > 0 {
		clip = float32(math.Min(1, float64(s.MaxGradNorm)/(math.Sqrt(gss)+1e-6)))
	}
	var ed []float32
	if s.EMADecay > 0 {
		ed = host(ema)
	}
	c.optimizer.adam = adamTask{k: sgemm.AdamConsts{Clip: clip, WeightDecay: s.WeightDecay, Decoupled: s.Decoupled,
		Beta1: s.Beta1, Beta2: s.Beta2, InvBiasCorr1: 1 / s.BiasCorr1, InvBiasCorr2: 1 / s.BiasCorr2,
		Eps: s.Eps, LR: s.LR, EMADecay: s.EMADecay}, p: host(params), g: host(grads), m: host(m), v: host(v), ema: ed}
	c.pool.do(&c.optimizer.adam, n, 4)
}
