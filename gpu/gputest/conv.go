package gputest

import (
	"fmt"
	"math"
	"testing"

	"github.com/fmgpu/fmgpu/gpu"
)

// The Conv family (gpu/conv.go) against float64 references written here
// in plain loops: the convolution by its defining sum (no im2col), its
// gradients by scattering the same sum's terms back (the adjoint). The
// adjoints are in turn checked against central differences of sum(dy *
// forward) in float64, on every case below with images in it (and by the
// adjoint identity over all coordinates), by this package's own test
// (conv_test.go): a backend agreeing with a wrong adjoint would otherwise
// pass. That check is of the references alone, so it runs once, not in
// every backend's and precision's run of the suite (where the
// differences' reference convolutions cost more than the rest of the
// family, many times over under the simulator and the sanitizers). Images
// are NCHW.

// convCases cover batch 0, 1, 3 and long batches of small images; 1, 2, 3,
// 5, 8 and up to 200 channels (off any tile size, and past 64 and 128: the
// device's 128-row tiles, ragged, in every direction, also with the filter
// gradient's sum over batch x positions split, past 256 terms); odd and
// even sizes from
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
	{gpu.ConvShape{Batch: 1, InC: 130, H: 5, W: 5, OutC: 136, K: 3, Stride: 1, Pad: 1}, true},
	{gpu.ConvShape{Batch: 2, InC: 129, H: 6, W: 6, OutC: 72, K: 3, Stride: 2, Pad: 1}, false},
	{gpu.ConvShape{Batch: 1, InC: 96, H: 4, W: 4, OutC: 200, K: 1, Stride: 1, Pad: 0}, true},
	{gpu.ConvShape{Batch: 1, InC: 66, H: 6, W: 6, OutC: 130, K: 2, Stride: 2, Pad: 0}, true},
	{gpu.ConvShape{Batch: 4, InC: 5, H: 9, W: 9, OutC: 136, K: 3, Stride: 1, Pad: 1}, true},
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
		round, rtol := e.prodRef(true)
		want, scale := refConv(s, f64(round(x)), f64(round(w)), f64or(b))
		tol := make([]float64, ny)
		for i := range tol {
			// a sum of InC K K products plus the bias, in the backend's
			// precision: rtol of sum |w x| + |b| (bf16: the operands
			// rounded, the bias not)
			tol[i] = rtol*scale[i] + tiny
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

// Conv2DBackwardData: dx against the adjoint sum (dx starts as NaN: it is
// overwritten, not accumulated into).
func testConv2DBackwardData(e *env) {
	for ci, c := range convCases {
		s := c.s
		_, w, _ := convInputs(e, s, c.bias)
		nx, _, ny := convDims(s)
		dy := normals(e.rng, ny, 1)
		pdy, pw := e.viewOf(dy, 1+ci%3, 2), e.viewOf(w, ci%2, 3)
		pdx := e.viewOf(filled(nx, sentinel), 2+ci%3, 1)
		e.be.Conv2DBackwardData(s, pdy.view, pw.view, pdx.view)
		round, rtol := e.prodRef(true)
		dyr, wr := round(dy), round(w)
		want, scale := refConvData(s, f64(dyr), f64(wr))
		tol := make([]float64, nx)
		for i := range tol {
			// a sum of products dy w in the backend's precision: rtol of
			// sum |dy w|
			tol[i] = rtol*scale[i] + tiny
		}
		name := fmt.Sprintf("Conv2DBackwardData(%+v)", s)
		got := e.download(pdx.view)
		checkTol(e.t, name+": dx", got, want, tol, s.W)
		e.checkOutside(name+": dx", pdx)
		checkBits(e.t, name+": dy", e.download(pdy.parent), pdy.host, nil)
		checkBits(e.t, name+": w", e.download(pw.parent), pw.host, nil)
	}
}

// Conv2DBackwardFilter: dw and dbias against the adjoint sums (both start
// as NaN; dbias nil in some cases).
func testConv2DBackwardFilter(e *env) {
	for ci, c := range convCases {
		s := c.s
		x, _, _ := convInputs(e, s, true)
		_, nw, ny := convDims(s)
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
		round, rtol := e.prodRef(true)
		xr, dyr := round(x), round(dy)
		wantW, scaleW, _, _ := refConvFilter(s, f64(xr), f64(dyr))
		_, _, wantB, scaleB := refConvFilter(s, f64(x), f64(dy))
		tolW, tolB := make([]float64, nw), make([]float64, s.OutC)
		for i := range tolW {
			// sums over the batch and positions of dy x in the backend's
			// precision: rtol of sum |dy x|
			tolW[i] = rtol*scaleW[i] + tiny
		}
		for i := range tolB {
			// sums of dy, unrounded in every precision: 1e-4 of sum |dy|
			tolB[i] = rtolRed*scaleB[i] + tiny
		}
		name := fmt.Sprintf("Conv2DBackwardFilter(%+v, dbias=%v)", s, c.bias)
		gotW := e.download(pdw.view)
		checkTol(e.t, name+": dw", gotW, wantW, tolW, s.K)
		e.checkOutside(name+": dw", pdw)
		if c.bias {
			checkTol(e.t, name+": dbias", e.download(pdb.view), wantB, tolB, 0)
			e.checkOutside(name+": dbias", pdb)
		}
		checkBits(e.t, name+": x", e.download(px.parent), px.host, nil)
		checkBits(e.t, name+": dy", e.download(pdy.parent), pdy.host, nil)
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

// benchConv times the three passes at the U-Net's convolutions.
func benchConv(b *testing.B, newBackend func(b *testing.B) gpu.Backend) {
	b.Run("Conv2D", func(b *testing.B) { benchConvDir(b, newBackend, 0) })
	b.Run("Conv2DBackwardData", func(b *testing.B) { benchConvDir(b, newBackend, 1) })
	b.Run("Conv2DBackwardFilter", func(b *testing.B) { benchConvDir(b, newBackend, 2) })
}

// benchConvDir times one convolution direction (0 forward, 1 backward data,
// 2 backward filter with dbias) at benchConvShapes; GFLOP/s counts the
// direct sum's 2 Batch OutC OutH OutW InC K K for every direction.
func benchConvDir(b *testing.B, newBackend func(b *testing.B) gpu.Backend, dir int) {
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
