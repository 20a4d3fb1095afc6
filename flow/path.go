// Package flow defines the probability paths of conditional flow matching
// (docs/math.md §2), the time distributions training draws from (§3), the
// batched regression target and the CFM loss (§4). Everything here is
// device-independent math in float64 (or generic over the float type); the
// backends in package gpu evaluate the same definitions inside their fused
// ops, which is why this package imports nothing of fmgpu.
//
// Convention: t = 0 is noise (x0 ~ prior), t = 1 is data (x1).
package flow

import (
	"fmt"
	"math"
	"strings"
)

// Path is a Gaussian conditional probability path written as an affine map
// of the noise sample: x_t = sigma_t x0 + alpha_t x1 (mu_t(x1) = alpha_t x1;
// for ve alpha_t = 1). Its target velocity is u_t = sigma'_t x0 + alpha'_t x1.
type Path interface {
	// At gives the coefficients at time t. It does not clamp: callers that
	// may reach t = 1 on a singular kind clamp with TimeRange first.
	At(t float64) Coef
	// TimeRange is the closed interval of times the path may be evaluated
	// on; training clamps drawn times into it and the solvers integrate
	// over it.
	TimeRange() (lo, hi float64)
	// PriorStd is the standard deviation of the isotropic Gaussian p0.
	PriorStd() float64
	// Spec is the serialisable kind and parameters that rebuild the path;
	// checkpoints store it and the CUDA kernels receive it as scalars.
	Spec() Spec
}

// Coef holds a path's affine coefficients at one time:
//
//	x_t = Sigma*x0 + Alpha*x1,   u_t = DSigma*x0 + DAlpha*x1
type Coef struct {
	Alpha, Sigma, DAlpha, DSigma float64
}

// Kind names a family of paths. Its numeric value is part of the CUDA
// kernels' ABI (passed as a scalar): never renumber.
type Kind int32

const (
	KindOT       Kind = 0
	KindLinearVP Kind = 1
	KindCosine   Kind = 2
	KindVP       Kind = 3
	KindVE       Kind = 4
)

var kindNames = []string{"ot", "linear-vp", "cosine", "vp", "ve"}

// String is the CLI name of the kind.
func (k Kind) String() string {
	if k >= 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", int32(k))
}

// Kinds lists every kind in ABI order.
func Kinds() []Kind { return []Kind{KindOT, KindLinearVP, KindCosine, KindVP, KindVE} }

// ParseKind turns a CLI name into a Kind.
func ParseKind(s string) (Kind, error) {
	for i, n := range kindNames {
		if s == n {
			return Kind(i), nil
		}
	}
	return 0, fmt.Errorf("unknown path %q (want one of %s)", s, strings.Join(kindNames, ", "))
}

// SingularEps is how far below t = 1 the linear-vp and vp paths are clamped:
// their sigma'_t diverges at t = 1 (linear-vp: -t/sqrt(1-t^2); vp: about -50
// already at t = 1 - 1e-5), so neither training nor the solvers evaluate
// them beyond 1 - SingularEps.
const SingularEps = 1e-5

// Spec is a path as a plain value: its kind and every parameter, zero where
// the kind has none. It is what a checkpoint's JSON metadata records.
type Spec struct {
	Kind     Kind    `json:"kind"`
	SigmaMin float64 `json:"sigma_min"`
	SigmaMax float64 `json:"sigma_max"`
	BetaMin  float64 `json:"beta_min"`
	BetaMax  float64 `json:"beta_max"`
}

// DefaultSpec returns a kind's default parameters (docs/math.md §2.2): ot
// sigma_min 0; vp beta 0.1 to 20; ve sigma 0.01 to 10.
func DefaultSpec(k Kind) Spec {
	switch k {
	case KindVP:
		return Spec{Kind: k, BetaMin: 0.1, BetaMax: 20}
	case KindVE:
		return Spec{Kind: k, SigmaMin: 0.01, SigmaMax: 10}
	}
	return Spec{Kind: k}
}

// New builds the path a Spec describes, checking its parameters.
func New(s Spec) (Path, error) {
	switch s.Kind {
	case KindOT:
		if !(s.SigmaMin >= 0 && s.SigmaMin < 1) {
			return nil, fmt.Errorf("path ot: sigma-min %g outside [0, 1)", s.SigmaMin)
		}
		return OT{SigmaMin: s.SigmaMin}, nil
	case KindLinearVP:
		return LinearVP{}, nil
	case KindCosine:
		return Cosine{}, nil
	case KindVP:
		if !(s.BetaMin > 0 && s.BetaMax >= s.BetaMin && s.BetaMax < 1e4) {
			return nil, fmt.Errorf("path vp: need 0 < beta-min <= beta-max < 1e4, got %g, %g", s.BetaMin, s.BetaMax)
		}
		return VP{BetaMin: s.BetaMin, BetaMax: s.BetaMax}, nil
	case KindVE:
		if !(s.SigmaMin > 0 && s.SigmaMax > s.SigmaMin && s.SigmaMax < 1e6) {
			return nil, fmt.Errorf("path ve: need 0 < sigma-min < sigma-max < 1e6, got %g, %g", s.SigmaMin, s.SigmaMax)
		}
		return VE{SigmaMin: s.SigmaMin, SigmaMax: s.SigmaMax}, nil
	}
	return nil, fmt.Errorf("unknown path kind %d", int32(s.Kind))
}

// MustNew is New for specs known to be valid (tests, defaults).
func MustNew(s Spec) Path {
	p, err := New(s)
	if err != nil {
		panic(err)
	}
	return p
}

// OT is the conditional optimal-transport path of Lipman et al.:
// mu_t = t x1, sigma_t = 1 - (1 - sigma_min) t. With sigma_min = 0 it is
// rectified flow (I-CFM), the default.
type OT struct{ SigmaMin float64 }

func (p OT) At(t float64) Coef {
	k := 1 - p.SigmaMin
	return Coef{Alpha: t, Sigma: 1 - k*t, DAlpha: 1, DSigma: -k}
}
func (OT) TimeRange() (lo, hi float64) { return 0, 1 }
func (OT) PriorStd() float64           { return 1 }
func (p OT) Spec() Spec                { return Spec{Kind: KindOT, SigmaMin: p.SigmaMin} }

// LinearVP is mu_t = t x1, sigma_t = sqrt(1 - t^2). sigma'_t diverges at
// t = 1, so its time range stops at 1 - SingularEps.
type LinearVP struct{}

func (LinearVP) At(t float64) Coef {
	s := math.Sqrt((1 - t) * (1 + t))
	return Coef{Alpha: t, Sigma: s, DAlpha: 1, DSigma: -t / s}
}
func (LinearVP) TimeRange() (lo, hi float64) { return 0, 1 - SingularEps }
func (LinearVP) PriorStd() float64           { return 1 }
func (LinearVP) Spec() Spec                  { return Spec{Kind: KindLinearVP} }

// Cosine is mu_t = sin(pi t / 2) x1, sigma_t = cos(pi t / 2).
type Cosine struct{}

func (Cosine) At(t float64) Coef {
	sn, cs := math.Sincos(math.Pi / 2 * t)
	return Coef{Alpha: sn, Sigma: cs, DAlpha: math.Pi / 2 * cs, DSigma: -math.Pi / 2 * sn}
}
func (Cosine) TimeRange() (lo, hi float64) { return 0, 1 }
func (Cosine) PriorStd() float64           { return 1 }
func (Cosine) Spec() Spec                  { return Spec{Kind: KindCosine} }

// VP is the variance-preserving path of score-based SDEs, reversed in time:
// with s = 1 - t, T(s) = beta_min s + (beta_max - beta_min) s^2 / 2 and
// a(s) = exp(-T(s)/2): mu_t = a(s) x1, sigma_t = sqrt(1 - a(s)^2).
// sigma'_t blows up at t = 1; the time range stops at 1 - SingularEps.
type VP struct{ BetaMin, BetaMax float64 }

func (p VP) At(t float64) Coef {
	s := 1 - t
	T := p.BetaMin*s + 0.5*(p.BetaMax-p.BetaMin)*s*s
	beta := p.BetaMin + (p.BetaMax-p.BetaMin)*s
	a := math.Exp(-T / 2)
	// d/dt a(1-t) = -a'(s) = (beta(s)/2) a(s): the sign docs/math.md §2.3 warns about.
	da := 0.5 * beta * a
	// 1 - a^2 = -expm1(-T) keeps precision when T is small (t near 1).
	sig := math.Sqrt(-math.Expm1(-T))
	return Coef{Alpha: a, Sigma: sig, DAlpha: da, DSigma: -a * da / sig}
}
func (VP) TimeRange() (lo, hi float64) { return 0, 1 - SingularEps }
func (VP) PriorStd() float64           { return 1 }
func (p VP) Spec() Spec                { return Spec{Kind: KindVP, BetaMin: p.BetaMin, BetaMax: p.BetaMax} }

// VE is the variance-exploding path, reversed in time: mu_t = x1,
// sigma_t = s(1 - t) with s(r) = sigma_min (sigma_max/sigma_min)^r. At t = 0
// the sample is x1 + sigma_max x0, so its prior is N(0, sigma_max^2 I).
type VE struct{ SigmaMin, SigmaMax float64 }

func (p VE) At(t float64) Coef {
	l := math.Log(p.SigmaMax / p.SigmaMin)
	sig := p.SigmaMin * math.Exp(l*(1-t))
	return Coef{Alpha: 1, Sigma: sig, DAlpha: 0, DSigma: -l * sig}
}
func (VE) TimeRange() (lo, hi float64) { return 0, 1 }
func (p VE) PriorStd() float64         { return p.SigmaMax }
func (p VE) Spec() Spec                { return Spec{Kind: KindVE, SigmaMin: p.SigmaMin, SigmaMax: p.SigmaMax} }

// Clamp maps t into the path's TimeRange.
func Clamp(p Path, t float64) float64 {
	lo, hi := p.TimeRange()
	return math.Min(math.Max(t, lo), hi)
}

// Phi is the flow map phi_t(x0 | x1) = sigma_t x0 + mu_t(x1), one coordinate.
func Phi(p Path, t, x0, x1 float64) float64 {
	c := p.At(t)
	return c.Sigma*x0 + c.Alpha*x1
}

// VelocityX0 is the regression target in its x0 form, u_t = sigma'_t x0 +
// mu'_t(x1): it never divides by sigma_t, so training uses it.
func VelocityX0(p Path, t, x0, x1 float64) float64 {
	c := p.At(t)
	return c.DSigma*x0 + c.DAlpha*x1
}

// VelocityX is the conditional field as a function of x:
// u_t(x | x1) = sigma'_t/sigma_t (x - mu_t(x1)) + mu'_t(x1). It equals
// VelocityX0 at x = Phi(t, x0, x1) but divides by sigma_t, so it serves tests
// and closed forms, not training.
func VelocityX(p Path, t, x, x1 float64) float64 {
	c := p.At(t)
	return c.DSigma/c.Sigma*(x-c.Alpha*x1) + c.DAlpha*x1
}

// String renders a spec with the parameters its kind uses, for logs.
func (s Spec) String() string {
	switch s.Kind {
	case KindOT:
		return fmt.Sprintf("ot(sigma_min=%g)", s.SigmaMin)
	case KindVP:
		return fmt.Sprintf("vp(beta_min=%g, beta_max=%g)", s.BetaMin, s.BetaMax)
	case KindVE:
		return fmt.Sprintf("ve(sigma_min=%g, sigma_max=%g)", s.SigmaMin, s.SigmaMax)
	}
	return s.Kind.String()
}
