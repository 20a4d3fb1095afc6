package gputest

import (
	"fmt"
	"math"
	"testing"

	"github.com/fmgpu/fmgpu/gpu"
)

// The ODE family (gpu/ode.go) against float64 references.

// vecSizes are the vector lengths of the solver ops: the row sizes, a
// 2-D batch (20000 x 2) and an image-like one (4096 x 3 + 1).
var vecSizes = []int{1, 3, 17, 255, 257, 1000, 20000 * 2, 4096*3 + 1}

// Axpy: y += alpha x over views, alpha including 0 and negative.
func testAxpy(e *env) {
	alphas := []float32{0.01, -1.5, 0, 1, 1e-3, -0.25, 3, 0.5}
	for ci, n := range vecSizes {
		alpha := alphas[ci%len(alphas)]
		x := normals(e.rng, n, 1)
		y := normals(e.rng, n, 1)
		px, py := e.viewOf(x, ci%3, 1), e.viewOf(y, 1+ci%2, 2)
		e.be.Axpy(alpha, px.view, py.view)
		want, tol := make([]float64, n), make([]float64, n)
		for i := range want {
			ax := float64(alpha) * float64(x[i])
			want[i] = float64(y[i]) + ax
			// a product and a sum, relative to the terms (they may cancel)
			tol[i] = rtolElem*(math.Abs(float64(y[i]))+math.Abs(ax)) + tiny
		}
		name := fmt.Sprintf("Axpy(n=%d, alpha=%g)", n, alpha)
		checkTol(e.t, name, e.download(py.view), want, tol, 0)
		e.checkOutside(name, py)
		checkBits(e.t, name+": x", e.download(px.parent), px.host, nil)
	}
}

// stages uploads ns stage buffers of n elements with coefficients from
// coefs; a zero coefficient's buffer is all NaN (it must be skipped).
func (e *env) stages(n, ns int, coefs []float32) (host [][]float32, ks []gpu.Buffer, coef []float32) {
	coef = coefs[:ns]
	for j := 0; j < ns; j++ {
		v := normals(e.rng, n, 1)
		if coef[j] == 0 {
			v = filled(n, sentinel)
		}
		host = append(host, v)
		ks = append(ks, e.upload(v))
	}
	return host, ks, coef
}

// stageSum is sum_j coef[j] ks[j][i] over the nonzero coefficients, and
// the sum of the terms' magnitudes.
func stageSum(host [][]float32, coef []float32, i int) (s, sc float64) {
	for j, k := range host {
		if coef[j] != 0 {
			v := float64(coef[j]) * float64(k[i])
			s += v
			sc += math.Abs(v)
		}
	}
	return s, sc
}

// Dopri5's error coefficients b - b* (they sum to 0: the estimate cancels)
// and a set with zeros between nonzero entries.
var (
	dopriErr = []float32{71.0 / 57600, 0, -71.0 / 16695, 71.0 / 1920, -17253.0 / 339200, 22.0 / 525, -1.0 / 40}
	rkCoefs  = []float32{0.5, 0, 0.25, -1.5, 0, 2, 1.0 / 6}
)

// LinComb: dst = x + h sum coef[j] ks[j] over 0 to MaxStages stages, zero
// coefficients skipping NaN-filled buffers, dst aliasing x or not.
func testLinComb(e *env) {
	hs := []float32{0.1, -0.05, 1, 1e-3}
	for ci, n := range vecSizes {
		for ns := 0; ns <= gpu.MaxStages; ns += 1 + ci%3 {
			alias := (ci+ns)%2 == 0
			h := hs[(ci+ns)%len(hs)]
			coefs := rkCoefs
			if ci%2 == 1 {
				coefs = dopriErr
			}
			host, ks, coef := e.stages(n, ns, coefs)
			x := normals(e.rng, n, 1)
			px := e.viewOf(x, 1, ci%3)
			dst := px
			if !alias {
				dst = e.viewOf(filled(n, sentinel), 2, 1)
			}
			e.be.LinComb(dst.view, px.view, h, coef, ks)
			want, tol := make([]float64, n), make([]float64, n)
			for i := range want {
				s, sc := stageSum(host, coef, i)
				want[i] = float64(x[i]) + float64(h)*s
				// up to 7 products and 8 sums: 1e-5 of the terms
				tol[i] = rtolElem*(math.Abs(float64(x[i]))+math.Abs(float64(h))*sc) + tiny
			}
			name := fmt.Sprintf("LinComb(n=%d, stages=%d, h=%g, coef=%v, dst aliases x=%v)", n, ns, h, coef, alias)
			checkTol(e.t, name, e.download(dst.view), want, tol, 0)
			e.checkOutside(name, dst)
			if !alias {
				checkBits(e.t, name+": x", e.download(px.view), x, nil)
			}
			for j, k := range ks {
				checkBits(e.t, fmt.Sprintf("%s: ks[%d]", name, j), e.download(k), host[j], nil)
			}
		}
	}
}

// ErrorNorm: sum_i (e_i / (atol + rtol max(|x_i|, |xNew_i|)))^2 with
// e = h sum coef[j] ks[j], with Dopri5's cancelling error coefficients.
func testErrorNorm(e *env) {
	for ci, n := range vecSizes {
		for _, ns := range []int{1, 4, gpu.MaxStages} {
			coefs := dopriErr
			if ci%2 == 1 {
				coefs = rkCoefs
			}
			host, ks, coef := e.stages(n, ns, coefs)
			h := float32(0.01 * float64(1+ci))
			rtol, atol := float32(1e-3), float32([]float64{1e-6, 1e-3, 0.1}[ci%3])
			x := normals(e.rng, n, 1)
			xNew := make([]float32, n)
			for i := range xNew {
				xNew[i] = x[i] + float32(0.01*e.rng.NormFloat64())
			}
			px, pn := e.viewOf(x, ci%2, 1), e.viewOf(xNew, 1, 2)
			po := e.viewOf([]float32{sentinel}, 2, 1)
			e.be.ErrorNorm(px.view, pn.view, h, coef, ks, rtol, atol, po.view)
			want, tol := 0.0, tiny
			for i := 0; i < n; i++ {
				s, sc := stageSum(host, coef, i)
				den := float64(atol) + float64(rtol)*math.Max(math.Abs(float64(x[i])), math.Abs(float64(xNew[i])))
				q := float64(h) * s / den
				// the term's own error: e_i to 1e-5 of its terms' scale
				// (Dopri5's e_i cancels), the denominator to 1e-5
				dq := rtolElem * (math.Abs(float64(h))*sc/den + math.Abs(q))
				want += q * q
				tol += 2*math.Abs(q)*dq + dq*dq
			}
			// a sum of squares: 1e-4 relative, plus the terms' errors
			tol += rtolRed * want
			name := fmt.Sprintf("ErrorNorm(n=%d, stages=%d, h=%g, rtol=%g, atol=%g)", n, ns, h, rtol, atol)
			checkScalar(e.t, name, e.download(po.view)[0], want, tol)
			e.checkOutside(name, po)
		}
	}
}

// RowDot: out[r] = beta out[r] + alpha sum_c a[r, c] b[r, c] with beta 0
// (out holds NaN, which must not be read) and 1.
func testRowDot(e *env) {
	ci := 0
	for _, rows := range rowSizes {
		for _, cols := range []int{widthSizes[ci%len(widthSizes)], widthSizes[(ci+3)%len(widthSizes)]} {
			for _, beta := range []float32{0, 1} {
				alpha := []float32{1, -0.5, 2}[ci%3]
				ci++
				a := normals(e.rng, rows*cols, 1)
				b := normals(e.rng, rows*cols, 1)
				out := normals(e.rng, rows, 100)
				if beta == 0 { // not read: NaN there must not reach the result
					out = filled(rows, float32(math.NaN()))
				}
				pa, pb, po := e.viewOf(a, ci%3, 1), e.viewOf(b, 1, ci%2), e.viewOf(out, 2, 2)
				e.be.RowDot(rows, cols, alpha, pa.view, pb.view, beta, po.view)
				want, tol := make([]float64, rows), make([]float64, rows)
				for r := range want {
					var s, sc float64
					for j := r * cols; j < r*cols+cols; j++ {
						p := float64(a[j]) * float64(b[j])
						s += p
						sc += math.Abs(p)
					}
					want[r] = float64(alpha) * s
					sc *= math.Abs(float64(alpha))
					if beta != 0 {
						want[r] += float64(beta) * float64(out[r])
						sc += math.Abs(float64(beta) * float64(out[r]))
					}
					// a dot product: 1e-4 of |alpha| sum |a||b| + |beta out|
					tol[r] = rtolRed*sc + tiny
				}
				name := fmt.Sprintf("RowDot(rows=%d, cols=%d, alpha=%g, beta=%g)", rows, cols, alpha, beta)
				checkTol(e.t, name, e.download(po.view), want, tol, 0)
				e.checkOutside(name, po)
			}
		}
	}
}

// UnitColumn: e is zero with ones in column j, every element overwritten
// (it starts as NaN), nothing written outside the view.
func testUnitColumn(e *env) {
	for ci, rows := range rowSizes {
		cols := widthSizes[ci]
		for _, j := range []int{0, cols / 2, cols - 1} {
			p := e.viewOf(filled(rows*cols, sentinel), 1+ci%3, 2)
			e.be.UnitColumn(rows, cols, j, p.view)
			want := make([]float32, rows*cols)
			for r := 0; r < rows; r++ {
				want[r*cols+j] = 1
			}
			name := fmt.Sprintf("UnitColumn(rows=%d, cols=%d, j=%d)", rows, cols, j)
			checkBits(e.t, name, e.download(p.view), want, nil)
			e.checkOutside(name, p)
		}
	}
}

// benchODE times the solvers' updates at the samplers' sizes.
func benchODE(b *testing.B, newBackend func(b *testing.B) gpu.Backend) {
	b.Run("Axpy", func(b *testing.B) {
		for _, sh := range [][2]int{{20000, 2}, {4096, 784}} {
			n := sh[0] * sh[1]
			bench(b, fmt.Sprintf("rows=%d,d=%d", sh[0], sh[1]), newBackend, func(w *workload) (float64, float64, func()) {
				x, y := w.normals(n), w.normals(n)
				return 12 * float64(n), 0, func() { w.be.Axpy(1e-3, x, y) }
			})
		}
	})
	b.Run("LinComb", func(b *testing.B) {
		for _, sh := range [][2]int{{20000, 2}, {4096, 784}} {
			n := sh[0] * sh[1]
			bench(b, fmt.Sprintf("stages=7/rows=%d,d=%d", sh[0], sh[1]), newBackend, func(w *workload) (float64, float64, func()) {
				x, dst, ks := w.normals(n), w.alloc(n), w.stages(n, gpu.MaxStages)
				coef := []float32{35.0 / 384, 0.1, 500.0 / 1113, 125.0 / 192, -2187.0 / 6784, 11.0 / 84, 0.2}
				return 4 * float64(n*(gpu.MaxStages+2)), 0, func() { w.be.LinComb(dst, x, 0.01, coef, ks) }
			})
		}
	})
	b.Run("ErrorNorm", func(b *testing.B) {
		const rows, d = 4096, 784
		const n = rows * d
		bench(b, fmt.Sprintf("stages=7/rows=%d,d=%d", rows, d), newBackend, func(w *workload) (float64, float64, func()) {
			x, xn, out, ks := w.normals(n), w.normals(n), w.alloc(1), w.stages(n, gpu.MaxStages)
			return 4 * float64(n*(gpu.MaxStages+2)), 0, func() { w.be.ErrorNorm(x, xn, 0.01, dopriErr, ks, 1e-3, 1e-6, out) }
		})
	})
	b.Run("RowDot", func(b *testing.B) {
		const rows, cols = 4096, 784
		bench(b, fmt.Sprintf("rows=%d,cols=%d", rows, cols), newBackend, func(w *workload) (float64, float64, func()) {
			x, y, out := w.normals(rows*cols), w.normals(rows*cols), w.alloc(rows)
			return 8 * rows * cols, 2 * rows * cols, func() { w.be.RowDot(rows, cols, 1, x, y, 1, out) }
		})
	})
	b.Run("UnitColumn", func(b *testing.B) {
		const rows, cols = 4096, 784
		bench(b, fmt.Sprintf("rows=%d,cols=%d", rows, cols), newBackend, func(w *workload) (float64, float64, func()) {
			e := w.alloc(rows * cols)
			return 4 * rows * cols, 0, func() { w.be.UnitColumn(rows, cols, 7, e) }
		})
	})
}
