package gputest

import (
	"fmt"
	"math"
	"testing"

	"github.com/fmgpu/fmgpu/gpu"
)

// The Attention family (gpu/attention.go) against float64 references.

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

// benchAttention times attention's softmax at 7 x 7 = 49 positions, batch 128.
func benchAttention(b *testing.B, newBackend func(b *testing.B) gpu.Backend) {
	b.Run("Softmax", func(b *testing.B) {
		const batch, t = 128, 49
		bench(b, fmt.Sprintf("rows=%d,cols=%d", batch*t, t), newBackend, func(w *workload) (float64, float64, func()) {
			p := w.normals(batch * t * t)
			return 8 * float64(batch*t*t), 0, func() { w.be.Softmax(batch*t, t, p, p) }
		})
	})
}
