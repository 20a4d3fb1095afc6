package model_test

import (
	"testing"

	"github.com/fmgpu/fmgpu/gpu"
	"github.com/fmgpu/fmgpu/model"
)

// Classifier-free guidance: w = 0 is the null class's velocity, w = 1 the
// class's, and w = 2.5 is v_null + 2.5 (v_class - v_null), all against
// separate evaluations of the network with SetLabels.
func TestGuidedField(t *testing.T) {
	b := gpu.NewCPU(1)
	cfg := unetConfig(1, 4, 4, 4, []int{1, 2}, 1, 2, false, 3)
	u := randomUNet(t, b, cfg, 7)
	const rows = 5
	labels := []int{0, 1, 2, 1, 3} // the last is the null class
	_, x, _, _ := unetBatch(b, u, rows, 11)
	d := u.Dim()
	eval := func(lab []float32) []float32 {
		if lab == nil {
			u.SetLabels(nil)
		} else {
			u.SetLabels(upload(b, lab))
		}
		v := b.Alloc(rows * d)
		u.Velocity(0.3, rows, x, v)
		return hostData(t, v)
	}
	vNull := eval(nil)
	vCls := eval([]float32{0, 1, 2, 1, 3})
	for _, w := range []float64{0, 1, 2.5} {
		g := model.NewGuided(b, u, labels, w)
		v := b.Alloc(rows * d)
		g.Velocity(0.3, rows, x, v)
		got := hostData(t, v)
		g.Release()
		for i := range got {
			want := float64(vNull[i]) + w*(float64(vCls[i])-float64(vNull[i]))
			// float32 arithmetic of the combination: 1e-5 of the terms
			tol := 1e-6 + 1e-5*(abs64(float64(vNull[i]))+w*abs64(float64(vCls[i])-float64(vNull[i])))
			if d := abs64(float64(got[i]) - want); d > tol {
				t.Fatalf("w=%g element %d: %v, want %v", w, i, got[i], want)
			}
		}
	}
	// the null-labelled row is the same whatever w is
	if d := abs64(float64(vCls[4*d]) - float64(vNull[4*d])); d != 0 {
		t.Errorf("row with the null label differs from the null evaluation by %g", d)
	}
}

func abs64(v float64) float64 {
	if v < 0 {
		return -v
	}
	return v
}
