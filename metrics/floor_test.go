package metrics

import (
	"flag"
	"fmt"
	"math"
	"testing"

	"github.com/fmgpu/fmgpu/data"
)

var floorFlag = flag.Bool("floor", false, "TestMMDNoiseFloor: print the MMD noise floors of the built-in sets (docs/math.md §12.1)")

// TestMMDNoiseFloor prints, for each built-in 2-D set, the mean and
// standard deviation of MMD2 between two independent draws of n points
// (the noise floor docs/math.md §12.1 tabulates):
//
//	go test ./metrics -run MMDNoiseFloor -v -floor
func TestMMDNoiseFloor(t *testing.T) {
	if !*floorFlag {
		t.Skip("measurement; run with -floor")
	}
	const n, reps = 2000, 20
	for _, name := range data.BuiltinNames() {
		var s, s2, h float64
		for r := range reps {
			a, err := data.Builtin(name, n, uint64(2*r+1))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := data.Builtin(name, n, uint64(2*r+2))
			res, err := MMD(a.X, b.X, n, n, 2, 0)
			if err != nil {
				t.Fatal(err)
			}
			s += res.MMD2
			s2 += res.MMD2 * res.MMD2
			h += res.Bandwidth
		}
		mean := s / reps
		sd := math.Sqrt((s2 - s*s/reps) / (reps - 1))
		fmt.Printf("| %s | %.2g | %.2g | %.3f |\n", name, mean, sd, h/reps)
	}
}
