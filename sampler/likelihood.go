package sampler

import (
	"fmt"
	"math"

	"github.com/fmgpu/fmgpu/gpu"
)

// Divergence selects how the likelihood ODE computes div v = tr(dv/dx).
type Divergence int

const (
	// Exact uses the field's closed-form Divergence when it is a
	// DivergenceField, else Dim VJPs with unit probes per evaluation
	// (for small Dim).
	Exact Divergence = iota
	// Hutchinson uses the unbiased estimate mean_k e_k^T (dv/dx) e_k over
	// Probes fixed probes (one VJP each per evaluation); it needs a VJPField.
	Hutchinson
)

var divergenceNames = [...]string{"exact", "hutchinson"}

// String is the command-line name.
func (d Divergence) String() string {
	if d >= 0 && int(d) < len(divergenceNames) {
		return divergenceNames[d]
	}
	return fmt.Sprintf("Divergence(%d)", int(d))
}

// ParseDivergence turns "exact" or "hutchinson" into a Divergence.
func ParseDivergence(s string) (Divergence, error) {
	for i, n := range divergenceNames {
		if s == n {
			return Divergence(i), nil
		}
	}
	return 0, fmt.Errorf("unknown divergence %q (want exact or hutchinson)", s)
}

// ProbeKind is the distribution of Hutchinson's probe vectors.
type ProbeKind int

const (
	Rademacher ProbeKind = iota // entries +-1 (the lower-variance choice)
	Gaussian                    // entries N(0, 1)
)

var probeNames = [...]string{"rademacher", "gaussian"}

// String is the command-line name.
func (p ProbeKind) String() string {
	if p >= 0 && int(p) < len(probeNames) {
		return probeNames[p]
	}
	return fmt.Sprintf("ProbeKind(%d)", int(p))
}

// ParseProbeKind turns "rademacher" or "gaussian" into a ProbeKind.
func ParseProbeKind(s string) (ProbeKind, error) {
	for i, n := range probeNames {
		if s == n {
			return ProbeKind(i), nil
		}
	}
	return 0, fmt.Errorf("unknown probe kind %q (want rademacher or gaussian)", s)
}

// LikelihoodOptions configures LogLikelihood.
type LikelihoodOptions struct {
	// Solve configures the ODE solve. T0 = T1 = 0 means T0 = 1, T1 = 0:
	// backwards from the data at t = 1 to the prior at t = 0. The prior
	// density is applied at T1. OnSave, if set, receives the x part of the
	// augmented state.
	Solve Options
	// Divergence is Exact or Hutchinson.
	Divergence Divergence
	// Probes is Hutchinson's K (0 means 1): K probe buffers of rows x Dim,
	// drawn once per call and held fixed over the solve, as FFJORD does.
	Probes int
	// ProbeKind is Rademacher or Gaussian.
	ProbeKind ProbeKind
	// Seed selects the probes: probe k is Philox stream FirstProbe + k of
	// Seed (Backend.RandRademacher or RandNormal).
	Seed uint64
	// FirstProbe is the stream of the first probe: a caller that scores
	// its rows in several calls gives each call its own probes (calls that
	// shared them would repeat each probe's error row by row, and their
	// mean would not average it down).
	FirstProbe uint64
	// PriorStd is the prior's standard deviation: p0 = N(0, PriorStd^2 I).
	// 0 means 1.
	PriorStd float64
	// LogDetCorrection is added to every log-likelihood: the log-Jacobian of
	// the map from raw to model coordinates, e.g. -sum_j log s_j when the
	// data were standardized as (x - m) / s (docs/math.md §9.5).
	LogDetCorrection float64
}

// augSystem is the likelihood's augmented ODE over the flat state
// [x (rows*d) | delta (rows)]: dx/dt = v(t, x), d delta/dt = div v(t, x),
// so that the same stage ops update both.
type augSystem struct {
	b      Backend
	f      Field
	rows   int
	d      int
	div    func(t float64, x, v, ddelta gpu.Buffer)
	calls  int
	e, w   gpu.Buffer   // unit probe and VJP output (exact via VJPs; w also for Hutchinson)
	probes []gpu.Buffer // Hutchinson probes
}

func (s *augSystem) size() int       { return s.rows*s.d + s.rows }
func (s *augSystem) fieldCalls() int { return s.calls }

func (s *augSystem) eval(t float64, y, dy gpu.Buffer) {
	n := s.rows * s.d
	s.div(t, y.Slice(0, n), dy.Slice(0, n), dy.Slice(n, s.rows))
}

// divClosed uses the field's own divergence.
func (s *augSystem) divClosed(t float64, x, v, dd gpu.Buffer) {
	s.calls++
	s.f.(DivergenceField).Divergence(t, s.rows, x, v, dd)
}

// divUnitVJP is div = sum_j e_j^T (dv/dx) e_j over the d unit vectors.
func (s *augSystem) divUnitVJP(t float64, x, v, dd gpu.Buffer) {
	f := s.f.(VJPField)
	for j := 0; j < s.d; j++ {
		s.b.UnitColumn(s.rows, s.d, j, s.e)
		f.VJP(t, s.rows, x, s.e, v, s.w)
		s.calls++
		beta := float32(1)
		if j == 0 {
			beta = 0
		}
		s.b.RowDot(s.rows, s.d, 1, s.e, s.w, beta, dd)
	}
}

// divHutchinson is div ~ (1/K) sum_k e_k^T (dv/dx) e_k.
func (s *augSystem) divHutchinson(t float64, x, v, dd gpu.Buffer) {
	f := s.f.(VJPField)
	alpha := 1 / float32(len(s.probes))
	for k, e := range s.probes {
		f.VJP(t, s.rows, x, e, v, s.w)
		s.calls++
		beta := float32(1)
		if k == 0 {
			beta = 0
		}
		s.b.RowDot(s.rows, s.d, alpha, e, s.w, beta, dd)
	}
}

// LogLikelihood returns log p(x_r) for each of rows data points x (rows x
// f.Dim(), not modified) by the instantaneous change of variables
// (docs/math.md §9.1): it integrates the augmented state [x | delta],
// delta(T0) = 0, d delta/dt = div v(t, x(t)), from T0 to T1 (by default 1
// to 0) and returns, in float64 on the host,
//
//	log p(x_r) = log N(x_r(T1); 0, PriorStd^2 I) + delta_r(T1) + LogDetCorrection
//
// which for T0 = 1, T1 = 0 is log p0(x(0)) - integral_0^1 div v dt. With
// Dopri5, error control covers the whole augmented state (as FFJORD's
// torchdiffeq solve does).
func LogLikelihood(b Backend, f Field, x gpu.Buffer, rows int, o LikelihoodOptions) ([]float64, Stats, error) {
	d := f.Dim()
	if rows < 1 || d < 1 {
		return nil, Stats{}, fmt.Errorf("sampler: likelihood of %d rows of dimension %d", rows, d)
	}
	n := rows * d
	if x.Len() < n {
		return nil, Stats{}, fmt.Errorf("sampler: data buffer has %d elements, need rows*Dim = %d*%d", x.Len(), rows, d)
	}
	if o.Solve.T0 == 0 && o.Solve.T1 == 0 {
		o.Solve.T0, o.Solve.T1 = 1, 0
	}
	prior := o.PriorStd
	if prior == 0 {
		prior = 1
	}
	if !finite(prior) || prior < 0 {
		return nil, Stats{}, fmt.Errorf("sampler: PriorStd = %g: need a finite value > 0", o.PriorStd)
	}
	if !finite(o.LogDetCorrection) {
		return nil, Stats{}, fmt.Errorf("sampler: LogDetCorrection = %g: need a finite value", o.LogDetCorrection)
	}
	if _, err := o.Solve.normalized(); err != nil {
		return nil, Stats{}, err
	}

	s := &augSystem{b: b, f: f, rows: rows, d: d}
	var free []gpu.Buffer
	alloc := func(n int) gpu.Buffer {
		buf := b.Alloc(n)
		free = append(free, buf)
		return buf
	}
	defer func() {
		for _, buf := range free {
			b.Free(buf)
		}
	}()
	_, hasVJP := f.(VJPField)
	switch o.Divergence {
	case Exact:
		if _, ok := f.(DivergenceField); ok {
			s.div = s.divClosed
		} else if hasVJP {
			s.div = s.divUnitVJP
			s.e, s.w = alloc(n), alloc(n)
		} else {
			return nil, Stats{}, fmt.Errorf("sampler: exact divergence needs a field with Divergence or VJP")
		}
	case Hutchinson:
		if !hasVJP {
			return nil, Stats{}, fmt.Errorf("sampler: Hutchinson's estimator needs a field with VJP")
		}
		k := o.Probes
		if k == 0 {
			k = 1
		}
		if k < 0 {
			return nil, Stats{}, fmt.Errorf("sampler: Probes = %d: need >= 1 (0: 1)", o.Probes)
		}
		s.div = s.divHutchinson
		s.w = alloc(n)
		s.probes = make([]gpu.Buffer, k)
		for i := range s.probes {
			e := alloc(n)
			switch o.ProbeKind {
			case Rademacher:
				b.RandRademacher(e, o.Seed, o.FirstProbe+uint64(i))
			case Gaussian:
				b.RandNormal(e, o.Seed, o.FirstProbe+uint64(i), 1)
			default:
				return nil, Stats{}, fmt.Errorf("sampler: unknown probe kind %d", int(o.ProbeKind))
			}
			s.probes[i] = e
		}
	default:
		return nil, Stats{}, fmt.Errorf("sampler: unknown divergence kind %d", int(o.Divergence))
	}

	y := alloc(n + rows) // [x | delta], delta zeroed by Alloc
	b.Copy(y.Slice(0, n), x.Slice(0, n))
	var save func(float64, gpu.Buffer)
	if user := o.Solve.OnSave; user != nil {
		save = func(t float64, aug gpu.Buffer) { user(t, aug.Slice(0, n)) }
	}
	st, err := integrate(b, s, y, o.Solve, save)
	if err != nil {
		return nil, st, err
	}
	host := make([]float32, n+rows)
	b.Download(host, y)
	if err := b.Sync(); err != nil {
		return nil, st, err
	}
	logp := make([]float64, rows)
	// log N(z; 0, s^2 I) = -d/2 log(2 pi s^2) - |z|^2 / (2 s^2)
	norm := -0.5 * float64(d) * math.Log(2*math.Pi*prior*prior)
	inv := 1 / (2 * prior * prior)
	for r := range logp {
		sq := 0.0
		for _, v := range host[r*d : r*d+d] {
			sq += float64(v) * float64(v)
		}
		logp[r] = norm - sq*inv + float64(host[n+r]) + o.LogDetCorrection
	}
	return logp, st, nil
}

// MeanNLL returns the mean negative log-likelihood -mean(logp) (in the units
// of logp, nats from LogLikelihood) and its standard error
// std(logp) / sqrt(len(logp)) (0 for fewer than two values).
func MeanNLL(logp []float64) (mean, stdErr float64) {
	n := float64(len(logp))
	if n == 0 {
		return math.NaN(), math.NaN()
	}
	for _, v := range logp {
		mean += v
	}
	mean /= n
	if len(logp) > 1 {
		ss := 0.0
		for _, v := range logp {
			ss += (v - mean) * (v - mean)
		}
		stdErr = math.Sqrt(ss / (n - 1) / n)
	}
	return -mean, stdErr
}

// BitsPerDim converts a negative log-likelihood in nats of a d-dimensional
// point into bits per dimension: nll / (d ln 2). (For 8-bit images, add the
// dequantization convention's terms to nll first.)
func BitsPerDim(nllNats float64, d int) float64 {
	return nllNats / (float64(d) * math.Ln2)
}
