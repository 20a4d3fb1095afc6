package flow_test

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/fmgpu/fmgpu/flow"
	"github.com/fmgpu/fmgpu/internal/numtest"
)

// pathCase is one path under test: every kind with its default
// parameters, plus non-default parameter sets for the kinds that have
// parameters (linear-vp and cosine have none).
type pathCase struct {
	name string
	spec flow.Spec
}

func pathCases() []pathCase {
	specs := []flow.Spec{
		flow.DefaultSpec(flow.KindOT),
		{Kind: flow.KindOT, SigmaMin: 0.1}, // Lipman et al.'s sigma_min > 0
		flow.DefaultSpec(flow.KindLinearVP),
		flow.DefaultSpec(flow.KindCosine),
		flow.DefaultSpec(flow.KindVP),
		{Kind: flow.KindVP, BetaMin: 0.5, BetaMax: 5}, // a gentler schedule
		{Kind: flow.KindVP, BetaMin: 1, BetaMax: 1},   // constant beta: beta_max == beta_min is allowed
		flow.DefaultSpec(flow.KindVE),
		{Kind: flow.KindVE, SigmaMin: 0.002, SigmaMax: 80}, // EDM's range: large sigma'
	}
	cs := make([]pathCase, len(specs))
	for i, s := range specs {
		cs[i] = pathCase{name: s.String(), spec: s}
	}
	return cs
}

// singular reports whether a path's sigma'_t diverges at t = 1, which the
// path signals by stopping its time range short of 1 (linear-vp, vp).
func singular(p flow.Path) bool {
	_, hi := p.TimeRange()
	return hi < 1
}

// drawX returns a noise sample x0 ~ N(0, 1) and a data value x1 ~ U(-3, 3):
// the scales the paths meet in training (standardized data).
func drawX(r *rand.Rand) (x0, x1 float64) {
	return r.NormFloat64(), 6*r.Float64() - 3
}

// TestVectors checks the test vectors of docs/math.md §2.6, all at
// x0 = 0.5, x1 = 1.
func TestVectors(t *testing.T) {
	const x0, x1 = 0.5, 1.0
	cases := []struct {
		name       string
		spec       flow.Spec
		t          float64
		alpha, sig float64 // mu_t = alpha x1 (x1 = 1), sigma_t
		xt, ut     float64
	}{
		// x_t = 0.8*0.5 + 0.6 = 1.0, u_t = -0.6/0.8*0.5 + 1 = 0.625.
		{name: "linear-vp", spec: flow.DefaultSpec(flow.KindLinearVP), t: 0.6,
			alpha: 0.6, sig: 0.8, xt: 1.0, ut: 0.625},
		// docs/math.md, quoted to 9 decimal places: the rounding of the quoted
		// figures is at most 5e-10, so they are checked to 1e-9 absolute.
		// (s = 0.4, T = 0.1*0.4 + 19.9*0.16/2 = 1.632, beta = 0.1 + 19.9*0.4
		// = 8.06, mu = e^{-0.816}, sigma = sqrt(1 - e^{-1.632}).)
		{name: "vp", spec: flow.DefaultSpec(flow.KindVP), t: 0.6,
			alpha: 0.442196909, sig: 0.896917997, xt: 0.890655908, ut: 1.342761116},
		// ot, sigma_min 0: sigma = 1 - 0.6 = 0.4, x_t = 0.4*0.5 + 0.6 = 0.8,
		// u_t = x1 - x0 = 0.5.
		{name: "ot", spec: flow.DefaultSpec(flow.KindOT), t: 0.6,
			alpha: 0.6, sig: 0.4, xt: 0.8, ut: 0.5},
		// ot, sigma_min 0.1: sigma = 1 - 0.9*0.6 = 0.46, x_t = 0.23 + 0.6 =
		// 0.83, u_t = x1 - 0.9 x0 = 0.55.
		{name: "ot sigma_min=0.1", spec: flow.Spec{Kind: flow.KindOT, SigmaMin: 0.1}, t: 0.6,
			alpha: 0.6, sig: 0.46, xt: 0.83, ut: 0.55},
		// ot, sigma_min 0.1 at t = 1: sigma = sigma_min, x_t = 0.05 + 1.
		{name: "ot sigma_min=0.1 t=1", spec: flow.Spec{Kind: flow.KindOT, SigmaMin: 0.1}, t: 1,
			alpha: 1, sig: 0.1, xt: 1.05, ut: 0.55},
		// cosine, t = 0.6: pi t/2 = 54 degrees, sin 54 = (1 + sqrt 5)/4 =
		// 0.809016994374947, cos 54 = sqrt(10 - 2 sqrt 5)/4 =
		// 0.587785252292473; x_t = 0.293892626146237 + 0.809016994374947 =
		// 1.102909620521184; u_t = (pi/2)(0.587785252292473 -
		// 0.404508497187474) = (pi/2) 0.183276755104999 = 0.287890453705821.
		{name: "cosine t=0.6", spec: flow.DefaultSpec(flow.KindCosine), t: 0.6,
			alpha: (1 + math.Sqrt(5)) / 4, sig: math.Sqrt(10-2*math.Sqrt(5)) / 4,
			xt: 1.102909620521184, ut: 0.287890453705821},
		// cosine, t = 0.5: sin = cos = sqrt(2)/2; x_t = 1.5 sqrt(2)/2 =
		// 1.060660171779821, u_t = (pi/2)(sqrt(2)/2)(1 - 0.5) = pi sqrt(2)/8 =
		// 0.555360367269796.
		{name: "cosine t=0.5", spec: flow.DefaultSpec(flow.KindCosine), t: 0.5,
			alpha: math.Sqrt2 / 2, sig: math.Sqrt2 / 2, xt: 1.060660171779821, ut: 0.555360367269796},
		// ve (0.01, 10), t = 0.6: sigma_t = s(0.4) = 0.01 * 1000^0.4 =
		// 10^-0.8 = 0.158489319246111; x_t = x1 + 0.5 sigma =
		// 1.079244659623056; u_t = -s'(0.4) x0 = -ln(1000) sigma x0 =
		// -6.907755278982137 * 0.0792446596230557 = -0.547402715842305.
		{name: "ve", spec: flow.DefaultSpec(flow.KindVE), t: 0.6,
			alpha: 1, sig: math.Pow(10, -0.8), xt: 1.079244659623056, ut: -0.547402715842305},
		// ve (0.1, 1), t = 0.5: sigma = 0.1^0.5 * 1^0.5 = 0.316227766016838,
		// x_t = 1.158113883008419, u_t = -ln(10) sigma x0 =
		// -2.302585092994046 * 0.158113883008419 = -0.364070670010590.
		{name: "ve (0.1, 1)", spec: flow.Spec{Kind: flow.KindVE, SigmaMin: 0.1, SigmaMax: 1}, t: 0.5,
			alpha: 1, sig: math.Sqrt(0.1), xt: 1.158113883008419, ut: -0.364070670010590},
	}
	for _, c := range cases {
		// Hand-computed values carry 15-16 significant digits: 1e-14
		// absolute. The quoted vp figures carry 9 decimals: 1e-9 absolute.
		atol := 1e-14
		if c.name == "vp" {
			atol = 1e-9
		}
		p := flow.MustNew(c.spec)
		co := p.At(c.t)
		check := func(what string, got, want float64) {
			t.Helper()
			if !numtest.Close(got, want, atol, 0) {
				t.Errorf("%s at t=%g: %s = %.15g, want %.15g (atol %g)", c.name, c.t, what, got, want, atol)
			}
		}
		check("alpha (mu_t at x1=1)", co.Alpha, c.alpha)
		check("sigma_t", co.Sigma, c.sig)
		check("x_t", flow.Phi(p, c.t, x0, x1), c.xt)
		check("u_t (x0 form)", flow.VelocityX0(p, c.t, x0, x1), c.ut)
		if co.Sigma > 0 {
			check("u_t (x form at x_t)", flow.VelocityX(p, c.t, flow.Phi(p, c.t, x0, x1), x1), c.ut)
		}
	}
}

// hStep is the central-difference step of docs/math.md §2.6.
const hStep = 1e-6

// cdStep is the step for the central difference at t. For the regular
// kinds it is hStep. For linear-vp and vp, sigma_t behaves like
// c sqrt(1 - t) near t = 1, so every derivative gains a factor 1/(1 - t):
// the truncation error of the central difference relative to sigma'_t is
// h^2 sigma”'/(6 sigma') = h^2 / (8 (1 - t)^2) (linear-vp: exactly
// h^2 / (2 (1 - t^2)^2)). At t = hi = 1 - SingularEps and h = 1e-6 that is
// 1.25e-3 (TestCentralDiffTruncationNearSingularity measures it), far above
// the 1e-6 the check wants; with h = 1e-6 the check would only pass for
// 1 - t above about 3.5e-4. A step proportional to the distance to the
// singularity, h = min(1e-6, 5e-4 (1 - t)), bounds that truncation at
// (5e-4)^2 / 8 = 3.1e-8 everywhere. The price is rounding noise, which
// grows as 1/h: see cdFloor.
func cdStep(p flow.Path, t float64) float64 {
	if singular(p) {
		return math.Min(hStep, 5e-4*(1-t))
	}
	return hStep
}

// cdTol is the relative tolerance of the velocity-vs-central-difference
// checks (docs/math.md §2.6).
const cdTol = 1e-6

// cdFloor is the floor of the relative error |u - cd| / max(|cd|, floor)
// for a central difference taken with step h, at a point where u = sigma'
// x0 + alpha' x1 has terms of total magnitude terms = |sigma' x0| +
// |alpha' x1|:
//
//	floor = max(1e-8 / h, terms / 10)
//
// Why a floor: u may cancel to near 0, but the errors of the difference
// quotient do not cancel with it.
//   - Rounding noise, about 2 eps (|sigma x0| + |alpha x1|) / h with
//     eps = 1.1e-16: ~7e-10 at h = 1e-6 for x1 in [-3, 3] (up to 4.7e-9
//     for ve, whose sigma reaches 10, but there u = sigma' x0 alone and is
//     not small when sigma x0 is large), and 1.3e-7 at h = 5e-9 (t = hi for
//     the singular kinds). 1e-8 / h (1e-2 at the usual h = 1e-6, 2 at
//     h = 5e-9) keeps it below 1e-7 relative.
//   - Truncation, relative to each term rather than to their sum: up to
//     3.1e-8 of |sigma' x0| near t = 1 for the singular kinds (cdStep). When
//     the terms cancel by more than 90%, terms / 10 keeps it below 3.1e-7.
//
// Every point with |u| above the floor (the great majority; the tests log
// how many were not) is checked to a relative 1e-6.
func cdFloor(h, terms float64) float64 { return math.Max(1e-8/h, terms/10) }

// uTerms is |sigma'_t x0| + |alpha'_t x1|, the size of u_t's two terms.
func uTerms(p flow.Path, t, x0, x1 float64) float64 {
	c := p.At(t)
	return math.Abs(c.DSigma*x0) + math.Abs(c.DAlpha*x1)
}

// TestVelocityCentralDiff checks, for every kind and parameter set, that
// the x0-form target u_t = VelocityX0 is the time derivative of the flow map
// Phi: 10,000 random (t, x0, x1) with t uniform on [lo + h, hi - h], h = 1e-6
// (cdStep shrinks it further for the singular kinds within 2e-3 of t = 1).
func TestVelocityCentralDiff(t *testing.T) {
	const n = 10000
	for ci, c := range pathCases() {
		p := flow.MustNew(c.spec)
		lo, hi := p.TimeRange()
		r := rand.New(rand.NewPCG(1, uint64(ci)))
		maxErr, worstT, floored := 0.0, 0.0, 0
		for i := 0; i < n; i++ {
			tt := lo + hStep + (hi-lo-2*hStep)*r.Float64()
			x0, x1 := drawX(r)
			h := cdStep(p, tt)
			cd := numtest.CentralDiff(func(s float64) float64 { return flow.Phi(p, s, x0, x1) }, tt, h)
			u := flow.VelocityX0(p, tt, x0, x1)
			floor := cdFloor(h, uTerms(p, tt, x0, x1))
			if math.Abs(cd) < floor {
				floored++
			}
			if e := numtest.RelErr(u, cd, floor); e > maxErr || math.IsNaN(e) {
				maxErr, worstT = e, tt
			}
		}
		t.Logf("%s (worst at t=%.6g; %d of %d points under the floor)",
			numtest.Describe("u_t vs central difference, "+c.name, maxErr, cdTol), worstT, floored, n)
		if !(maxErr <= cdTol) {
			t.Errorf("%s: max relative error %.3g > %g at t=%.9g", c.name, maxErr, cdTol, worstT)
		}
	}
}

// TestVelocityCentralDiffNearSingular checks the singular kinds (linear-vp,
// vp) where sigma'_t diverges: 10,000 times with 1 - t log-uniform on
// [SingularEps, 1e-2], t = hi = 1 - SingularEps itself included, with
// cdStep's step (5e-4 (1 - t) below 1 - t = 2e-3). At t = hi, t + h exceeds
// hi by 5e-9; At does not clamp and the singularity is only at t = 1, so the
// difference quotient is well defined there.
//
// Two checks. The coefficients on their own: the central differences of
// sigma_t and alpha_t against sigma'_t and alpha'_t, plain relative error
// (|sigma'| > 3 and alpha' >= 0.05 there, so no floor). Truncation bounds
// the first at 3.1e-8 (cdStep); rounding bounds the second: alpha ~ 1 is
// rounded to eps = 1.1e-16, the quotient's noise is about eps / h relative
// to alpha' ~ beta_min/2 = 0.05 (vp defaults), i.e. 4.4e-7 at h = 5e-9.
// And u_t for random (x0, x1) as in TestVelocityCentralDiff, with cdFloor.
func TestVelocityCentralDiffNearSingular(t *testing.T) {
	const n = 10000
	for ci, c := range pathCases() {
		p := flow.MustNew(c.spec)
		if !singular(p) {
			continue
		}
		_, hi := p.TimeRange()
		if hi != 1-flow.SingularEps {
			t.Errorf("%s: time range ends at %.17g, want 1 - SingularEps", c.name, hi)
		}
		r := rand.New(rand.NewPCG(2, uint64(ci)))
		var maxSig, maxAlpha, maxU float64
		floored := 0
		for i := 0; i < n; i++ {
			tt := hi
			if i > 0 {
				tt = 1 - flow.SingularEps*math.Pow(10, 3*r.Float64())
			}
			h := cdStep(p, tt)
			co := p.At(tt)
			cdSig := numtest.CentralDiff(func(s float64) float64 { return p.At(s).Sigma }, tt, h)
			cdAlpha := numtest.CentralDiff(func(s float64) float64 { return p.At(s).Alpha }, tt, h)
			maxSig = math.Max(maxSig, numtest.RelErr(co.DSigma, cdSig, 0))
			maxAlpha = math.Max(maxAlpha, numtest.RelErr(co.DAlpha, cdAlpha, 0))
			x0, x1 := drawX(r)
			cd := numtest.CentralDiff(func(s float64) float64 { return flow.Phi(p, s, x0, x1) }, tt, h)
			floor := cdFloor(h, uTerms(p, tt, x0, x1))
			if math.Abs(cd) < floor {
				floored++
			}
			maxU = math.Max(maxU, numtest.RelErr(flow.VelocityX0(p, tt, x0, x1), cd, floor))
		}
		t.Log(numtest.Describe("near-singular sigma'_t vs central difference, "+c.name, maxSig, cdTol))
		t.Log(numtest.Describe("near-singular alpha'_t vs central difference, "+c.name, maxAlpha, cdTol))
		t.Logf("%s (%d of %d points under the floor)",
			numtest.Describe("near-singular u_t vs central difference, "+c.name, maxU, cdTol), floored, n)
		for _, e := range []struct {
			what string
			v    float64
		}{{"sigma'", maxSig}, {"alpha'", maxAlpha}, {"u_t", maxU}} {
			if !(e.v <= cdTol) {
				t.Errorf("%s near t=1: %s max relative error %.3g > %g", c.name, e.what, e.v, cdTol)
			}
		}
	}
}

// TestCentralDiffTruncationNearSingularity backs cdStep's reasoning with a
// measurement: at t = hi = 1 - SingularEps and the fixed step h = 1e-6, the
// central difference of linear-vp's sigma_t = sqrt(1 - t^2) misses
// sigma'_t by its leading truncation term, relative h^2 sigma”'/(6 sigma')
// = h^2 / (2 (1 - t^2)^2) = 1.25e-3 (sigma”' = -3t (1-t^2)^{-5/2},
// sigma' = -t (1-t^2)^{-1/2}); and for vp, whose sigma_t is close to
// sqrt(beta_min (1 - t)) there, h^2 / (8 (1 - t)^2) = 1.25e-3 as well. So
// the fixed step fails the 1e-6 check for a reason of the difference
// quotient, not of the path, and the smaller step is the fix.
func TestCentralDiffTruncationNearSingularity(t *testing.T) {
	for _, c := range []struct {
		spec      flow.Spec
		predicted func(t, h float64) float64
	}{
		{flow.DefaultSpec(flow.KindLinearVP), func(t, h float64) float64 {
			g := (1 - t) * (1 + t)
			return h * h / (2 * g * g)
		}},
		{flow.DefaultSpec(flow.KindVP), func(t, h float64) float64 {
			return h * h / (8 * (1 - t) * (1 - t))
		}},
	} {
		p := flow.MustNew(c.spec)
		_, hi := p.TimeRange()
		cd := numtest.CentralDiff(func(s float64) float64 { return p.At(s).Sigma }, hi, hStep)
		ds := p.At(hi).DSigma
		measured := (cd - ds) / ds // signed: the truncation term has the sign of sigma'''/sigma' > 0
		want := c.predicted(hi, hStep)
		t.Logf("%s at t=hi, h=1e-6: relative error %.4g, leading truncation term %.4g", c.spec, measured, want)
		// The next term of the expansion is O((h/(1-t))^2) = 1e-2 of the
		// leading one (vp's formula is itself a small-(1-t) approximation
		// to about 1e-3): 5% separates "truncation" from anything else.
		if !numtest.Close(measured, want, 0, 0.05) {
			t.Errorf("%s: relative error %.4g, want the truncation term %.4g within 5%%", c.spec, measured, want)
		}
		if measured <= cdTol {
			t.Errorf("%s: the fixed step was expected to fail the %g check at t=hi", c.spec, cdTol)
		}
	}
}

// TestVelocityXMatchesX0Form checks that the x-form field u_t(x | x1) at
// x = x_t equals the x0-form target, every kind, 10,000 points: t uniform on
// the whole time range and, for a tenth of the points, hi - t log-uniform
// on [1e-5, 1e-1] near the upper end.
//
// Tolerance: relative 1e-9 with a floor of 0.1. The x-form recovers
// sigma_t x0 as x - alpha_t x1, which loses up to about 2 eps (|sigma x0| +
// |alpha x1|) absolutely (eps = 1.1e-16: x = fl(sigma x0 + alpha x1) and
// alpha x1 are each rounded), then multiplies it by sigma'/sigma. For ot and
// cosine near t = 1 (sigma ~ 1 - t) that gives 2 eps |x1| / (1 - t) <=
// 6.6e-11 at the closest point drawn, 1 - t = 1e-5, |x1| <= 3: an absolute
// error that does not shrink with u, which the floor of 0.1 keeps within
// 6.6e-10 relative. That ill-conditioning is why training uses the x0 form.
func TestVelocityXMatchesX0Form(t *testing.T) {
	const (
		n     = 10000
		tol   = 1e-9
		floor = 0.1
	)
	for ci, c := range pathCases() {
		p := flow.MustNew(c.spec)
		lo, hi := p.TimeRange()
		r := rand.New(rand.NewPCG(3, uint64(ci)))
		maxErr, worstT := 0.0, 0.0
		for i := 0; i < n; i++ {
			var tt float64
			if i%10 == 0 {
				// near the upper end: hi - tt log-uniform on [1e-5, 1e-1]
				tt = hi - 1e-5*math.Pow(10, 4*r.Float64())
			} else {
				tt = lo + (hi-lo)*r.Float64()
			}
			x0, x1 := drawX(r)
			x := flow.Phi(p, tt, x0, x1)
			e := numtest.RelErr(flow.VelocityX(p, tt, x, x1), flow.VelocityX0(p, tt, x0, x1), floor)
			if e > maxErr || math.IsNaN(e) {
				maxErr, worstT = e, tt
			}
		}
		t.Logf("%s (worst at t=%.9g)", numtest.Describe("x-form vs x0-form, "+c.name, maxErr, tol), worstT)
		if !(maxErr <= tol) {
			t.Errorf("%s: x-form differs from x0-form by %.3g relative at t=%.9g", c.name, maxErr, worstT)
		}
	}
}

// vpMATH is the VP field as docs/math.md §2.3 writes it, not taken from
// flow's code: with s = 1 - t, T(s) = beta_min s + (beta_max - beta_min)
// s^2/2, beta(s) = T'(s),
//
//	u_t(x | x1) = -(beta(s)/2) (e^{-T} x - e^{-T/2} x1) / (1 - e^{-T}).
//
// blog is the widely read variant that drops the factor -1/2 (§2.3
// warns about it), flipped the variant that confuses a'(s) with
// d/dt a(1 - t) and so flips the sign.
func vpMATH(bmin, bmax, t, x, x1 float64) (u, blog, flipped float64) {
	s := 1 - t
	T := bmin*s + (bmax-bmin)*s*s/2
	beta := bmin + (bmax-bmin)*s
	q := (math.Exp(-T)*x - math.Exp(-T/2)*x1) / (1 - math.Exp(-T))
	return -beta / 2 * q, beta * q, beta / 2 * q
}

// TestVPVelocityXMatchesMATH checks VP's x-form field against docs/math.md's
// formula written independently (vpMATH), at 10,000 random (t, x, x1) on
// the whole time range, x not tied to x1 (the field is defined for every
// x). Tolerance 1e-9 relative with floor 1e-2: the independent formula
// computes 1 - e^{-T} directly, which loses eps / T relative precision, at
// most 1.1e-16 / 1e-6 = 1.1e-10 at t = hi (T ~ beta_min (1 - t)).
//
// It also guards the sign and the factor: the blog variant must come out
// as -2 u (so wrong by a relative 3) and the sign-flipped one as -u.
func TestVPVelocityXMatchesMATH(t *testing.T) {
	const (
		n     = 10000
		tol   = 1e-9
		floor = 1e-2
	)
	for ci, c := range pathCases() {
		if c.spec.Kind != flow.KindVP {
			continue
		}
		p := flow.MustNew(c.spec)
		lo, hi := p.TimeRange()
		r := rand.New(rand.NewPCG(4, uint64(ci)))
		maxErr, minBlog, minFlip, checked := 0.0, math.Inf(1), math.Inf(1), 0
		for i := 0; i < n; i++ {
			tt := lo + (hi-lo)*r.Float64()
			if i == 0 {
				tt = hi
			}
			x, x1 := 3*r.NormFloat64(), 6*r.Float64()-3
			got := flow.VelocityX(p, tt, x, x1)
			want, blog, flipped := vpMATH(c.spec.BetaMin, c.spec.BetaMax, tt, x, x1)
			maxErr = math.Max(maxErr, numtest.RelErr(got, want, floor))
			if math.Abs(want) >= floor {
				checked++
				minBlog = math.Min(minBlog, numtest.RelErr(blog, got, 0))
				minFlip = math.Min(minFlip, numtest.RelErr(flipped, got, 0))
				// the blog form is exactly -2 times the right one
				if !numtest.Close(blog, -2*want, 0, 1e-12) {
					t.Errorf("%s t=%g: blog form %g is not -2 u = %g", c.name, tt, blog, -2*want)
				}
			}
		}
		t.Log(numtest.Describe("vp x-form vs docs/math.md formula, "+c.name, maxErr, tol))
		t.Logf("%s: the blog form (no -1/2) differs from flow's by at least %.3g relative, the sign-flipped one by %.3g (over %d points)",
			c.name, minBlog, minFlip, checked)
		if !(maxErr <= tol) {
			t.Errorf("%s: x-form differs from docs/math.md's formula by %.3g relative", c.name, maxErr)
		}
		// -2u vs u: relative error 3; -u vs u: 2. Anything near 0 would
		// mean flow's field had the blog's factor or the flipped sign.
		if !(minBlog > 2.9) || !(minFlip > 1.9) {
			t.Errorf("%s: the wrong VP forms come too close to flow's field (blog %.3g, flipped %.3g)", c.name, minBlog, minFlip)
		}
	}
}

// TestCoefficientShape checks properties every path has in the t = 0 noise,
// t = 1 data convention, on a grid covering the whole time range (ends
// included): coefficients finite, sigma_t >= 0 non-increasing, alpha_t
// non-decreasing (sigma' <= 0, alpha' >= 0), and alpha^2 + sigma^2 = 1 for
// the variance-preserving kinds (linear-vp, cosine, vp).
func TestCoefficientShape(t *testing.T) {
	const steps = 4096
	for _, c := range pathCases() {
		p := flow.MustNew(c.spec)
		lo, hi := p.TimeRange()
		prev := p.At(lo)
		for i := 0; i <= steps; i++ {
			tt := lo + (hi-lo)*float64(i)/steps
			if i == steps {
				tt = hi
			}
			co := p.At(tt)
			for _, v := range []float64{co.Alpha, co.Sigma, co.DAlpha, co.DSigma} {
				if math.IsNaN(v) || math.IsInf(v, 0) {
					t.Fatalf("%s at t=%.17g: coefficients %+v not finite", c.name, tt, co)
				}
			}
			if co.Sigma < 0 || co.DSigma > 0 || co.DAlpha < 0 {
				t.Errorf("%s at t=%g: %+v: want sigma >= 0, sigma' <= 0, alpha' >= 0", c.name, tt, co)
			}
			if co.Sigma > prev.Sigma || co.Alpha < prev.Alpha {
				t.Errorf("%s at t=%g: sigma or alpha not monotone (%+v after %+v)", c.name, tt, co, prev)
			}
			prev = co
			switch c.spec.Kind {
			case flow.KindLinearVP, flow.KindCosine, flow.KindVP:
				// 1e-15: a few roundings of numbers <= 1
				if v := co.Alpha*co.Alpha + co.Sigma*co.Sigma; !numtest.Close(v, 1, 1e-15, 0) {
					t.Errorf("%s at t=%g: alpha^2 + sigma^2 = %.17g, want 1", c.name, tt, v)
				}
			}
		}
	}
}

// TestSingularBoundary: linear-vp's and vp's sigma'_t is finite at hi =
// 1 - SingularEps, grows without bound beyond it and is infinite at t = 1.
func TestSingularBoundary(t *testing.T) {
	for _, c := range pathCases() {
		p := flow.MustNew(c.spec)
		if !singular(p) {
			continue
		}
		_, hi := p.TimeRange()
		dsHi := p.At(hi).DSigma
		if math.IsNaN(dsHi) || math.IsInf(dsHi, 0) || dsHi >= 0 {
			t.Errorf("%s: sigma' at hi = %g, want finite and negative", c.name, dsHi)
		}
		prev := math.Abs(dsHi)
		for k := 6; k <= 14; k++ {
			tt := 1 - math.Pow(10, -float64(k))
			ds := math.Abs(p.At(tt).DSigma)
			if !(ds > prev) {
				t.Errorf("%s: |sigma'| at 1 - 1e-%d = %g, not above %g", c.name, k, ds, prev)
			}
			prev = ds
		}
		// Beyond hi |sigma'| grows like 1/sqrt(1 - t): at 1 - 1e-14 it is
		// sqrt(1e9) ~ 3e4 times its value at hi... at least 1e4 times.
		if prev < 1e4*math.Abs(dsHi) {
			t.Errorf("%s: |sigma'| at 1 - 1e-14 = %g, expected it to diverge (at hi %g)", c.name, prev, dsHi)
		}
		if ds := p.At(1).DSigma; !math.IsInf(ds, -1) {
			t.Errorf("%s: sigma' at t=1 = %g, want -Inf", c.name, ds)
		}
		t.Logf("%s: sigma' at hi = %.6g, at 1 - 1e-14 = %.6g, at 1 = %g", c.name, dsHi, -prev, p.At(1).DSigma)
	}
	// linear-vp at hi: -t / sqrt(1 - t^2) = -223.6 (1 - t^2 = 1.99999e-5).
	lv := flow.MustNew(flow.DefaultSpec(flow.KindLinearVP))
	_, hi := lv.TimeRange()
	if got, want := lv.At(hi).DSigma, -hi/math.Sqrt(1-hi*hi); !numtest.Close(got, want, 0, 1e-10) {
		t.Errorf("linear-vp sigma' at hi = %.12g, want %.12g", got, want)
	}
	// docs/math.md §2.4: vp's sigma' is "about -50 at t = 0.99999" (-50.07: with s =
	// 1e-5, sigma' ~ -(beta_min/2) / sqrt(beta_min s) = -0.05 / 1e-3).
	vp := flow.MustNew(flow.DefaultSpec(flow.KindVP))
	if got := vp.At(0.99999).DSigma; !numtest.Close(got, -50, 0, 0.01) {
		t.Errorf("vp sigma' at t=0.99999 = %g, want about -50", got)
	}
}

// TestEndpoints checks the paths at t = 0 (noise) and t = 1 (data).
func TestEndpoints(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 0))
	for _, c := range pathCases() {
		p := flow.MustNew(c.spec)
		for i := 0; i < 100; i++ {
			x0, x1 := drawX(r)
			x := flow.Phi(p, 0, x0, x1)
			switch c.spec.Kind {
			case flow.KindOT, flow.KindLinearVP, flow.KindCosine:
				// sigma_0 = 1 and alpha_0 = 0 exactly: x_0 is x0 exactly.
				if x != x0 {
					t.Errorf("%s: x_t at t=0 = %.17g, want x0 = %.17g", c.name, x, x0)
				}
			case flow.KindVP:
				// alpha(0) = exp(-T(1)/2) = exp(-(beta_min + beta_max)/4),
				// exp(-5.025) = 0.00657 for the defaults: x_0 is only close
				// to x0; the error is alpha x1 + (sigma - 1) x0.
				co := p.At(0)
				wantAlpha := math.Exp(-(c.spec.BetaMin + c.spec.BetaMax) / 4)
				if !numtest.Close(co.Alpha, wantAlpha, 0, 1e-14) {
					t.Errorf("%s: alpha(0) = %.17g, want exp(-T(1)/2) = %.17g", c.name, co.Alpha, wantAlpha)
				}
				if !numtest.Close(co.Sigma, math.Sqrt(1-wantAlpha*wantAlpha), 0, 1e-14) {
					t.Errorf("%s: sigma(0) = %.17g, want sqrt(1 - alpha(0)^2)", c.name, co.Sigma)
				}
				if d := math.Abs(x - x0); d > co.Alpha*math.Abs(x1)+(1-co.Sigma)*math.Abs(x0)+1e-15 {
					t.Errorf("%s: |x_0 - x0| = %g exceeds alpha(0)|x1| + (1 - sigma(0))|x0|", c.name, d)
				}
				if c.spec == flow.DefaultSpec(flow.KindVP) && !(co.Alpha < 0.0066 && co.Alpha > 0.0065) {
					t.Errorf("vp defaults: alpha(0) = %g, want about 0.00657", co.Alpha)
				}
			case flow.KindVE:
				// x_0 = x1 + sigma_max x0: the prior is N(0, sigma_max^2).
				if want := x1 + c.spec.SigmaMax*x0; !numtest.Close(x, want, 1e-13, 1e-14) {
					t.Errorf("%s: x_t at t=0 = %.17g, want x1 + sigma_max x0 = %.17g", c.name, x, want)
				}
			}
		}
		// t = 1 (or hi): ot with sigma_min 0 and cosine end at x1.
		x0, x1 := drawX(r)
		switch c.spec.Kind {
		case flow.KindOT:
			want := x1 + c.spec.SigmaMin*x0
			if got := flow.Phi(p, 1, x0, x1); got != want && !numtest.Close(got, want, 1e-15, 1e-15) {
				t.Errorf("%s: x_t at t=1 = %.17g, want x1 + sigma_min x0 = %.17g", c.name, got, want)
			}
			if c.spec.SigmaMin == 0 {
				if got := flow.Phi(p, 1, x0, x1); got != x1 {
					t.Errorf("ot sigma_min=0: x_t at t=1 = %.17g, want x1 = %.17g exactly", got, x1)
				}
			}
		case flow.KindCosine:
			// cos(pi/2) rounds to 6.1e-17, not 0
			if got := flow.Phi(p, 1, x0, x1); !numtest.Close(got, x1, 1e-15, 0) {
				t.Errorf("cosine: x_t at t=1 = %.17g, want x1 = %.17g", got, x1)
			}
		case flow.KindVE:
			if s := p.At(1).Sigma; !numtest.Close(s, c.spec.SigmaMin, 0, 1e-15) {
				t.Errorf("%s: sigma at t=1 = %.17g, want sigma_min", c.name, s)
			}
		}
		// Prior: N(0, I) except ve, N(0, sigma_max^2 I), whose sigma at t=0
		// is sigma_max (to rounding: sigma_min e^{ln(sigma_max/sigma_min)}).
		wantStd := 1.0
		if c.spec.Kind == flow.KindVE {
			wantStd = c.spec.SigmaMax
			if s := p.At(0).Sigma; !numtest.Close(s, c.spec.SigmaMax, 0, 1e-14) {
				t.Errorf("%s: sigma at t=0 = %.17g, want sigma_max = %g", c.name, s, c.spec.SigmaMax)
			}
		}
		if got := p.PriorStd(); got != wantStd {
			t.Errorf("%s: PriorStd = %g, want %g", c.name, got, wantStd)
		}
	}
}

func TestClamp(t *testing.T) {
	for _, c := range pathCases() {
		p := flow.MustNew(c.spec)
		lo, hi := p.TimeRange()
		wantHi := 1.0
		if c.spec.Kind == flow.KindLinearVP || c.spec.Kind == flow.KindVP {
			wantHi = 1 - flow.SingularEps
		}
		if lo != 0 || hi != wantHi {
			t.Errorf("%s: TimeRange = [%g, %.17g], want [0, %.17g]", c.name, lo, hi, wantHi)
		}
		for _, tc := range []struct{ in, want float64 }{
			{-1, lo}, {math.Inf(-1), lo}, {-0.0, lo}, {lo, lo},
			{0.25, 0.25}, {0.5, 0.5}, {0.99, 0.99}, {hi, hi},
			{1, hi}, {1.5, hi}, {math.Inf(1), hi},
			{1 - flow.SingularEps/2, math.Min(1-flow.SingularEps/2, hi)},
		} {
			if got := flow.Clamp(p, tc.in); got != tc.want {
				t.Errorf("%s: Clamp(%g) = %.17g, want %.17g", c.name, tc.in, got, tc.want)
			}
		}
	}
}

// TestSpecRoundTrip: New(spec).Spec() gives spec back for every kind and
// parameter set, DefaultSpec carries the defaults of docs/math.md §2.2, and
// New builds the concrete type of the kind.
func TestSpecRoundTrip(t *testing.T) {
	for _, c := range pathCases() {
		p, err := flow.New(c.spec)
		if err != nil {
			t.Fatalf("%s: New: %v", c.name, err)
		}
		if got := p.Spec(); got != c.spec {
			t.Errorf("%s: Spec() = %+v, want %+v", c.name, got, c.spec)
		}
		q, err := flow.New(p.Spec())
		if err != nil || !reflect.DeepEqual(p, q) {
			t.Errorf("%s: New(p.Spec()) = %#v, %v; want %#v", c.name, q, err, p)
		}
	}
	wantDefaults := map[flow.Kind]flow.Spec{
		flow.KindOT:       {Kind: flow.KindOT},
		flow.KindLinearVP: {Kind: flow.KindLinearVP},
		flow.KindCosine:   {Kind: flow.KindCosine},
		flow.KindVP:       {Kind: flow.KindVP, BetaMin: 0.1, BetaMax: 20},
		flow.KindVE:       {Kind: flow.KindVE, SigmaMin: 0.01, SigmaMax: 10},
	}
	wantType := map[flow.Kind]flow.Path{
		flow.KindOT:       flow.OT{},
		flow.KindLinearVP: flow.LinearVP{},
		flow.KindCosine:   flow.Cosine{},
		flow.KindVP:       flow.VP{BetaMin: 0.1, BetaMax: 20},
		flow.KindVE:       flow.VE{SigmaMin: 0.01, SigmaMax: 10},
	}
	for _, k := range flow.Kinds() {
		if got := flow.DefaultSpec(k); got != wantDefaults[k] {
			t.Errorf("DefaultSpec(%v) = %+v, want %+v", k, got, wantDefaults[k])
		}
		if got := flow.MustNew(flow.DefaultSpec(k)); !reflect.DeepEqual(got, wantType[k]) {
			t.Errorf("MustNew(DefaultSpec(%v)) = %#v, want %#v", k, got, wantType[k])
		}
	}
	for spec, want := range map[flow.Spec]string{
		flow.DefaultSpec(flow.KindOT):       "ot(sigma_min=0)",
		flow.DefaultSpec(flow.KindLinearVP): "linear-vp",
		flow.DefaultSpec(flow.KindCosine):   "cosine",
		flow.DefaultSpec(flow.KindVP):       "vp(beta_min=0.1, beta_max=20)",
		flow.DefaultSpec(flow.KindVE):       "ve(sigma_min=0.01, sigma_max=10)",
	} {
		if got := spec.String(); got != want {
			t.Errorf("%+v.String() = %q, want %q", spec, got, want)
		}
	}
}

// TestNewRejects: invalid parameters give an error naming the kind (and
// MustNew panics) rather than a path that produces NaN.
func TestNewRejects(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	for _, c := range []struct {
		why  string
		spec flow.Spec
		word string // expected in the message
	}{
		{"ot negative sigma_min", flow.Spec{Kind: flow.KindOT, SigmaMin: -0.1}, "ot"},
		{"ot sigma_min = 1 (sigma_t = 1 - 0*t never shrinks)", flow.Spec{Kind: flow.KindOT, SigmaMin: 1}, "ot"},
		{"ot sigma_min > 1", flow.Spec{Kind: flow.KindOT, SigmaMin: 2}, "ot"},
		{"ot NaN sigma_min", flow.Spec{Kind: flow.KindOT, SigmaMin: nan}, "ot"},
		{"vp beta_min = 0", flow.Spec{Kind: flow.KindVP, BetaMin: 0, BetaMax: 20}, "vp"},
		{"vp negative beta_min", flow.Spec{Kind: flow.KindVP, BetaMin: -0.1, BetaMax: 20}, "vp"},
		{"vp beta_max < beta_min", flow.Spec{Kind: flow.KindVP, BetaMin: 2, BetaMax: 1}, "vp"},
		{"vp NaN beta_min", flow.Spec{Kind: flow.KindVP, BetaMin: nan, BetaMax: 20}, "vp"},
		{"vp NaN beta_max", flow.Spec{Kind: flow.KindVP, BetaMin: 0.1, BetaMax: nan}, "vp"},
		{"vp infinite beta_max", flow.Spec{Kind: flow.KindVP, BetaMin: 0.1, BetaMax: inf}, "vp"},
		{"vp zero spec", flow.Spec{Kind: flow.KindVP}, "vp"},
		{"ve negative sigma_min", flow.Spec{Kind: flow.KindVE, SigmaMin: -0.01, SigmaMax: 10}, "ve"},
		{"ve sigma_min = 0 (log(sigma_max/0))", flow.Spec{Kind: flow.KindVE, SigmaMin: 0, SigmaMax: 10}, "ve"},
		{"ve sigma_min = sigma_max", flow.Spec{Kind: flow.KindVE, SigmaMin: 10, SigmaMax: 10}, "ve"},
		{"ve sigma_min > sigma_max", flow.Spec{Kind: flow.KindVE, SigmaMin: 10, SigmaMax: 1}, "ve"},
		{"ve negative both", flow.Spec{Kind: flow.KindVE, SigmaMin: -10, SigmaMax: -1}, "ve"},
		{"ve NaN sigma_min", flow.Spec{Kind: flow.KindVE, SigmaMin: nan, SigmaMax: 10}, "ve"},
		{"ve NaN sigma_max", flow.Spec{Kind: flow.KindVE, SigmaMin: 0.01, SigmaMax: nan}, "ve"},
		{"ve infinite sigma_max", flow.Spec{Kind: flow.KindVE, SigmaMin: 0.01, SigmaMax: inf}, "ve"},
		{"ve zero spec", flow.Spec{Kind: flow.KindVE}, "ve"},
		{"unknown kind 5", flow.Spec{Kind: 5}, "kind"},
		{"unknown kind -1", flow.Spec{Kind: -1}, "kind"},
	} {
		p, err := flow.New(c.spec)
		if err == nil {
			t.Errorf("%s: New(%+v) = %#v, want an error", c.why, c.spec, p)
			continue
		}
		if !strings.Contains(err.Error(), c.word) {
			t.Errorf("%s: error %q does not mention %q", c.why, err, c.word)
		}
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: MustNew did not panic", c.why)
				}
			}()
			flow.MustNew(c.spec)
		}()
	}
}

// TestKindNames: the numeric values are the CUDA kernels' ABI and the names
// the CLI's; ParseKind inverts String and rejects everything else.
func TestKindNames(t *testing.T) {
	want := []struct {
		k    flow.Kind
		v    int32
		name string
	}{
		{flow.KindOT, 0, "ot"}, {flow.KindLinearVP, 1, "linear-vp"}, {flow.KindCosine, 2, "cosine"},
		{flow.KindVP, 3, "vp"}, {flow.KindVE, 4, "ve"},
	}
	ks := flow.Kinds()
	if len(ks) != len(want) {
		t.Fatalf("Kinds() = %v, want %d kinds", ks, len(want))
	}
	for i, w := range want {
		if ks[i] != w.k || int32(w.k) != w.v || w.k.String() != w.name {
			t.Errorf("kind %d: Kinds()[%d] = %v (%d, %q), want %d %q", i, i, ks[i], int32(ks[i]), ks[i].String(), w.v, w.name)
		}
		k, err := flow.ParseKind(w.name)
		if err != nil || k != w.k {
			t.Errorf("ParseKind(%q) = %v, %v; want %v", w.name, k, err, w.k)
		}
	}
	for _, s := range []string{"", "OT", "Ot", " ot", "vp ", "linear_vp", "linearvp", "rectified", "cos", "Kind(0)", "0"} {
		if k, err := flow.ParseKind(s); err == nil {
			t.Errorf("ParseKind(%q) = %v, want an error", s, k)
		} else if !strings.Contains(err.Error(), "linear-vp") {
			t.Errorf("ParseKind(%q): error %q should list the valid names", s, err)
		}
	}
	for k, want := range map[flow.Kind]string{-1: "Kind(-1)", 5: "Kind(5)"} {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d).String() = %q, want %q", int32(k), got, want)
		}
	}
}

// TestSpecJSON: a Spec survives a JSON round trip bit for bit, and its
// encoding (what checkpoints store) keeps its field names and numeric kind.
func TestSpecJSON(t *testing.T) {
	cases := pathCases()
	cases = append(cases, pathCase{"ot sigma_min=1/3", flow.Spec{Kind: flow.KindOT, SigmaMin: 1.0 / 3}})
	for _, c := range cases {
		b, err := json.Marshal(c.spec)
		if err != nil {
			t.Fatalf("%s: Marshal: %v", c.name, err)
		}
		var got flow.Spec
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%s: Unmarshal(%s): %v", c.name, b, err)
		}
		if got != c.spec {
			t.Errorf("%s: JSON round trip %s gave %+v, want %+v", c.name, b, got, c.spec)
		}
	}
	b, _ := json.Marshal(flow.DefaultSpec(flow.KindVP))
	if want := `{"kind":3,"sigma_min":0,"sigma_max":0,"beta_min":0.1,"beta_max":20}`; string(b) != want {
		t.Errorf("JSON of the default vp spec = %s, want %s", b, want)
	}
}
