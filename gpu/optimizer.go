package gpu

// Optimizer is the fused optimizer step and the gradient norm it clips by.
type Optimizer interface {
	// SumSquares writes sum x_i^2 into out[0].
	SumSquares(x, out Buffer)

	// AdamEMA is one fused optimizer step over n = params.Len() parameters.
	// With c = min(1, MaxGradNorm / (sqrt(gradSumSq[0]) + 1e-6)) when
	// clipping (else 1), g = c grads (+ WeightDecay params unless
	// Decoupled): m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
	// params -= LR (m/BiasCorr1 / (sqrt(v/BiasCorr2) + Eps) + [Decoupled]
	// WeightDecay params); ema = d ema + (1-d) params when EMADecay = d > 0
	// (ema is not touched, and may be nil, otherwise).
	// If gradSumSq[0] is not finite nothing is updated and, if status[0] is
	// 0, status[0] = Step: the host learns of it at its next read.
	AdamEMA(s AdamStep, params, grads, m, v, ema, gradSumSq, status Buffer)
}

// AdamStep holds the scalars of one fused optimizer step (see Optimizer.AdamEMA).
type AdamStep struct {
	LR          float32
	Beta1       float32
	Beta2       float32
	Eps         float32
	WeightDecay float32
	Decoupled   bool    // AdamW: decay applied to the weights, not the gradient
	BiasCorr1   float32 // 1 - beta1^step
	BiasCorr2   float32 // 1 - beta2^step
	EMADecay    float32 // 0: EMA not updated
	MaxGradNorm float32 // 0: no clipping
	Step        int     // 1-based step number, recorded in the status buffer on a non-finite gradient
	// Scalars, when not nil, holds the scalars that change from step to
	// step, read when the op runs instead of the fields above (so that a
	// recorded graph, Capture, replays with new ones): at the AdamScalar*
	// indices, LR, BiasCorr1, BiasCorr2, EMADecay and Step (as a float32,
	// exact below 2^24). EMADecay's field still says whether the EMA is
	// updated (> 0), its value comes from Scalars. AdamScalarValues
	// writes them.
	Scalars Buffer
}

// Indices of the step scalars in AdamStep.Scalars.
const (
	AdamScalarLR = iota
	AdamScalarBiasCorr1
	AdamScalarBiasCorr2
	AdamScalarEMADecay
	AdamScalarStep
	AdamScalars // their count
)

// AdamScalarValues are s's step scalars as AdamStep.Scalars holds them.
func AdamScalarValues(s AdamStep) [AdamScalars]float32 {
	return [AdamScalars]float32{s.LR, s.BiasCorr1, s.BiasCorr2, s.EMADecay, float32(s.Step)}
}

// hostScalars is s with its step scalars read from Scalars on a backend
// whose buffers are host memory.
func (s AdamStep) hostScalars() AdamStep {
	if s.Scalars == nil {
		return s
	}
	v := host(s.Scalars)
	s.LR, s.BiasCorr1, s.BiasCorr2 = v[AdamScalarLR], v[AdamScalarBiasCorr1], v[AdamScalarBiasCorr2]
	if s.EMADecay > 0 {
		s.EMADecay = v[AdamScalarEMADecay]
	}
	s.Step, s.Scalars = int(v[AdamScalarStep]), nil
	return s
}

// checkSumSquares returns x.Len().
func checkSumSquares(x, out Buffer) int {
	need("SumSquares", "out", out, 1)
	return lenOf(x)
}

// checkAdamEMA returns params.Len().
func checkAdamEMA(s AdamStep, params, grads, m, v, ema, gradSumSq, status Buffer) int {
	const op = "AdamEMA"
	n := lenOf(params)
	need(op, "grads", grads, n)
	need(op, "m", m, n)
	need(op, "v", v, n)
	if s.EMADecay > 0 {
		need(op, "ema", ema, n)
	}
	need(op, "gradSumSq", gradSumSq, 1)
	need(op, "status", status, 1)
	if s.Scalars != nil {
		need(op, "Scalars", s.Scalars, AdamScalars)
	}
	return n
}
