package gputest

import (
	"fmt"
	"math"
	"testing"

	"github.com/fmgpu/fmgpu/gpu"
)

// The Optimizer family (gpu/optimizer.go) against float64 references.

// SumSquares: out[0] = sum x_i^2 over views of several lengths, one with
// 2^17 + 3 elements and values spread over six orders of magnitude.
func testSumSquares(e *env) {
	for ci, n := range []int{1, 3, 17, 255, 257, 1000, 1<<17 + 3} {
		x := normals(e.rng, n, 1)
		for i := range x {
			x[i] *= float32(math.Pow(10, float64(i%7)-3)) // 1e-3 .. 1e3
		}
		px := e.viewOf(x, ci%3, 2)
		po := e.viewOf([]float32{sentinel}, 1, 1)
		e.be.SumSquares(px.view, po.view)
		want := 0.0
		for _, v := range x {
			want += float64(v) * float64(v)
		}
		name := fmt.Sprintf("SumSquares(n=%d)", n)
		checkScalar(e.t, name, e.download(po.view)[0], want, rtolRed*want+tiny)
		e.checkOutside(name, po)
	}
}

// AdamEMA: Adam and AdamW, with and without weight decay, clipping active
// (the norm above MaxGradNorm), inactive (below) and off, EMA on and off,
// steps 1, 10 and 1000; a large learning rate on small weights in some
// cases, so that the Adam step itself is checked and not hidden under
// |params|. Then a non-finite gradSumSq (NaN, +Inf, -Inf): nothing moves,
// and status records Step only if it was 0.
func testAdamEMA(e *env) {
	type tc struct {
		n          int
		s          gpu.AdamStep
		clip       float64 // MaxGradNorm as a multiple of the gradient norm (0: off)
		pStd, gStd float64
	}
	adam := func(lr, wd float32, decoupled bool, ema float32, step int) gpu.AdamStep {
		const b1, b2 = 0.9, 0.999
		return gpu.AdamStep{
			LR: lr, Beta1: b1, Beta2: b2, Eps: 1e-8, WeightDecay: wd, Decoupled: decoupled,
			BiasCorr1: float32(1 - math.Pow(b1, float64(step))),
			BiasCorr2: float32(1 - math.Pow(b2, float64(step))),
			EMADecay:  ema, Step: step,
		}
	}
	cases := []tc{
		{1, adam(1e-3, 0, false, 0.999, 1), 0, 1, 0.1},
		{3, adam(0.1, 0.01, false, 0, 10), 0.5, 0.01, 1},
		{17, adam(0.1, 0.1, true, 0.99, 1000), 2, 0.01, 1},
		{255, adam(2e-3, 0.05, true, 0.9, 1), 0.25, 1, 0.1},
		{257, adam(0.05, 0.01, false, 0.999, 10), 0, 0.01, 10},
		{1000, adam(0.1, 0, false, 0, 1000), 0.1, 0.05, 1},
		{65537, adam(0.1, 0.1, true, 0.995, 10), 0.5, 0.03, 1},
		// coupled decay larger than the clipped gradient: the decay is
		// added after clipping, not clipped with it
		{1000, adam(0.05, 0.5, false, 0.99, 10), 0.3, 1, 0.1},
	}
	for ci, c := range cases {
		n, s := c.n, c.s
		p := normals(e.rng, n, c.pStd)
		g := normals(e.rng, n, c.gStd)
		m := normals(e.rng, n, 0.3*c.gStd)
		v := make([]float32, n)
		for i := range v {
			z := c.gStd * e.rng.NormFloat64()
			v[i] = float32(z*z + 1e-12)
		}
		ema := make([]float32, n)
		for i := range ema {
			ema[i] = p[i] + float32(0.01*c.pStd*e.rng.NormFloat64())
		}
		gss := 0.0
		for _, x := range g {
			gss += float64(x) * float64(x)
		}
		gss32 := float32(gss)
		if c.clip > 0 {
			s.MaxGradNorm = float32(c.clip * math.Sqrt(gss))
		}
		status0 := float32(ci % 2 * 3) // 0 or 3: a finite step leaves it alone
		bp, bg, bm, bv, be := e.upload(p), e.upload(g), e.upload(m), e.upload(v), e.upload(ema)
		bs, bst := e.upload([]float32{gss32}), e.upload([]float32{status0})
		e.be.AdamEMA(s, bp, bg, bm, bv, be, bs, bst)

		// float64 reference from the float32 inputs and scalars
		lr, b1, b2, eps, wd := float64(s.LR), float64(s.Beta1), float64(s.Beta2), float64(s.Eps), float64(s.WeightDecay)
		bc1, bc2, d := float64(s.BiasCorr1), float64(s.BiasCorr2), float64(s.EMADecay)
		clip := 1.0
		if s.MaxGradNorm > 0 {
			clip = math.Min(1, float64(s.MaxGradNorm)/(math.Sqrt(float64(gss32))+1e-6))
		}
		var want, tol [4][]float64 // params, m, v, ema
		for k := range want {
			want[k], tol[k] = make([]float64, n), make([]float64, n)
		}
		for i := 0; i < n; i++ {
			pi, gi := float64(p[i]), clip*float64(g[i])
			gsc := math.Abs(gi) // scale of g's terms
			if wd != 0 && !s.Decoupled {
				gi += wd * pi
				gsc += math.Abs(wd * pi)
			}
			mi := b1*float64(m[i]) + (1-b1)*gi
			msc := math.Abs(b1*float64(m[i])) + (1-b1)*gsc
			vi := b2*float64(v[i]) + (1-b2)*gi*gi
			vsc := b2*float64(v[i]) + (1-b2)*gsc*gsc
			den := math.Sqrt(vi/bc2) + eps
			step := mi / bc1 / den
			// the step's error: m's (relative to its terms), v's through
			// the square root, and the division's
			stepSc := msc / bc1 / den
			if s.Decoupled {
				step += wd * pi
				stepSc += math.Abs(wd * pi)
			}
			pn := pi - lr*step
			want[0][i], tol[0][i] = pn, rtolElem*(math.Abs(pi)+lr*stepSc)+tiny
			want[1][i], tol[1][i] = mi, rtolElem*msc+tiny
			want[2][i], tol[2][i] = vi, rtolElem*vsc+tiny
			if d > 0 {
				en := d*float64(ema[i]) + (1-d)*pn
				want[3][i] = en
				tol[3][i] = rtolElem*(math.Abs(d*float64(ema[i]))+(1-d)*math.Abs(pn)) + (1-d)*tol[0][i] + tiny
			}
		}
		name := fmt.Sprintf("AdamEMA(n=%d, lr=%g, wd=%g, decoupled=%v, ema=%g, clip=%gx norm, step=%d)", n, s.LR, s.WeightDecay, s.Decoupled, s.EMADecay, c.clip, s.Step)
		checkTol(e.t, name+": params", e.download(bp), want[0], tol[0], 0)
		checkTol(e.t, name+": m", e.download(bm), want[1], tol[1], 0)
		checkTol(e.t, name+": v", e.download(bv), want[2], tol[2], 0)
		if d > 0 {
			checkTol(e.t, name+": ema", e.download(be), want[3], tol[3], 0)
		} else {
			checkBits(e.t, name+": ema (EMADecay 0: unchanged)", e.download(be), ema, nil)
		}
		checkBits(e.t, name+": grads", e.download(bg), g, nil)
		checkBits(e.t, name+": status (finite step: unchanged)", e.download(bst), []float32{status0}, nil)

		// The same step with its scalars in device memory (AdamStep.Scalars)
		// and other values in the fields: the same bits.
		sc := gpu.AdamScalarValues(s)
		s2 := s
		s2.LR, s2.BiasCorr1, s2.BiasCorr2, s2.Step, s2.Scalars = 7, 0.5, 0.25, 99, e.upload(sc[:])
		if s.EMADecay > 0 {
			s2.EMADecay = 0.5
		}
		bp2, bm2, bv2, be2 := e.upload(p), e.upload(m), e.upload(v), e.upload(ema)
		e.be.AdamEMA(s2, bp2, bg, bm2, bv2, be2, bs, bst)
		for k, pair := range [][2]gpu.Buffer{{bp, bp2}, {bm, bm2}, {bv, bv2}, {be, be2}} {
			checkBits(e.t, name+" with Scalars: "+[]string{"params", "m", "v", "ema"}[k], e.download(pair[1]), e.download(pair[0]), nil)
		}
	}

	// Non-finite gradSumSq: nothing is updated; status takes Step only when 0.
	for ci, gss := range []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN())} {
		n := []int{1, 257, 1000, 17}[ci]
		status0 := []float32{0, 5, 0, 2}[ci]
		s := adam(0.1, 0.01, ci%2 == 0, 0.99, 40+ci)
		s.MaxGradNorm = float32([]float64{0, 1, 1, 0}[ci])
		host := [][]float32{normals(e.rng, n, 1), normals(e.rng, n, 1), normals(e.rng, n, 0.1), uniforms(e.rng, n, 0, 0.01), normals(e.rng, n, 1)}
		bufs := make([]gpu.Buffer, len(host))
		for k, h := range host {
			bufs[k] = e.upload(h)
		}
		bst := e.upload([]float32{status0})
		run := s
		if ci >= 2 { // the step recorded comes from Scalars
			sc := gpu.AdamScalarValues(s)
			run.Scalars, run.Step = e.upload(sc[:]), 1
		}
		e.be.AdamEMA(run, bufs[0], bufs[1], bufs[2], bufs[3], bufs[4], e.upload([]float32{gss}), bst)
		name := fmt.Sprintf("AdamEMA(n=%d, gradSumSq=%v, status=%v, step=%d)", n, gss, status0, s.Step)
		for k, what := range []string{"params", "grads", "m", "v", "ema"} {
			checkBits(e.t, name+": "+what+" (unchanged)", e.download(bufs[k]), host[k], nil)
		}
		wantSt := status0
		if status0 == 0 {
			wantSt = float32(s.Step)
		}
		checkBits(e.t, name+": status", e.download(bst), []float32{wantSt}, nil)
	}
}

// benchOptimizer times the optimizer step at 200k parameters.
func benchOptimizer(b *testing.B, newBackend func(b *testing.B) gpu.Backend) {
	b.Run("SumSquares", func(b *testing.B) {
		const n = 200000
		bench(b, fmt.Sprintf("n=%d", n), newBackend, func(w *workload) (float64, float64, func()) {
			x, out := w.normals(n), w.alloc(1)
			return 4 * n, 0, func() { w.be.SumSquares(x, out) }
		})
	})
	b.Run("AdamEMA", func(b *testing.B) {
		const n = 200000
		bench(b, fmt.Sprintf("n=%d", n), newBackend, func(w *workload) (float64, float64, func()) {
			p, g, m, v, ema := w.normals(n), w.normals(n), w.alloc(n), w.alloc(n), w.normals(n)
			gss, st := w.be.Alloc(1), w.alloc(1)
			w.be.Fill(gss, 1e4)
			s := gpu.AdamStep{LR: 1e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01, Decoupled: true,
				BiasCorr1: 0.1, BiasCorr2: 0.001, EMADecay: 0.999, MaxGradNorm: 1, Step: 1}
			// reads params, grads, m, v, ema; writes params, m, v, ema
			return 36 * n, 0, func() { w.be.AdamEMA(s, p, g, m, v, ema, gss, st) }
		})
	})
}
