package sgemm

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestNormKernels checks the group-norm kernels against float64 loops on
// every tail length: the sums to float64 rounding of their terms, the
// affine maps to a few float32 roundings.
func TestNormKernels(t *testing.T) {
	if !NormKernels() {
		t.Skip("no group-norm kernels on this CPU or build")
	}
	r := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{1, 2, 7, 8, 9, 15, 16, 17, 31, 32, 33, 49, 63, 64, 65, 100, 196, 784, 6272} {
		x, dy := randConv(r, n), randConv(r, n)
		for i := range x {
			x[i] = 3 + 2*x[i]
		}
		var s, q, sd, sdx, abs float64
		for i := range x {
			s += float64(x[i])
			q += float64(x[i]) * float64(x[i])
			sd += float64(dy[i])
			sdx += float64(dy[i]) * float64(x[i])
			abs += math.Abs(float64(dy[i]) * float64(x[i]))
		}
		gs, gq := NormSums(x)
		if math.Abs(gs-s) > 1e-12*q || math.Abs(gq-q) > 1e-12*q {
			t.Errorf("n=%d: NormSums %g %g, want %g %g", n, gs, gq, s, q)
		}
		gd, gdx := NormDotSums(dy, x)
		if math.Abs(gd-sd) > 1e-12*abs || math.Abs(gdx-sdx) > 1e-12*abs {
			t.Errorf("n=%d: NormDotSums %g %g, want %g %g", n, gd, gdx, sd, sdx)
		}
		const m, a, b = 2.9, 0.7, -0.3
		y := make([]float32, n+1)
		y[n] = 42
		NormApply(x, y[:n], m, a, b)
		for i := range x {
			want := (float64(x[i])-m)*a + b
			if d := math.Abs(float64(y[i]) - want); d > 4e-7*(math.Abs(float64(x[i]))+m)*a+1e-7 {
				t.Fatalf("n=%d: NormApply[%d] = %g, want %g", n, i, y[i], want)
			}
		}
		if y[n] != 42 {
			t.Fatalf("n=%d: NormApply wrote past the end", n)
		}
		const A, B, C = 1.3, -0.4, 0.2
		dx := make([]float32, n+1)
		dx[n] = 42
		NormBackApply(dy, x, dx[:n], A, m, B, C)
		for i := range x {
			want := A*float64(dy[i]) + B*(float64(x[i])-m) + C
			tol := 4e-7 * (math.Abs(A*float64(dy[i])) + math.Abs(B)*(math.Abs(float64(x[i]))+m) + C)
			if d := math.Abs(float64(dx[i]) - want); d > tol {
				t.Fatalf("n=%d: NormBackApply[%d] = %g, want %g", n, i, dx[i], want)
			}
		}
		if dx[n] != 42 {
			t.Fatalf("n=%d: NormBackApply wrote past the end", n)
		}
	}
}

// TestSiLUAxpy: SiLU within its error bound of the float64 SiLU; Axpy
// the plain loop bit for bit; on every tail length.
func TestSiLUAxpy(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{1, 5, 15, 16, 17, 63, 64, 65, 100, 4096, 4099} {
		x := randConv(r, n+1)
		for i := range x {
			x[i] *= 8
		}
		x[0] = float32(math.Copysign(0, -1))
		y := make([]float32, n+1)
		y[n] = 42
		SiLU(x, y[:n])
		for i := 0; i < n; i++ {
			z := float64(x[i])
			want := z / (1 + math.Exp(-z))
			if d := math.Abs(float64(y[i]) - want); d > 1e-6*math.Abs(want)+1e-30 {
				t.Fatalf("n=%d: SiLU(%g) = %g, want %g", n, x[i], y[i], want)
			}
		}
		if y[n] != 42 {
			t.Fatalf("n=%d: SiLU wrote past the end", n)
		}
		a := float32(-1.7)
		yv, yg := randConv(r, n+1), make([]float32, n+1)
		copy(yg, yv)
		Axpy(a, x, yv[:n])
		for i := 0; i < n; i++ {
			yg[i] += a * x[i]
		}
		for i := range yv {
			if math.Float32bits(yv[i]) != math.Float32bits(yg[i]) {
				t.Fatalf("n=%d: Axpy[%d] = %g, the loop %g", n, i, yv[i], yg[i])
			}
		}
	}
}
