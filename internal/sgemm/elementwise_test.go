package sgemm

import (
	"math"
	"math/rand/v2"
	"testing"
)

func logistic64(z float64) float64 { return 1 / (1 + math.Exp(-z)) }

// TestSiLUGrad checks the vector SiLU gradient against float64 over a wide
// range, the tails where exp overflows, and every length mod the width,
// in place and out of place, with the tolerance of the gpu conformance
// suite (relative 2e-5 of s + |z s (1-s)|, plus 1e-6, times |dy|).
func TestSiLUGrad(t *testing.T) {
	forEachKernel(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(21, 22))
		for _, n := range []int{1, 7, 8, 15, 16, 17, 33, 100, 4096, 4099} {
			z := make([]float32, n)
			dy := make([]float32, n)
			for i := range z {
				switch i % 5 {
				case 0:
					z[i] = float32(-100 + 200*r.Float64())
				default:
					z[i] = float32(r.NormFloat64() * 4)
				}
				dy[i] = float32(r.NormFloat64())
			}
			ext := []float32{20, -20, 90, -90, 1e4, -1e4, 0, -1.2785, 1e30, -1e30, 88, -88, 87.5, -87.5}
			for i := 0; i < n && i < len(ext); i++ {
				z[i*3%n] = ext[i]
			}
			for _, inPlace := range []bool{false, true} {
				dz := make([]float32, n)
				if inPlace {
					copy(dz, dy)
					SiLUGrad(dz, z, dz)
				} else {
					SiLUGrad(dy, z, dz)
				}
				for i := range dz {
					g, zz := float64(dy[i]), float64(z[i])
					s := logistic64(zz)
					want := g * s * (1 + zz*(1-s))
					tol := math.Abs(g) * (1e-6 + 2e-5*(s+math.Abs(zz*s*(1-s))))
					if d := math.Abs(float64(dz[i]) - want); !(d <= tol) {
						t.Errorf("n=%d inPlace=%v: silu'(%g) * %g = %g, want %g (diff %g > tol %g)", n, inPlace, zz, g, dz[i], want, d, tol)
					}
				}
			}
		}
	})
}

func TestAddColSums(t *testing.T) {
	forEachKernel(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(23, 24))
		for _, s := range [][3]int{{1, 1, 1}, {3, 5, 7}, {17, 64, 64}, {100, 257, 260}, {7, 3, 3}, {33, 130, 131}, {5, 8, 8}} {
			rows, cols, ldx := s[0], s[1], s[2]
			x := randSlice(r, rows*ldx)
			acc := make([]float64, cols+1)
			want := make([]float64, cols+1)
			for j := range acc {
				acc[j] = float64(j) * 0.5
				want[j] = acc[j]
			}
			for i := 0; i < rows; i++ {
				for j := 0; j < cols; j++ {
					want[j] += float64(x[i*ldx+j])
				}
			}
			AddColSums(acc, x, rows, cols, ldx)
			for j := range acc {
				if acc[j] != want[j] {
					t.Errorf("%v: acc[%d] = %v, want %v (bit-exact)", s, j, acc[j], want[j])
				}
			}
		}
	})
}

func BenchmarkSiLUGrad(b *testing.B) {
	defer SetKernel("")
	for _, name := range Kernels() {
		b.Run("kernel="+name, func(b *testing.B) {
			SetKernel(name)
			r := rand.New(rand.NewPCG(1, 2))
			n := 4096 * 16
			dy, z, dz := randSlice(r, n), randSlice(r, n), make([]float32, n)
			b.SetBytes(int64(12 * n))
			for i := 0; i < b.N; i++ {
				SiLUGrad(dy, z, dz)
			}
		})
	}
}
