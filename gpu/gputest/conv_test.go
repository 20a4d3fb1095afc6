package gputest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/fmgpu/fmgpu/gpu"
)

// The convolution references' adjoints (refConvData, refConvFilter)
// against central differences of sum(dy * refConv) in float64, on every
// conformance case: the loss is linear in x, w and the bias, so the
// difference with h = 0.5 is exact up to float64 rounding, which 1e-10 of
// the loss's terms' magnitudes covers; a term sent to the wrong element,
// or lost, is off by one |dy w| or |dy x|, far more. The differences
// take a few coordinates per case; the adjoint identities <dx, x> = <dw, w>
// = <dy, y - bias> and <dbias, b> = <dy, bias> take all of them at once
// (within 1e-12 of the terms' magnitudes: float64 sums of those terms).
func TestConvReferencesAgainstDifferences(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 29))
	for _, c := range convCases {
		s := c.s
		nx, nw, ny := convDims(s)
		if nx == 0 {
			continue
		}
		x, w := f64(normals(rng, nx, 1)), f64(normals(rng, nw, 1/math.Sqrt(float64(s.InC*s.K*s.K))))
		b, dy := f64(normals(rng, s.OutC, 1)), f64(normals(rng, ny, 1))
		dx, _ := refConvData(s, dy, w)
		dw, _, db, _ := refConvFilter(s, x, dy)
		_, lscale := convLoss(s, x, w, b, dy)
		y, yscale := refConv(s, x, w, nil)
		dot := func(a, b []float64) (d float64) {
			for i := range a {
				d += a[i] * b[i]
			}
			return d
		}
		var conv, convScale, bias, biasScale float64 // <dy, y>, <dy, bias>
		hw := s.OutH() * s.OutW()
		for i := range y {
			conv += dy[i] * y[i]
			convScale += math.Abs(dy[i]) * yscale[i]
			bias += dy[i] * b[i/hw%s.OutC]
			biasScale += math.Abs(dy[i] * b[i/hw%s.OutC])
		}
		for _, id := range []struct {
			what        string
			got, want   float64
			scaleOfTerm float64
		}{{"<dx, x>", dot(dx, x), conv, convScale}, {"<dw, w>", dot(dw, w), conv, convScale}, {"<dbias, bias>", dot(db, b), bias, biasScale}} {
			if math.Abs(id.got-id.want) > 1e-12*id.scaleOfTerm || math.IsNaN(id.got) {
				t.Errorf("%+v: %s = %.17g, <dy, the forward's terms> = %.17g", s, id.what, id.got, id.want)
			}
		}
		check := func(what string, grad, v []float64, loss func([]float64) float64) {
			t.Helper()
			p := append([]float64(nil), v...)
			for _, i := range fdIndices(rng, len(v), fdCount(s)) {
				p[i] = v[i] + 0.5
				fp := loss(p)
				p[i] = v[i] - 0.5
				fm := loss(p)
				p[i] = v[i]
				if fd := fp - fm; math.Abs(grad[i]-fd) > 1e-10*lscale || math.IsNaN(grad[i]) {
					t.Errorf("%s: %s[%d] = %.17g, central difference %.17g (loss terms' scale %g)", fmt.Sprintf("%+v", s), what, i, grad[i], fd, lscale)
				}
			}
		}
		check("dx", dx, x, func(v []float64) float64 { l, _ := convLoss(s, v, w, b, dy); return l })
		check("dw", dw, w, func(v []float64) float64 { l, _ := convLoss(s, x, v, b, dy); return l })
		check("dbias", db, b, func(v []float64) float64 { l, _ := convLoss(s, x, w, v, dy); return l })
	}
}

// convLoss is sum(dy * Conv2D(x, w, bias)) in float64, and the sum of its
// terms' magnitudes.
func convLoss(s gpu.ConvShape, x, w, bias, dy []float64) (loss, scale float64) {
	y, sc := refConv(s, x, w, bias)
	for i, v := range y {
		loss += dy[i] * v
		scale += math.Abs(dy[i]) * sc[i]
	}
	return loss, scale
}

// fdCount is how many coordinates a finite-difference check of a
// convolution takes: about 2e7 multiply-adds of reference per case (two
// reference convolutions per coordinate), at least 2, at most 12.
func fdCount(s gpu.ConvShape) int {
	_, _, ny := convDims(s)
	cost := 2 * max(1, ny*s.InC*s.K*s.K)
	return max(2, min(12, 20000000/cost))
}
