package data

import (
	"fmt"
	"math"
)

// Standardization is the per-dimension affine map z = (x - Mean) / Std that
// the trainer applies to data before training, and that a checkpoint stores
// so that samples can be mapped back and likelihoods corrected
// (docs/math.md §9.5).
type Standardization struct {
	Mean []float64 `json:"mean"`
	Std  []float64 `json:"std"`
}

// Identity is the standardization that changes nothing, in d dimensions.
func Identity(d int) Standardization {
	s := Standardization{Mean: make([]float64, d), Std: make([]float64, d)}
	for i := range s.Std {
		s.Std[i] = 1
	}
	return s
}

// Fit computes each dimension's mean and population standard deviation
// (divided by N, the maximum-likelihood value) in float64, the variance by a
// second pass over the deviations, which stays accurate when the mean is
// large against the spread.
//
// A constant column gets Std 1, not 0: dividing by 0 would fill it with NaN,
// whereas with 1 it is merely centred to 0 and adds nothing to
// LogDetJacobian. Its density is degenerate either way; the model sees a
// constant it can learn. Constancy is tested exactly (min == max), since the
// computed variance of equal values need not round to 0.
//
// An empty data set gives Identity(ds.D).
func Fit(ds *Dataset) Standardization {
	d := ds.D
	if ds.N == 0 {
		return Identity(d)
	}
	s := Standardization{Mean: make([]float64, d), Std: make([]float64, d)}
	for i := range ds.N {
		for j, v := range ds.Row(i) {
			s.Mean[j] += float64(v)
		}
	}
	for j := range s.Mean {
		s.Mean[j] /= float64(ds.N)
	}
	constant := make([]bool, d)
	for j := range constant {
		constant[j] = true
	}
	first := ds.Row(0)
	for i := range ds.N {
		for j, v := range ds.Row(i) {
			dv := float64(v) - s.Mean[j]
			s.Std[j] += dv * dv
			if v != first[j] {
				constant[j] = false
			}
		}
	}
	for j := range s.Std {
		if constant[j] {
			s.Std[j] = 1
		} else {
			s.Std[j] = math.Sqrt(s.Std[j] / float64(ds.N))
		}
	}
	return s
}

// Dim is the number of dimensions.
func (s Standardization) Dim() int { return len(s.Mean) }

// Validate checks what a deserialized Standardization must satisfy: equal
// lengths, finite means, finite positive deviations.
func (s Standardization) Validate() error {
	if len(s.Mean) != len(s.Std) {
		return fmt.Errorf("standardization: %d means but %d deviations", len(s.Mean), len(s.Std))
	}
	for j := range s.Mean {
		if m := s.Mean[j]; math.IsNaN(m) || math.IsInf(m, 0) {
			return fmt.Errorf("standardization: mean[%d] = %v is not finite", j, m)
		}
		if v := s.Std[j]; !(v > 0) || math.IsInf(v, 0) {
			return fmt.Errorf("standardization: std[%d] = %v is not finite and positive", j, v)
		}
	}
	return nil
}

// Apply maps rows of x (len a multiple of Dim) in place to (x - Mean) / Std,
// computed in float64. It panics if len(x) is not a multiple of Dim.
func (s Standardization) Apply(x []float32) {
	d := s.check(x, "Apply")
	for i := range x {
		j := i % d
		x[i] = float32((float64(x[i]) - s.Mean[j]) / s.Std[j])
	}
}

// Invert maps rows of x in place back to x * Std + Mean, undoing Apply up
// to float32 rounding. It panics if len(x) is not a multiple of Dim.
func (s Standardization) Invert(x []float32) {
	d := s.check(x, "Invert")
	for i := range x {
		j := i % d
		x[i] = float32(float64(x[i])*s.Std[j] + s.Mean[j])
	}
}

func (s Standardization) check(x []float32, op string) int {
	d := len(s.Mean)
	if len(s.Std) != d || d == 0 && len(x) > 0 || d > 0 && len(x)%d != 0 {
		panic(fmt.Sprintf("data.Standardization.%s: len(x) = %d with %d means and %d deviations", op, len(x), d, len(s.Std)))
	}
	return d
}

// LogDetJacobian is log |det dz/dx| = -sum_j log Std_j, the term to add to
// a log-density of standardized data to get that of the raw data:
// log p_raw(x) = log p_z((x - Mean) / Std) - sum_j log Std_j. Forgetting it
// is the classic bug of reporting likelihoods in the wrong units.
func (s Standardization) LogDetJacobian() float64 {
	var sum float64
	for _, v := range s.Std {
		sum += math.Log(v)
	}
	return -sum
}
