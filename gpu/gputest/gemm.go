package gputest

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/fmgpu/fmgpu/gpu"
)

// strided returns a rows x cols matrix of N(0, 1) draws stored with row
// stride ld, the padding columns holding the sentinel. Its length is the
// least a BLAS-style op may be given: (rows-1) ld + cols.
func strided(rng *rand.Rand, rows, cols, ld int) []float32 {
	if rows == 0 || cols == 0 {
		return []float32{sentinel}
	}
	s := make([]float32, (rows-1)*ld+cols)
	for i := range s {
		if i%ld < cols {
			s[i] = float32(rng.NormFloat64())
		} else {
			s[i] = sentinel
		}
	}
	return s
}

// refGemm is C = alpha op(A) op(B) + beta C in float64, with the error
// scale |alpha| sum_l |op(A)_il| |op(B)_lj| + |beta C_ij| of each element;
// beta = 0 does not read C.
func refGemm(ta, tb bool, m, n, k int, alpha float64, a []float32, lda int, b []float32, ldb int, beta float64, c []float32, ldc int) (want, scale []float64) {
	want = make([]float64, m*n)
	scale = make([]float64, m*n)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s, sa float64
			for l := 0; l < k; l++ {
				var av, bv float64
				if ta {
					av = float64(a[l*lda+i])
				} else {
					av = float64(a[i*lda+l])
				}
				if tb {
					bv = float64(b[j*ldb+l])
				} else {
					bv = float64(b[l*ldb+j])
				}
				s += av * bv
				sa += math.Abs(av * bv)
			}
			w, sc := alpha*s, math.Abs(alpha)*sa
			if beta != 0 {
				cv := float64(c[i*ldc+j])
				w += beta * cv
				sc += math.Abs(beta * cv)
			}
			want[i*n+j], scale[i*n+j] = w, sc
		}
	}
	return want, scale
}

// Gemm: the four transpose combinations over shapes from 1 x 1 x 1 to
// m = 4097 and k = 4097 (off every tile size by one), the MLP's 256^3, alpha and beta including beta = 0 over a C full
// of NaN, leading dimensions wider than the rows (padding full of NaN that
// must not be read nor written), every operand a view at an offset of a
// larger buffer, and k = 0 (C = beta C).
func testGemm(e *env) {
	shapes := [][3]int{
		{1, 1, 1}, {3, 2, 17}, {17, 31, 3}, {255, 64, 257}, {257, 3, 64},
		{1000, 2, 31}, {4097, 3, 2}, {5, 3, 4097}, {31, 257, 1}, {64, 255, 255},
		{4097, 65, 33}, {33, 17, 4097}, {256, 256, 256}, {129, 257, 65},
		{3, 5, 0}, {2, 257, 0},
	}
	scalars := [][2]float32{{1, 0}, {0.5, 1}, {-1.5, 0.25}, {2, -1}, {0.75, 0}}
	for _, ta := range []bool{false, true} {
		for _, tb := range []bool{false, true} {
			for s, sh := range shapes {
				m, n, k := sh[0], sh[1], sh[2]
				alpha, beta := scalars[s%len(scalars)][0], scalars[s%len(scalars)][1]
				padA, padB, padC := s%3, 2*((s+1)%3), (s+2)%3
				rowsA, colsA := m, k
				if ta {
					rowsA, colsA = k, m
				}
				rowsB, colsB := k, n
				if tb {
					rowsB, colsB = n, k
				}
				lda, ldb, ldc := max(1, colsA+padA), max(1, colsB+padB), n+padC
				av := strided(e.rng, rowsA, colsA, lda)
				bv := strided(e.rng, rowsB, colsB, ldb)
				cv := strided(e.rng, m, n, ldc)
				if beta == 0 {
					// C must not be read: NaN everywhere.
					cv = filled(len(cv), sentinel)
				}
				want, scale := refGemm(ta, tb, m, n, k, float64(alpha), av, lda, bv, ldb, float64(beta), cv, ldc)
				pa := e.viewOf(av, s%5, 3)
				pb := e.viewOf(bv, 1+s%4, 2)
				pc := e.viewOf(cv, 2+s%3, 4)
				e.be.Gemm(ta, tb, m, n, k, alpha, pa.view, lda, pb.view, ldb, beta, pc.view, ldc)
				name := fmt.Sprintf("Gemm(ta=%v, tb=%v, m=%d, n=%d, k=%d, alpha=%g, lda=%d, ldb=%d, beta=%g, ldc=%d)", ta, tb, m, n, k, alpha, lda, ldb, beta, ldc)
				got := e.download(pc.parent)
				inC := func(i int) bool {
					i -= pc.off
					return i >= 0 && i < len(cv) && i%ldc < n
				}
				gotC := make([]float32, 0, m*n)
				for i := 0; i < m; i++ {
					gotC = append(gotC, got[pc.off+i*ldc:pc.off+i*ldc+n]...)
				}
				tol := make([]float64, m*n)
				for i := range tol {
					// products and their sums: 1e-4 relative to
					// |alpha| sum |a||b| + |beta c| (package comment)
					tol[i] = rtolRed*scale[i] + tiny
				}
				checkTol(e.t, name, gotC, want, tol, n)
				checkBits(e.t, name+": C outside the m x n matrix", got, pc.host, func(i int) bool { return !inC(i) })
				checkBits(e.t, name+": A", e.download(pa.parent), pa.host, nil)
				checkBits(e.t, name+": B", e.download(pb.parent), pb.host, nil)
				for _, p := range []padded{pa, pb, pc} {
					e.be.Free(p.parent)
				}
			}
		}
	}
}

func silu64(z float64) float64 { return z / (1 + math.Exp(-z)) }

// logistic64 is 1 / (1 + e^-z).
func logistic64(z float64) float64 { return 1 / (1 + math.Exp(-z)) }

// Linear: pre = x W^T + bias, y = act(pre) with x a strided view (ldx >
// in, NaN in the padding), pre nil, separate, or the same buffer as y
// (ActNone only), and a case whose bias pushes pre to +-90 where a naive
// SiLU overflows.
func testLinear(e *env) {
	const (
		preNil = iota
		preSep
		preIsY
	)
	cases := []struct {
		rows, in, out int
		act           gpu.Act
		pre, padX     int
		biasStd       float64
	}{
		{1, 1, 1, gpu.ActNone, preSep, 0, 1},
		{3, 3, 31, gpu.ActSiLU, preSep, 2, 1},
		{17, 64, 64, gpu.ActSiLU, preNil, 0, 0.1},
		{255, 31, 257, gpu.ActNone, preIsY, 5, 1},
		{257, 2, 3, gpu.ActSiLU, preSep, 1, 1},
		{1000, 64, 31, gpu.ActSiLU, preSep, 0, 0.1},
		{1000, 257, 17, gpu.ActNone, preNil, 3, 1},
		{17, 31, 64, gpu.ActSiLU, preSep, 0, 90},
	}
	for ci, c := range cases {
		ldx := c.in + c.padX
		xv := strided(e.rng, c.rows, c.in, ldx)
		wv := normals(e.rng, c.out*c.in, 1/math.Sqrt(float64(c.in)))
		bv := normals(e.rng, c.out, c.biasStd)
		px := e.viewOf(xv, ci%4, 3)
		w, bias := e.upload(wv), e.upload(bv)
		py := e.viewOf(filled(c.rows*c.out, sentinel), 1+ci%3, 2)
		var pp padded
		var preBuf gpu.Buffer
		switch c.pre {
		case preSep:
			pp = e.viewOf(filled(c.rows*c.out, sentinel), 3, 1)
			preBuf = pp.view
		case preIsY:
			preBuf = py.view
		}
		e.be.Linear(c.rows, c.in, c.out, px.view, ldx, w, bias, c.act, preBuf, py.view)

		wantPre := make([]float64, c.rows*c.out)
		wantY := make([]float64, c.rows*c.out)
		tolPre := make([]float64, c.rows*c.out)
		tolY := make([]float64, c.rows*c.out)
		for r := 0; r < c.rows; r++ {
			for j := 0; j < c.out; j++ {
				z, sc := float64(bv[j]), math.Abs(float64(bv[j]))
				for l := 0; l < c.in; l++ {
					p := float64(xv[r*ldx+l]) * float64(wv[j*c.in+l])
					z += p
					sc += math.Abs(p)
				}
				i := r*c.out + j
				wantPre[i] = z
				// a product plus the bias: 1e-4 of sum |x||w| + |b|
				tolPre[i] = rtolRed*sc + tiny
				wantY[i], tolY[i] = z, tolPre[i]
				if c.act == gpu.ActSiLU {
					wantY[i] = silu64(z)
					// silu' lies in [-0.1, 1.1]: the error of pre passes on
					// at most 1.1 times, plus the float32 exp's own error.
					tolY[i] = 1.1*tolPre[i] + rtolTrans*math.Abs(wantY[i]) + atolTrans
				}
			}
		}
		name := fmt.Sprintf("Linear(rows=%d, in=%d, out=%d, ldx=%d, act=%d, pre=%v)", c.rows, c.in, c.out, ldx, c.act, []string{"nil", "separate", "y"}[c.pre])
		checkTol(e.t, name+": y", e.download(py.view), wantY, tolY, c.out)
		e.checkOutside(name+": y", py)
		if c.pre == preSep {
			gotPre := e.download(pp.view)
			checkTol(e.t, name+": pre", gotPre, wantPre, tolPre, c.out)
			e.checkOutside(name+": pre", pp)
			if c.act == gpu.ActSiLU {
				// y = silu(pre) of the backend's own pre, elementwise: the
				// activation alone, free of the product's tolerance.
				w, tl := make([]float64, len(gotPre)), make([]float64, len(gotPre))
				for i, z := range gotPre {
					w[i] = silu64(float64(z))
					tl[i] = atolTrans + rtolTrans*math.Abs(w[i])
				}
				checkTol(e.t, name+": y = silu(pre)", e.download(py.view), w, tl, c.out)
			}
		}
		checkBits(e.t, name+": x", e.download(px.parent), px.host, nil)
	}
}

// extremes overwrites every 97th element of v with values far into SiLU's
// tails (where exp overflows float32) and at 0.
func extremes(v []float32) {
	ext := []float32{20, -20, 90, -90, 1e4, -1e4, 0, -1.2785}
	for i := 0; i < len(v); i += 97 {
		v[i] = ext[(i/97)%len(ext)]
	}
}

// BiasActBackward: dPre = dY act'(pre) and dBias = column sums of dPre,
// with and without dBias (which starts as NaN: it is overwritten, not
// accumulated into), dPre aliasing dY or not, pre reaching SiLU's tails.
func testBiasActBackward(e *env) {
	cases := []struct {
		rows, cols   int
		act          gpu.Act
		dBias, alias bool
	}{
		{1, 1, gpu.ActSiLU, true, false},
		{3, 2, gpu.ActNone, true, true},
		{17, 31, gpu.ActSiLU, false, true},
		{255, 64, gpu.ActSiLU, true, false},
		{257, 257, gpu.ActSiLU, true, true},
		{1000, 3, gpu.ActNone, false, false},
		{1000, 64, gpu.ActSiLU, true, false},
		{3, 257, gpu.ActNone, true, false},
	}
	for ci, c := range cases {
		n := c.rows * c.cols
		dy := normals(e.rng, n, 1)
		pre := normals(e.rng, n, 3)
		extremes(pre)
		pdy := e.viewOf(dy, ci%3, 2)
		ppre := e.upload(pre)
		var pdp padded
		dPre := pdy.view
		if !c.alias {
			pdp = e.viewOf(filled(n, sentinel), 2, 3)
			dPre = pdp.view
		}
		var pdb padded
		var dBias gpu.Buffer
		if c.dBias {
			pdb = e.viewOf(filled(c.cols, sentinel), 1, 1)
			dBias = pdb.view
		}
		e.be.BiasActBackward(c.act, c.rows, c.cols, pdy.view, ppre, dPre, dBias)

		want := make([]float64, n)
		tol := make([]float64, n)
		for i := range want {
			g, z := float64(dy[i]), float64(pre[i])
			switch c.act {
			case gpu.ActNone:
				want[i] = g
				tol[i] = rtolElem * math.Abs(g)
			case gpu.ActSiLU:
				s := logistic64(z)
				want[i] = g * s * (1 + z*(1-s))
				// silu'(z) = s + z s (1 - s) may cancel (its zero is near
				// z = -1.28): relative to its terms' magnitudes.
				tol[i] = math.Abs(g) * (atolTrans + rtolTrans*(s+math.Abs(z*s*(1-s))))
			}
		}
		name := fmt.Sprintf("BiasActBackward(act=%d, rows=%d, cols=%d, dBias=%v, dPre aliases dY=%v)", c.act, c.rows, c.cols, c.dBias, c.alias)
		if c.alias {
			checkTol(e.t, name+": dPre", e.download(pdy.view), want, tol, c.cols)
			e.checkOutside(name+": dPre", pdy)
		} else {
			checkTol(e.t, name+": dPre", e.download(pdp.view), want, tol, c.cols)
			e.checkOutside(name+": dPre", pdp)
			checkBits(e.t, name+": dY", e.download(pdy.view), dy, nil)
		}
		if c.dBias {
			wantB := make([]float64, c.cols)
			tolB := make([]float64, c.cols)
			for i, v := range want {
				wantB[i%c.cols] += v
				// a sum: 1e-4 of sum |dPre|, plus the elements' own errors
				tolB[i%c.cols] += rtolRed*math.Abs(v) + tol[i]
			}
			for j := range tolB {
				tolB[j] += tiny
			}
			checkTol(e.t, name+": dBias", e.download(pdb.view), wantB, tolB, 0)
			e.checkOutside(name+": dBias", pdb)
		}
	}
}
