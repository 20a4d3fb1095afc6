package cli

import (
	"context"
	"fmt"
	"io"
	"math"
	"runtime"

	ucli "github.com/urfave/cli/v2"

	"github.com/fmgpu/fmgpu/data"
	"github.com/fmgpu/fmgpu/internal/wasserstein"
)

// evalOptions are the settings of `fmgpu eval`.
type evalOptions struct {
	samples, data string
	n, floors     int
	floorsSet     bool
	seed          uint64
	quiet         bool
	csv           data.CSVOptions
}

// defaultFloors is how many pairs of fresh draws estimate the noise floor
// and its spread.
const defaultFloors = 5

// evalCommand measures sample quality as the exact W2 distance between
// samples and fresh data, beside the W2 between two fresh draws of the
// same size: the noise floor a perfect model would reach.
func evalCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "eval",
		Usage: "exact W2 distance between samples and fresh data, with the noise floor of two fresh draws (mean and spread)",
		Flags: append([]ucli.Flag{
			&ucli.StringFlag{Name: "samples", Usage: "(required) FILE.npy or FILE.csv from fmgpu sample"},
			&ucli.StringFlag{Name: "data", Usage: "(required) built-in set (fresh draws) or FILE.npy / FILE.csv (disjoint subsets of --n points)"},
			&ucli.IntFlag{Name: "n", Value: 2000, Usage: "points per set (the assignment is O(n^3))"},
			&ucli.Uint64Flag{Name: "seed", Value: 1000, Usage: "seed of the fresh built-in draws"},
			&ucli.IntFlag{Name: "floors", Value: defaultFloors, DefaultText: fmt.Sprintf("%d, or what a file holds", defaultFloors),
				Usage: "pairs of draws whose W2 estimates the noise floor (mean and spread); a file needs (floors + 1) x --n points"},
			&ucli.BoolFlag{Name: "quiet", DisableDefaultText: true, Usage: "no progress output"},
		}, csvFlags("")...),
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
	if err := requireFlags(c, "samples", "data"); err != nil {
		return evalOptions{}, err
	}
	o := evalOptions{samples: c.String("samples"), data: c.String("data"), n: c.Int("n"), floors: c.Int("floors"),
		floorsSet: c.IsSet("floors"), seed: c.Uint64("seed"), quiet: c.Bool("quiet")}
	if o.n < 1 || o.n > 20000 {
		return o, usagef("--n %d: need 1..20000", o.n)
	}
	if o.floors < 1 || o.floors > 100 {
		return o, usagef("--floors %d: need 1..100", o.floors)
	}
	if c.IsSet("seed") && !data.IsBuiltin(o.data) {
		return o, usagef("--seed applies to a built-in --data (fresh draws), not %s", o.data)
	}
	var err error
	if o.csv, err = csvOptionsFrom(c, "data", o.data); err != nil {
		return o, err
	}
	return o, nil
}

func runEval(ctx context.Context, o evalOptions, stdout, stderr io.Writer) error {
	n := o.n
	s, err := data.Load(o.samples, 0, 0)
	if err != nil {
		return dataError(err)
	}
	if s.N < n {
		return usagef("--samples %s has %d points, --n asks for %d", o.samples, s.N, n)
	}
	var ref []float32
	var others [][]float32 // second sets of the floor pairs
	name := o.data
	if data.IsBuiltin(name) {
		d1, err := data.Builtin(name, n, o.seed)
		if err != nil {
			return usageError{err}
		}
		ref = d1.X
		for k := 1; k <= o.floors; k++ {
			d2, _ := data.Builtin(name, n, o.seed+uint64(k))
			others = append(others, d2.X)
		}
	} else {
		ds, err := data.LoadWith(name, data.LoadOptions{CSV: o.csv})
		if err != nil {
			return dataError(err)
		}
		sets := ds.N / n // disjoint sets of n points the file holds
		switch {
		case sets < 2:
			return usagef("--data %s has %d points, need 2 x --n = %d for two disjoint sets", name, ds.N, 2*n)
		case o.floorsSet && sets < o.floors+1:
			return usagef("--floors %d: --data %s has %d points, (floors + 1) x --n = %d are needed", o.floors, name, ds.N, (o.floors+1)*n)
		}
		floors := min(o.floors, sets-1)
		m := n * ds.D
		ref = ds.X[:m]
		for k := 1; k <= floors; k++ {
			others = append(others, ds.X[k*m:(k+1)*m])
		}
	}
	d := len(ref) / n
	if s.D != d {
		return usagef("--samples has %d columns, --data %d", s.D, d)
	}
	for _, w := range data.Warnings(s) {
		fmt.Fprintf(stderr, "fmgpu eval: warning: %s\n", w)
	}
	// The W2 of the samples and of every floor pair, in parallel; a signal
	// abandons them (they write nothing) rather than waiting for an O(n^3)
	// assignment to end.
	pairs := append([][]float32{s.X[:n*d]}, others...)
	w := make([]float64, len(pairs))
	errs := make([]error, len(pairs))
	prog := newProgress(stderr, o.quiet, "fmgpu eval", "distances", 0, len(pairs))
	done := make(chan int, len(pairs))
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for i := range pairs {
		go func() {
			sem <- struct{}{}
			defer func() {
				// a panic here would end the process with exit code 2
				if r := recover(); r != nil {
					errs[i] = fmt.Errorf("internal error (a bug; please report it): W2 of set %d: %v", i, r)
				}
				<-sem
				done <- i
			}()
			w[i], errs[i] = w2f32(pairs[i], ref, n, d)
		}()
	}
	for k := range pairs {
		select {
		case <-ctx.Done():
			prog.finish(false)
			return ctx.Err()
		case <-done:
			prog.step(k + 1)
		}
	}
	prog.finish(true)
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	mean, sd := meanSD(w[1:])
	fmt.Fprintf(stdout, "n=%d dim=%d w2=%.5f w2_floor=%.5f w2_floor_sd=%.5f floors=%d ratio=%.3f\n", n, d, w[0], mean, sd, len(w)-1, w[0]/mean)
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
