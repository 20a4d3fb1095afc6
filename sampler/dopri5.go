package sampler

import (
	"fmt"
	"math"

	"github.com/fmgpu/fmgpu/gpu"
)

// The Dormand-Prince 5(4) tableau (Dormand & Prince 1980; Hairer, Norsett &
// Wanner, Solving ODEs I, table 5.2). The seventh stage is evaluated at the
// new solution (its row of A is the fifth-order weights), so it is the next
// step's first stage (FSAL).
var (
	dpC = [7]float64{0, 1.0 / 5, 3.0 / 10, 4.0 / 5, 8.0 / 9, 1, 1}
	dpA = [6][]float32{
		{1.0 / 5},
		{3.0 / 40, 9.0 / 40},
		{44.0 / 45, -56.0 / 15, 32.0 / 9},
		{19372.0 / 6561, -25360.0 / 2187, 64448.0 / 6561, -212.0 / 729},
		{9017.0 / 3168, -355.0 / 33, 46732.0 / 5247, 49.0 / 176, -5103.0 / 18656},
		// fifth-order solution weights b (b7 = 0)
		{35.0 / 384, 0, 500.0 / 1113, 125.0 / 192, -2187.0 / 6784, 11.0 / 84},
	}
	// dpE is b - b*, fifth- minus fourth-order weights: the local error
	// estimate is h sum_j dpE[j] k_j.
	dpE = []float32{71.0 / 57600, 0, -71.0 / 16695, 71.0 / 1920, -17253.0 / 339200, 22.0 / 525, -1.0 / 40}
)

// Step-size controller constants (as scipy's RK45 and torchdiffeq's dopri5).
const (
	dpSafety    = 0.9
	dpMinFactor = 0.2
	dpMaxFactor = 10
	// dpErrExp is -1/(q+1) with q = 4, the order of the embedded error
	// estimate.
	dpErrExp = -1.0 / 5
)

// dopri5 integrates y from o.T0 to o.T1 with the Dormand-Prince 5(4) pair
// (o normalized; docs/math.md §7.2). Error control: err = sqrt(ErrorNorm / n), the root mean
// square over all n state elements of the local error estimate scaled by
// atol + rtol max(|y|, |y_new|); a step is accepted when err <= 1 and the
// next step is h * clamp(0.9 err^(-1/5), 0.2, 10) (no growth right after a
// rejection). The step is clipped to land exactly on each save time and on
// T1; after an accepted clipped step the step size before clipping is kept
// when larger.
func dopri5(b Backend, sys system, y gpu.Buffer, o Options) (Stats, error) {
	n := sys.size()
	var ks [7]gpu.Buffer
	for i := range ks {
		ks[i] = b.Alloc(n)
	}
	work := b.Alloc(n)
	errBuf := b.Alloc(1)
	defer func() {
		for _, k := range ks { // the FSAL swaps permute ks, never replace them
			b.Free(k)
		}
		b.Free(work)
		b.Free(errBuf)
	}()
	rtol, atol := float32(o.Rtol), float32(o.Atol)
	host := make([]float32, 1)
	// norm is sqrt(ErrorNorm / n) of h sum coef ks, scaled at (x, xNew).
	norm := func(x, xNew gpu.Buffer, h float32, coef []float32, stages []gpu.Buffer) float64 {
		b.ErrorNorm(x, xNew, h, coef, stages, rtol, atol, errBuf)
		b.Download(host, errBuf)
		return math.Sqrt(float64(host[0]) / float64(n))
	}

	var st Stats
	pts := mergeSaves([]float64{o.T0, o.T1}, o)
	saved := 0
	// cur holds the solution at t and next the candidate; they swap on
	// acceptance, so either may be y or work (inWork: cur is work). Buffers
	// are not compared: a backend's buffer type need not be comparable.
	cur, next := y, work
	inWork := false
	settle := func() { // leave the solution in y
		if inWork {
			b.Copy(y, cur)
		}
	}
	emit := func(p point) {
		for i := 0; i < p.saves; i++ {
			o.OnSave(o.SaveAt[saved], cur)
			saved++
		}
	}
	dir := 1.0
	if o.T1 < o.T0 {
		dir = -1
	}
	span := math.Abs(o.T1 - o.T0)
	t := o.T0
	emit(pts[0])
	sys.eval(t, cur, ks[0])
	st.NFE++

	h := o.InitialStep
	if h == 0 {
		// Hairer's starting step (Solving ODEs I, II.4; scipy's
		// select_initial_step), on the scaled RMS norm.
		d0 := norm(cur, cur, 1, coefOne, []gpu.Buffer{cur})
		d1 := norm(cur, cur, 1, coefOne, ks[:1])
		if math.IsNaN(d0+d1) || math.IsInf(d0+d1, 0) {
			// every step would be rejected at t = NaN until MaxSteps
			settle()
			return st, fmt.Errorf("sampler: dopri5 at t = %g: the state or the field is not finite (NaN or Inf) at the start", t)
		}
		h0 := 1e-6
		if d0 >= 1e-5 && d1 >= 1e-5 {
			h0 = 0.01 * d0 / d1
		}
		h0 = min(h0, span)
		b.LinComb(next, cur, float32(dir*h0), coefOne, ks[:1])
		sys.eval(t+dir*h0, next, ks[1])
		st.NFE++
		d2 := norm(cur, cur, 1, []float32{1, -1}, ks[:2]) / h0
		var h1 float64
		if dd := max(d1, d2); dd <= 1e-15 {
			h1 = max(1e-6, h0*1e-3)
		} else {
			h1 = math.Pow(0.01/dd, 1.0/5)
		}
		h = min(100*h0, h1)
	}
	h = min(h, span)

	for _, p := range pts[1:] {
		target := p.t
		rejectedLast := false
		for t != target {
			if o.Stop != nil {
				if err := o.Stop(); err != nil {
					settle()
					return st, err
				}
			}
			if st.Steps+st.Rejected >= o.MaxSteps {
				settle()
				return st, fmt.Errorf("sampler: dopri5 at t = %g before T1 = %g after %d steps (%d rejected): MaxSteps = %d: %w",
					t, o.T1, st.Steps+st.Rejected, st.Rejected, o.MaxSteps, ErrMaxSteps)
			}
			hUse, clipped := h, false
			tNew := t + dir*hUse
			if rem := math.Abs(target - t); hUse >= rem {
				hUse, clipped, tNew = rem, true, target
			}
			if tNew == t {
				settle()
				return st, fmt.Errorf("sampler: dopri5 step size %g underflows at t = %g", hUse, t)
			}
			hs := tNew - t // signed step
			hf := float32(hs)
			for i := 1; i < 6; i++ {
				b.LinComb(next, cur, hf, dpA[i-1], ks[:i])
				sys.eval(t+dpC[i]*hs, next, ks[i])
			}
			b.LinComb(next, cur, hf, dpA[5], ks[:6])
			sys.eval(tNew, next, ks[6])
			st.NFE += 6
			e := norm(cur, next, hf, dpE, ks[:])
			hMag := math.Abs(hs)
			switch {
			case !(e <= 1): // includes NaN and Inf
				st.Rejected++
				rejectedLast = true
				f := dpMinFactor
				if finite(e) {
					f = max(dpMinFactor, dpSafety*math.Pow(e, dpErrExp))
				}
				h = hMag * f
			default:
				st.Steps++
				f := float64(dpMaxFactor)
				if e > 0 {
					f = min(dpMaxFactor, max(dpMinFactor, dpSafety*math.Pow(e, dpErrExp)))
				}
				if rejectedLast {
					f = min(f, 1)
				}
				rejectedLast = false
				hNew := hMag * f
				if clipped {
					hNew = max(hNew, h)
				}
				h = hNew
				t = tNew
				cur, next = next, cur
				inWork = !inWork
				ks[0], ks[6] = ks[6], ks[0]
			}
		}
		emit(p)
	}
	settle()
	return st, nil
}
