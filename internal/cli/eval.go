package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	ucli "github.com/urfave/cli/v2"

	"github.com/fmgpu/fmgpu/data"
	"github.com/fmgpu/fmgpu/metrics"
	"github.com/fmgpu/fmgpu/sampler"
)

// evalOptions are the settings of `fmgpu eval`.
type evalOptions struct {
	samples, data string
	n, floors     int
	floorsSet     bool
	seed          uint64
	seedSet       bool
	quiet         bool
	csv           data.CSVOptions
	csvSet        bool              // --delimiter or --header given
	samplesCSV    data.CSVOptions   // --samples: --samples-delimiter, else as --data
	image         data.ImageOptions // --checkpoint of an image model: its size and channels
	dataDir       string            // mnist / fashion-mnist: the idx files' directory
	json          bool

	// --checkpoint mode: samples drawn from the model at each step count
	checkpoint  string
	solver      sampler.Method
	steps       []int
	sampleSeed  uint64
	pathN       int // trajectories of the path statistics (0: none)
	pathNSet    bool
	pathSteps   int
	pathStepSet bool
	guidance    float64
	guidanceSet bool
	dev         deviceOptions
	rawWeights  bool
	plot        string
}

// defaultFloors is how many pairs of fresh draws estimate the noise floor
// and its spread.
const defaultFloors = 5

// Defaults of the --checkpoint mode.
const (
	defaultEvalSteps = "1,2,4,8,16"
	// defaultPathSteps: RK4 steps of the path statistics of a vector
	// model; on the default moons model S changes by less than 1% from
	// 100 to 400 steps (docs/metrics.md).
	defaultPathSteps = 100
	// An image model's trajectories cost a U-Net evaluation each step:
	// few, on a short grid, by default.
	defaultImagePathN     = 16
	defaultImagePathSteps = 20
	maxEvalStepCounts     = 32
)

// checkpointOnly are the flags that only the --checkpoint mode reads.
var checkpointOnly = []string{"solver", "steps", "sample-seed", "path-n", "path-steps", "guidance", "device", "threads", "no-ema", "plot"}

// evalCommand measures sample quality against fresh data, beside the same
// measure between two fresh draws of the same size: the noise floor a
// perfect model would reach.
func evalCommand() *ucli.Command {
	return &ucli.Command{
		Name: "eval",
		Usage: "sample quality beside its noise floor (the same measure between two draws of the data): W2 and MMD for points, " +
			"FD and KID in an MNIST classifier's features for mnist images; with --checkpoint, against the solver's steps, and the flow's straightness",
		Flags: append([]ucli.Flag{
			&ucli.StringFlag{Name: "samples", Usage: "FILE.npy or FILE.csv from fmgpu sample (this or --checkpoint is required)"},
			&ucli.StringFlag{Name: "samples-delimiter", DefaultText: "--delimiter", Usage: "--samples FILE.csv: its field separator when it differs from --data's (fmgpu sample writes ',')"},
			&ucli.StringFlag{Name: "checkpoint", Usage: "DIR/checkpoint.safetensors: draw the samples from this model at each of --steps and measure its flow"},
			&ucli.StringFlag{Name: "data", DefaultText: "with --checkpoint, the data it was trained on", Usage: "built-in set (fresh draws), FILE.npy / FILE.csv (disjoint subsets of --n points), " +
				"mnist or fashion-mnist (against the test split, in the features of fmgpu's MNIST classifier)"},
			&ucli.IntFlag{Name: "n", Value: 2000, Usage: "points per set (the W2 assignment is O(n^3)); images: up to 10000"},
			&ucli.Uint64Flag{Name: "seed", Value: 1000, Usage: "seed of the fresh built-in draws"},
			&ucli.IntFlag{Name: "floors", Value: defaultFloors, DefaultText: fmt.Sprintf("%d, or what the data hold", defaultFloors),
				Usage: "pairs of draws that estimate the noise floor (mean and spread); a file needs (floors + 1) x --n points, images floors x --n <= 10000"},
			&ucli.StringFlag{Name: "data-dir", DefaultText: "see README", Usage: "mnist / fashion-mnist: the directory holding the idx files; cifar10: its cifar-10-batches-bin folder"},
			&ucli.BoolFlag{Name: "json", DisableDefaultText: true, Usage: "print one JSON object instead of the text lines"},
			&ucli.BoolFlag{Name: "quiet", DisableDefaultText: true, Usage: "no progress output"},
			// --checkpoint mode
			&ucli.StringFlag{Name: "solver", Value: "euler", Usage: "--checkpoint: euler, midpoint, heun or rk4"},
			&ucli.StringFlag{Name: "steps", Value: defaultEvalSteps, Usage: "--checkpoint: the solver step counts of the table, comma-separated"},
			&ucli.Uint64Flag{Name: "sample-seed", Value: 1, Usage: "--checkpoint: seed of the noise x0 (as fmgpu sample --seed)"},
			&ucli.IntFlag{Name: "path-n", DefaultText: fmt.Sprintf("--n; %d for image models", defaultImagePathN), Usage: "--checkpoint: trajectories of the straightness and kinetic energy (0: skip them)"},
			&ucli.IntFlag{Name: "path-steps", Value: defaultPathSteps, DefaultText: fmt.Sprintf("%d; %d for image models", defaultPathSteps, defaultImagePathSteps), Usage: "--checkpoint: RK4 steps of those trajectories"},
			&ucli.Float64Flag{Name: "guidance", Value: defaultGuidance, Usage: "--checkpoint, class-conditional models: classifier-free guidance weight (labels 0, 1, 2, ... in turn)"},
			&ucli.StringFlag{Name: "device", Value: "auto", Usage: "--checkpoint: auto, cpu or cuda"},
			&ucli.IntFlag{Name: "threads", Value: 0, Usage: "--checkpoint: CPU worker threads (0: all cores)"},
			&ucli.BoolFlag{Name: "no-ema", DisableDefaultText: true, Usage: "--checkpoint: use the raw weights instead of their EMA"},
			&ucli.StringFlag{Name: "plot", Usage: "--checkpoint: draw the samples of each step count to FILE.png (points: over the data, a panel per step count; images: a row of 10 per step count)"},
		}, csvFlags("")...),
		Action: func(c *ucli.Context) error {
			oneProcessNote(c)
			o, err := evalOptionsFrom(c)
			if err != nil {
				return err
			}
			return runEval(c.Context, o, c.App.Writer, c.App.ErrWriter)
		},
	}
}

func evalOptionsFrom(c *ucli.Context) (evalOptions, error) {
	switch {
	case c.IsSet("samples") && c.IsSet("checkpoint"):
		return evalOptions{}, usagef("--samples and --checkpoint: give one (samples from a file, or drawn from a model)")
	case !c.IsSet("samples") && !c.IsSet("checkpoint"):
		return evalOptions{}, usagef("--samples is required, or --checkpoint (see fmgpu eval --help)")
	case c.IsSet("samples") && !c.IsSet("data"):
		return evalOptions{}, usagef("--data is required with --samples (see fmgpu eval --help)")
	}
	o := evalOptions{samples: c.String("samples"), data: c.String("data"), n: c.Int("n"), floors: c.Int("floors"),
		floorsSet: c.IsSet("floors"), seed: c.Uint64("seed"), seedSet: c.IsSet("seed"), quiet: c.Bool("quiet"), dataDir: c.String("data-dir"), json: c.Bool("json"),
		checkpoint: c.String("checkpoint")}
	if o.n < 2 || o.n > 20000 {
		return o, usagef("--n %d: need 2..20000", o.n)
	}
	if o.floors < 1 || o.floors > 100 {
		return o, usagef("--floors %d: need 1..100", o.floors)
	}
	if c.IsSet("seed") && o.data != "" && !data.IsBuiltin(o.data) {
		return o, usagef("--seed applies to a built-in --data (fresh draws), not %s", o.data)
	}
	if o.dataDir != "" && o.data != "" && !isFeatureSet(o.data) && !data.IsCIFAR10(o.data) {
		return o, usagef("--data-dir applies to --data mnist, fashion-mnist or cifar10, not %s", o.data)
	}
	var err error
	var paths []string
	for _, p := range []string{o.samples, o.data} {
		if p != "" {
			paths = append(paths, p)
		}
	}
	if o.csv, err = csvOptionsFrom(c, "data", paths...); err != nil {
		return o, err
	}
	o.csvSet = c.IsSet("delimiter") || c.IsSet("header")
	o.samplesCSV = o.csv
	if c.IsSet("samples-delimiter") {
		switch {
		case o.samples == "":
			return o, usagef("--samples-delimiter applies to --samples FILE.csv, which is not given")
		case !strings.EqualFold(filepath.Ext(o.samples), ".csv"):
			return o, usagef("--samples-delimiter applies to --samples FILE.csv, not %s", o.samples)
		}
		if o.samplesCSV.Delimiter, err = parseDelimiter("samples-delimiter", c.String("samples-delimiter")); err != nil {
			return o, err
		}
	}
	if o.checkpoint == "" {
		for _, f := range checkpointOnly {
			if c.IsSet(f) {
				return o, usagef("--%s applies to --checkpoint, not to --samples", f)
			}
		}
		return o, nil
	}
	if o.solver, err = sampler.ParseMethod(c.String("solver")); err != nil {
		return o, usagef("--solver: %v", err)
	}
	if o.solver.Adaptive() {
		return o, usagef("--solver %s: eval's table needs a fixed-step solver (euler, midpoint, heun, rk4)", o.solver)
	}
	if o.steps, err = parseStepList(c.String("steps")); err != nil {
		return o, err
	}
	o.sampleSeed = c.Uint64("sample-seed")
	o.pathN, o.pathNSet = c.Int("path-n"), c.IsSet("path-n")
	o.pathSteps, o.pathStepSet = c.Int("path-steps"), c.IsSet("path-steps")
	o.guidance, o.guidanceSet = c.Float64("guidance"), c.IsSet("guidance")
	o.dev = deviceOptions{device: c.String("device"), threads: c.Int("threads")}
	o.rawWeights = c.Bool("no-ema")
	o.plot = c.String("plot")
	switch {
	case o.pathN < 0 || o.pathN > 1<<20:
		return o, usagef("--path-n %d: need 0..%d", o.pathN, 1<<20)
	case o.pathSteps < 1 || o.pathSteps > 1<<16:
		return o, usagef("--path-steps %d: need 1..%d", o.pathSteps, 1<<16)
	case o.pathNSet && o.pathN == 0 && o.pathStepSet:
		return o, usagef("--path-steps applies to the path statistics, which --path-n 0 turns off")
	case math.IsNaN(o.guidance) || math.IsInf(o.guidance, 0) || o.guidance < 0 || o.guidance > 100:
		return o, usagef("--guidance %g: need 0..100", o.guidance)
	case o.dev.threads < 0:
		return o, usagef("--threads %d: need >= 0", o.dev.threads)
	}
	if o.plot != "" {
		if _, err := outputFormat("plot", o.plot, ".png"); err != nil {
			return o, err
		}
		if err := checkOutputs(output{flag: "plot", path: o.plot}); err != nil {
			return o, err
		}
	}
	return o, nil
}

// parseStepList reads --steps: step counts, comma-separated, each
// 1..2^20, distinct, at most maxEvalStepCounts of them, in the order given.
func parseStepList(s string) ([]int, error) {
	bad := func(why string) error {
		return usagef("--steps %q: %s; want step counts separated by commas, such as %s", s, why, defaultEvalSteps)
	}
	fields := strings.Split(s, ",")
	if len(fields) > maxEvalStepCounts {
		return nil, bad(fmt.Sprintf("%d step counts, at most %d", len(fields), maxEvalStepCounts))
	}
	var out []int
	seen := map[int]bool{}
	for _, f := range fields {
		f = strings.TrimSpace(f)
		k, err := strconv.Atoi(f)
		switch {
		case f == "":
			return nil, bad("an empty entry")
		case err != nil:
			return nil, bad(fmt.Sprintf("%q is not a whole number", f))
		case k < 1 || k > 1<<20:
			return nil, bad(fmt.Sprintf("%d is outside 1..%d", k, 1<<20))
		case seen[k]:
			return nil, bad(fmt.Sprintf("%d appears twice", k))
		}
		seen[k] = true
		out = append(out, k)
	}
	return out, nil
}

// pointRef is the reference of a point-set data set: ref, the set
// samples are compared with, and others, the second sets of the floor
// pairs (ref against each), all of n points of dimension d.
type pointRef struct {
	ref    []float32
	others [][]float32
	n, d   int
}

// loadPointRef draws or reads the reference sets of --data (not an image
// set with features): fresh draws of a built-in set from --seed, or
// disjoint subsets of n points of a file.
//
// trained, when not empty, is the checksum of the data the checkpoint was
// trained on (data.Checksum), which a file read in its place must match:
// a file changed since is not the model's data.
func loadPointRef(o evalOptions, name, trained string) (pointRef, error) {
	n := o.n
	var ref []float32
	var others [][]float32
	if data.IsBuiltin(name) {
		d1, err := data.Builtin(name, n, o.seed)
		if err != nil {
			return pointRef{}, usageError{err}
		}
		ref = d1.X
		for k := 1; k <= o.floors; k++ {
			d2, _ := data.Builtin(name, n, o.seed+uint64(k))
			others = append(others, d2.X)
		}
	} else {
		ds, err := data.LoadWith(name, data.LoadOptions{CSV: o.csv, Image: o.image})
		if err != nil {
			return pointRef{}, dataError(err)
		}
		if trained != "" && data.Checksum(ds) != trained {
			return pointRef{}, usagef("--data: %s, the checkpoint's data, holds other values than it did in training (%d x %d now): give --data %s to evaluate against the file as it is", name, ds.N, ds.D, name)
		}
		sets := ds.N / n // disjoint sets of n points the file holds
		switch {
		case sets < 2:
			return pointRef{}, usagef("--data %s has %d points, need 2 x --n = %d for two disjoint sets", name, ds.N, 2*n)
		case o.floorsSet && sets < o.floors+1:
			return pointRef{}, usagef("--floors %d: --data %s has %d points, (floors + 1) x --n = %d are needed", o.floors, name, ds.N, (o.floors+1)*n)
		}
		floors := min(o.floors, sets-1)
		m := n * ds.D
		ref = ds.X[:m]
		for k := 1; k <= floors; k++ {
			others = append(others, ds.X[k*m:(k+1)*m])
		}
	}
	return pointRef{ref: ref, others: others, n: n, d: len(ref) / n}, nil
}

// pointFloors are the noise floors of the point metrics: W2 and MMD^2
// between ref and each other set, and the MMD kernel's bandwidth.
type pointFloors struct {
	w2, mmd2  []float64
	bandwidth float64
}

// bandwidth is the median heuristic on data alone (ref pooled with the
// first other set), so that every MMD of a run, samples and floors, uses
// one kernel: a bandwidth chosen on each pair would widen with a model's
// spread-out samples and hide them.
func (r pointRef) bandwidth() float64 {
	h := metrics.MedianBandwidth(r.ref, r.others[0], r.n, r.n, r.d)
	if h == 0 {
		h = 1 // all points coincide (see metrics.MMD)
	}
	return h
}

// floorJobs are the jobs computing the floors into f.
func (r pointRef) floorJobs(f *pointFloors) []evalJob {
	f.w2 = make([]float64, len(r.others))
	f.mmd2 = make([]float64, len(r.others))
	var jobs []evalJob
	for k, other := range r.others {
		jobs = append(jobs,
			evalJob{fmt.Sprintf("W2 of floor pair %d", k+1), func() (err error) { f.w2[k], err = metrics.W2(other, r.ref, r.n, r.d); return }},
			evalJob{fmt.Sprintf("MMD of floor pair %d", k+1), func() error {
				res, err := metrics.MMD(other, r.ref, r.n, r.n, r.d, f.bandwidth)
				f.mmd2[k] = res.MMD2
				return err
			}})
	}
	return jobs
}

// scoreJobs are the jobs scoring samples x (n x d) into w2 and mmd2.
func (r pointRef) scoreJobs(what string, x []float32, h float64, w2, mmd2 *float64) []evalJob {
	return []evalJob{
		{"W2 of " + what, func() (err error) { *w2, err = metrics.W2(x, r.ref, r.n, r.d); return }},
		{"MMD of " + what, func() error {
			res, err := metrics.MMD(x, r.ref, r.n, r.n, r.d, h)
			*mmd2 = res.MMD2
			return err
		}},
	}
}

// evalJob is one metric computation of eval.
type evalJob struct {
	what string
	run  func() error
}

// runJobs runs the jobs on up to GOMAXPROCS goroutines and moves prog
// (counted from done) as each ends. A signal abandons them: runJobs
// returns ctx's error at once, rather than waiting for an O(n^3)
// assignment to end; the jobs write only their own results, which are
// then never read. A job's panic becomes its error (unrecovered, it would
// end the process with exit code 2, the code of a usage error).
func runJobs(ctx context.Context, prog *progress, done int, jobs []evalJob) error {
	errs := make([]error, len(jobs))
	end := make(chan int, len(jobs))
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for i, j := range jobs {
		go func() {
			defer func() { end <- i }()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() {
				if r := recover(); r != nil {
					errs[i] = fmt.Errorf("internal error (a bug; please report it): %s: %v", j.what, r)
				}
				<-sem
			}()
			errs[i] = j.run()
		}()
	}
	for k := range jobs {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-end:
			prog.step(done + k + 1)
		}
	}
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func runEval(ctx context.Context, o evalOptions, stdout, stderr io.Writer) error {
	if o.checkpoint != "" {
		return runEvalCheckpoint(ctx, o, stdout, stderr)
	}
	n := o.n
	if data.IsBuiltin(o.samples) || data.IsImageData(o.samples) {
		return usagef("--samples takes a file of samples (.npy or .csv, from fmgpu sample), not %s (give a data set as --data)", o.samples)
	}
	s, err := data.LoadWith(o.samples, data.LoadOptions{CSV: o.samplesCSV})
	if err != nil {
		return delimiterError(err, "samples-delimiter")
	}
	if s.N < n {
		return usagef("--samples %s has %d points, --n asks for %d", o.samples, s.N, n)
	}
	if isFeatureSet(o.data) {
		return runEvalImageSamples(ctx, o, s, stdout, stderr)
	}
	r, err := loadPointRef(o, o.data, "")
	if err != nil {
		return err
	}
	d := r.d
	if s.D != d {
		return usagef("--samples has %d columns, --data %d", s.D, d)
	}
	for _, w := range data.Warnings(s) {
		fmt.Fprintf(stderr, "fmgpu eval: warning: %s\n", w)
	}
	var f pointFloors
	f.bandwidth = r.bandwidth()
	var w2, mmd2 float64
	jobs := append(r.scoreJobs("the samples", s.X[:n*d], f.bandwidth, &w2, &mmd2), r.floorJobs(&f)...)
	prog := newProgress(stderr, o.quiet, "fmgpu eval", "distances", 0, len(jobs))
	err = runJobs(ctx, prog, 0, jobs)
	prog.finish(err == nil)
	if err != nil {
		return err
	}
	rep := evalReport{N: n, Dim: d, Data: o.data, Samples: o.samples, Floors: len(r.others)}
	rep.setPointFloors(f)
	rep.W2.Value, rep.W2.Ratio = ptr(w2), ptr(w2/rep.W2.Floor)
	rep.MMD2.Value = ptr(mmd2)
	return rep.print(stdout, o.json)
}

func ptr(v float64) *float64 { return &v }

// meanSD is the mean and sample standard deviation (NaN for one value:
// one floor pair says nothing of the floor's spread).
func meanSD(v []float64) (float64, spread) {
	m := 0.0
	for _, x := range v {
		m += x
	}
	m /= float64(len(v))
	if len(v) < 2 {
		return m, spread(math.NaN())
	}
	ss := 0.0
	for _, x := range v {
		ss += (x - m) * (x - m)
	}
	return m, spread(math.Sqrt(ss / float64(len(v)-1)))
}

// spread is a standard deviation that may be unknown (NaN): printed as
// NaN, and null in JSON, which has no NaN.
type spread float64

func (s spread) MarshalJSON() ([]byte, error) {
	if math.IsNaN(float64(s)) {
		return []byte("null"), nil
	}
	return json.Marshal(float64(s))
}
