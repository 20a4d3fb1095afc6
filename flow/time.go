package flow

import (
	"fmt"
	"math"
)

// TimeKind names a distribution of training times. Its value is part of the
// CUDA kernels' ABI.
type TimeKind int32

const (
	TimeUniform     TimeKind = 0 // t ~ U(0, 1)
	TimeLogitNormal TimeKind = 1 // t = sigmoid(m + s n), n ~ N(0, 1) (Esser et al. 2024)
)

var timeKindNames = []string{"uniform", "logit-normal"}

func (k TimeKind) String() string {
	if k >= 0 && int(k) < len(timeKindNames) {
		return timeKindNames[k]
	}
	return fmt.Sprintf("TimeKind(%d)", int32(k))
}

// ParseTimeKind turns a CLI name into a TimeKind.
func ParseTimeKind(s string) (TimeKind, error) {
	for i, n := range timeKindNames {
		if s == n {
			return TimeKind(i), nil
		}
	}
	return 0, fmt.Errorf("unknown time sampling %q (want uniform or logit-normal)", s)
}

// TimeSampler is the distribution training times are drawn from
// (docs/math.md §3), as a plain value a checkpoint records. Shift, when not 0 or 1, applies the SD3 time
// shift t' = shift t / (1 + (shift - 1) t) in the t = 1-is-data convention;
// sampling uses the same shift on its time grid (ShiftTime).
type TimeSampler struct {
	Kind  TimeKind `json:"kind"`
	Mean  float64  `json:"mean"`  // logit-normal m
	Std   float64  `json:"std"`   // logit-normal s
	Shift float64  `json:"shift"` // 0 or 1: none
}

// DefaultTimeSampler is t ~ U(0, 1); logit-normal defaults are m = 0, s = 1.
func DefaultTimeSampler(k TimeKind) TimeSampler {
	if k == TimeLogitNormal {
		return TimeSampler{Kind: k, Mean: 0, Std: 1}
	}
	return TimeSampler{Kind: k}
}

// String renders a sampler with the parameters its kind uses, for logs:
// "uniform", "logit-normal(mean=0, std=1)", "uniform, shift 3".
func (s TimeSampler) String() string {
	r := s.Kind.String()
	if s.Kind == TimeLogitNormal {
		r = fmt.Sprintf("%s(mean=%g, std=%g)", r, s.Mean, s.Std)
	}
	if s.Shift != 0 && s.Shift != 1 {
		r += fmt.Sprintf(", shift %g", s.Shift)
	}
	return r
}

// Validate checks the sampler's parameters.
func (s TimeSampler) Validate() error {
	switch s.Kind {
	case TimeUniform:
	case TimeLogitNormal:
		if !(s.Std > 0) || math.IsInf(s.Std, 0) || math.IsNaN(s.Mean) || math.IsInf(s.Mean, 0) {
			return fmt.Errorf("logit-normal time sampling: need finite mean and std > 0, got %g, %g", s.Mean, s.Std)
		}
	default:
		return fmt.Errorf("unknown time sampling kind %d", int32(s.Kind))
	}
	if s.Shift < 0 || math.IsNaN(s.Shift) || math.IsInf(s.Shift, 0) {
		return fmt.Errorf("time shift %g: need a finite shift >= 0 (0 or 1 means none)", s.Shift)
	}
	return nil
}

// Transform maps one uniform draw u in (0, 1) and one standard normal draw n
// to a training time: the kind picks which it uses (uniform: u; logit-normal:
// n), then the shift applies. The backends call it with their own counter-
// based draws so that CPU and CUDA produce the same times.
func (s TimeSampler) Transform(u, n float64) float64 {
	t := u
	if s.Kind == TimeLogitNormal {
		t = 1 / (1 + math.Exp(-(s.Mean + s.Std*n)))
	}
	return ShiftTime(t, s.Shift)
}

// ShiftTime is t' = shift t / (1 + (shift - 1) t); a shift of 0 or 1 is the
// identity. A shift > 1 moves times toward t = 1 (data).
//
// It is evaluated as shift t / (shift t + (1 - t)), the same fraction: the
// denominator is never below the numerator, so t' stays in [0, 1] for t in
// [0, 1] and t = 1 maps to exactly 1. (The direct form rounds shift - 1 and
// gives ShiftTime(1, 0.1) = 1.0000000000000002.) Backends that reproduce it
// should use the same form.
func ShiftTime(t, shift float64) float64 {
	if shift == 0 || shift == 1 {
		return t
	}
	a := shift * t
	return a / (a + (1 - t))
}

// Rand is the generator the host-side samplers take: math/rand/v2's *Rand
// satisfies it. It is always passed in, never global, so runs are seeded.
type Rand interface {
	Float64() float64
	NormFloat64() float64
}

// SampleTimes fills t with draws from s, clamped to the path's time range.
func (s TimeSampler) SampleTimes(r Rand, p Path, t []float64) {
	for i := range t {
		u := r.Float64()
		for u == 0 { // Float64 is in [0, 1); the uniform kind wants (0, 1)
			u = r.Float64()
		}
		var n float64
		if s.Kind == TimeLogitNormal {
			n = r.NormFloat64()
		}
		t[i] = Clamp(p, s.Transform(u, n))
	}
}
