package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/fmgpu/fmgpu/data"
	"github.com/fmgpu/fmgpu/flow"
	"github.com/fmgpu/fmgpu/generate"
	"github.com/fmgpu/fmgpu/gpu"
	"github.com/fmgpu/fmgpu/internal/atomicfile"
	"github.com/fmgpu/fmgpu/sampler"
)

// deviceOptions are --device, --threads and --precision.
type deviceOptions struct {
	device    string
	threads   int
	precision gpu.Precision
}

// solveOptions are the flags solverFlags defines.
type solveOptions struct {
	solver     sampler.Options
	dev        deviceOptions
	rawWeights bool // --no-ema
	quiet      bool
	methodSet  bool // --solver given
	stepsSet   bool // --steps given
}

func solverFlags(defaultSolver string, defaultSteps int) []ucli.Flag {
	return []ucli.Flag{
		&ucli.StringFlag{Name: "solver", Value: defaultSolver, Usage: "euler, midpoint, heun, rk4 or dopri5"},
		&ucli.IntFlag{Name: "steps", Value: defaultSteps, Usage: "steps of a fixed-step solver (not dopri5)"},
		&ucli.Float64Flag{Name: "rtol", Value: 1e-5, Usage: "dopri5: relative tolerance"},
		&ucli.Float64Flag{Name: "atol", Value: 1e-5, Usage: "dopri5: absolute tolerance"},
		&ucli.IntFlag{Name: "max-steps", Value: sampler.DefaultMaxSteps, Usage: "dopri5: most steps before giving up"},
		&ucli.StringFlag{Name: "device", Value: "auto", Usage: "auto, cpu or cuda"},
		&ucli.IntFlag{Name: "threads", Value: 0, Usage: "CPU worker threads (0: all cores)"},
		precisionFlag(""),
		&ucli.BoolFlag{Name: "no-ema", DisableDefaultText: true, Usage: "use the raw weights instead of their EMA"},
		&ucli.BoolFlag{Name: "quiet", DisableDefaultText: true, Usage: "no progress output"},
	}
}

func solveOptionsFrom(c *ucli.Context) (solveOptions, error) {
	m, err := sampler.ParseMethod(c.String("solver"))
	if err != nil {
		return solveOptions{}, usagef("--solver: %v", err)
	}
	o := solveOptions{
		solver:     sampler.Options{Method: m, Steps: c.Int("steps"), Rtol: c.Float64("rtol"), Atol: c.Float64("atol"), MaxSteps: c.Int("max-steps")},
		dev:        deviceOptions{device: c.String("device"), threads: c.Int("threads")},
		rawWeights: c.Bool("no-ema"),
		quiet:      c.Bool("quiet"),
		methodSet:  c.IsSet("solver"),
		stepsSet:   c.IsSet("steps"),
	}
	if o.dev.precision, err = precisionFrom(c); err != nil {
		return o, err
	}
	s := o.solver
	switch {
	case s.Steps < 1 || s.Steps > 1<<20:
		return o, usagef("--steps %d: need 1..%d", s.Steps, 1<<20)
	case !(s.Rtol > 0 && s.Rtol < 1):
		return o, usagef("--rtol %g: need 0 < rtol < 1", s.Rtol)
	case !(s.Atol > 0 && s.Atol < 1):
		return o, usagef("--atol %g: need 0 < atol < 1", s.Atol)
	case s.MaxSteps < 1:
		return o, usagef("--max-steps %d: need >= 1", s.MaxSteps)
	case o.dev.threads < 0:
		return o, usagef("--threads %d: need >= 0", o.dev.threads)
	}
	// a flag the chosen solver would ignore
	if m.Adaptive() && c.IsSet("steps") {
		return o, usagef("--steps applies to fixed-step solvers; dopri5 chooses its own steps (see --rtol, --atol)")
	}
	if m.Adaptive() && (s.Rtol < 1e-7 || s.Atol < 1e-7) && !c.Bool("quiet") {
		fmt.Fprintf(c.App.ErrWriter, "fmgpu %s: warning: --rtol %g --atol %g: below float32's resolution (about 1e-7), which the float32 state cannot meet: many more steps for a worse result (docs/math.md §7.2)\n", c.Command.Name, s.Rtol, s.Atol)
	}
	if !m.Adaptive() {
		for _, f := range []string{"rtol", "atol", "max-steps"} {
			switch {
			case c.IsSet(f) && !c.IsSet("solver"):
				// the default, or a distilled checkpoint's Euler schedule
				return o, usagef("--%s applies to --solver dopri5; give --solver dopri5 with it", f)
			case c.IsSet(f):
				return o, usagef("--%s applies to --solver dopri5, not %s", f, m)
			}
		}
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

// sampleOptions are the settings of `fmgpu sample`.
type sampleOptions struct {
	solveOptions
	checkpoint string
	n          int
	seed       uint64
	// outputs: any of them may be empty, but not out and grid both
	out, trajectory, plot, grid string
	class                       int    // -1: every class in turn
	classSet                    bool   // --class given
	className                   string // --class given as a name, not an index
	guidance                    float64
	guidanceSet                 bool // --guidance given
}

func sampleCommand() *ucli.Command {
	flags := []ucli.Flag{
		&ucli.StringFlag{Name: "checkpoint", Usage: "(required) DIR/checkpoint.safetensors from fmgpu train"},
		&ucli.IntFlag{Name: "n", Value: 1000, Usage: "number of samples"},
		&ucli.StringFlag{Name: "out", Usage: "FILE.npy or FILE.csv (n x D, data units); required unless --grid is given"},
		&ucli.Uint64Flag{Name: "seed", Value: 1, Usage: "seed of the noise x0"},
		&ucli.StringFlag{Name: "trajectory", Usage: "also write the states at every step, FILE.npy of shape (steps+1, n, D)"},
		&ucli.StringFlag{Name: "plot", Usage: "also draw the samples (first two dimensions) to FILE.png"},
		&ucli.StringFlag{Name: "grid", Usage: "image models: a 10 x 10 grid of samples to FILE.png (one row per class when class-conditional)"},
		&ucli.StringFlag{Name: "class", DefaultText: "every class in turn", Usage: "class-conditional models: sample this class only, given by its index (0, 1, ...; fmgpu info --checkpoint lists the classes) or its name"},
		&ucli.Float64Flag{Name: "guidance", Value: defaultGuidance, Usage: "class-conditional models: classifier-free guidance weight w in v_null + w (v_class - v_null)"},
	}
	return &ucli.Command{
		Name:  "sample",
		Usage: "draw samples from a trained model by solving its ODE from noise",
		Flags: append(flags, solverFlags("rk4", 100)...),
		Action: func(c *ucli.Context) error {
			oneProcessNote(c)
			o, err := sampleOptionsFrom(c)
			if err != nil {
				return err
			}
			return runSample(c.Context, o, c.App.Writer, c.App.ErrWriter)
		},
	}
}

// maxOutputValues bounds the float32 values of one output (the samples,
// or the trajectory): 4 GiB.
const maxOutputValues = 1 << 30

// sampleOptionsFrom reads and checks the flags that need no checkpoint.
func sampleOptionsFrom(c *ucli.Context) (sampleOptions, error) {
	if err := requireFlags(c, "checkpoint"); err != nil {
		return sampleOptions{}, err
	}
	so, err := solveOptionsFrom(c)
	if err != nil {
		return sampleOptions{}, err
	}
	o := sampleOptions{
		solveOptions: so, checkpoint: c.String("checkpoint"), n: c.Int("n"), seed: c.Uint64("seed"),
		out: c.String("out"), trajectory: c.String("trajectory"), plot: c.String("plot"), grid: c.String("grid"),
		class: -1, classSet: c.IsSet("class"), guidance: c.Float64("guidance"), guidanceSet: c.IsSet("guidance"),
	}
	if o.n < 1 || o.n > 1<<26 {
		return o, usagef("--n %d: need 1..%d", o.n, 1<<26)
	}
	if o.out == "" && o.grid == "" {
		return o, usagef("give --out FILE.npy|FILE.csv, --grid FILE.png, or both")
	}
	if o.out == "" && o.trajectory == "" && c.IsSet("n") {
		return o, usagef("--n applies to --out and --trajectory; --grid draws %d x %d samples", gridSide, gridSide)
	}
	if o.out != "" {
		if _, err := outputFormat("out", o.out, ".npy", ".csv"); err != nil {
			return o, err
		}
	}
	if o.grid != "" {
		if _, err := outputFormat("grid", o.grid, ".png"); err != nil {
			return o, err
		}
	}
	if o.trajectory != "" {
		if _, err := outputFormat("trajectory", o.trajectory, ".npy"); err != nil {
			return o, err
		}
		if o.solver.Method == sampler.Dopri5 {
			return o, usagef("--trajectory needs a fixed-step --solver (euler, midpoint, heun, rk4)")
		}
	}
	if o.plot != "" {
		if _, err := outputFormat("plot", o.plot, ".png"); err != nil {
			return o, err
		}
	}
	if g := o.guidance; math.IsNaN(g) || math.IsInf(g, 0) || g < 0 || g > 100 {
		return o, usagef("--guidance %g: need 0..100", g)
	}
	if err := checkOutputs(output{flag: "out", path: o.out}, output{flag: "trajectory", path: o.trajectory}, output{flag: "plot", path: o.plot}, output{flag: "grid", path: o.grid}); err != nil {
		return o, err
	}
	if o.classSet {
		v := strings.TrimSpace(c.String("class"))
		if k, err := strconv.Atoi(v); err == nil {
			o.class = k
		} else if o.className = v; v == "" {
			return o, usagef("--class: want a class index or name")
		}
	}
	return o, nil
}

// resolveClass turns --class given by name into the class's index, and
// notes where an index differs from the name of that class although the
// names are numbers (class folders 0..11 sort as 0, 1, 10, 11, 2, ...).
func resolveClass(o *sampleOptions, names []string, stderr io.Writer) error {
	if !o.classSet {
		return nil
	}
	if o.className != "" {
		if len(names) == 0 {
			return usagef("--class %q: the model's classes have no names; give an index", o.className)
		}
		k := slices.Index(names, o.className)
		if k < 0 {
			return usagef("--class %q: the model's classes are %s", o.className, strings.Join(names, ", "))
		}
		o.class = k
		return nil
	}
	k := o.class
	if k < 0 || k >= len(names) {
		return nil
	}
	if v, err := strconv.Atoi(names[k]); err == nil && v != k {
		other := ""
		for j, n := range names {
			if v, err := strconv.Atoi(n); err == nil && v == k {
				other = fmt.Sprintf("; the class named %q is --class %d", n, j)
			}
		}
		fmt.Fprintf(stderr, "fmgpu sample: note: --class %d is the class at index %d, named %q%s (classes are indexed in their names' sorted order: %s)\n", k, k, names[k], other, strings.Join(names, ", "))
	}
	return nil
}

// checkSampleModel checks the options against the model before any
// sampling: what the model must be for each flag, and the output sizes.
func checkSampleModel(o sampleOptions, m *generate.Model) error {
	classes, k := m.Classes(), o.class
	if o.classSet && (classes == 0 || k < 0 || k >= classes) {
		if classes == 0 {
			return usagef("--class: this model is unconditional")
		}
		return usagef("--class %d: the model has classes 0..%d (%s)", k, classes-1, strings.Join(m.Checkpoint.Meta.Data.Classes, ", "))
	}
	if o.guidanceSet && classes == 0 {
		return usagef("--guidance: this model is unconditional (guidance needs a class-conditional model)")
	}
	if o.classSet && o.guidance == 0 {
		return usagef("--class %d with --guidance 0: the unconditional velocity v_null alone, which no class changes", k)
	}
	if o.rawWeights && m.Checkpoint.Meta.Config.EMADecay == 0 {
		return usagef("--no-ema: this checkpoint was trained without an EMA (--ema 0); its weights are the raw ones")
	}
	mc := m.Config()
	if o.grid != "" && mc.Image == nil {
		return usagef("--grid needs an image model; use --plot for 2-D data")
	}
	d := m.Dim()
	if o.plot != "" && d < 2 {
		return usagef("--plot needs data of at least 2 dimensions, the model has %d", d)
	}
	if o.plot != "" && mc.Image != nil {
		return usagef("--plot draws points; for an image model use --grid FILE.png")
	}
	if v := int64(o.n) * int64(d); v > maxOutputValues {
		return usagef("--n %d: %d samples of %d values are %s, more than the %s one output may hold; sample in parts with --seed", o.n, o.n, d, gib(v), gib(maxOutputValues))
	}
	if o.trajectory != "" {
		if v := int64(o.solver.Steps+1) * int64(o.n) * int64(d); v > maxOutputValues {
			return usagef("--trajectory: (--steps %d + 1) x --n %d x %d values are %s, more than the %s a trajectory may hold; lower --n or --steps", o.solver.Steps, o.n, d, gib(v), gib(maxOutputValues))
		}
	}
	return nil
}

// gib writes a count of float32 values as GiB.
func gib(values int64) string {
	return fmt.Sprintf("%.1f GiB", float64(values)*4/(1<<30))
}

func runSample(ctx context.Context, o sampleOptions, stdout, stderr io.Writer) error {
	b, err := openBackend(o.dev.device, o.dev.threads)
	if err != nil {
		return err
	}
	defer b.Close()
	if err := setPrecision(b, o.dev.precision); err != nil {
		return err
	}
	m, err := generate.Load(ctx, b, o.checkpoint, generate.LoadOptions{RawWeights: o.rawWeights})
	if err != nil {
		return err
	}
	defer m.Close()
	o.solver = distillSolver(o.solver, m.Checkpoint.Meta.Config, o.methodSet, o.stepsSet)
	if m.Classes() > 0 {
		if err := resolveClass(&o, m.Checkpoint.Meta.Data.Classes, stderr); err != nil {
			return err
		}
	}
	if err := checkSampleModel(o, m); err != nil {
		return err
	}
	classes, k := m.Classes(), o.class
	n, d := o.n, m.Dim()
	so := o.solver
	g := generate.SampleOptions{Seed: o.seed, Guidance: o.guidance}
	if classes > 0 {
		g.Labels = make([]int, n)
		for i := range g.Labels {
			g.Labels[i] = i % classes
			if k >= 0 {
				g.Labels[i] = k
			}
		}
	}
	var trajectory []float32
	if o.trajectory != "" {
		lo, hi := m.Path.TimeRange()
		for i := 0; i <= so.Steps; i++ {
			// the solver's own grid points, so saving does not split steps
			s := flow.ShiftTime(float64(i)/float64(so.Steps), m.TimeShift)
			so.SaveAt = append(so.SaveAt, lo+(hi-lo)*s)
		}
		trajectory = make([]float32, (so.Steps+1)*n*d)
		g.OnSave = func(step, first int, xs []float32) {
			if step <= so.Steps {
				copy(trajectory[(step*n+first)*d:], xs)
			}
		}
	}
	g.Solver = so
	if note := fallbackNote("fmgpu sample", b); note != "" && !o.quiet {
		fmt.Fprint(stderr, note)
	}
	prog := newProgress(stderr, o.quiet, "fmgpu sample", "samples", 0, n)
	g.OnProgress = func(done, _ int, _ generate.Stats) { prog.step(done) }
	start := time.Now()
	var x []float32
	var st generate.Stats
	if o.out != "" || o.trajectory != "" || o.plot != "" {
		x, st, err = generate.Sample(ctx, m, n, g)
	}
	el := time.Since(start)
	prog.finish(err == nil)
	if err != nil {
		return sampleError(err)
	}
	var gx []float32
	var gst generate.Stats
	if o.grid != "" {
		gx, gst, err = generate.Sample(ctx, m, gridSide*gridSide, generate.SampleOptions{Solver: o.solver, Seed: o.seed, Labels: gridLabels(classes, k), Guidance: o.guidance})
		if err != nil {
			return sampleError(err)
		}
	}
	// Everything is computed: write, unless a signal came meanwhile.
	if err := ctx.Err(); err != nil {
		return err
	}
	if o.out != "" {
		if err := writeMatrix(o.out, x, n, d); err != nil {
			return err
		}
	}
	if trajectory != nil {
		if err := atomicfile.Write(o.trajectory, func(w io.Writer) error {
			return data.WriteNPYShape(w, trajectory, []int{so.Steps + 1, n, d})
		}); err != nil {
			return err
		}
	}
	if o.plot != "" {
		if err := scatterPlot(o.plot, "samples", nil, x, d); err != nil {
			return err
		}
	}
	if o.grid != "" {
		im := m.Config().Image
		if err := writeGridPNG(o.grid, gx, gridSide*gridSide, im.Channels, im.Height, im.Width); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote a %dx%d grid to %s (solver %s, NFE %d per sample%s)\n", gridSide, gridSide, o.grid, so.Method, gst.NFE, guidedPasses(classes, o.guidance))
	}
	if o.out != "" {
		fmt.Fprintf(stdout, "wrote %d samples to %s (solver %s, NFE %d per sample%s%s, %.2fs, %s points/s)\n",
			n, o.out, so.Method, st.NFE, guidedPasses(classes, o.guidance), totalNFE(st), el.Seconds(), formatRate(float64(n)/el.Seconds()))
	}
	if trajectory != nil {
		fmt.Fprintf(stdout, "wrote the trajectories of %d samples (%d states each, the noise first) to %s\n", n, so.Steps+1, o.trajectory)
	}
	return nil
}

// guidedPasses notes that each evaluation of a guided field runs the
// network twice (the class and the null class), unless w is 0 or 1.
func guidedPasses(classes int, w float64) string {
	if classes == 0 || w == 0 || w == 1 {
		return ""
	}
	return fmt.Sprintf(" with guidance %g, 2 network passes each", w)
}

// totalNFE notes the evaluations of all chunks when there were several.
func totalNFE(st generate.Stats) string {
	if st.Chunks < 2 {
		return ""
	}
	return fmt.Sprintf("; %d in all over %d chunks", st.TotalNFE, st.Chunks)
}

// sampleError words generate's errors for the command line.
func sampleError(err error) error {
	var nf *generate.NonFiniteError
	if errors.As(err, &nf) {
		return fmt.Errorf("sample %d came out non-finite (a diverged model or solver: try --solver rk4 or another checkpoint)", nf.Index)
	}
	return err
}

// gridLabels are the labels of a 10 x 10 grid: one row per class for a
// conditional model (the first ten classes, or class k everywhere when k
// >= 0), nil for an unconditional one.
func gridLabels(classes, k int) []int {
	if classes == 0 {
		return nil
	}
	labels := make([]int, gridSide*gridSide)
	for i := range labels {
		switch {
		case k >= 0:
			labels[i] = k
		default:
			labels[i] = (i / gridSide) % classes
		}
	}
	return labels
}

const gridSide = 10
