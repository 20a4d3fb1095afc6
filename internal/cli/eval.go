package cli

import (
	"context"
	"fmt"
	"io"
	"math"

	ucli "github.com/urfave/cli/v2"

	"github.com/fmgpu/fmgpu/data"
	"github.com/fmgpu/fmgpu/internal/wasserstein"
)

// evalOptions are the settings of `fmgpu eval`.
type evalOptions struct {
	samples, data string
	n, floors     int
	seed          uint64
}

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
			o, err := evalOptionsFrom(c)
			if err != nil {
				return err
			}
			return runEval(c.Context, o, c.App.Writer, c.App.ErrWriter)
		},
	}
}

func evalOptionsFrom(c *ucli.Context) (evalOptions, error) {
	o := evalOptions{samples: c.String("samples"), data: c.String("data"), n: c.Int("n"), floors: c.Int("floors"), seed: c.Uint64("seed")}
	if o.n < 1 || o.n > 20000 {
		return o, usagef("--n %d: need 1..20000", o.n)
	}
	if o.floors < 1 || o.floors > 100 {
		return o, usagef("--floors %d: need 1..100", o.floors)
	}
	return o, nil
}

func runEval(ctx context.Context, o evalOptions, stdout, stderr io.Writer) error {
	n := o.n
	s, err := data.Load(o.samples, 0, 0)
	if err != nil {
		return usageError{err}
	}
	if s.N < n {
		return usagef("--samples %s has %d points, --n asks for %d", o.samples, s.N, n)
	}
	var ref1 []float32
	var others [][]float32 // second sets of the floor pairs
	name := o.data
	if data.IsBuiltin(name) {
		d1, err := data.Builtin(name, n, o.seed)
		if err != nil {
			return usageError{err}
		}
		ref1 = d1.X
		for k := 1; k <= o.floors; k++ {
			d2, _ := data.Builtin(name, n, o.seed+uint64(k))
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
	if err := ctx.Err(); err != nil {
		return err
	}
	w, err := w2f32(s.X[:n*d], ref1, n, d)
	if err != nil {
		return err
	}
	var fs []float64
	for _, other := range others {
		if err := ctx.Err(); err != nil {
			return err
		}
		f, err := w2f32(other, ref1, n, d)
		if err != nil {
			return err
		}
		fs = append(fs, f)
	}
	mean, sd := meanSD(fs)
	fmt.Fprintf(stdout, "n=%d dim=%d w2=%.5f w2_floor=%.5f w2_floor_sd=%.5f floors=%d ratio=%.3f\n", n, d, w, mean, sd, len(fs), w/mean)
	return nil
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
