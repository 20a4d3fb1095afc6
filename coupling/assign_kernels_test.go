package coupling

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// kernelInput draws n values, from few distinct ones when ties is set (the
// passes' tie rules are then what decides), with some entries set to inf.
func kernelInput(r *rand.Rand, n int, ties bool, inf float64, pInf float64) []float64 {
	x := make([]float64, n)
	for j := range x {
		switch {
		case r.Float64() < pInf:
			x[j] = inf
		case ties:
			x[j] = float64(r.IntN(4))
		default:
			x[j] = r.NormFloat64()
		}
	}
	return x
}

var kernelSizes = []int{1, 2, 7, 8, 9, 15, 16, 17, 31, 64, 255, 256, 259}

// The assignment's passes (vectorized where the CPU has AVX-512) give the
// plain-Go references' results bit for bit, ties, signed zeros and tails
// included.
func TestAssignKernelsMatchGo(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	for _, n := range kernelSizes {
		for trial := range 20 {
			ties := trial%2 == 0
			row := kernelInput(r, n, ties, 0, 0)
			v := kernelInput(r, n, ties, 0, 0)

			v1, v2 := slices.Clone(v), slices.Clone(v)
			b1, b2 := make([]int32, n), make([]int32, n)
			columnMin(row, v1, b1, 5)
			columnMinGo(row, v2, b2, 5)
			if !slices.Equal(v1, v2) || !slices.Equal(b1, b2) {
				t.Fatalf("columnMin n=%d: %v %v, want %v %v", n, v1, b1, v2, b2)
			}

			u1, j1, u2, j2 := rowTop2(row, v)
			w1, k1, w2, k2 := rowTop2Go(row, v)
			if u1 != w1 || j1 != k1 || u2 != w2 || j2 != k2 {
				t.Fatalf("rowTop2 n=%d row %v v %v: (%v, %d, %v, %d), want (%v, %d, %v, %d)", n, row, v, u1, j1, u2, j2, w1, k1, w2, k2)
			}

			// Each row less its minimum, the zeros of tied rows of both
			// signs: the result's bits must not depend on the order in
			// which the lanes meet them.
			sub := slices.Clone(row)
			for j := range sub {
				if sub[j] == 0 && r.IntN(2) == 0 {
					sub[j] = math.Copysign(0, -1)
				}
			}
			s1, s2 := slices.Clone(sub), slices.Clone(sub)
			subtractRowMin(s1)
			subtractRowMinGo(s2)
			for j := range s1 {
				if math.Float64bits(s1[j]) != math.Float64bits(s2[j]) {
					t.Fatalf("subtractRowMin n=%d row %v: %v, want %v", n, sub, s1, s2)
				}
			}

			// A search part way: settled columns have d = +Inf and vs = -Inf.
			pSettled := []float64{0, 0.5, 1}[trial%3]
			d := kernelInput(r, n, ties, math.Inf(1), pSettled)
			vs := slices.Clone(v)
			for j := range d {
				if math.IsInf(d[j], 1) {
					vs[j] = math.Inf(-1)
				}
			}
			h := float64(r.IntN(3)) - 1
			d1, d2 := slices.Clone(d), slices.Clone(d)
			p1, p2 := make([]int32, n), make([]int32, n)
			// No column free, a third free, or all (the first column at
			// the minimum is then decided over all columns, or over the
			// free ones).
			colRow := make([]int32, n)
			for j := range colRow {
				switch trial % 4 {
				case 0, 1:
					colRow[j] = int32(r.IntN(n))
				case 2:
					colRow[j] = int32(r.IntN(3)) - 1
				case 3:
					colRow[j] = -1
				}
			}
			m1, i1 := relaxMin(d1, vs, row, p1, colRow, h, 3)
			m2, i2 := relaxMinGo(d2, vs, row, p2, colRow, h, 3)
			if m1 != m2 || i1 != i2 || !slices.Equal(d1, d2) || !slices.Equal(p1, p2) {
				t.Fatalf("relaxMin n=%d: (%v, %d) d %v pred %v, want (%v, %d) d %v pred %v", n, m1, i1, d1, p1, m2, i2, d2, p2)
			}
			if pSettled == 1 && (i2 != -1 || !math.IsInf(m2, 1)) {
				t.Fatalf("relaxMinGo with every column settled: (%v, %d), want (+Inf, -1)", m2, i2)
			}
		}
	}
}

// Sinkhorn's products (vectorized where the CPU has AVX-512) give the
// plain-Go references' results bit for bit, the columns past the last
// whole block of 32 included.
func TestSinkhornKernelsMatchGo(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 8))
	for _, n := range []int{1, 7, 31, 32, 33, 64, 95, 256, 259} {
		k := make([]float64, n*n)
		for i := range k {
			k[i] = math.Exp(-4 * r.Float64())
		}
		x := kernelInput(r, n, false, 0, 0)
		got, want := make([]float64, n), make([]float64, n)
		matVec(got, k, x, n)
		matVecGo(want, k, x, n)
		for i := range got {
			if math.Float64bits(got[i]) != math.Float64bits(want[i]) {
				t.Fatalf("matVec n=%d: out[%d] = %v, want %v", n, i, got[i], want[i])
			}
		}
		matTVec(got, k, x, n)
		matTVecGo(want, k, x, n)
		for j := range got {
			if math.Float64bits(got[j]) != math.Float64bits(want[j]) {
				t.Fatalf("matTVec n=%d: out[%d] = %v, want %v", n, j, got[j], want[j])
			}
		}
	}
}

// The costs' conversion (vectorized where the CPU has AVX-512) gives the
// plain-Go reference's values and verdict: a NaN or an infinity anywhere,
// in the vectorized part or the tail, makes it report false.
func TestWidenCostsMatchesGo(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	bad := []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))}
	for _, n := range []int{1, 15, 16, 17, 64, 100, 256} {
		for trial := range 8 {
			src := make([]float32, n)
			for k := range src {
				src[k] = float32(r.NormFloat64())
			}
			if trial > 0 {
				src[r.IntN(n)] = bad[trial%len(bad)]
			}
			got, want := make([]float64, n), make([]float64, n)
			okGot, okWant := widenCosts(got, src), widenCostsGo(want, src)
			if okGot != okWant || okWant != (trial == 0) {
				t.Fatalf("n=%d trial %d: finite %v, want %v", n, trial, okGot, okWant)
			}
			for k := range got {
				if math.Float64bits(got[k]) != math.Float64bits(want[k]) {
					t.Fatalf("n=%d: dst[%d] = %v, want %v", n, k, got[k], want[k])
				}
			}
		}
	}
}
