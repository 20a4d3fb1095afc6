package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	ucli "github.com/urfave/cli/v2"

	"github.com/fmgpu/fmgpu/data"
	"github.com/fmgpu/fmgpu/flow"
	"github.com/fmgpu/fmgpu/internal/atomicfile"
	"github.com/fmgpu/fmgpu/model"
	"github.com/fmgpu/fmgpu/train"
)

// Defaults of `fmgpu train`, chosen by measurement on the built-in 2-D sets
// (README.md: W2 distance of samples to fresh data beside the noise floor).
const (
	defaultSteps     = 6000
	defaultBatch     = 256
	defaultLR        = 2e-3
	defaultHidden    = "256,256,256"
	defaultEMA       = 0.999
	defaultClip      = 1.0
	defaultWarmup    = 200
	defaultBuiltinN  = 100000
	defaultLogEvery  = 100
	defaultTimeFreqs = 16
)

type trainOptions struct {
	data, out, device                  string
	cfg                                train.Config
	checkpointEvery, logEvery, threads int
	stopAfter                          int
	nData                              int
	resume, plot                       bool
	quiet                              bool
	modelKind                          string
	unconditional                      bool
	image                              data.ImageOptions
	explicit                           map[string]bool // flags the user set
}

// Image data train with other defaults than the 2-D sets, chosen so that
// `fmgpu train --data mnist` gives recognisable digits in under half an
// hour on two cores (README): smaller batches, fewer steps, a grid of
// samples every imageCheckpointEvery steps.
const (
	imageSteps           = 1500
	imageBatch           = 64
	imageLR              = 1e-3
	imageCheckpointEvery = 500
)

// applyImageDefaults replaces the 2-D defaults by the image ones for the
// flags the user did not set.
func (o *trainOptions) applyImageDefaults() {
	if !o.explicit["steps"] {
		o.cfg.Steps = imageSteps
	}
	if !o.explicit["batch"] {
		o.cfg.Batch = imageBatch
	}
	if !o.explicit["lr"] {
		o.cfg.LR = imageLR
	}
	if !o.explicit["checkpoint-every"] {
		o.checkpointEvery = imageCheckpointEvery
	}
}

func pathFlags() []ucli.Flag {
	return []ucli.Flag{
		&ucli.StringFlag{Name: "path", Value: "ot", Usage: "probability path: ot, linear-vp, cosine, vp or ve"},
		&ucli.Float64Flag{Name: "sigma-min", Usage: "ot: sigma_min (default 0); ve: sigma_min (default 0.01)"},
		&ucli.Float64Flag{Name: "sigma-max", Usage: "ve: sigma_max (default 10)"},
		&ucli.Float64Flag{Name: "beta-min", Usage: "vp: beta_min (default 0.1)"},
		&ucli.Float64Flag{Name: "beta-max", Usage: "vp: beta_max (default 20)"},
	}
}

// pathFromFlags reads --path and its parameters; a parameter the kind does
// not have is a usage error rather than silently ignored.
func pathFromFlags(c *ucli.Context) (flow.Spec, error) {
	k, err := flow.ParseKind(c.String("path"))
	if err != nil {
		return flow.Spec{}, usagef("--path: %v", err)
	}
	s := flow.DefaultSpec(k)
	allowed := map[flow.Kind][]string{flow.KindOT: {"sigma-min"}, flow.KindVP: {"beta-min", "beta-max"}, flow.KindVE: {"sigma-min", "sigma-max"}}
	for _, name := range []string{"sigma-min", "sigma-max", "beta-min", "beta-max"} {
		if !c.IsSet(name) {
			continue
		}
		ok := false
		for _, a := range allowed[k] {
			ok = ok || a == name
		}
		if !ok {
			return s, usagef("--%s does not apply to --path %s", name, k)
		}
		v := c.Float64(name)
		switch name {
		case "sigma-min":
			s.SigmaMin = v
		case "sigma-max":
			s.SigmaMax = v
		case "beta-min":
			s.BetaMin = v
		case "beta-max":
			s.BetaMax = v
		}
	}
	if _, err := flow.New(s); err != nil {
		return s, usagef("%v", err)
	}
	return s, nil
}

func trainCommand() *ucli.Command {
	flags := []ucli.Flag{
		&ucli.StringFlag{Name: "data", Required: true, Usage: "built-in set (" + strings.Join(data.BuiltinNames(), ", ") + "), FILE.npy / FILE.csv, an image set (" + strings.Join(data.ImageDataNames(), ", ") + ") or a DIR of PNG/JPEG images"},
		&ucli.StringFlag{Name: "out", Required: true, Usage: "output directory (checkpoint, metrics, plots)"},
		&ucli.IntFlag{Name: "steps", Value: defaultSteps, Usage: "training steps (image data: 1500)"},
		&ucli.IntFlag{Name: "batch", Value: defaultBatch, Usage: "batch size (image data: 64)"},
		&ucli.Float64Flag{Name: "lr", Value: defaultLR, Usage: "peak learning rate (image data: 1e-3)"},
		&ucli.StringFlag{Name: "hidden", Value: defaultHidden, Usage: "hidden layer widths"},
		&ucli.Float64Flag{Name: "ema", Value: defaultEMA, Usage: "EMA decay of the weights used for sampling (0: off)"},
		&ucli.Uint64Flag{Name: "seed", Value: 1, Usage: "random seed (initialization, batches, built-in data)"},
		&ucli.StringFlag{Name: "time-sampling", Value: "uniform", Usage: "uniform or logit-normal"},
		&ucli.Float64Flag{Name: "logit-mean", Value: 0, Usage: "logit-normal time sampling: mean m"},
		&ucli.Float64Flag{Name: "logit-std", Value: 1, Usage: "logit-normal time sampling: std s"},
		&ucli.Float64Flag{Name: "time-shift", Value: 1, Usage: "SD3 time shift (1: none), applied in training and sampling"},
		&ucli.IntFlag{Name: "checkpoint-every", Value: 0, Usage: "also write the checkpoint every N steps (0: only at the end; image data: 500, with a grid of samples each time)"},
		&ucli.BoolFlag{Name: "resume", Usage: "continue from OUT/checkpoint.safetensors"},
		&ucli.IntFlag{Name: "stop-after", Usage: "end this run after step K of --steps with a checkpoint (resume later with --resume)"},
		&ucli.StringFlag{Name: "device", Value: "auto", Usage: "auto, cpu or cuda"},
		&ucli.StringFlag{Name: "optimizer", Value: "adam", Usage: "adam or adamw"},
		&ucli.Float64Flag{Name: "weight-decay", Value: 0, Usage: "weight decay (L2 for adam, decoupled for adamw)"},
		&ucli.Float64Flag{Name: "clip-grad", Value: defaultClip, Usage: "clip the global gradient norm (0: off)"},
		&ucli.IntFlag{Name: "warmup", Value: defaultWarmup, Usage: "linear learning-rate warm-up steps"},
		&ucli.StringFlag{Name: "schedule", Value: "cosine", Usage: "after warm-up: cosine or constant"},
		&ucli.Float64Flag{Name: "min-lr-frac", Value: 0.05, Usage: "cosine schedule ends at lr*min-lr-frac"},
		&ucli.IntFlag{Name: "time-freqs", Value: defaultTimeFreqs, Usage: "sinusoidal time-embedding frequencies (0: feed t itself)"},
		&ucli.IntFlag{Name: "n-data", Value: defaultBuiltinN, Usage: "points drawn for a built-in data set"},
		&ucli.IntFlag{Name: "log-every", Value: defaultLogEvery, Usage: "read the loss and write metrics every N steps"},
		&ucli.IntFlag{Name: "threads", Value: 0, Usage: "CPU worker threads (0: all cores)"},
		&ucli.BoolFlag{Name: "no-plot", Usage: "do not draw samples.png and loss.png"},
		&ucli.StringFlag{Name: "model", Value: "auto", Usage: "mlp, unet, or auto (unet for images, mlp otherwise)"},
		&ucli.IntFlag{Name: "base", Value: 32, Usage: "unet: channels of the first level"},
		&ucli.StringFlag{Name: "mults", Value: "1,2,2", Usage: "unet: channel multiplier per level (each level after the first halves the resolution)"},
		&ucli.IntFlag{Name: "res-blocks", Value: 1, Usage: "unet: residual blocks per level"},
		&ucli.BoolFlag{Name: "attention", Usage: "unet: self-attention at the lowest resolution"},
		&ucli.IntFlag{Name: "groups", Value: 8, Usage: "unet: GroupNorm groups"},
		&ucli.Float64Flag{Name: "class-dropout", Value: 0.1, Usage: "class-conditional models: probability of training on the null class (classifier-free guidance)"},
		&ucli.BoolFlag{Name: "unconditional", Usage: "ignore the class labels of image data"},
		&ucli.IntFlag{Name: "image-size", Usage: "image folders: side of the square images (0: native, or 32 when sizes differ)"},
		&ucli.IntFlag{Name: "channels", Usage: "image folders: 1 (gray) or 3 (RGB), 0: as the images are"},
		&ucli.StringFlag{Name: "data-dir", Usage: "mnist / fashion-mnist: the directory holding the idx files (default: see README)"},
		&ucli.BoolFlag{Name: "quiet", Usage: "no progress output"},
	}
	return &ucli.Command{
		Name:  "train",
		Usage: "train a flow-matching model",
		Flags: append(flags, pathFlags()...),
		Action: func(c *ucli.Context) error {
			o, err := trainOptionsFrom(c)
			if err != nil {
				return err
			}
			return runTrain(c.Context, o, c.App.Writer, c.App.ErrWriter)
		},
	}
}

func trainOptionsFrom(c *ucli.Context) (trainOptions, error) {
	o := trainOptions{
		data: c.String("data"), out: c.String("out"), device: c.String("device"),
		checkpointEvery: c.Int("checkpoint-every"), logEvery: c.Int("log-every"), threads: c.Int("threads"),
		nData: c.Int("n-data"), resume: c.Bool("resume"), stopAfter: c.Int("stop-after"), plot: !c.Bool("no-plot"), quiet: c.Bool("quiet"),
		modelKind: c.String("model"), unconditional: c.Bool("unconditional"),
		image:    data.ImageOptions{Size: c.Int("image-size"), Channels: c.Int("channels"), Dir: c.String("data-dir")},
		explicit: map[string]bool{},
	}
	for _, f := range []string{"steps", "batch", "lr", "checkpoint-every"} {
		o.explicit[f] = c.IsSet(f)
	}
	switch o.modelKind {
	case "auto", "mlp", "unet":
	default:
		return o, usagef("--model %q: want auto, mlp or unet", o.modelKind)
	}
	mults, err := model.ParseHidden(c.String("mults"))
	if err != nil {
		return o, usagef("--mults: %v", err)
	}
	unet := &model.UNetConfig{Base: c.Int("base"), Mults: mults, ResBlocks: c.Int("res-blocks"), Attention: c.Bool("attention"), Groups: c.Int("groups")}
	hidden, err := model.ParseHidden(c.String("hidden"))
	if err != nil {
		return o, usagef("--hidden: %v", err)
	}
	ps, err := pathFromFlags(c)
	if err != nil {
		return o, err
	}
	tk, err := flow.ParseTimeKind(c.String("time-sampling"))
	if err != nil {
		return o, usagef("--time-sampling: %v", err)
	}
	ts := flow.DefaultTimeSampler(tk)
	if tk == flow.TimeLogitNormal {
		ts.Mean, ts.Std = c.Float64("logit-mean"), c.Float64("logit-std")
	}
	if sh := c.Float64("time-shift"); sh != 1 {
		ts.Shift = sh
	}
	if err := ts.Validate(); err != nil {
		return o, usagef("--time-sampling/--time-shift: %v", err)
	}
	freqs := c.Int("time-freqs")
	emb := model.DefaultTimeEmbedding
	emb.Freqs = freqs
	if freqs < 0 || freqs > 4096 {
		return o, usagef("--time-freqs %d: need 0..4096", freqs)
	}
	if freqs == 0 {
		emb = model.DefaultTimeEmbedding
		emb.Freqs, emb.Scale, emb.MaxPeriod = 0, 0, 0
	}
	opt, err := train.ParseOptimizer(c.String("optimizer"))
	if err != nil {
		return o, usagef("--optimizer %q: want adam or adamw", c.String("optimizer"))
	}
	sched, err := train.ParseSchedule(c.String("schedule"))
	if err != nil {
		return o, usagef("--schedule %q: want cosine or constant", c.String("schedule"))
	}
	o.cfg = train.Config{
		Model: model.Config{Kind: "mlp", Hidden: hidden, TimeEmbed: emb},
		Path:  ps, Time: ts,
		Steps: c.Int("steps"), Batch: c.Int("batch"), Seed: c.Uint64("seed"),
		Optimizer: opt, LR: c.Float64("lr"), WeightDecay: c.Float64("weight-decay"),
		MaxGradNorm: c.Float64("clip-grad"), Warmup: c.Int("warmup"), Schedule: sched,
		MinLRFrac: c.Float64("min-lr-frac"), EMADecay: c.Float64("ema"), ClassDropout: c.Float64("class-dropout"),
	}
	o.cfg.Model.UNet = unet
	o.cfg.Defaults()
	switch {
	case o.checkpointEvery < 0:
		return o, usagef("--checkpoint-every %d: need >= 0", o.checkpointEvery)
	case o.logEvery < 1:
		return o, usagef("--log-every %d: need >= 1", o.logEvery)
	case o.nData < 1 || o.nData > 1<<26:
		return o, usagef("--n-data %d: need 1..%d", o.nData, 1<<26)
	case o.threads < 0:
		return o, usagef("--threads %d: need >= 0", o.threads)
	case o.stopAfter < 0 || o.stopAfter > o.cfg.Steps:
		return o, usagef("--stop-after %d: need 0..--steps (%d)", o.stopAfter, o.cfg.Steps)
	case o.cfg.Warmup > o.cfg.Steps:
		return o, usagef("--warmup %d exceeds --steps %d", o.cfg.Warmup, o.cfg.Steps)
	}
	if o.cfg.EMADecay != 0 && !(o.cfg.EMADecay > 0 && o.cfg.EMADecay < 1) {
		return o, usagef("--ema %g: need 0 <= decay < 1", o.cfg.EMADecay)
	}
	return o, nil
}

// loadTrainingData reads --data: an image set through LoadImages (with the
// image flags), anything else through data.Load.
func loadTrainingData(o trainOptions) (*data.Dataset, error) {
	if data.IsImageData(o.data) {
		opts := o.image
		opts.Max = o.nData
		is, err := data.LoadImages(o.data, opts)
		if err != nil {
			return nil, err
		}
		return is.Dataset, nil
	}
	if o.image != (data.ImageOptions{}) {
		return nil, usagef("--image-size, --channels and --data-dir apply to image data, not %s", o.data)
	}
	return data.Load(o.data, o.nData, o.cfg.Seed)
}

// fitModel completes the model configuration from the data: its dimension,
// the kind (auto: unet for images), the image shape and the classes.
func fitModel(o *trainOptions, ds *data.Dataset) error {
	m := &o.cfg.Model
	m.Dim = ds.D
	kind := o.modelKind
	if kind == "auto" {
		kind = "mlp"
		if ds.Image != nil {
			kind = "unet"
		}
	}
	m.Kind = kind
	if kind == "mlp" {
		m.UNet = nil
		return nil
	}
	if ds.Image == nil {
		return usagef("--model unet needs image data (mnist, fashion-mnist or a directory of images), not %s", o.data)
	}
	m.Hidden = nil
	m.Image = &model.ImageShape{Channels: ds.Image.Channels, Height: ds.Image.Height, Width: ds.Image.Width}
	if m.TimeEmbed.Freqs == 0 {
		return usagef("--model unet needs a sinusoidal time embedding (--time-freqs > 0)")
	}
	if len(ds.Image.Classes) > 0 && ds.Labels != nil && !o.unconditional {
		m.Classes = len(ds.Image.Classes)
	}
	return nil
}

func runTrain(ctx context.Context, o trainOptions, stdout, stderr io.Writer) error {
	ds, err := loadTrainingData(o)
	if err != nil {
		return usageError{err}
	}
	if ds.Image != nil {
		o.applyImageDefaults()
		if o.cfg.Warmup > o.cfg.Steps {
			return usagef("--warmup %d exceeds --steps %d", o.cfg.Warmup, o.cfg.Steps)
		}
	}
	if err := fitModel(&o, ds); err != nil {
		return err
	}
	if err := o.cfg.Validate(); err != nil {
		return configError(err)
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return fmt.Errorf("--out %s: %w", o.out, err)
	}
	if err := atomicfile.CheckWritable(o.out); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	ckPath := filepath.Join(o.out, train.CheckpointName)
	var ck *train.Checkpoint
	if o.resume {
		if ck, err = train.Load(ckPath); err != nil {
			return fmt.Errorf("--resume: %w", err)
		}
		if o.stopAfter > 0 && o.stopAfter <= ck.Meta.Step {
			return usagef("--stop-after %d: the checkpoint is already at step %d", o.stopAfter, ck.Meta.Step)
		}
		if ck.Meta.Step >= o.cfg.Steps {
			return usagef("--resume: %s is at step %d; raise --steps above it to train further", ckPath, ck.Meta.Step)
		}
	} else if _, err := os.Stat(ckPath); err == nil {
		return usagef("--out %s already holds a checkpoint: pass --resume to continue it or choose another directory", o.out)
	}
	std := data.Fit(ds)
	if ds.Image != nil {
		std = data.Identity(ds.D) // pixels are already scaled to [-1, 1]
	}
	if ck != nil {
		std = ck.Meta.Standardization // the scale the network was trained in
	}
	x := append([]float32(nil), ds.X...)
	std.Apply(x)

	b, err := openBackend(o.device, o.threads)
	if err != nil {
		return err
	}
	defer b.Close()
	var labels []int32
	if o.cfg.Model.Classes > 0 {
		labels = ds.Labels
	}
	tr, err := train.NewConditional(b, o.cfg, x, labels, ds.N)
	if err != nil {
		return err
	}
	defer tr.Close()
	// a checkpoint holds four copies of the parameters; the atomic write
	// needs room for the old and the new file at once
	if err := atomicfile.CheckSpace(o.out, 2*(16*int64(tr.Net().NumParams())+1<<16)); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	if ck != nil {
		if err := tr.Resume(ck); err != nil {
			return usageError{err}
		}
	}
	if !o.quiet {
		fmt.Fprintf(stderr, "fmgpu train: %s, %d x %d data from %s, %s path, %d parameters, on %s\n",
			o.cfg.Model.Kind, ds.N, ds.D, o.data, o.cfg.Path, tr.Net().NumParams(), describeBackend(b))
	}
	prog := newProgress(stderr, o.quiet, tr.StepsDone(), o.cfg.Steps)
	runErr := tr.Run(ctx, train.RunOptions{
		OutDir: o.out, CheckpointEvery: o.checkpointEvery, LogEvery: o.logEvery,
		Std: std, Data: dataInfo(o.data, ds),
		OnLog: prog.update, StopAt: o.stopAfter,
		OnCheckpoint: func(step int) error {
			if !o.plot || ds.Image == nil {
				return nil
			}
			return sampleGridAt(ctx, b, tr, o, ds, step)
		},
	})
	prog.finish(runErr == nil)
	var nf *train.NonFiniteError
	switch {
	case errors.Is(runErr, context.Canceled):
		fmt.Fprintf(stderr, "fmgpu train: saved %s at step %d\n", ckPath, tr.StepsDone())
		return errInterrupted
	case errors.As(runErr, &nf):
		return fmt.Errorf("%w; the last good checkpoint is kept", runErr)
	case runErr != nil:
		return runErr
	}
	if tr.StepsDone() < o.cfg.Steps {
		fmt.Fprintf(stderr, "fmgpu train: stopped at step %d of %d as asked; continue with --resume\n", tr.StepsDone(), o.cfg.Steps)
		return nil
	}
	if o.plot {
		if err := trainPlots(ctx, b, tr, std, ds, o); err != nil {
			return err
		}
	}
	if !o.quiet {
		fmt.Fprintf(stdout, "wrote %s and %s\n", ckPath, filepath.Join(o.out, train.MetricsName))
	}
	return nil
}

// configFlags names the train flag of each train.Config field that has one.
var configFlags = map[string]string{
	"steps": "steps", "batch": "batch", "optimizer": "optimizer", "lr": "lr", "weight_decay": "weight-decay",
	"max_grad_norm": "clip-grad", "warmup": "warmup", "schedule": "schedule", "min_lr_frac": "min-lr-frac",
	"ema_decay": "ema", "class_dropout": "class-dropout",
}

// configError is a usage error for a configuration train.Config rejects,
// naming the flag that set the field at fault.
func configError(err error) error {
	var fe *train.FieldError
	if errors.As(err, &fe) {
		if flag, ok := configFlags[fe.Field]; ok {
			return usagef("--%s %v: %s", flag, fe.Value, fe.Reason)
		}
	}
	return usageError{err}
}

// finiteOrZero keeps a logged value printable.
func finiteOrZero(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	return v
}

func dataInfo(source string, ds *data.Dataset) train.DataInfo {
	in := train.DataInfo{Source: source, Rows: ds.N, Dim: ds.D}
	if ds.Image != nil {
		in.Classes = ds.Image.Classes
	}
	return in
}
