package gputest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/fmgpu/fmgpu/flow"
	"github.com/fmgpu/fmgpu/gpu"
)

// The image ops (gpu.ImageOps) against float64 references written here in
// plain loops: the convolution by its defining sum (no im2col), its
// gradients by scattering the same sum's terms back (the adjoint), and
// every gradient also against central differences of sum(dy * forward)
// in float64 (the references' own consistency: a backend agreeing with a
// wrong adjoint would otherwise pass). Images are NCHW.

// convCases cover batch 0, 1, 3 and long batches of small images; 1, 2, 3,
// 5, 8 and up to 70 channels (off any tile size); odd and even sizes from
// 1 x 1 to 28 x 28; K 1, 2, 3, 5; stride 1, 2 and 3; pad 0, 1, 2 (pad >=
// K: output rows no tap reaches, pure bias); with and without bias.
var convCases = []struct {
	s    gpu.ConvShape
	bias bool
}{
	{gpu.ConvShape{Batch: 1, InC: 1, H: 1, W: 1, OutC: 1, K: 1, Stride: 1, Pad: 0}, true},
	{gpu.ConvShape{Batch: 3, InC: 3, H: 7, W: 7, OutC: 5, K: 3, Stride: 1, Pad: 1}, true},
	{gpu.ConvShape{Batch: 1, InC: 5, H: 28, W: 28, OutC: 8, K: 3, Stride: 2, Pad: 1}, false},
	{gpu.ConvShape{Batch: 3, InC: 8, H: 28, W: 28, OutC: 3, K: 3, Stride: 1, Pad: 1}, true},
	{gpu.ConvShape{Batch: 3, InC: 8, H: 7, W: 6, OutC: 3, K: 3, Stride: 2, Pad: 0}, true},
	{gpu.ConvShape{Batch: 2, InC: 8, H: 9, W: 9, OutC: 16, K: 1, Stride: 1, Pad: 0}, true},
	{gpu.ConvShape{Batch: 1, InC: 3, H: 1, W: 1, OutC: 4, K: 3, Stride: 1, Pad: 1}, true},
	{gpu.ConvShape{Batch: 3, InC: 1, H: 5, W: 8, OutC: 3, K: 3, Stride: 1, Pad: 0}, false},
	{gpu.ConvShape{Batch: 1, InC: 4, H: 10, W: 13, OutC: 6, K: 1, Stride: 2, Pad: 0}, true},
	{gpu.ConvShape{Batch: 1, InC: 2, H: 6, W: 6, OutC: 3, K: 1, Stride: 1, Pad: 1}, true},
	{gpu.ConvShape{Batch: 2, InC: 3, H: 8, W: 8, OutC: 5, K: 2, Stride: 2, Pad: 0}, true},
	{gpu.ConvShape{Batch: 37, InC: 2, H: 3, W: 3, OutC: 3, K: 3, Stride: 1, Pad: 1}, true},
	{gpu.ConvShape{Batch: 13, InC: 3, H: 7, W: 7, OutC: 4, K: 3, Stride: 1, Pad: 1}, true},
	{gpu.ConvShape{Batch: 11, InC: 2, H: 14, W: 14, OutC: 3, K: 3, Stride: 2, Pad: 1}, false},
	{gpu.ConvShape{Batch: 1, InC: 2, H: 8, W: 8, OutC: 3, K: 5, Stride: 1, Pad: 2}, false},
	{gpu.ConvShape{Batch: 2, InC: 4, H: 8, W: 7, OutC: 4, K: 3, Stride: 2, Pad: 1}, true},
	{gpu.ConvShape{Batch: 1, InC: 3, H: 2, W: 1, OutC: 2, K: 3, Stride: 1, Pad: 1}, true},
	{gpu.ConvShape{Batch: 1, InC: 2, H: 3, W: 3, OutC: 2, K: 3, Stride: 1, Pad: 2}, true},
	{gpu.ConvShape{Batch: 5, InC: 8, H: 4, W: 4, OutC: 8, K: 1, Stride: 1, Pad: 0}, false},
	{gpu.ConvShape{Batch: 2, InC: 32, H: 14, W: 14, OutC: 16, K: 3, Stride: 1, Pad: 1}, true},
	{gpu.ConvShape{Batch: 2, InC: 67, H: 7, W: 7, OutC: 70, K: 3, Stride: 1, Pad: 1}, true},
	{gpu.ConvShape{Batch: 1, InC: 33, H: 14, W: 14, OutC: 65, K: 3, Stride: 2, Pad: 1}, false},
	{gpu.ConvShape{Batch: 2, InC: 8, H: 6, W: 5, OutC: 3, K: 3, Stride: 1, Pad: 0}, true},
	{gpu.ConvShape{Batch: 1, InC: 9, H: 4, W: 4, OutC: 2, K: 3, Stride: 1, Pad: 2}, false},
	{gpu.ConvShape{Batch: 1, InC: 8, H: 9, W: 7, OutC: 3, K: 5, Stride: 1, Pad: 2}, true},
	{gpu.ConvShape{Batch: 1, InC: 2, H: 5, W: 5, OutC: 2, K: 1, Stride: 2, Pad: 1}, true},
	{gpu.ConvShape{Batch: 1, InC: 3, H: 10, W: 11, OutC: 2, K: 3, Stride: 3, Pad: 1}, true},
	{gpu.ConvShape{Batch: 0, InC: 3, H: 5, W: 5, OutC: 2, K: 3, Stride: 1, Pad: 1}, true},
}

// convDims are the element counts of x, w and y.
func convDims(s gpu.ConvShape) (nx, nw, ny int) {
	return s.Batch * s.InC * s.H * s.W, s.OutC * s.InC * s.K * s.K, s.Batch * s.OutC * s.OutH() * s.OutW()
}

// convTerms calls f(xi, wi, yi) for every term w[wi] x[xi] of the sum
// defining y[yi]: y[b,o,i,j] = sum_{c,u,v} w[o,c,u,v] x[b,c,i S+u-P,
// j S+v-P] over the taps inside the image. The forward reference and its
// adjoints are this one loop nest read in different directions.
func convTerms(s gpu.ConvShape, f func(xi, wi, yi int)) {
	oh, ow := s.OutH(), s.OutW()
	for b := 0; b < s.Batch; b++ {
		for o := 0; o < s.OutC; o++ {
			for i := 0; i < oh; i++ {
				for j := 0; j < ow; j++ {
					yi := ((b*s.OutC+o)*oh+i)*ow + j
					for c := 0; c < s.InC; c++ {
						for u := 0; u < s.K; u++ {
							h := i*s.Stride + u - s.Pad
							if h < 0 || h >= s.H {
								continue
							}
							for v := 0; v < s.K; v++ {
								w := j*s.Stride + v - s.Pad
								if w < 0 || w >= s.W {
									continue
								}
								f(((b*s.InC+c)*s.H+h)*s.W+w, ((o*s.InC+c)*s.K+u)*s.K+v, yi)
							}
						}
					}
				}
			}
		}
	}
}

// refConv is Conv2D in float64 with each output's error scale |bias| +
// sum |w x|.
func refConv(s gpu.ConvShape, x, w, bias []float64) (y, scale []float64) {
	_, _, ny := convDims(s)
	y, scale = make([]float64, ny), make([]float64, ny)
	hw := s.OutH() * s.OutW()
	if bias != nil {
		for i := range y {
			o := i / hw % s.OutC
			y[i], scale[i] = bias[o], math.Abs(bias[o])
		}
	}
	convTerms(s, func(xi, wi, yi int) {
		p := w[wi] * x[xi]
		y[yi] += p
		scale[yi] += math.Abs(p)
	})
	return y, scale
}

// refConvData is the gradient of sum(dy y) with respect to x: every term
// w x of y[yi] sends dy[yi] w to x's element; scale sums |dy w|.
func refConvData(s gpu.ConvShape, dy, w []float64) (dx, scale []float64) {
	nx, _, _ := convDims(s)
	dx, scale = make([]float64, nx), make([]float64, nx)
	convTerms(s, func(xi, wi, yi int) {
		p := dy[yi] * w[wi]
		dx[xi] += p
		scale[xi] += math.Abs(p)
	})
	return dx, scale
}

// refConvFilter is the gradient of sum(dy y) with respect to w and bias.
func refConvFilter(s gpu.ConvShape, x, dy []float64) (dw, scaleW, db, scaleB []float64) {
	_, nw, ny := convDims(s)
	dw, scaleW = make([]float64, nw), make([]float64, nw)
	db, scaleB = make([]float64, s.OutC), make([]float64, s.OutC)
	convTerms(s, func(xi, wi, yi int) {
		p := dy[yi] * x[xi]
		dw[wi] += p
		scaleW[wi] += math.Abs(p)
	})
	hw := s.OutH() * s.OutW()
	for i := 0; i < ny; i++ {
		db[i/hw%s.OutC] += dy[i]
		scaleB[i/hw%s.OutC] += math.Abs(dy[i])
	}
	return dw, scaleW, db, scaleB
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

// fdIndices picks up to n distinct indices below size (all of them when
// size <= n).
func fdIndices(rng *rand.Rand, size, n int) []int {
	if size <= n {
		idx := make([]int, size)
		for i := range idx {
			idx[i] = i
		}
		return idx
	}
	return rng.Perm(size)[:n]
}

// checkFD checks got[i] (a backend's gradient) at the indices idx against
// the central difference of f in the coordinate i of v, (f(v + h e_i) -
// f(v - h e_i)) / 2h, within tol(i, fd).
func checkFD(e *env, name string, got []float32, v []float64, idx []int, h float64, f func([]float64) float64, tol func(i int, fd float64) float64) {
	e.t.Helper()
	p := append([]float64(nil), v...)
	want, tl, gotI := make([]float64, len(idx)), make([]float64, len(idx)), make([]float32, len(idx))
	for k, i := range idx {
		p[i] = v[i] + h
		fp := f(p)
		p[i] = v[i] - h
		fm := f(p)
		p[i] = v[i]
		want[k] = (fp - fm) / (2 * h)
		tl[k] = tol(i, want[k])
		gotI[k] = got[i]
	}
	checkTol(e.t, fmt.Sprintf("%s at indices %v against central differences", name, idx), gotI, want, tl, 0)
}

// fdCount is how many coordinates a finite-difference check of a
// convolution takes: about 2e7 multiply-adds of reference per case (two
// reference convolutions per coordinate), at least 2, at most 12.
func fdCount(s gpu.ConvShape) int {
	_, _, ny := convDims(s)
	cost := 2 * max(1, ny*s.InC*s.K*s.K)
	return max(2, min(12, 20000000/cost))
}

// convInputs draws x ~ N(0, 1), w ~ N(0, 1/(InC K K)) and bias ~ N(0, 1)
// (nil without bias).
func convInputs(e *env, s gpu.ConvShape, bias bool) (x, w, b []float32) {
	nx, nw, _ := convDims(s)
	x = normals(e.rng, nx, 1)
	w = normals(e.rng, nw, 1/math.Sqrt(float64(s.InC*s.K*s.K)))
	if bias {
		b = normals(e.rng, s.OutC, 1)
	}
	return x, w, b
}

// Conv2D: y against the direct sum, every output element overwritten (y
// starts as NaN), nothing written outside y nor into the inputs.
func testConv2D(e *env) {
	for ci, c := range convCases {
		s := c.s
		x, w, b := convInputs(e, s, c.bias)
		_, _, ny := convDims(s)
		px, pw := e.viewOf(x, ci%3, 2), e.viewOf(w, 1+ci%2, 1)
		py := e.viewOf(filled(ny, sentinel), 1+ci%4, 3)
		var pb padded
		var bias gpu.Buffer
		if c.bias {
			pb = e.viewOf(b, 2, 1)
			bias = pb.view
		}
		e.be.Conv2D(s, px.view, pw.view, bias, py.view)
		want, scale := refConv(s, f64(x), f64(w), f64or(b))
		tol := make([]float64, ny)
		for i := range tol {
			// a sum of InC K K products plus the bias: 1e-4 of sum |w x| + |b|
			tol[i] = rtolRed*scale[i] + tiny
		}
		name := fmt.Sprintf("Conv2D(%+v, bias=%v)", s, c.bias)
		checkTol(e.t, name+": y", e.download(py.view), want, tol, s.OutW())
		e.checkOutside(name+": y", py)
		checkBits(e.t, name+": x", e.download(px.parent), px.host, nil)
		checkBits(e.t, name+": w", e.download(pw.parent), pw.host, nil)
		if c.bias {
			checkBits(e.t, name+": bias", e.download(pb.parent), pb.host, nil)
		}
	}
}

// f64or is f64, nil for nil.
func f64or(v []float32) []float64 {
	if v == nil {
		return nil
	}
	return f64(v)
}

// Conv2DBackwardData: dx against the adjoint sum (dx starts as NaN: it is
// overwritten, not accumulated into), and at a few coordinates against
// central differences of sum(dy * Conv2D) in x. The loss is linear in x,
// so the difference with h = 0.5 is exact up to float64 rounding (1e-10
// of the loss's terms covers it).
func testConv2DBackwardData(e *env) {
	for ci, c := range convCases {
		s := c.s
		x, w, b := convInputs(e, s, c.bias)
		nx, _, ny := convDims(s)
		dy := normals(e.rng, ny, 1)
		pdy, pw := e.viewOf(dy, 1+ci%3, 2), e.viewOf(w, ci%2, 3)
		pdx := e.viewOf(filled(nx, sentinel), 2+ci%3, 1)
		e.be.Conv2DBackwardData(s, pdy.view, pw.view, pdx.view)
		want, scale := refConvData(s, f64(dy), f64(w))
		tol := make([]float64, nx)
		for i := range tol {
			// a sum of products dy w: 1e-4 of sum |dy w|
			tol[i] = rtolRed*scale[i] + tiny
		}
		name := fmt.Sprintf("Conv2DBackwardData(%+v)", s)
		got := e.download(pdx.view)
		checkTol(e.t, name+": dx", got, want, tol, s.W)
		e.checkOutside(name+": dx", pdx)
		checkBits(e.t, name+": dy", e.download(pdy.parent), pdy.host, nil)
		checkBits(e.t, name+": w", e.download(pw.parent), pw.host, nil)
		if nx == 0 {
			continue
		}
		w64, b64, dy64 := f64(w), f64or(b), f64(dy)
		_, lscale := convLoss(s, f64(x), w64, b64, dy64)
		loss := func(xv []float64) float64 { l, _ := convLoss(s, xv, w64, b64, dy64); return l }
		checkFD(e, name+": dx", got, f64(x), fdIndices(e.rng, nx, fdCount(s)), 0.5, loss,
			func(i int, _ float64) float64 { return tol[i] + 1e-10*lscale })
	}
}

// Conv2DBackwardFilter: dw and dbias against the adjoint sums (both start
// as NaN; dbias nil in some cases), and against central differences of
// sum(dy * Conv2D) in w and bias (linear: exact up to rounding).
func testConv2DBackwardFilter(e *env) {
	for ci, c := range convCases {
		s := c.s
		x, w, b := convInputs(e, s, true)
		nx, nw, ny := convDims(s)
		dy := normals(e.rng, ny, 1)
		px, pdy := e.viewOf(x, ci%3, 1), e.viewOf(dy, 1+ci%2, 2)
		pdw := e.viewOf(filled(nw, sentinel), 1+ci%3, 2)
		var pdb padded
		var dbias gpu.Buffer
		if c.bias {
			pdb = e.viewOf(filled(s.OutC, sentinel), 3, 1)
			dbias = pdb.view
		}
		e.be.Conv2DBackwardFilter(s, px.view, pdy.view, pdw.view, dbias)
		wantW, scaleW, wantB, scaleB := refConvFilter(s, f64(x), f64(dy))
		tolW, tolB := make([]float64, nw), make([]float64, s.OutC)
		for i := range tolW {
			// sums over the batch and positions of dy x: 1e-4 of sum |dy x|
			tolW[i] = rtolRed*scaleW[i] + tiny
		}
		for i := range tolB {
			// sums of dy: 1e-4 of sum |dy|
			tolB[i] = rtolRed*scaleB[i] + tiny
		}
		name := fmt.Sprintf("Conv2DBackwardFilter(%+v, dbias=%v)", s, c.bias)
		gotW := e.download(pdw.view)
		checkTol(e.t, name+": dw", gotW, wantW, tolW, s.K)
		e.checkOutside(name+": dw", pdw)
		var gotB []float32
		if c.bias {
			gotB = e.download(pdb.view)
			checkTol(e.t, name+": dbias", gotB, wantB, tolB, 0)
			e.checkOutside(name+": dbias", pdb)
		}
		checkBits(e.t, name+": x", e.download(px.parent), px.host, nil)
		checkBits(e.t, name+": dy", e.download(pdy.parent), pdy.host, nil)
		if nx == 0 {
			continue
		}
		x64, w64, b64, dy64 := f64(x), f64(w), f64(b), f64(dy)
		_, lscale := convLoss(s, x64, w64, b64, dy64)
		lossW := func(wv []float64) float64 { l, _ := convLoss(s, x64, wv, b64, dy64); return l }
		checkFD(e, name+": dw", gotW, w64, fdIndices(e.rng, nw, fdCount(s)), 0.5, lossW,
			func(i int, _ float64) float64 { return tolW[i] + 1e-10*lscale })
		if c.bias {
			lossB := func(bv []float64) float64 { l, _ := convLoss(s, x64, w64, bv, dy64); return l }
			checkFD(e, name+": dbias", gotB, b64, fdIndices(e.rng, s.OutC, fdCount(s)), 0.5, lossB,
				func(i int, _ float64) float64 { return tolB[i] + 1e-10*lscale })
		}
	}
}

// groupNormCases: one element; groups of one channel and of one element
// (variance 0: y = beta); 1 to 8 channels per group; MNIST feature-map
// sizes; eps from 1e-5 to 0.1; batch 0.
var groupNormCases = []gpu.GroupNormShape{
	{Batch: 1, C: 1, HW: 1, Groups: 1, Eps: 1e-5},
	{Batch: 3, C: 4, HW: 49, Groups: 2, Eps: 1e-5},
	{Batch: 2, C: 8, HW: 784, Groups: 4, Eps: 1e-5},
	{Batch: 1, C: 6, HW: 9, Groups: 3, Eps: 1e-3},
	{Batch: 3, C: 5, HW: 7, Groups: 1, Eps: 1e-5},
	{Batch: 2, C: 8, HW: 1, Groups: 8, Eps: 1e-5},
	{Batch: 1, C: 32, HW: 196, Groups: 8, Eps: 1e-5},
	{Batch: 2, C: 3, HW: 25, Groups: 3, Eps: 0.1},
	{Batch: 3, C: 8, HW: 2, Groups: 1, Eps: 1e-5},
	{Batch: 65, C: 4, HW: 9, Groups: 2, Eps: 1e-5},
	{Batch: 1, C: 96, HW: 49, Groups: 32, Eps: 1e-5},
	{Batch: 0, C: 4, HW: 9, Groups: 2, Eps: 1e-5},
}

// groupNormInputs draws x with a per-(image, channel) offset in [-2, 2]
// and scale in [0.5, 2] (a group mixes channels of different means: the
// variance is not the channels' own), gamma ~ N(1, 0.5^2), beta ~ N(0,
// 0.5^2).
func groupNormInputs(e *env, s gpu.GroupNormShape) (x, gamma, beta []float32) {
	x = make([]float32, s.Batch*s.C*s.HW)
	for r := 0; r < s.Batch*s.C; r++ {
		off, sc := 4*e.rng.Float64()-2, 0.5+1.5*e.rng.Float64()
		for p := 0; p < s.HW; p++ {
			x[r*s.HW+p] = float32(off + sc*e.rng.NormFloat64())
		}
	}
	gamma = normals(e.rng, s.C, 0.5)
	for i := range gamma {
		gamma[i]++
	}
	return x, gamma, normals(e.rng, s.C, 0.5)
}

// groupStats is the reference mean and variance of each (image, group),
// in float64 (two passes), with the error scales of a float32-accumulated
// evaluation: mean to 1e-4 of mean |x|, variance to 1e-4 of mean x^2 (the
// terms of E x^2 - mean^2).
type groupStats struct {
	mean, vr, meanTol, varTol []float64
}

func refGroupStats(s gpu.GroupNormShape, x []float64) groupStats {
	ng := s.Batch * s.Groups
	st := groupStats{make([]float64, ng), make([]float64, ng), make([]float64, ng), make([]float64, ng)}
	n := s.C / s.Groups * s.HW
	for u := 0; u < ng; u++ {
		g := x[u*n : (u+1)*n] // (b C + g C/G) HW = u n
		var sum, sa, sq float64
		for _, v := range g {
			sum += v
			sa += math.Abs(v)
			sq += v * v
		}
		m := sum / float64(n)
		var ss float64
		for _, v := range g {
			ss += (v - m) * (v - m)
		}
		st.mean[u], st.vr[u] = m, ss/float64(n)
		st.meanTol[u] = rtolRed*sa/float64(n) + tiny
		st.varTol[u] = rtolRed*sq/float64(n) + tiny
	}
	return st
}

// refGroupNorm is y in float64 from x (mean and variance recomputed).
func refGroupNorm(s gpu.GroupNormShape, x, gamma, beta []float64) []float64 {
	st := refGroupStats(s, x)
	y := make([]float64, len(x))
	n := s.C / s.Groups * s.HW
	for i, v := range x {
		u, c := i/n, i/s.HW%s.C
		y[i] = (v-st.mean[u])/math.Sqrt(st.vr[u]+float64(s.Eps))*gamma[c] + beta[c]
	}
	return y
}

// GroupNorm: mean and rstd against the float64 statistics, y against the
// float64 reference (tolerance carried from the statistics) and, tighter,
// against (x - mean) rstd gamma + beta from the backend's own mean and
// rstd (elementwise arithmetic only).
func testGroupNorm(e *env) {
	for ci, s := range groupNormCases {
		x, gamma, beta := groupNormInputs(e, s)
		n, ng := len(x), s.Batch*s.Groups
		px, pg, pb := e.viewOf(x, ci%3, 1), e.viewOf(gamma, 1, ci%2), e.viewOf(beta, 2, 1)
		py := e.viewOf(filled(n, sentinel), 1+ci%2, 2)
		pm, pr := e.viewOf(filled(ng, sentinel), 1, 1), e.viewOf(filled(ng, sentinel), 2, 3)
		e.be.GroupNorm(s, px.view, pg.view, pb.view, py.view, pm.view, pr.view)
		name := fmt.Sprintf("GroupNorm(%+v)", s)

		st := refGroupStats(s, f64(x))
		eps := float64(s.Eps)
		wantR, tolR := make([]float64, ng), make([]float64, ng)
		for u := range wantR {
			wantR[u] = 1 / math.Sqrt(st.vr[u]+eps)
			// d rstd / d var = -rstd^3 / 2, plus rsqrtf's few ulp
			tolR[u] = 0.5*wantR[u]*wantR[u]*wantR[u]*st.varTol[u] + rtolTrans*wantR[u]
		}
		gotM, gotR := e.download(pm.view), e.download(pr.view)
		checkTol(e.t, name+": mean", gotM, st.mean, st.meanTol, s.Groups)
		checkTol(e.t, name+": rstd", gotR, wantR, tolR, s.Groups)

		cpgHW := s.C / s.Groups * s.HW
		want, tol := make([]float64, n), make([]float64, n)
		own, tolOwn := make([]float64, n), make([]float64, n)
		for i, xv32 := range x {
			u, c := i/cpgHW, i/s.HW%s.C
			xv, g, bt := float64(xv32), float64(gamma[c]), float64(beta[c])
			d := xv - st.mean[u]
			want[i] = d*wantR[u]*g + bt
			// the statistics' errors carried through, and the elementwise
			// (x - mean) rstd gamma + beta (x - mean may cancel: relative
			// to |x| + |mean|)
			tol[i] = math.Abs(g)*(math.Abs(d)*tolR[u]+wantR[u]*st.meanTol[u]) +
				rtolElem*((math.Abs(xv)+math.Abs(st.mean[u]))*wantR[u]*math.Abs(g)+math.Abs(bt)) + tiny
			m, r := float64(gotM[u]), float64(gotR[u])
			own[i] = (xv-m)*r*g + bt
			tolOwn[i] = rtolElem*((math.Abs(xv)+math.Abs(m))*r*math.Abs(g)+math.Abs(bt)) + tiny
		}
		gotY := e.download(py.view)
		checkTol(e.t, name+": y", gotY, want, tol, s.HW)
		checkTol(e.t, name+": y from the backend's mean and rstd", gotY, own, tolOwn, s.HW)
		e.checkOutside(name+": y", py)
		e.checkOutside(name+": mean", pm)
		e.checkOutside(name+": rstd", pr)
		for _, p := range []padded{px, pg, pb} {
			checkBits(e.t, name+": input", e.download(p.parent), p.host, nil)
		}
	}
}

// GroupNormBackward from the forward's x, mean and rstd (the float64
// statistics rounded to float32): dx = rstd (g dy - mean(g dy) - xhat
// mean(g dy xhat)) over the group, dgamma[c] = sum dy xhat, dbeta[c] =
// sum dy (all start as NaN); then dx, dgamma and dbeta against central
// differences of sum(dy * GroupNorm) in float64, mean and variance
// recomputed from the perturbed x.
func testGroupNormBackward(e *env) {
	for ci, s := range groupNormCases {
		x, gamma, beta := groupNormInputs(e, s)
		n, ng := len(x), s.Batch*s.Groups
		dy := normals(e.rng, n, 1)
		st := refGroupStats(s, f64(x))
		mean32, rstd32 := make([]float32, ng), make([]float32, ng)
		for u := range mean32 {
			mean32[u] = float32(st.mean[u])
			rstd32[u] = float32(1 / math.Sqrt(st.vr[u]+float64(s.Eps)))
		}
		pdy, px, pg := e.viewOf(dy, 1, 2), e.viewOf(x, ci%3, 1), e.viewOf(gamma, 2, 1)
		pm, pr := e.viewOf(mean32, 1, 1), e.viewOf(rstd32, ci%2, 2)
		pdx := e.viewOf(filled(n, sentinel), 1+ci%3, 1)
		pdg, pdb := e.viewOf(filled(s.C, sentinel), 2, 2), e.viewOf(filled(s.C, sentinel), 1, 3)
		e.be.GroupNormBackward(s, pdy.view, px.view, pg.view, pm.view, pr.view, pdx.view, pdg.view, pdb.view)
		name := fmt.Sprintf("GroupNormBackward(%+v)", s)

		cpgHW := s.C / s.Groups * s.HW
		// per group: sums of g dy, g dy xhat and their magnitudes
		s1, s2, a1, a2 := make([]float64, ng), make([]float64, ng), make([]float64, ng), make([]float64, ng)
		xhat, xhErr := make([]float64, n), make([]float64, n)
		for i := range x {
			u, c := i/cpgHW, i/s.HW%s.C
			m, r := float64(mean32[u]), float64(rstd32[u])
			xhat[i] = (float64(x[i]) - m) * r
			// float32 (x - mean) rstd: relative to |x| + |mean|
			xhErr[i] = rtolElem * (math.Abs(float64(x[i])) + math.Abs(m)) * r
			gd := float64(gamma[c]) * float64(dy[i])
			s1[u] += gd
			s2[u] += gd * xhat[i]
			a1[u] += math.Abs(gd)
			a2[u] += math.Abs(gd) * (math.Abs(xhat[i]) + xhErr[i])
		}
		wantDx, tolDx := make([]float64, n), make([]float64, n)
		wantG, tolG := make([]float64, s.C), make([]float64, s.C)
		wantB, tolB := make([]float64, s.C), make([]float64, s.C)
		inv := 1 / float64(cpgHW)
		for i := range x {
			u, c := i/cpgHW, i/s.HW%s.C
			r := float64(rstd32[u])
			gd := float64(gamma[c]) * float64(dy[i])
			m1, m2 := s1[u]*inv, s2[u]*inv
			wantDx[i] = r * (gd - m1 - xhat[i]*m2)
			// the two group means as reductions (1e-4 of their terms),
			// xhat's own error, and the elementwise combination
			tolDx[i] = r*(rtolRed*(a1[u]+math.Abs(xhat[i])*a2[u])*inv+xhErr[i]*math.Abs(m2)+
				rtolElem*(math.Abs(gd)+math.Abs(m1)+math.Abs(xhat[i]*m2))) + tiny
			d := float64(dy[i])
			wantG[c] += d * xhat[i]
			tolG[c] += rtolRed*math.Abs(d*xhat[i]) + math.Abs(d)*xhErr[i]
			wantB[c] += d
			tolB[c] += rtolRed * math.Abs(d)
		}
		for c := range tolG {
			tolG[c] += tiny
			tolB[c] += tiny
		}
		gotDx, gotG, gotB := e.download(pdx.view), e.download(pdg.view), e.download(pdb.view)
		checkTol(e.t, name+": dx", gotDx, wantDx, tolDx, s.HW)
		checkTol(e.t, name+": dgamma", gotG, wantG, tolG, 0)
		checkTol(e.t, name+": dbeta", gotB, wantB, tolB, 0)
		e.checkOutside(name+": dx", pdx)
		e.checkOutside(name+": dgamma", pdg)
		e.checkOutside(name+": dbeta", pdb)
		for _, p := range []padded{pdy, px, pg, pm, pr} {
			checkBits(e.t, name+": input", e.download(p.parent), p.host, nil)
		}

		// Central differences: h = 1e-3 (inputs of scale 1) leaves a
		// truncation error h^2/6 L''' far below 1e-6, and float64 rounding
		// of L (terms of size 1) about n 1e-16 / h.
		const h = 1e-3
		x64, g64, b64, dy64 := f64(x), f64(gamma), f64(beta), f64(dy)
		loss := func(xv, gv, bv []float64) float64 {
			l := 0.0
			for i, v := range refGroupNorm(s, xv, gv, bv) {
				l += dy64[i] * v
			}
			return l
		}
		fdTol := func(tl []float64) func(int, float64) float64 {
			return func(i int, fd float64) float64 { return tl[i] + 1e-6*(1+math.Abs(fd)) }
		}
		if n > 0 {
			checkFD(e, name+": dx", gotDx, x64, fdIndices(e.rng, n, 12), h, func(v []float64) float64 { return loss(v, g64, b64) }, fdTol(tolDx))
		}
		checkFD(e, name+": dgamma", gotG, g64, fdIndices(e.rng, s.C, 8), h, func(v []float64) float64 { return loss(x64, v, b64) }, fdTol(tolG))
		checkFD(e, name+": dbeta", gotB, b64, fdIndices(e.rng, s.C, 8), h, func(v []float64) float64 { return loss(x64, g64, v) }, fdTol(tolB))
	}
}

// Activate: y = act(x) over x.Len() elements, y aliasing x or not, x
// reaching SiLU's tails; ActNone is a bit-exact copy.
func testActivate(e *env) {
	sizes := []int{1, 3, 17, 257, 4096*3 + 1, 20000}
	for ci, n := range sizes {
		for _, act := range []gpu.Act{gpu.ActNone, gpu.ActSiLU} {
			alias := (ci+int(act))%2 == 0
			x := normals(e.rng, n, 3)
			extremes(x)
			px := e.viewOf(x, ci%3, 2)
			py := px
			if !alias {
				py = e.viewOf(filled(n, sentinel), 1+ci%2, 1)
			}
			e.be.Activate(act, px.view, py.view)
			name := fmt.Sprintf("Activate(act=%d, n=%d, y aliases x=%v)", act, n, alias)
			got := e.download(py.view)
			if act == gpu.ActNone {
				checkBits(e.t, name, got, x, nil)
			} else {
				want, tol := make([]float64, n), make([]float64, n)
				for i, v := range x {
					want[i] = silu64(float64(v))
					// one float32 exp and a division
					tol[i] = atolTrans + rtolTrans*math.Abs(want[i])
				}
				checkTol(e.t, name, got, want, tol, 0)
			}
			e.checkOutside(name, py)
			if !alias {
				checkBits(e.t, name+": x", e.download(px.parent), px.host, nil)
			}
		}
	}
}

// imageShapes are (batch, channels, hw) of the per-channel ops.
var imageShapes = [][3]int{{1, 1, 1}, {3, 3, 7}, {1, 5, 49}, {3, 8, 784}, {2, 1, 196}, {5, 3, 1}, {1, 16, 3}}

// AddChannelBias: y[b,c,p] = x[b,c,p] + bias[b,c], y aliasing x or not.
func testAddChannelBias(e *env) {
	for ci, sh := range imageShapes {
		batch, c, hw := sh[0], sh[1], sh[2]
		n := batch * c * hw
		alias := ci%2 == 1
		x, bias := normals(e.rng, n, 1), normals(e.rng, batch*c, 2)
		px, pb := e.viewOf(x, ci%3, 1), e.viewOf(bias, 1, 2)
		py := px
		if !alias {
			py = e.viewOf(filled(n, sentinel), 2, 1)
		}
		e.be.AddChannelBias(batch, c, hw, px.view, pb.view, py.view)
		want, tol := make([]float64, n), make([]float64, n)
		for i, v := range x {
			bv := float64(bias[i/hw])
			want[i] = float64(v) + bv
			// one rounded sum, relative to its terms
			tol[i] = rtolElem*(math.Abs(float64(v))+math.Abs(bv)) + tiny
		}
		name := fmt.Sprintf("AddChannelBias(batch=%d, c=%d, hw=%d, y aliases x=%v)", batch, c, hw, alias)
		checkTol(e.t, name, e.download(py.view), want, tol, hw)
		e.checkOutside(name, py)
		checkBits(e.t, name+": bias", e.download(pb.parent), pb.host, nil)
		if !alias {
			checkBits(e.t, name+": x", e.download(px.parent), px.host, nil)
		}
	}
}

// ChannelSum: out[b,c] = sum_p x[b,c,p] (out starts as NaN).
func testChannelSum(e *env) {
	for ci, sh := range append(imageShapes, [3]int{2, 3, 4097}) {
		batch, c, hw := sh[0], sh[1], sh[2]
		x := normals(e.rng, batch*c*hw, 1)
		px := e.viewOf(x, ci%3, 2)
		po := e.viewOf(filled(batch*c, sentinel), 1+ci%2, 1)
		e.be.ChannelSum(batch, c, hw, px.view, po.view)
		want, tol := make([]float64, batch*c), make([]float64, batch*c)
		for i, v := range x {
			want[i/hw] += float64(v)
			// a sum: 1e-4 of sum |x|
			tol[i/hw] += rtolRed * math.Abs(float64(v))
		}
		for i := range tol {
			tol[i] += tiny
		}
		name := fmt.Sprintf("ChannelSum(batch=%d, c=%d, hw=%d)", batch, c, hw)
		checkTol(e.t, name, e.download(po.view), want, tol, c)
		e.checkOutside(name, po)
		checkBits(e.t, name+": x", e.download(px.parent), px.host, nil)
	}
}

// upsampleShapes are (batch, c, h, w).
var upsampleShapes = [][4]int{{1, 1, 1, 1}, {3, 3, 7, 7}, {1, 5, 14, 14}, {2, 1, 3, 5}, {1, 2, 2, 1}, {3, 8, 1, 4}, {3, 33, 14, 14}}

// Upsample2x: every element of the 2 x 2 block is a bit-exact copy.
func testUpsample2x(e *env) {
	for ci, sh := range upsampleShapes {
		batch, c, h, w := sh[0], sh[1], sh[2], sh[3]
		x := normals(e.rng, batch*c*h*w, 1)
		px := e.viewOf(x, ci%3, 1)
		py := e.viewOf(filled(4*len(x), sentinel), 1+ci%2, 2)
		e.be.Upsample2x(batch, c, h, w, px.view, py.view)
		want := make([]float32, 4*len(x))
		for pl := 0; pl < batch*c; pl++ {
			for i := 0; i < 2*h; i++ {
				for j := 0; j < 2*w; j++ {
					want[(pl*2*h+i)*2*w+j] = x[(pl*h+i/2)*w+j/2]
				}
			}
		}
		name := fmt.Sprintf("Upsample2x(batch=%d, c=%d, h=%d, w=%d)", batch, c, h, w)
		checkBits(e.t, name, e.download(py.view), want, nil)
		e.checkOutside(name, py)
		checkBits(e.t, name+": x", e.download(px.parent), px.host, nil)
	}
}

// Upsample2xBackward: dx is the sum of dy over the 2 x 2 block (dx starts
// as NaN).
func testUpsample2xBackward(e *env) {
	for ci, sh := range upsampleShapes {
		batch, c, h, w := sh[0], sh[1], sh[2], sh[3]
		n := batch * c * h * w
		dy := normals(e.rng, 4*n, 1)
		pdy := e.viewOf(dy, 1+ci%2, 1)
		pdx := e.viewOf(filled(n, sentinel), ci%3, 2)
		e.be.Upsample2xBackward(batch, c, h, w, pdy.view, pdx.view)
		want, tol := make([]float64, n), make([]float64, n)
		for pl := 0; pl < batch*c; pl++ {
			for i := 0; i < 2*h; i++ {
				for j := 0; j < 2*w; j++ {
					v := float64(dy[(pl*2*h+i)*2*w+j])
					k := (pl*h+i/2)*w + j/2
					want[k] += v
					// three rounded sums: 1e-5 of the terms
					tol[k] += rtolElem * math.Abs(v)
				}
			}
		}
		for i := range tol {
			tol[i] += tiny
		}
		name := fmt.Sprintf("Upsample2xBackward(batch=%d, c=%d, h=%d, w=%d)", batch, c, h, w)
		checkTol(e.t, name, e.download(pdx.view), want, tol, w)
		e.checkOutside(name, pdx)
		checkBits(e.t, name+": dy", e.download(pdy.parent), pdy.host, nil)
	}
}

// CopyChannels: the n channels land bit for bit at dstOff of every image;
// dst's other channels keep their values; nothing else changes.
func testCopyChannels(e *env) {
	cases := []struct{ batch, hw, n, srcC, srcOff, dstC, dstOff int }{
		{1, 1, 1, 1, 0, 1, 0},
		{3, 49, 3, 5, 2, 8, 5},
		{2, 784, 8, 8, 0, 16, 8},
		{3, 7, 2, 3, 1, 2, 0},
		{1, 4, 0, 3, 1, 3, 2},
		{2, 9, 5, 5, 0, 5, 0},
		{4, 3, 1, 7, 6, 9, 0},
	}
	for ci, c := range cases {
		src := normals(e.rng, c.batch*c.srcC*c.hw, 1)
		dst := normals(e.rng, c.batch*c.dstC*c.hw, 1)
		ps, pd := e.viewOf(src, ci%3, 1), e.viewOf(dst, 1+ci%2, 2)
		e.be.CopyChannels(c.batch, c.hw, c.n, ps.view, c.srcC, c.srcOff, pd.view, c.dstC, c.dstOff)
		want := append([]float32(nil), dst...)
		for b := 0; b < c.batch; b++ {
			for k := 0; k < c.n; k++ {
				for p := 0; p < c.hw; p++ {
					want[((b*c.dstC)+c.dstOff+k)*c.hw+p] = src[((b*c.srcC)+c.srcOff+k)*c.hw+p]
				}
			}
		}
		name := fmt.Sprintf("CopyChannels(%+v)", c)
		checkBits(e.t, name, e.download(pd.view), want, nil)
		e.checkOutside(name, pd)
		checkBits(e.t, name+": src", e.download(ps.parent), ps.host, nil)
	}
}

// batchedStrided returns batch rows x cols matrices of N(0, 1) draws with
// row stride ld, matrix i at offset i stride (stride 0: one shared
// matrix), everything else the sentinel; and whether each index is inside
// a matrix.
func batchedStrided(rng *rand.Rand, batch, rows, cols, ld, stride int) (v []float32, in []bool) {
	if rows == 0 || cols == 0 {
		return []float32{sentinel}, []bool{false}
	}
	span := (rows-1)*ld + cols
	v = filled((batch-1)*stride+span, sentinel)
	in = make([]bool, len(v))
	for i := 0; i < batch; i++ {
		if i > 0 && stride == 0 {
			break
		}
		for r := 0; r < rows; r++ {
			for c := 0; c < cols; c++ {
				k := i*stride + r*ld + c
				v[k] = float32(rng.NormFloat64())
				in[k] = true
			}
		}
	}
	return v, in
}

// tail is v[off:], nil past its end (an empty matrix is never read).
func tail(v []float32, off int) []float32 {
	if off > len(v) {
		return nil
	}
	return v[off:]
}

// GemmBatched: each product against refGemm, over the attention shapes
// (49 positions, 32 or 49 wide) and awkward ones, every transpose pair,
// strides leaving NaN-filled gaps between the matrices (never read nor
// written), a shared A (stride 0), beta = 0 over NaN, k = 0, and products
// large enough for a backend to split each one.
func testGemmBatched(e *env) {
	cases := []struct {
		ta, tb         bool
		batch, m, n, k int
		alpha, beta    float32
		pad, gap       int // extra row stride and gap between matrices
		shareA         bool
	}{
		{false, false, 1, 1, 1, 1, 1, 0, 0, 0, false},
		{false, true, 3, 49, 49, 32, 0.125, 0, 0, 0, false},
		{false, false, 3, 49, 32, 49, 1, 0, 1, 3, false},
		{true, false, 2, 17, 31, 5, -0.5, 1, 2, 1, false},
		{true, true, 5, 3, 17, 4, 2, 0.25, 1, 0, false},
		{false, true, 3, 7, 5, 0, 1, 0.5, 0, 2, false},
		{false, false, 2, 128, 128, 128, 1, 0, 3, 5, false},
		{false, true, 4, 31, 3, 64, 1, -1, 0, 1, true},
		{true, false, 6, 2, 9, 257, 0.5, 0, 2, 7, true},
		{false, true, 70, 5, 7, 3, 1, 0, 1, 2, false},
	}
	for ci, c := range cases {
		rowsA, colsA := c.m, c.k
		if c.ta {
			rowsA, colsA = c.k, c.m
		}
		rowsB, colsB := c.k, c.n
		if c.tb {
			rowsB, colsB = c.n, c.k
		}
		lda, ldb, ldc := max(1, colsA+c.pad), max(1, colsB+c.pad/2), c.n+(c.pad+1)%3
		strideA := (rowsA-1)*lda + colsA + c.gap
		if c.shareA {
			strideA = 0
		}
		strideB := max(0, (rowsB-1)*ldb+colsB) + c.gap + 1
		strideC := (c.m-1)*ldc + c.n + c.gap
		av, _ := batchedStrided(e.rng, c.batch, rowsA, colsA, lda, strideA)
		bv, _ := batchedStrided(e.rng, c.batch, rowsB, colsB, ldb, strideB)
		cv, inC := batchedStrided(e.rng, c.batch, c.m, c.n, ldc, strideC)
		if c.beta == 0 {
			// C must not be read: NaN everywhere
			cv = filled(len(cv), sentinel)
		}
		pa, pb, pc := e.viewOf(av, ci%3, 2), e.viewOf(bv, 1, ci%2), e.viewOf(cv, 2+ci%2, 1)
		e.be.GemmBatched(c.ta, c.tb, c.batch, c.m, c.n, c.k, c.alpha, pa.view, lda, strideA, pb.view, ldb, strideB, c.beta, pc.view, ldc, strideC)
		name := fmt.Sprintf("GemmBatched(%+v, lda=%d, ldb=%d, ldc=%d, strides %d %d %d)", c, lda, ldb, ldc, strideA, strideB, strideC)
		got := e.download(pc.view)
		var gotC []float32
		var want, tol []float64
		for i := 0; i < c.batch; i++ {
			w, sc := refGemm(c.ta, c.tb, c.m, c.n, c.k, float64(c.alpha), tail(av, i*strideA), lda, tail(bv, i*strideB), ldb, float64(c.beta), cv[i*strideC:], ldc)
			want = append(want, w...)
			for _, v := range sc {
				// products and their sums: 1e-4 of |alpha| sum |a||b| + |beta c|
				tol = append(tol, rtolRed*v+tiny)
			}
			for r := 0; r < c.m; r++ {
				gotC = append(gotC, got[i*strideC+r*ldc:][:c.n]...)
			}
		}
		checkTol(e.t, name, gotC, want, tol, c.n)
		checkBits(e.t, name+": C outside the products", got, cv, func(i int) bool { return !inC[i] })
		e.checkOutside(name+": C", pc)
		checkBits(e.t, name+": A", e.download(pa.parent), pa.host, nil)
		checkBits(e.t, name+": B", e.download(pb.parent), pb.host, nil)
	}
}

// softmaxCases are (rows, cols) with the std of x; the first row of each
// is shifted by +1000 and the second by -1000 (exp overflows and
// underflows without the max subtracted).
var softmaxCases = []struct {
	rows, cols int
	std        float64
}{
	{1, 1, 1}, {3, 2, 1}, {17, 3, 3}, {64, 49, 1}, {3, 257, 10}, {17, 784, 1}, {255, 31, 3}, {2, 1000, 0.1},
	{5, 64, 40}, // spreads beyond 87: exp underflows float32
}

// refSoftmax is the row's softmax in float64.
func refSoftmax(x []float64) []float64 {
	mx := math.Inf(-1)
	for _, v := range x {
		mx = math.Max(mx, v)
	}
	y := make([]float64, len(x))
	sum := 0.0
	for j, v := range x {
		y[j] = math.Exp(v - mx)
		sum += y[j]
	}
	for j := range y {
		y[j] /= sum
	}
	return y
}

func softmaxInput(e *env, rows, cols int, std float64) []float32 {
	x := normals(e.rng, rows*cols, std)
	for j := 0; j < cols; j++ {
		if rows > 1 {
			x[j] += 1000
		}
		if rows > 2 {
			x[cols+j] -= 1000
		}
	}
	return x
}

// Softmax: each row against float64, y aliasing x or not. A float32 exp
// (2e-5) and the sum of positive terms (1e-4) bound the relative error.
func testSoftmax(e *env) {
	for ci, c := range softmaxCases {
		alias := ci%2 == 1
		x := softmaxInput(e, c.rows, c.cols, c.std)
		px := e.viewOf(x, ci%3, 1)
		py := px
		if !alias {
			py = e.viewOf(filled(len(x), sentinel), 1+ci%2, 2)
		}
		e.be.Softmax(c.rows, c.cols, px.view, py.view)
		want, tol := make([]float64, len(x)), make([]float64, len(x))
		for r := 0; r < c.rows; r++ {
			y := refSoftmax(f64(x[r*c.cols : (r+1)*c.cols]))
			for j, v := range y {
				want[r*c.cols+j] = v
				tol[r*c.cols+j] = (rtolTrans+rtolRed)*v + tiny
			}
		}
		name := fmt.Sprintf("Softmax(rows=%d, cols=%d, std=%g, y aliases x=%v)", c.rows, c.cols, c.std, alias)
		checkTol(e.t, name, e.download(py.view), want, tol, c.cols)
		e.checkOutside(name, py)
		if !alias {
			checkBits(e.t, name+": x", e.download(px.parent), px.host, nil)
		}
	}
}

// SoftmaxBackward: dx = y (dy - sum_j dy_j y_j) with y a float64 softmax
// rounded to float32, dx aliasing dy or not; and against central
// differences of sum(dy * softmax(x)) in x.
func testSoftmaxBackward(e *env) {
	for ci, c := range softmaxCases {
		alias := ci%2 == 0
		x := softmaxInput(e, c.rows, c.cols, c.std)
		n := len(x)
		y := make([]float32, n)
		for r := 0; r < c.rows; r++ {
			for j, v := range refSoftmax(f64(x[r*c.cols : (r+1)*c.cols])) {
				y[r*c.cols+j] = float32(v)
			}
		}
		dy := normals(e.rng, n, 1)
		py, pdy := e.viewOf(y, ci%3, 2), e.viewOf(dy, 1, 1+ci%2)
		pdx := pdy
		if !alias {
			pdx = e.viewOf(filled(n, sentinel), 2, 1)
		}
		e.be.SoftmaxBackward(c.rows, c.cols, py.view, pdy.view, pdx.view)
		want, tol := make([]float64, n), make([]float64, n)
		for r := 0; r < c.rows; r++ {
			var dot, sc float64
			for j := r * c.cols; j < (r+1)*c.cols; j++ {
				p := float64(dy[j]) * float64(y[j])
				dot += p
				sc += math.Abs(p)
			}
			for j := r * c.cols; j < (r+1)*c.cols; j++ {
				yv, d := float64(y[j]), float64(dy[j])
				want[j] = yv * (d - dot)
				// the dot product (1e-4 of sum |dy y|) and the elementwise
				// y (dy - dot), which may cancel
				tol[j] = math.Abs(yv)*(rtolRed*sc+rtolElem*(math.Abs(d)+math.Abs(dot))) + tiny
			}
		}
		name := fmt.Sprintf("SoftmaxBackward(rows=%d, cols=%d, dx aliases dy=%v)", c.rows, c.cols, alias)
		got := e.download(pdx.view)
		checkTol(e.t, name, got, want, tol, c.cols)
		e.checkOutside(name, pdx)
		checkBits(e.t, name+": y", e.download(py.parent), py.host, nil)
		if !alias {
			checkBits(e.t, name+": dy", e.download(pdy.parent), pdy.host, nil)
		}
		// Central differences of sum_j dy_j softmax(x)_j along one row at a
		// time (the loss of the row holding i). h = 1e-4 with x of std up
		// to 10: truncation h^2/6 L''' below 1e-8; y rounded to float32
		// moves the backend's dx by 6e-8 relative, inside 1e-6.
		x64, dy64 := f64(x), f64(dy)
		loss := func(i int) func([]float64) float64 {
			r := i / c.cols
			return func(v []float64) float64 {
				l := 0.0
				for j, s := range refSoftmax(v[r*c.cols : (r+1)*c.cols]) {
					l += dy64[r*c.cols+j] * s
				}
				return l
			}
		}
		for _, i := range fdIndices(e.rng, n, 6) {
			checkFD(e, name, got, x64, []int{i}, 1e-4, loss(i), func(i int, fd float64) float64 {
				return tol[i] + 1e-6*math.Abs(float64(y[i]))*(math.Abs(dy64[i])+1) + 1e-9
			})
		}
	}
}

// Transpose: y_i = x_i^T bit for bit, sizes around the 32-wide tiles a
// transpose is blocked in.
func testTranspose(e *env) {
	for ci, sh := range [][3]int{{1, 1, 1}, {3, 1, 5}, {2, 17, 3}, {1, 33, 70}, {3, 49, 64}, {2, 64, 64}, {1, 257, 3}, {4, 31, 33}} {
		batch, rows, cols := sh[0], sh[1], sh[2]
		x := normals(e.rng, batch*rows*cols, 1)
		px := e.viewOf(x, ci%3, 1)
		py := e.viewOf(filled(len(x), sentinel), 1+ci%2, 2)
		e.be.Transpose(batch, rows, cols, px.view, py.view)
		want := make([]float32, len(x))
		for i := 0; i < batch; i++ {
			for r := 0; r < rows; r++ {
				for c := 0; c < cols; c++ {
					want[i*rows*cols+c*rows+r] = x[i*rows*cols+r*cols+c]
				}
			}
		}
		name := fmt.Sprintf("Transpose(batch=%d, rows=%d, cols=%d)", batch, rows, cols)
		checkBits(e.t, name, e.download(py.view), want, nil)
		e.checkOutside(name, py)
		checkBits(e.t, name+": x", e.download(px.parent), px.host, nil)
	}
}

// OneHot: every element overwritten (out starts as NaN), labels -2 to
// classes + 1 (out of range: a zero row; classes is the null label of
// classifier-free guidance).
func testOneHot(e *env) {
	for ci, sh := range [][2]int{{1, 1}, {3, 3}, {17, 10}, {256, 11}, {5, 1}} {
		rows, classes := sh[0], sh[1]
		labels := make([]float32, rows)
		for r := range labels {
			labels[r] = float32(e.rng.IntN(classes+4) - 2)
		}
		labels[0] = float32(classes) // null
		if rows > 1 {
			labels[1] = 0
		}
		pl := e.viewOf(labels, ci%2, 1)
		po := e.viewOf(filled(rows*classes, sentinel), 1+ci%3, 2)
		e.be.OneHot(rows, classes, pl.view, po.view)
		want := make([]float32, rows*classes)
		for r, l := range labels {
			if l >= 0 && int(l) < classes {
				want[r*classes+int(l)] = 1
			}
		}
		name := fmt.Sprintf("OneHot(rows=%d, classes=%d, labels=%v)", rows, classes, labels[:min(rows, 8)])
		checkBits(e.t, name, e.download(po.view), want, nil)
		e.checkOutside(name, po)
		checkBits(e.t, name+": labels", e.download(pl.parent), pl.host, nil)
	}
}

// DrawLabels: y[r] = labels[i_r] with i_r = IndexBelow(word r of stream
// (seed, PurposeIndex, step), nData), or null when Uniform01(word r of
// (seed, PurposeLabelDrop, step)) < dropout; bit for bit. The indices are
// also the rows DrawBatch draws on the same backend (data whose row i is
// i), and the dropout rate over 2^16 rows is within 5 standard errors.
func testDrawLabels(e *env) {
	cases := []struct {
		nData, rows   int
		dropout, null float32
	}{
		{1, 1, 0, -1}, {3, 3, 0.1, 10}, {10, 17, 0.5, 10}, {60000, 256, 0.1, -1}, {7, 1000, 1, 3}, {70001, 1000, 0, -1}, {257, 5, 0.3, 0},
	}
	for ci, c := range cases {
		seed, step := streamCases[ci][0], streamCases[ci][1]
		dr := gpu.BatchDraw{Path: flow.DefaultSpec(flow.KindOT), Time: flow.TimeSampler{Kind: flow.TimeUniform}, Seed: seed, Step: step}
		labels := make([]float32, c.nData)
		for i := range labels {
			labels[i] = float32(i) + 0.5 // distinct: a wrong index shows
		}
		pl := e.viewOf(labels, ci%3, 1)
		py := e.viewOf(filled(c.rows, sentinel), 1+ci%2, 2)
		e.be.DrawLabels(dr, pl.view, c.nData, c.rows, c.dropout, c.null, py.view)
		want := make([]float32, c.rows)
		dropped := make([]bool, c.rows)
		for r := range want {
			if gpu.Uniform01(word(seed, gpu.PurposeLabelDrop, step, r)) < c.dropout {
				want[r], dropped[r] = c.null, true
			} else {
				want[r] = labels[gpu.IndexBelow(word(seed, gpu.PurposeIndex, step, r), uint32(c.nData))]
			}
		}
		name := fmt.Sprintf("DrawLabels(seed=%#x, step=%#x, nData=%d, rows=%d, dropout=%g, null=%g)", seed, step, c.nData, c.rows, c.dropout, c.null)
		got := e.download(py.view)
		checkBits(e.t, name, got, want, nil)
		e.checkOutside(name, py)
		checkBits(e.t, name+": labels", e.download(pl.parent), pl.host, nil)

		// The same rows as DrawBatch: x1 of data row i = i is i_r (the
		// dropped rows as above).
		data := make([]float32, c.nData)
		for i := range data {
			data[i] = float32(i)
		}
		bd := e.upload(data)
		x1, t, xt, ut := e.be.Alloc(c.rows), e.be.Alloc(c.rows), e.be.Alloc(c.rows), e.be.Alloc(c.rows)
		e.be.DrawBatch(dr, bd, c.nData, 1, c.rows, nil, x1, t, xt, ut)
		idx := e.download(x1)
		wantBatch := make([]float32, c.rows)
		for r, i := range idx {
			wantBatch[r] = labels[int(i)]
			if dropped[r] {
				wantBatch[r] = c.null
			}
		}
		checkBits(e.t, name+": the rows DrawBatch draws", got, wantBatch, nil)
		for _, b := range []gpu.Buffer{bd, x1, t, xt, ut} {
			e.be.Free(b)
		}
	}

	// Dropout rate: 2^16 rows at 0.1 (standard error sqrt(0.09 / 2^16) =
	// 1.2e-3; 5 of them allowed), and the kept rows' labels uniform over
	// 4 classes (each within 5 standard errors of 1/4).
	const rows = 1 << 16
	const classes = 4
	labels := e.upload([]float32{0, 1, 2, 3})
	y := e.be.Alloc(rows)
	dr := gpu.BatchDraw{Seed: 12345, Step: 678}
	e.be.DrawLabels(dr, labels, classes, rows, 0.1, classes, y)
	var counts [classes + 1]int
	for _, v := range e.download(y) {
		if v < 0 || v > classes || v != float32(int(v)) {
			e.t.Fatalf("DrawLabels: label %v not among the labels and the null %d", v, classes)
		}
		counts[int(v)]++
	}
	rate := float64(counts[classes]) / rows
	if se := math.Sqrt(0.1 * 0.9 / rows); math.Abs(rate-0.1) > 5*se {
		e.t.Errorf("DrawLabels dropout rate over %d rows %.4f, want 0.1 within %.4f", rows, rate, 5*se)
	}
	kept := float64(rows - counts[classes])
	for k := 0; k < classes; k++ {
		f := float64(counts[k]) / kept
		if se := math.Sqrt(0.25 * 0.75 / kept); math.Abs(f-0.25) > 5*se {
			e.t.Errorf("DrawLabels: class %d drawn with frequency %.4f, want 0.25 within %.4f", k, f, 5*se)
		}
	}
}

// benchConvShapes are the U-Net's convolutions on MNIST at batch 128:
// the input layer (1 channel), 3 x 3 convolutions at 28, 14 and 7 pixels,
// a stride-2 downsampling and a 1 x 1 skip projection.
var benchConvShapes = []gpu.ConvShape{
	{Batch: 128, InC: 1, H: 28, W: 28, OutC: 32, K: 3, Stride: 1, Pad: 1},
	{Batch: 128, InC: 32, H: 28, W: 28, OutC: 32, K: 3, Stride: 1, Pad: 1},
	{Batch: 128, InC: 64, H: 28, W: 28, OutC: 64, K: 3, Stride: 1, Pad: 1},
	{Batch: 128, InC: 64, H: 28, W: 28, OutC: 64, K: 3, Stride: 2, Pad: 1},
	{Batch: 128, InC: 128, H: 14, W: 14, OutC: 128, K: 3, Stride: 1, Pad: 1},
	{Batch: 128, InC: 128, H: 7, W: 7, OutC: 128, K: 3, Stride: 1, Pad: 1},
	{Batch: 128, InC: 192, H: 14, W: 14, OutC: 64, K: 1, Stride: 1, Pad: 0},
}

// benchConv times one convolution direction (0 forward, 1 backward data,
// 2 backward filter with dbias) at benchConvShapes; GFLOP/s counts the
// direct sum's 2 Batch OutC OutH OutW InC K K for every direction.
func benchConv(b *testing.B, newBackend func(b *testing.B) gpu.Backend, dir int) {
	for _, s := range benchConvShapes {
		name := fmt.Sprintf("b=%d,c=%d,h=%d,w=%d,o=%d,k=%d,s=%d,p=%d", s.Batch, s.InC, s.H, s.W, s.OutC, s.K, s.Stride, s.Pad)
		bench(b, name, newBackend, func(w *workload) (float64, float64, func()) {
			nx, nw, ny := convDims(s)
			x, wt, bias, y := w.normals(nx), w.normals(nw), w.normals(s.OutC), w.normals(ny)
			bytes := 4 * float64(nx+nw+ny)
			flops := 2 * float64(ny) * float64(s.InC*s.K*s.K)
			switch dir {
			case 0:
				return bytes, flops, func() { w.be.Conv2D(s, x, wt, bias, y) }
			case 1:
				return bytes, flops, func() { w.be.Conv2DBackwardData(s, y, wt, x) }
			}
			return bytes, flops, func() { w.be.Conv2DBackwardFilter(s, x, y, wt, bias) }
		})
	}
}

// benchImageOps times the U-Net's other image ops at batch 128: group
// norm and SiLU over 64 x 28 x 28 maps, attention's products and softmax
// at 7 x 7 = 49 positions and 128 channels.
func benchImageOps(b *testing.B, newBackend func(b *testing.B) gpu.Backend) {
	gn := gpu.GroupNormShape{Batch: 128, C: 64, HW: 784, Groups: 8, Eps: 1e-5}
	gnName := fmt.Sprintf("GroupNorm/b=%d,c=%d,hw=%d,groups=%d", gn.Batch, gn.C, gn.HW, gn.Groups)
	n := gn.Batch * gn.C * gn.HW
	bench(b, gnName, newBackend, func(w *workload) (float64, float64, func()) {
		x, g, bt, y, m, r := w.normals(n), w.normals(gn.C), w.normals(gn.C), w.alloc(n), w.alloc(gn.Batch*gn.Groups), w.alloc(gn.Batch*gn.Groups)
		return 8 * float64(n), 0, func() { w.be.GroupNorm(gn, x, g, bt, y, m, r) }
	})
	bench(b, "GroupNormBackward/"+gnName[len("GroupNorm/"):], newBackend, func(w *workload) (float64, float64, func()) {
		x, g, dy, dx := w.normals(n), w.normals(gn.C), w.normals(n), w.alloc(n)
		m, r, dg, db := w.alloc(gn.Batch*gn.Groups), w.alloc(gn.Batch*gn.Groups), w.alloc(gn.C), w.alloc(gn.C)
		w.be.GroupNorm(gn, x, g, g, dx, m, r)
		return 12 * float64(n), 0, func() { w.be.GroupNormBackward(gn, dy, x, g, m, r, dx, dg, db) }
	})
	bench(b, fmt.Sprintf("Activate/act=silu,n=%d", n), newBackend, func(w *workload) (float64, float64, func()) {
		x, y := w.normals(n), w.alloc(n)
		return 8 * float64(n), 0, func() { w.be.Activate(gpu.ActSiLU, x, y) }
	})
	const batch, c, t = 128, 128, 49
	bench(b, fmt.Sprintf("GemmBatched/scores/batch=%d,c=%d,t=%d", batch, c, t), newBackend, func(w *workload) (float64, float64, func()) {
		qkv, probs := w.normals(batch*3*c*t), w.alloc(batch*t*t)
		return 4 * float64(batch*(2*c*t+t*t)), 2 * float64(batch*t*t*c), func() {
			w.be.GemmBatched(true, false, batch, t, t, c, 1, qkv, t, 3*c*t, qkv.Slice(c*t, (3*batch-1)*c*t), t, 3*c*t, 0, probs, t, t*t)
		}
	})
	bench(b, fmt.Sprintf("Softmax/rows=%d,cols=%d", batch*t, t), newBackend, func(w *workload) (float64, float64, func()) {
		p := w.normals(batch * t * t)
		return 8 * float64(batch*t*t), 0, func() { w.be.Softmax(batch*t, t, p, p) }
	})
}
