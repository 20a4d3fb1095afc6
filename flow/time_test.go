package flow_test

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/fmgpu/fmgpu/flow"
	"github.com/fmgpu/fmgpu/internal/numtest"
)

// *rand.Rand from math/rand/v2 is the generator the samplers take.
var _ flow.Rand = (*rand.Rand)(nil)

// nSamples is the sample size of the moment checks: standard errors of
// about 1e-3 (uniform mean: sqrt(1/12/N) = 6.5e-4).
const nSamples = 200000

// moments returns the sample mean and the (unbiased) sample variance.
func moments(x []float64) (mean, variance float64) {
	for _, v := range x {
		mean += v
	}
	mean /= float64(len(x))
	for _, v := range x {
		variance += (v - mean) * (v - mean)
	}
	return mean, variance / float64(len(x)-1)
}

// within5SE checks |got - want| <= 5 se and logs the distance in standard
// errors. Five standard errors: a false alarm has probability 6e-7 for a
// normal statistic (and the seed is fixed, so the test is deterministic).
func within5SE(t *testing.T, what string, got, want, se float64) {
	t.Helper()
	z := (got - want) / se
	t.Logf("%s = %.6g, want %.6g: %.2f standard errors (se %.3g)", what, got, want, z, se)
	if !(math.Abs(z) <= 5) {
		t.Errorf("%s = %.6g, want %.6g within 5 se = %.3g", what, got, want, 5*se)
	}
}

func TestSampleTimesUniform(t *testing.T) {
	s := flow.DefaultTimeSampler(flow.TimeUniform)
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, spec := range []flow.Spec{flow.DefaultSpec(flow.KindOT), flow.DefaultSpec(flow.KindVP)} {
		p := flow.MustNew(spec)
		lo, hi := p.TimeRange()
		ts := make([]float64, nSamples)
		s.SampleTimes(rand.New(rand.NewPCG(21, 0)), p, ts)
		for i, v := range ts {
			if !(v > 0 && v < 1 && v >= lo && v <= hi) {
				t.Fatalf("%v: t[%d] = %.17g outside (0, 1) or the clamp [%g, %g]", spec, i, v, lo, hi)
			}
		}
		mean, variance := moments(ts)
		// U(0, 1): mean 1/2, variance 1/12. The sample mean's standard
		// error is sqrt(1/12 / N); the sample variance's is sqrt((mu4 -
		// sigma^4) / N) with mu4 = 1/80 and sigma^4 = 1/144, i.e.
		// sqrt(1/180 / N).
		n := float64(nSamples)
		within5SE(t, spec.String()+" uniform mean", mean, 0.5, math.Sqrt(1.0/12/n))
		within5SE(t, spec.String()+" uniform variance", variance, 1.0/12, math.Sqrt(1.0/180/n))
	}
}

// TestSampleTimesLogitNormal: the logit of the samples is N(m, s^2). The
// mean's standard error is s / sqrt(N), the standard deviation's (normal
// data) s / sqrt(2 (N - 1)).
func TestSampleTimesLogitNormal(t *testing.T) {
	p := flow.MustNew(flow.DefaultSpec(flow.KindOT)) // range [0, 1]: no clamping
	for i, s := range []flow.TimeSampler{
		flow.DefaultTimeSampler(flow.TimeLogitNormal),
		{Kind: flow.TimeLogitNormal, Mean: 0.5, Std: 0.8},
	} {
		if err := s.Validate(); err != nil {
			t.Fatal(err)
		}
		if i == 0 && (s.Mean != 0 || s.Std != 1) {
			t.Errorf("default logit-normal sampler %+v, want m = 0, s = 1", s)
		}
		ts := make([]float64, nSamples)
		s.SampleTimes(rand.New(rand.NewPCG(22, uint64(i))), p, ts)
		logit := make([]float64, nSamples)
		for j, v := range ts {
			if !(v > 0 && v < 1) {
				t.Fatalf("%+v: t[%d] = %.17g outside (0, 1)", s, j, v)
			}
			logit[j] = math.Log(v) - math.Log1p(-v)
		}
		mean, variance := moments(logit)
		n := float64(nSamples)
		within5SE(t, "logit mean", mean, s.Mean, s.Std/math.Sqrt(n))
		within5SE(t, "logit std", math.Sqrt(variance), s.Std, s.Std/math.Sqrt(2*(n-1)))
	}
}

// TestSampleTimesShifted: with shift 3 the uniform sampler gives
// t' = 3u / (1 + 2u), whose mean is the integral of 3u/(1+2u) over (0, 1):
// (3/2)(1 - ln(3)/2) = 0.676041; the standard error comes from the sample
// variance.
func TestSampleTimesShifted(t *testing.T) {
	s := flow.TimeSampler{Kind: flow.TimeUniform, Shift: 3}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	ts := make([]float64, nSamples)
	s.SampleTimes(rand.New(rand.NewPCG(23, 0)), flow.MustNew(flow.DefaultSpec(flow.KindOT)), ts)
	mean, variance := moments(ts)
	within5SE(t, "shift-3 uniform mean", mean, 1.5*(1-math.Log(3)/2), math.Sqrt(variance/nSamples))
}

// TestSampleTimesClamp: draws beyond the path's time range are clamped to
// it. A huge shift pushes almost every uniform draw above linear-vp's
// hi = 1 - SingularEps (t' > hi once u > ~1e-2 for shift 1e7).
func TestSampleTimesClamp(t *testing.T) {
	s := flow.TimeSampler{Kind: flow.TimeUniform, Shift: 1e7}
	for _, spec := range []flow.Spec{flow.DefaultSpec(flow.KindLinearVP), flow.DefaultSpec(flow.KindVP), flow.DefaultSpec(flow.KindOT)} {
		p := flow.MustNew(spec)
		_, hi := p.TimeRange()
		ts := make([]float64, 10000)
		s.SampleTimes(rand.New(rand.NewPCG(24, 0)), p, ts)
		atHi := 0
		for i, v := range ts {
			if !(v > 0 && v <= hi) {
				t.Fatalf("%v: t[%d] = %.17g outside (0, %.17g]", spec, i, v, hi)
			}
			if v == hi {
				atHi++
			}
		}
		t.Logf("%v, shift 1e7: %d of %d times clamped to hi = %.17g", spec, atHi, len(ts), hi)
		if hi < 1 && atHi < 9000 {
			t.Errorf("%v: only %d of %d times at hi; expected most to be clamped", spec, atHi, len(ts))
		}
	}
}

// TestSampleTimesMatchesTransform: SampleTimes is Transform applied to the
// generator's draws (a uniform in (0, 1), then for logit-normal a normal),
// clamped: the definition the backends reproduce with their own draws.
func TestSampleTimesMatchesTransform(t *testing.T) {
	p := flow.MustNew(flow.DefaultSpec(flow.KindVP))
	for i, s := range []flow.TimeSampler{
		{Kind: flow.TimeUniform}, {Kind: flow.TimeUniform, Shift: 3},
		{Kind: flow.TimeLogitNormal, Mean: 0.5, Std: 0.8, Shift: 2},
	} {
		ts := make([]float64, 1000)
		s.SampleTimes(rand.New(rand.NewPCG(25, uint64(i))), p, ts)
		r := rand.New(rand.NewPCG(25, uint64(i)))
		for j := range ts {
			u := r.Float64()
			for u == 0 {
				u = r.Float64()
			}
			n := 0.0
			if s.Kind == flow.TimeLogitNormal {
				n = r.NormFloat64()
			}
			if want := flow.Clamp(p, s.Transform(u, n)); ts[j] != want {
				t.Fatalf("%+v: t[%d] = %.17g, want Clamp(Transform(%g, %g)) = %.17g", s, j, ts[j], u, n, want)
			}
		}
	}
}

// zeroFirst is a Rand whose Float64 returns 0 before a fixed value: the
// uniform kind must skip the 0 (its times are in (0, 1)).
type zeroFirst struct{ vals []float64 }

func (z *zeroFirst) Float64() float64 {
	v := z.vals[0]
	z.vals = z.vals[1:]
	return v
}
func (*zeroFirst) NormFloat64() float64 { return 0 }

func TestSampleTimesSkipsZero(t *testing.T) {
	ts := make([]float64, 1)
	flow.DefaultTimeSampler(flow.TimeUniform).SampleTimes(&zeroFirst{[]float64{0, 0, 0.25}}, flow.MustNew(flow.DefaultSpec(flow.KindOT)), ts)
	if ts[0] != 0.25 {
		t.Errorf("t = %g after draws 0, 0, 0.25; want 0.25", ts[0])
	}
}

func TestSampleTimesDeterministic(t *testing.T) {
	p := flow.MustNew(flow.DefaultSpec(flow.KindOT))
	for _, s := range []flow.TimeSampler{flow.DefaultTimeSampler(flow.TimeUniform), flow.DefaultTimeSampler(flow.TimeLogitNormal)} {
		a, b, c := make([]float64, 1000), make([]float64, 1000), make([]float64, 1000)
		s.SampleTimes(rand.New(rand.NewPCG(7, 8)), p, a)
		s.SampleTimes(rand.New(rand.NewPCG(7, 8)), p, b)
		s.SampleTimes(rand.New(rand.NewPCG(7, 9)), p, c)
		if !slices.Equal(a, b) {
			t.Errorf("%v: the same seed gave different times", s.Kind)
		}
		if slices.Equal(a, c) {
			t.Errorf("%v: different seeds gave the same times", s.Kind)
		}
	}
}

// TestTransform: the uniform kind passes u through, logit-normal is
// sigmoid(m + s n), and the shift applies after: with shift 3 the result is
// 3t / (1 + 2t) of the unshifted time.
func TestTransform(t *testing.T) {
	uni := flow.TimeSampler{Kind: flow.TimeUniform}
	uni3 := flow.TimeSampler{Kind: flow.TimeUniform, Shift: 3}
	ln := flow.TimeSampler{Kind: flow.TimeLogitNormal, Mean: 0.5, Std: 0.8}
	ln3 := flow.TimeSampler{Kind: flow.TimeLogitNormal, Mean: 0.5, Std: 0.8, Shift: 3}
	for i := 1; i < 1000; i++ {
		u := float64(i) / 1000
		n := 8*u - 4 // normal draws in [-4, 4]
		if got := uni.Transform(u, n); got != u {
			t.Fatalf("uniform Transform(%g, %g) = %g, want u", u, n, got)
		}
		// 1e-15: a few roundings of numbers in (0, 1)
		if got, want := uni3.Transform(u, n), 3*u/(1+2*u); !numtest.Close(got, want, 0, 1e-15) {
			t.Fatalf("uniform shift 3: Transform(%g) = %.17g, want 3u/(1+2u) = %.17g", u, got, want)
		}
		sig := 1 / (1 + math.Exp(-(0.5 + 0.8*n)))
		if got := ln.Transform(u, n); !numtest.Close(got, sig, 0, 1e-15) {
			t.Fatalf("logit-normal Transform(%g, %g) = %.17g, want sigmoid(m + s n) = %.17g", u, n, got, sig)
		}
		if got, want := ln3.Transform(u, n), 3*sig/(1+2*sig); !numtest.Close(got, want, 0, 1e-15) {
			t.Fatalf("logit-normal shift 3: Transform(%g, %g) = %.17g, want %.17g", u, n, got, want)
		}
	}
}

// TestShiftTime: shift 0 and 1 are the identity, every shift fixes 0 and
// 1 and is strictly increasing, a shift > 1 moves times toward 1 (data) and
// < 1 toward 0, and shift 1/s undoes shift s.
func TestShiftTime(t *testing.T) {
	const steps = 10000
	for _, sh := range []float64{0, 1} {
		for i := 0; i <= steps; i++ {
			tt := float64(i) / steps
			if got := flow.ShiftTime(tt, sh); got != tt {
				t.Fatalf("ShiftTime(%g, %g) = %g, want the identity", tt, sh, got)
			}
		}
	}
	for _, sh := range []float64{0.1, 0.5, 0.9, 1.5, 3, 10, 100} {
		if a, b := flow.ShiftTime(0, sh), flow.ShiftTime(1, sh); a != 0 || b != 1 {
			t.Errorf("shift %g: ends map to %g, %g, want 0, 1", sh, a, b)
		}
		prev := -1.0
		for i := 0; i <= steps; i++ {
			tt := float64(i) / steps
			got := flow.ShiftTime(tt, sh)
			if !(got > prev) {
				t.Fatalf("shift %g: not increasing at t=%g (%g after %g)", sh, tt, got, prev)
			}
			prev = got
			if 0 < tt && tt < 1 && (sh > 1 && !(got > tt) || sh < 1 && !(got < tt)) {
				t.Fatalf("shift %g: ShiftTime(%g) = %g on the wrong side of t", sh, tt, got)
			}
			// The shift compresses one end of [0, 1] by up to a factor
			// max(sh, 1/sh), so undoing it amplifies the roundings by that
			// much: 8 eps max(sh, 1/sh) relative (eps = 2^-53).
			rtol := 8 * 0x1p-53 * math.Max(sh, 1/sh)
			if back := flow.ShiftTime(got, 1/sh); !numtest.Close(back, tt, 0, rtol) {
				t.Fatalf("shift %g then %g: %g -> %.17g, want back", sh, 1/sh, tt, back)
			}
		}
	}
	// Times stay in [0, 1] to the last ulp, for t = 1 and just below it
	// (the form 1 + (shift - 1) t gave ShiftTime(1, 0.1) > 1).
	for _, sh := range []float64{0.01, 0.1, 0.3, 0.7, 0.9, 0.99, 1.01, 3, 1e7} {
		tt := 1.0
		for k := 0; k < 1000; k++ {
			if got := flow.ShiftTime(tt, sh); !(got >= 0 && got <= 1) || (tt == 1 && got != 1) {
				t.Fatalf("ShiftTime(%.17g, %g) = %.17g, outside [0, 1] (or 1 not fixed)", tt, sh, got)
			}
			tt = math.Nextafter(tt, 0)
		}
	}
	// SD3's form: shift 3 at t = 0.5 gives 1.5 / 2 = 0.75.
	if got := flow.ShiftTime(0.5, 3); got != 0.75 {
		t.Errorf("ShiftTime(0.5, 3) = %g, want 0.75", got)
	}
}

func TestTimeSamplerValidate(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	for _, s := range []flow.TimeSampler{
		flow.DefaultTimeSampler(flow.TimeUniform), flow.DefaultTimeSampler(flow.TimeLogitNormal),
		{Kind: flow.TimeUniform, Shift: 3}, {Kind: flow.TimeLogitNormal, Mean: -1, Std: 0.5, Shift: 0.5},
		{Kind: flow.TimeUniform, Mean: nan}, // the uniform kind ignores m and s
	} {
		if err := s.Validate(); err != nil {
			t.Errorf("Validate(%+v) = %v, want nil", s, err)
		}
	}
	for _, s := range []flow.TimeSampler{
		{Kind: flow.TimeLogitNormal, Std: 0},
		{Kind: flow.TimeLogitNormal, Std: -1},
		{Kind: flow.TimeLogitNormal, Std: nan},
		{Kind: flow.TimeLogitNormal, Std: inf},
		{Kind: flow.TimeLogitNormal, Mean: nan, Std: 1},
		{Kind: flow.TimeLogitNormal, Mean: inf, Std: 1},
		{Kind: flow.TimeUniform, Shift: -1},
		{Kind: flow.TimeUniform, Shift: nan},
		{Kind: flow.TimeUniform, Shift: inf},
		{Kind: 2},
		{Kind: -1},
	} {
		if err := s.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil, want an error", s)
		}
	}
}

func TestTimeKindNames(t *testing.T) {
	for _, w := range []struct {
		k    flow.TimeKind
		v    int32
		name string
	}{{flow.TimeUniform, 0, "uniform"}, {flow.TimeLogitNormal, 1, "logit-normal"}} {
		if int32(w.k) != w.v || w.k.String() != w.name {
			t.Errorf("%v: value %d, name %q; want %d %q (CUDA ABI and CLI)", w.k, int32(w.k), w.k.String(), w.v, w.name)
		}
		if k, err := flow.ParseTimeKind(w.name); err != nil || k != w.k {
			t.Errorf("ParseTimeKind(%q) = %v, %v", w.name, k, err)
		}
	}
	for _, s := range []string{"", "Uniform", "logit_normal", "logitnormal", "lognormal", "normal", " uniform"} {
		if k, err := flow.ParseTimeKind(s); err == nil {
			t.Errorf("ParseTimeKind(%q) = %v, want an error", s, k)
		} else if !strings.Contains(err.Error(), "logit-normal") {
			t.Errorf("ParseTimeKind(%q): error %q should name the valid kinds", s, err)
		}
	}
	if got := flow.TimeKind(7).String(); got != "TimeKind(7)" {
		t.Errorf("TimeKind(7).String() = %q", got)
	}
}

func TestTimeSamplerJSON(t *testing.T) {
	for _, s := range []flow.TimeSampler{
		flow.DefaultTimeSampler(flow.TimeUniform), flow.DefaultTimeSampler(flow.TimeLogitNormal),
		{Kind: flow.TimeLogitNormal, Mean: 0.5, Std: 0.8, Shift: 3},
		{Kind: flow.TimeUniform, Shift: 1.0 / 3},
	} {
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		var got flow.TimeSampler
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("Unmarshal(%s): %v", b, err)
		}
		if got != s {
			t.Errorf("JSON round trip %s gave %+v, want %+v", b, got, s)
		}
	}
	b, _ := json.Marshal(flow.TimeSampler{Kind: flow.TimeLogitNormal, Mean: 0.5, Std: 0.8, Shift: 3})
	if want := `{"kind":1,"mean":0.5,"std":0.8,"shift":3}`; string(b) != want {
		t.Errorf("JSON = %s, want %s", b, want)
	}
}
