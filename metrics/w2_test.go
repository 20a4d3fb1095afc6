package metrics

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/fmgpu/fmgpu/internal/numtest"
)

// A set against itself shifted by delta: every permutation's cost is its
// cost without the shift plus n |delta|^2 (the cross term sums to zero),
// so the identity is optimal and W2 = |delta|.
func TestW2Shift(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	const n, d = 200, 3
	x := gaussianSet(r, n, d, make([]float64, d), 1)
	delta := []float64{0.25, -0.5, 1}
	y := make([]float32, n*d)
	for i := range y {
		y[i] = float32(float64(x[i]) + delta[i%d])
	}
	got, err := W2(x, y, n, d)
	if err != nil {
		t.Fatal(err)
	}
	// float32 rounding of the shifted points: 1e-7 relative.
	if want := math.Sqrt(0.0625 + 0.25 + 1); !numtest.Close(got, want, 0, 1e-6) {
		t.Errorf("W2 = %.9g, want %.9g", got, want)
	}
	if _, err := W2(x, y[:5], n, d); err == nil {
		t.Error("short set accepted")
	}
}
