package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"

	ucli "github.com/urfave/cli/v2"

	"github.com/fmgpu/fmgpu/flow"
	"github.com/fmgpu/fmgpu/generate"
	"github.com/fmgpu/fmgpu/internal/atomicfile"
	"github.com/fmgpu/fmgpu/internal/dirlock"
	"github.com/fmgpu/fmgpu/reflow"
	"github.com/fmgpu/fmgpu/sampler"
	"github.com/fmgpu/fmgpu/train"
)

// Defaults of `fmgpu reflow` and `fmgpu distill`: the pairs are solved
// with RK4 at 50 steps (200 evaluations), well below the W2 noise floor's
// error on the built-in sets (README), and as many as the 2-D sets'
// default training data.
const (
	defaultReflowPairs  = 100000
	defaultReflowSolver = "rk4"
	defaultReflowSteps  = 50
)

// reflowOptions are the settings of `fmgpu reflow` and `fmgpu distill`.
type reflowOptions struct {
	solveOptions
	command         string // "reflow" or "distill"
	checkpoint, out string
	pairs           int
	seed            uint64
	guidance        float64
	guidanceSet     bool
	trainSteps      int
	batch, warmup   int
	lr, ema         float64
	logEvery        int
	checkpointEvery int
	fromScratch     bool
	distill         int // steps per sample of the student; 0 for reflow
	explicit        map[string]bool
}

func reflowFlags(distill bool) []ucli.Flag {
	init := "start from the teacher's weights (default) or, with --from-scratch, from a fresh initialization"
	flags := []ucli.Flag{
		&ucli.StringFlag{Name: "checkpoint", Usage: "(required) the teacher: DIR/checkpoint.safetensors from fmgpu train, reflow or distill"},
		&ucli.StringFlag{Name: "out", Usage: "(required) output directory: the pairs, then checkpoint.safetensors and metrics.jsonl; run the same command again to continue an interrupted run"},
		&ucli.IntFlag{Name: "pairs", Value: defaultReflowPairs, Usage: "noise draws solved with the teacher into (x0, x1) pairs"},
		&ucli.Uint64Flag{Name: "seed", Value: 1, Usage: "seed of the pairs' noise and of the training batches"},
		&ucli.Float64Flag{Name: "guidance", Value: defaultGuidance, Usage: "class-conditional teachers: classifier-free guidance weight of the pairs' solves"},
		&ucli.IntFlag{Name: "train-steps", DefaultText: "the teacher's --steps", Usage: "training steps on the pairs"},
		&ucli.IntFlag{Name: "batch", DefaultText: "the teacher's", Usage: "batch size"},
		&ucli.Float64Flag{Name: "lr", DefaultText: "the teacher's", Usage: "peak learning rate"},
		&ucli.IntFlag{Name: "warmup", DefaultText: "min(200, train-steps/5)", Usage: "linear learning-rate warm-up steps"},
		&ucli.Float64Flag{Name: "ema", DefaultText: "the teacher's", Usage: "EMA decay of the weights used for sampling (0: off)"},
		&ucli.BoolFlag{Name: "from-scratch", DisableDefaultText: true, Usage: init},
		&ucli.IntFlag{Name: "log-every", Value: defaultLogEvery, Usage: "read the loss and write metrics every N steps"},
		&ucli.IntFlag{Name: "checkpoint-every", Value: 0, Usage: "also write the checkpoint every N steps (0: only at the end)"},
	}
	if distill {
		flags = append(flags, &ucli.IntFlag{Name: "steps-per-sample", DefaultText: "none", Usage: "(required) Euler steps the student samples with: 1, 2, 4..."})
	}
	return append(flags, solverFlags(defaultReflowSolver, defaultReflowSteps)...)
}

func reflowCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "reflow",
		Usage: "straighten a flow: train a new model on the (noise, sample) pairs of a trained one",
		Description: "Draws --pairs noises, solves each with the teacher --checkpoint (--solver, --steps) into a pair (x0, x1), saved in OUT as it goes, " +
			"and trains a model on these fixed pairs (coupling pairs), from the teacher's weights unless --from-scratch (Liu et al. 2022, rectified flow). " +
			"Its checkpoint can be reflowed again. Ctrl-C or SIGTERM keeps the pairs and the checkpoint made so far and exits with 130; the same command continues.",
		Flags: reflowFlags(false),
		Action: func(c *ucli.Context) error {
			oneProcessNote(c)
			o, err := reflowOptionsFrom(c, "reflow")
			if err != nil {
				return err
			}
			return runReflow(c.Context, o, c.App.Writer, c.App.ErrWriter)
		},
	}
}

func distillCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "distill",
		Usage: "train a student that samples in --steps-per-sample Euler steps from a teacher's pairs",
		Description: "As fmgpu reflow, but the student trains only at the times of its K-step Euler grid (K = --steps-per-sample), " +
			"where its Euler steps retrace the straight lines between the teacher's pairs; the checkpoint records K and fmgpu sample uses " +
			"--solver euler --steps K for it by default. Needs a teacher on the ot path.",
		Flags: reflowFlags(true),
		Action: func(c *ucli.Context) error {
			oneProcessNote(c)
			o, err := reflowOptionsFrom(c, "distill")
			if err != nil {
				return err
			}
			return runReflow(c.Context, o, c.App.Writer, c.App.ErrWriter)
		},
	}
}

func reflowOptionsFrom(c *ucli.Context, command string) (reflowOptions, error) {
	o := reflowOptions{command: command, explicit: map[string]bool{}}
	for _, f := range c.Command.Flags {
		for _, n := range f.Names() {
			o.explicit[n] = c.IsSet(n)
		}
	}
	req := []string{"checkpoint", "out"}
	if command == "distill" {
		req = append(req, "steps-per-sample")
	}
	if err := requireFlags(c, req...); err != nil {
		return o, err
	}
	so, err := solveOptionsFrom(c)
	if err != nil {
		return o, err
	}
	o.solveOptions = so
	o.checkpoint, o.out = c.String("checkpoint"), c.String("out")
	o.pairs, o.seed = c.Int("pairs"), c.Uint64("seed")
	o.guidance, o.guidanceSet = c.Float64("guidance"), c.IsSet("guidance")
	o.trainSteps, o.batch, o.warmup = c.Int("train-steps"), c.Int("batch"), c.Int("warmup")
	o.lr, o.ema = c.Float64("lr"), c.Float64("ema")
	o.logEvery, o.checkpointEvery = c.Int("log-every"), c.Int("checkpoint-every")
	o.fromScratch = c.Bool("from-scratch")
	if command == "distill" {
		o.distill = c.Int("steps-per-sample")
	}
	switch {
	case o.pairs < 1 || o.pairs > 1<<26:
		return o, usagef("--pairs %d: need 1..%d", o.pairs, 1<<26)
	case o.explicit["train-steps"] && o.trainSteps < 1:
		return o, usagef("--train-steps %d: need at least 1", o.trainSteps)
	case o.explicit["batch"] && (o.batch < 1 || o.batch > 1<<24):
		return o, usagef("--batch %d: need 1..%d", o.batch, 1<<24)
	case o.explicit["lr"] && (!(o.lr > 0) || math.IsInf(o.lr, 0)):
		return o, usagef("--lr %g: need a finite learning rate > 0", o.lr)
	case o.explicit["warmup"] && o.warmup < 0:
		return o, usagef("--warmup %d: need >= 0", o.warmup)
	case o.explicit["ema"] && !(o.ema >= 0 && o.ema < 1):
		return o, usagef("--ema %g: need 0 <= decay < 1", o.ema)
	case o.logEvery < 1:
		return o, usagef("--log-every %d: need >= 1", o.logEvery)
	case o.checkpointEvery < 0:
		return o, usagef("--checkpoint-every %d: need >= 0", o.checkpointEvery)
	case command == "distill" && (o.distill < 1 || o.distill > 1<<16):
		return o, usagef("--steps-per-sample %d: need 1..%d", o.distill, 1<<16)
	}
	if g := o.guidance; math.IsNaN(g) || math.IsInf(g, 0) || g < 0 || g > 100 {
		return o, usagef("--guidance %g: need 0..100", g)
	}
	return o, nil
}

// fileSHA256 is the hex SHA-256 of a file's bytes.
func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// studentFlag names the flag behind each setting of the student's
// train.Config that a command line may change.
var studentFlag = map[string]string{
	"steps": "train-steps", "batch": "batch", "lr": "lr", "ema_decay": "ema", "warmup": "warmup",
	"seed": "seed", "precision": "precision", "distill_steps": "steps-per-sample",
}

// pairsFlag names the flag behind each field of reflow.Spec.
var pairsFlag = map[string]string{
	"teacher": "checkpoint", "pairs": "pairs", "seed": "seed", "solver": "solver", "steps": "steps",
	"rtol": "rtol", "atol": "atol", "guidance": "guidance", "no-ema": "no-ema", "from-scratch": "from-scratch",
}

// studentConfig is the configuration of the run on the teacher's pairs:
// the teacher's network, path and time sampling, its optimizer settings
// unless a flag says otherwise, the pairs coupling and the student's
// steps.
func studentConfig(o reflowOptions, teacher train.Config) train.Config {
	c := teacher
	c.Coupling = train.Coupling{Kind: train.CouplingPairs}
	if c.Path.Kind == flow.KindOT {
		// the straight line between a pair: with the teacher's sigma_min
		// the student's path would end at x1 + sigma_min x0, blurring
		// samples the teacher already made
		c.Path.SigmaMin = 0
	}
	c.DistillSteps = o.distill
	c.Seed = o.seed
	c.Precision = o.dev.precision
	if o.explicit["train-steps"] {
		c.Steps = o.trainSteps
	}
	if o.explicit["batch"] {
		c.Batch = o.batch
	}
	if o.explicit["lr"] {
		c.LR = o.lr
	}
	if o.explicit["ema"] {
		c.EMADecay = o.ema
	}
	c.Warmup = defaultWarmup(c.Steps)
	if o.explicit["warmup"] {
		c.Warmup = o.warmup
	}
	return c
}

func runReflow(ctx context.Context, o reflowOptions, stdout, stderr io.Writer) (err error) {
	name := "fmgpu " + o.command
	say := func(format string, a ...any) {
		if !o.quiet {
			fmt.Fprintf(stderr, name+": "+format+"\n", a...)
		}
	}
	tck, err := train.Load(o.checkpoint)
	if err != nil {
		return usagef("--checkpoint: %v", err)
	}
	tc := tck.Meta.Config
	if o.rawWeights && tc.EMADecay == 0 {
		return usagef("--no-ema: the teacher was trained without an EMA (--ema 0); its weights are the raw ones")
	}
	if o.distill > 0 && tc.Path.Kind != flow.KindOT {
		return usagef("--checkpoint: distillation needs a teacher on the ot path, whose Euler steps follow straight lines; %s was trained on the %s path", o.checkpoint, tc.Path.Kind)
	}
	if o.guidanceSet && tc.Model.Classes == 0 {
		return usagef("--guidance: the teacher is unconditional (guidance needs a class-conditional model)")
	}
	if tc.Model.Classes > 0 && o.guidance == 0 {
		return usagef("--guidance 0: the pairs would be solved with the unconditional velocity v_null, yet carry class labels the student would learn from; give a weight > 0")
	}
	if v := int64(o.pairs) * int64(2*tc.Model.Dim+1); v > maxOutputValues {
		// the pairs are held in memory to train on, as one output of sample
		return usagef("--pairs %d: %d pairs of %d values are %s, more than the %s the pairs may hold; lower --pairs", o.pairs, o.pairs, 2*tc.Model.Dim+1, gib(v), gib(maxOutputValues))
	}
	cfg := studentConfig(o, tc)
	if err := cfg.Validate(); err != nil {
		return configError(err)
	}
	if cfg.Warmup > cfg.Steps {
		return usagef("--warmup %d exceeds --train-steps %d", cfg.Warmup, cfg.Steps)
	}
	sum, err := fileSHA256(o.checkpoint)
	if err != nil {
		return fmt.Errorf("--checkpoint %s: %w", o.checkpoint, err)
	}
	spec := reflow.Spec{Teacher: o.checkpoint, TeacherSHA256: sum, Pairs: o.pairs, Chunk: reflow.DefaultChunk(tc.Model),
		Seed: o.seed, Dim: tc.Model.Dim, Classes: tc.Model.Classes, RawWeights: o.rawWeights, FromScratch: o.fromScratch}
	// a distilled teacher learned its K-step Euler schedule only: solved
	// otherwise its pairs come from times it never trained on
	o.solver = distillSolver(o.solver, tc, o.methodSet, o.stepsSet)
	spec.SolverSpec(o.solver)
	if spec.Classes > 0 {
		spec.Guidance = o.guidance
	}

	undo, err := atomicfile.MkdirAll(o.out)
	if err != nil {
		return fmt.Errorf("--out %s: %w", o.out, err)
	}
	defer func() {
		if err != nil {
			undo() // only what is still empty
		}
	}()
	if err := atomicfile.CheckWritable(o.out); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	release, err := dirlock.Lock(o.out)
	var held *dirlock.HeldError
	if errors.As(err, &held) {
		return usagef("--out %v; wait for it to end or choose another directory", err)
	}
	if err != nil {
		return fmt.Errorf("--out %s: lock: %w", o.out, err)
	}
	defer release()
	if sameFile(o.checkpoint, filepath.Join(o.out, train.CheckpointName)) {
		return usagef("--out %s is the teacher's directory; choose another", o.out)
	}
	if was, ok, err := reflow.ReadSpec(o.out); err != nil {
		return fmt.Errorf("--out: %w", err)
	} else if ok {
		if err := reflow.Compare(o.out, was, spec); err != nil {
			var mm *reflow.Mismatch
			if errors.As(err, &mm) && pairsFlag[mm.Field] != "" {
				return usagef("--%s: %v; choose another --out or give the same settings to continue", pairsFlag[mm.Field], err)
			}
			return usageError{err}
		}
	}
	ckPath := filepath.Join(o.out, train.CheckpointName)
	var resume *train.Checkpoint
	if _, err := os.Stat(ckPath); err == nil {
		if resume, err = train.Load(ckPath); err != nil {
			return fmt.Errorf("--out: %w", err)
		}
		if was := resume.Meta.Config.Path; was == tc.Path && cfg.Path != was {
			// begun before students trained at sigma_min 0: it goes on
			// on the path it began on
			cfg.Path = was
			say("note: the run in %s began on the teacher's path %s; it continues on it (a new run trains at sigma_min 0)", o.out, was)
		}
		if ch := train.Diff(resume.Meta.Config, cfg); len(ch) > 0 {
			c := ch[0]
			flag, was, now := c.Setting, describeSetting(c.Setting, c.Was), describeSetting(c.Setting, c.Now)
			if f, ok := studentFlag[c.Setting]; ok {
				flag = "--" + f
			}
			for _, v := range []*string{&was, &now} {
				if *v == "" { // omitted from the checkpoint: its zero value
					*v = map[string]string{"precision": `"fp32"`, "distill_steps": "0 (reflow)"}[c.Setting]
				}
			}
			return usagef("--out %s holds a run with other settings (%s: %s there, %s here); give the same settings to continue it or choose another --out", o.out, flag, was, now)
		}
		if resume.Meta.Step >= cfg.Steps {
			return usagef("--out %s already holds the finished run (step %d); choose another directory", o.out, resume.Meta.Step)
		}
	} else if !emptyBesideLock(o.out) {
		if _, ok, _ := reflow.ReadSpec(o.out); !ok {
			return usagef("--out %s is not empty and holds no pairs of fmgpu %s; choose a new directory", o.out, o.command)
		}
	}

	b, err := openBackend(o.dev.device, o.dev.threads)
	if err != nil {
		return err
	}
	defer b.Close()
	if err := setPrecision(b, o.dev.precision); err != nil {
		return err
	}
	if done := reflow.Done(o.out, spec); done < spec.Chunks() {
		teacher, err := generate.FromCheckpoint(b, tck, generate.LoadOptions{RawWeights: o.rawWeights})
		if err != nil {
			return err
		}
		first := min(done*spec.Chunk, spec.Pairs)
		say("solving %d pairs with %s (%s%s)%s", spec.Pairs, o.checkpoint, o.solver.Method, solverSteps(o.solver), continuing(first))
		prog := newProgress(stderr, o.quiet, name, "pairs", first, spec.Pairs)
		onInterrupt(ctx, "keeping the pairs made so far")
		err = reflow.Generate(ctx, teacher, o.out, spec, o.solver, func(d, _ int) { prog.step(d) })
		teacher.Close()
		prog.finish(err == nil)
		if err != nil {
			if ctx.Err() != nil {
				return interrupted("kept %d of %d pairs in %s; run the same command again to continue", min(reflow.Done(o.out, spec)*spec.Chunk, spec.Pairs), spec.Pairs, o.out)
			}
			var nf *generate.NonFiniteError
			if errors.As(err, &nf) {
				return sampleError(err)
			}
			return err
		}
	}
	pairs, err := reflow.Load(o.out, spec)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return interrupted("the %d pairs are in %s; run the same command again to train", spec.Pairs, o.out)
	}
	tr, err := train.NewPairs(b, cfg, pairs.X0, pairs.X1, pairs.Labels, pairs.N)
	if err != nil {
		return err
	}
	defer tr.Close()
	if err := atomicfile.CheckSpace(o.out, 2*(16*int64(tr.Net().NumParams())+1<<16)); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	switch {
	case resume != nil:
		if err := tr.Resume(resume); err != nil {
			return usageError{err}
		}
	case !o.fromScratch:
		w := tck.Params
		if !o.rawWeights && tc.EMADecay > 0 {
			w = tck.EMA
		}
		if err := tr.InitWeights(w); err != nil {
			return err
		}
	}
	what := "reflow"
	if o.distill > 0 {
		what = fmt.Sprintf("%d-step distillation", o.distill)
	}
	say("%s of %s on %d pairs, %d steps from step %d, on %s", what, o.checkpoint, pairs.N, cfg.Steps, tr.StepsDone(), describeBackend(b))
	info := train.DataInfo{Source: fmt.Sprintf("%s of %s", o.command, o.checkpoint), Rows: pairs.N, Dim: pairs.Dim,
		Classes: tck.Meta.Data.Classes, SHA256: sum}
	if abs, err := filepath.Abs(o.checkpoint); err == nil && abs != o.checkpoint {
		info.AbsPath = abs // the teacher's, for eval from another directory
	}
	if err := enterPhase(ctx, "saving a checkpoint"); err != nil {
		return interrupted("the %d pairs are in %s; run the same command again to train", spec.Pairs, o.out)
	}
	prog := newProgress(stderr, o.quiet, name, "step", tr.StepsDone(), cfg.Steps)
	runErr := tr.Run(ctx, train.RunOptions{OutDir: o.out, CheckpointEvery: o.checkpointEvery, LogEvery: o.logEvery,
		Std: tck.Meta.Standardization, Data: info, OnLog: prog.log, OnStep: prog.step})
	prog.finish(runErr == nil)
	var nf *train.NonFiniteError
	switch {
	case errors.Is(runErr, context.Canceled):
		return interrupted("saved %s at step %d; run the same command again to continue", ckPath, tr.StepsDone())
	case errors.As(runErr, &nf):
		return fmt.Errorf("%v: lower --lr; %s", nf, keptCheckpoint(ckPath))
	case runErr != nil:
		return runErr
	}
	if !o.quiet {
		hint := ""
		if o.distill > 0 {
			hint = fmt.Sprintf(" (fmgpu sample uses --solver euler --steps %d for it by default)", o.distill)
		}
		fmt.Fprintf(stdout, "wrote %s and %s%s\n", ckPath, filepath.Join(o.out, train.MetricsName), hint)
	}
	return nil
}

func keptCheckpoint(ckPath string) string {
	if ck, err := train.Load(ckPath); err == nil {
		return fmt.Sprintf("%s of step %d is kept", ckPath, ck.Meta.Step)
	}
	return "no checkpoint was written"
}

func solverSteps(o sampler.Options) string {
	if o.Method.Adaptive() {
		return fmt.Sprintf(", rtol %g, atol %g", o.Rtol, o.Atol)
	}
	return fmt.Sprintf(", %d steps", o.Steps)
}

func continuing(first int) string {
	if first == 0 {
		return ""
	}
	return fmt.Sprintf("; %d on disk already", first)
}

// distillSolver is the solver `sample` uses for a checkpoint: for a
// distilled student, Euler unless --solver is given and K steps unless
// --steps is (so --steps 4 alone is 4 Euler steps, not RK4's); else o.
func distillSolver(o sampler.Options, c train.Config, methodSet, stepsSet bool) sampler.Options {
	if c.DistillSteps > 0 {
		if !methodSet {
			o.Method = sampler.Euler
		}
		if !stepsSet {
			o.Steps = c.DistillSteps
		}
	}
	return o
}

// emptyBesideLock reports whether dir holds nothing but its lock file.
func emptyBesideLock(dir string) bool {
	es, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range es {
		if e.Name() != dirlock.Name {
			return false
		}
	}
	return true
}
