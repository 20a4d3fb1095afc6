package cli

import (
	"fmt"
	"io"
	"math"
	"path/filepath"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/fmgpu/fmgpu/data"
	"github.com/fmgpu/fmgpu/flow"
	"github.com/fmgpu/fmgpu/internal/atomicfile"
	"github.com/fmgpu/fmgpu/sampler"
)

func solverFlags(defaultSolver string, defaultSteps int) []ucli.Flag {
	return []ucli.Flag{
		&ucli.StringFlag{Name: "solver", Value: defaultSolver, Usage: "euler, midpoint, heun, rk4 or dopri5"},
		&ucli.IntFlag{Name: "steps", Value: defaultSteps, Usage: "steps of a fixed-step solver"},
		&ucli.Float64Flag{Name: "rtol", Value: 1e-5, Usage: "dopri5 relative tolerance"},
		&ucli.Float64Flag{Name: "atol", Value: 1e-5, Usage: "dopri5 absolute tolerance"},
		&ucli.IntFlag{Name: "max-steps", Value: sampler.DefaultMaxSteps, Usage: "dopri5: most steps before giving up"},
		&ucli.StringFlag{Name: "device", Value: "auto", Usage: "auto, cpu or cuda"},
		&ucli.IntFlag{Name: "threads", Value: 0, Usage: "CPU worker threads (0: all cores)"},
		&ucli.BoolFlag{Name: "no-ema", Usage: "use the raw weights instead of their EMA"},
	}
}

func solverOptions(c *ucli.Context) (sampler.Options, error) {
	m, err := sampler.ParseMethod(c.String("solver"))
	if err != nil {
		return sampler.Options{}, usagef("--solver: %v", err)
	}
	o := sampler.Options{Method: m, Steps: c.Int("steps"), Rtol: c.Float64("rtol"), Atol: c.Float64("atol"), MaxSteps: c.Int("max-steps")}
	switch {
	case o.Steps < 1 || o.Steps > 1<<20:
		return o, usagef("--steps %d: need 1..%d", o.Steps, 1<<20)
	case !(o.Rtol > 0 && o.Rtol < 1):
		return o, usagef("--rtol %g: need 0 < rtol < 1", o.Rtol)
	case !(o.Atol > 0 && o.Atol < 1):
		return o, usagef("--atol %g: need 0 < atol < 1", o.Atol)
	case o.MaxSteps < 1:
		return o, usagef("--max-steps %d: need >= 1", o.MaxSteps)
	case c.Int("threads") < 0:
		return o, usagef("--threads %d: need >= 0", c.Int("threads"))
	}
	return o, nil
}

// outputFormat checks that an output path ends in a format fmgpu writes.
func outputFormat(flag, path string, allowed ...string) (string, error) {
	ext := strings.ToLower(filepath.Ext(path))
	for _, a := range allowed {
		if ext == a {
			return ext, nil
		}
	}
	return "", usagef("--%s %s: want a %s file", flag, path, strings.Join(allowed, " or "))
}

func writeMatrix(path string, x []float32, rows, cols int) error {
	ext := strings.ToLower(filepath.Ext(path))
	return atomicfile.Write(path, func(w io.Writer) error {
		if ext == ".csv" {
			return data.WriteCSV(w, x, rows, cols, nil)
		}
		return data.WriteNPY(w, x, rows, cols)
	})
}

func sampleCommand() *ucli.Command {
	flags := []ucli.Flag{
		&ucli.StringFlag{Name: "checkpoint", Required: true, Usage: "DIR/checkpoint.safetensors from fmgpu train"},
		&ucli.IntFlag{Name: "n", Value: 1000, Usage: "number of samples"},
		&ucli.StringFlag{Name: "out", Usage: "FILE.npy or FILE.csv (n x D, data units); required unless --grid is given"},
		&ucli.Uint64Flag{Name: "seed", Value: 1, Usage: "seed of the noise x0"},
		&ucli.StringFlag{Name: "trajectory", Usage: "also write the states at every step, FILE.npy of shape (steps+1, n, D)"},
		&ucli.StringFlag{Name: "plot", Usage: "also draw the samples (first two dimensions) to FILE.png"},
		&ucli.StringFlag{Name: "grid", Usage: "image models: a 10 x 10 grid of samples to FILE.png (one row per class when class-conditional)"},
		&ucli.IntFlag{Name: "class", Value: -1, Usage: "class-conditional models: sample this class only (default: every class in turn)"},
		&ucli.Float64Flag{Name: "guidance", Value: defaultGuidance, Usage: "class-conditional models: classifier-free guidance weight w in v_null + w (v_class - v_null)"},
	}
	return &ucli.Command{
		Name:  "sample",
		Usage: "draw samples from a trained model by solving its ODE from noise",
		Flags: append(flags, solverFlags("rk4", 100)...),
		Action: func(c *ucli.Context) error {
			o, err := solverOptions(c)
			if err != nil {
				return err
			}
			n := c.Int("n")
			if n < 1 || n > 1<<26 {
				return usagef("--n %d: need 1..%d", n, 1<<26)
			}
			out, gridPath := c.String("out"), c.String("grid")
			if out == "" && gridPath == "" {
				return usagef("give --out FILE.npy|FILE.csv, --grid FILE.png, or both")
			}
			if out != "" {
				if _, err := outputFormat("out", out, ".npy", ".csv"); err != nil {
					return err
				}
			}
			if gridPath != "" {
				if _, err := outputFormat("grid", gridPath, ".png"); err != nil {
					return err
				}
			}
			traj, plot := c.String("trajectory"), c.String("plot")
			if traj != "" {
				if _, err := outputFormat("trajectory", traj, ".npy"); err != nil {
					return err
				}
				if o.Method == sampler.Dopri5 {
					return usagef("--trajectory needs a fixed-step --solver (euler, midpoint, heun, rk4)")
				}
			}
			if plot != "" {
				if _, err := outputFormat("plot", plot, ".png"); err != nil {
					return err
				}
			}
			guidance := c.Float64("guidance")
			if math.IsNaN(guidance) || math.IsInf(guidance, 0) || guidance < 0 || guidance > 100 {
				return usagef("--guidance %g: need 0..100", guidance)
			}
			b, err := openBackend(c.String("device"), c.Int("threads"))
			if err != nil {
				return err
			}
			defer b.Close()
			lm, err := loadModel(b, c.String("checkpoint"), !c.Bool("no-ema"))
			if err != nil {
				return err
			}
			classes, k := lm.classes(), c.Int("class")
			if c.IsSet("class") && (classes == 0 || k < 0 || k >= classes) {
				if classes == 0 {
					return usagef("--class: this model is unconditional")
				}
				return usagef("--class %d: the model has classes 0..%d (%s)", k, classes-1, strings.Join(lm.ck.Meta.Data.Classes, ", "))
			}
			mc := lm.net.Config()
			if gridPath != "" && mc.Image == nil {
				return usagef("--grid needs an image model; use --plot for 2-D data")
			}
			g := genOptions{seed: c.Uint64("seed"), guidance: guidance}
			if classes > 0 {
				g.labels = make([]int, n)
				for i := range g.labels {
					g.labels[i] = i % classes
					if k >= 0 {
						g.labels[i] = k
					}
				}
			}
			d := lm.net.Dim()
			var trajectory []float32
			if traj != "" {
				lo, hi := lm.path.TimeRange()
				for i := 0; i <= o.Steps; i++ {
					// the solver's own grid points, so saving does not split steps
					s := flow.ShiftTime(float64(i)/float64(o.Steps), lm.shift)
					o.SaveAt = append(o.SaveAt, lo+(hi-lo)*s)
				}
				trajectory = make([]float32, (o.Steps+1)*n*d)
				g.onSave = func(step, first int, xs []float32) {
					if step <= o.Steps {
						copy(trajectory[(step*n+first)*d:], xs)
					}
				}
			}
			start := time.Now()
			var x []float32
			var st sampler.Stats
			if out != "" || traj != "" || plot != "" {
				if x, st, err = generate(b, lm, n, o, g); err != nil {
					return err
				}
			}
			el := time.Since(start)
			if out != "" {
				if err := writeMatrix(out, x, n, d); err != nil {
					return err
				}
			}
			if trajectory != nil {
				if err := atomicfile.Write(traj, func(w io.Writer) error {
					return data.WriteNPYShape(w, trajectory, []int{o.Steps + 1, n, d})
				}); err != nil {
					return err
				}
			}
			if plot != "" {
				if d < 2 {
					return usagef("--plot needs data of at least 2 dimensions, the model has %d", d)
				}
				if err := scatterPlot(plot, "samples", nil, x, d); err != nil {
					return err
				}
			}
			if gridPath != "" {
				im := mc.Image
				gx, _, err := generate(b, lm, gridSide*gridSide, o, genOptions{seed: c.Uint64("seed"), labels: gridLabels(classes, k), guidance: guidance})
				if err != nil {
					return err
				}
				if err := writeGridPNG(gridPath, gx, gridSide*gridSide, im.Channels, im.Height, im.Width); err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "wrote a %dx%d grid to %s\n", gridSide, gridSide, gridPath)
			}
			if out == "" {
				return nil
			}
			fmt.Fprintf(c.App.Writer, "wrote %d samples to %s (solver %s, NFE %d, %.2fs, %.0f points/s)\n",
				n, out, o.Method, st.NFE, el.Seconds(), float64(n)/el.Seconds())
			return nil
		},
	}
}
