package gputest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/fmgpu/fmgpu/gpu"
)

// The Products family (gpu/products.go): Gemm and GemmBatched against
// refGemm, the product's defining sum in float64.

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
				rowsA, colsA := gpu.StoredShape(ta, m, k)
				rowsB, colsB := gpu.StoredShape(tb, k, n)
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
					// |alpha| sum |a||b| + |beta c| (package comment; in
					// tf32, rtolTF32)
					tol[i] = e.rtolProd()*scale[i] + tiny
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

// GemmAligned: Gemm on operands a backend's vectorized copies can read
// (each operand's first element 16-byte aligned, row strides multiples of 4
// floats: the tensor-core kernels' preconditions, gpu/device_products.go),
// so that every precision's own kernels run: the four transpose pairs over
// shapes off the 128 x 128 x 32 tiles by one and far below them, k long
// enough for a split-K product, alpha and beta including beta = 0 over a C
// full of NaN, padded rows, and C at an unaligned offset with any stride
// (its stores are scalar).
func testGemmAligned(e *env) {
	shapes := [][3]int{
		{1, 1, 1}, {3, 5, 7}, {128, 128, 32}, {129, 127, 33}, {257, 65, 100},
		{64, 300, 513}, {200, 3, 1200}, {5, 260, 4},
	}
	scalars := [][2]float32{{1, 0}, {0.5, 1}, {-1.5, 0.25}, {2, -1}, {0.75, 0}}
	ceil4 := func(v int) int { return (v + 3) &^ 3 }
	for _, ta := range []bool{false, true} {
		for _, tb := range []bool{false, true} {
			for s, sh := range shapes {
				m, n, k := sh[0], sh[1], sh[2]
				alpha, beta := scalars[s%len(scalars)][0], scalars[s%len(scalars)][1]
				rowsA, colsA := gpu.StoredShape(ta, m, k)
				rowsB, colsB := gpu.StoredShape(tb, k, n)
				// row strides: multiples of 4, some padded by 4 more
				lda, ldb, ldc := ceil4(colsA)+4*(s%2), ceil4(colsB)+4*((s+1)%2), n+s%3
				av := strided(e.rng, rowsA, colsA, lda)
				bv := strided(e.rng, rowsB, colsB, ldb)
				cv := strided(e.rng, m, n, ldc)
				if beta == 0 {
					cv = filled(len(cv), sentinel) // C must not be read
				}
				round, rtol := e.prodRef(true)
				want, scale := refGemm(ta, tb, m, n, k, float64(alpha), round(av), lda, round(bv), ldb, float64(beta), cv, ldc)
				pa := e.viewOf(av, 4*(s%2), 3)
				pb := e.viewOf(bv, 4*((s+1)%3), 2)
				pc := e.viewOf(cv, 1+s%3, 4)
				e.be.Gemm(ta, tb, m, n, k, alpha, pa.view, lda, pb.view, ldb, beta, pc.view, ldc)
				name := fmt.Sprintf("Gemm(ta=%v, tb=%v, m=%d, n=%d, k=%d, alpha=%g, lda=%d, ldb=%d, beta=%g, ldc=%d)", ta, tb, m, n, k, alpha, lda, ldb, beta, ldc)
				got := e.download(pc.parent)
				gotC := make([]float32, 0, m*n)
				for i := 0; i < m; i++ {
					gotC = append(gotC, got[pc.off+i*ldc:pc.off+i*ldc+n]...)
				}
				tol := make([]float64, m*n)
				for i := range tol {
					// the precision's bound relative to |alpha| sum |a||b| + |beta c|
					// (bf16: rtolRed from the rounded operands' product)
					tol[i] = rtol*scale[i] + tiny
				}
				checkTol(e.t, name, gotC, want, tol, n)
				inC := func(i int) bool {
					i -= pc.off
					return i >= 0 && i < len(cv) && i%ldc < n
				}
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
		rowsA, colsA := gpu.StoredShape(c.ta, c.m, c.k)
		rowsB, colsB := gpu.StoredShape(c.tb, c.k, c.n)
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

// benchProducts times the MLP's products and attention's batched ones.
func benchProducts(b *testing.B, newBackend func(b *testing.B) gpu.Backend) {
	b.Run("Gemm", func(b *testing.B) { benchGemm(b, newBackend) })
	b.Run("GemmBatched", func(b *testing.B) {
		// attention's scores at 7 x 7 = 49 positions and 128 channels,
		// batch 128
		const batch, c, t = 128, 128, 49
		bench(b, fmt.Sprintf("scores/batch=%d,c=%d,t=%d", batch, c, t), newBackend, func(w *workload) (float64, float64, func()) {
			qkv, probs := w.normals(batch*3*c*t), w.alloc(batch*t*t)
			return 4 * float64(batch*(2*c*t+t*t)), 2 * float64(batch*t*t*c), func() {
				w.be.GemmBatched(true, false, batch, t, t, c, 1, qkv, t, 3*c*t, qkv.Slice(c*t, (3*batch-1)*c*t), t, 3*c*t, 0, probs, t, t*t)
			}
		})
	})
}

// The MLP's products per layer for batch B and hidden width H: forward
// X(B x H) W^T, dX = dY W, dW = dY^T X.
func benchGemm(b *testing.B, newBackend func(b *testing.B) gpu.Backend) {
	type shape struct {
		ta, tb  bool
		m, n, k int
	}
	var shapes []shape
	seen := map[shape]bool{}
	for _, bh := range [][2]int{{4096, 256}, {256, 256}, {4096, 512}, {256, 512}} {
		B, H := bh[0], bh[1]
		for _, s := range []shape{{false, true, B, H, H}, {false, false, B, H, H}, {true, false, H, H, B}} {
			if !seen[s] {
				seen[s] = true
				shapes = append(shapes, s)
			}
		}
	}
	for _, s := range shapes {
		name := fmt.Sprintf("ta=%v,tb=%v/m=%d,n=%d,k=%d", s.ta, s.tb, s.m, s.n, s.k)
		bench(b, name, newBackend, func(w *workload) (float64, float64, func()) {
			lda, ldb := s.k, s.n
			if s.ta {
				lda = s.m
			}
			if s.tb {
				ldb = s.k
			}
			a, bb, c := w.normals(s.m*s.k), w.normals(s.k*s.n), w.alloc(s.m*s.n)
			bytes := 4 * float64(s.m*s.k+s.k*s.n+s.m*s.n)
			return bytes, 2 * float64(s.m) * float64(s.n) * float64(s.k), func() {
				w.be.Gemm(s.ta, s.tb, s.m, s.n, s.k, 1, a, lda, bb, ldb, 0, c, s.n)
			}
		})
	}
}
