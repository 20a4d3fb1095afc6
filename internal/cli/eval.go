package cli

import (
	"fmt"
	"math"

	ucli "github.com/urfave/cli/v2"

	"github.com/fmgpu/fmgpu/data"
	"github.com/fmgpu/fmgpu/internal/wasserstein"
)

// evalCommand measures sample quality as the exact W2 distance between
// samples and fresh data, beside the W2 between two fresh draws of the
// same size: the noise floor a perfect model would reach.
func evalCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "eval",
		Usage: "exact W2 distance between samples and fresh data, with the two-draw noise floor",
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "samples", Required: true, Usage: "FILE.npy or FILE.csv from fmgpu sample"},
			&ucli.StringFlag{Name: "data", Required: true, Usage: "built-in set (fresh draws) or FILE.npy / FILE.csv (two disjoint subsets)"},
			&ucli.IntFlag{Name: "n", Value: 2000, Usage: "points per set (the assignment is O(n^3))"},
			&ucli.Uint64Flag{Name: "seed", Value: 1000, Usage: "seed of the fresh built-in draws"},
			&ucli.IntFlag{Name: "floors", Value: 1, Usage: "built-in sets: pairs of fresh draws whose W2 estimates the noise floor (mean and spread)"},
		},
		Action: func(c *ucli.Context) error {
			n := c.Int("n")
			if n < 1 || n > 20000 {
				return usagef("--n %d: need 1..20000", n)
			}
			s, err := data.Load(c.String("samples"), 0, 0)
			if err != nil {
				return usageError{err}
			}
			if s.N < n {
				return usagef("--samples %s has %d points, --n asks for %d", c.String("samples"), s.N, n)
			}
			floors := c.Int("floors")
			if floors < 1 || floors > 100 {
				return usagef("--floors %d: need 1..100", floors)
			}
			var ref1 []float32
			var others [][]float32 // second sets of the floor pairs
			name := c.String("data")
			if data.IsBuiltin(name) {
				d1, err := data.Builtin(name, n, c.Uint64("seed"))
				if err != nil {
					return usageError{err}
				}
				ref1 = d1.X
				for k := 1; k <= floors; k++ {
					d2, _ := data.Builtin(name, n, c.Uint64("seed")+uint64(k))
					others = append(others, d2.X)
				}
			} else {
				ds, err := data.Load(name, 0, 0)
				if err != nil {
					return usageError{err}
				}
				if ds.N < 2*n {
					return usagef("--data %s has %d points, need 2 x --n = %d for two disjoint sets", name, ds.N, 2*n)
				}
				ref1, others = ds.X[:n*ds.D], [][]float32{ds.X[n*ds.D : 2*n*ds.D]}
			}
			d := len(ref1) / n
			if s.D != d {
				return usagef("--samples has %d columns, --data %d", s.D, d)
			}
			w, err := w2f32(s.X[:n*d], ref1, n, d)
			if err != nil {
				return err
			}
			var fs []float64
			for _, o := range others {
				f, err := w2f32(o, ref1, n, d)
				if err != nil {
					return err
				}
				fs = append(fs, f)
			}
			mean, sd := meanSD(fs)
			fmt.Fprintf(c.App.Writer, "n=%d dim=%d w2=%.5f w2_floor=%.5f w2_floor_sd=%.5f floors=%d ratio=%.3f\n", n, d, w, mean, sd, len(fs), w/mean)
			return nil
		},
	}
}

func w2f32(a, b []float32, n, d int) (float64, error) {
	a64, b64 := make([]float64, len(a)), make([]float64, len(b))
	for i := range a {
		a64[i], b64[i] = float64(a[i]), float64(b[i])
	}
	w, _, err := wasserstein.W2(a64, b64, n, d)
	return w, err
}

// meanSD is the mean and sample standard deviation (0 for one value).
func meanSD(v []float64) (float64, float64) {
	m := 0.0
	for _, x := range v {
		m += x
	}
	m /= float64(len(v))
	if len(v) < 2 {
		return m, 0
	}
	ss := 0.0
	for _, x := range v {
		ss += (x - m) * (x - m)
	}
	return m, math.Sqrt(ss / float64(len(v)-1))
}
