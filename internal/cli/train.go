package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"

	ucli "github.com/urfave/cli/v2"

	"github.com/fmgpu/fmgpu/collective"
	"github.com/fmgpu/fmgpu/coupling"
	"github.com/fmgpu/fmgpu/data"
	"github.com/fmgpu/fmgpu/flow"
	"github.com/fmgpu/fmgpu/gpu"
	"github.com/fmgpu/fmgpu/internal/atomicfile"
	"github.com/fmgpu/fmgpu/internal/dirlock"
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
	defaultBuiltinN  = 100000
	defaultLogEvery  = 100
	defaultTimeFreqs = 16
)

// defaultWarmup is the warm-up of a run of steps steps when --warmup is not
// given: 200 steps (the measured choice for the default 2-D and image
// runs of 6000 and 1500 steps), and a fifth of a shorter run.
func defaultWarmup(steps int) int { return min(200, steps/5) }

// Help categories of the train flags.
const (
	catData   = "Data"
	catModel  = "Model"
	catOptim  = "Optimizer and schedule"
	catOutput = "Output and run"
	catPath   = "Path and time"
)

// resumeMayChange are the settings (train.Config JSON names) a resumed run
// may change when their flag is given: the optimization's course, not the
// state the checkpoint holds nor the batches it will draw.
var resumeMayChange = map[string]bool{
	"steps": true, "lr": true, "warmup": true, "schedule": true, "min_lr_frac": true,
	"weight_decay": true, "max_grad_norm": true, "ema_decay": true, "precision": true,
}

// settingFlags are the train flags that set each train.Config field.
var settingFlags = map[string][]string{
	"model": {"model", "hidden", "base", "mults", "res-blocks", "attention", "groups", "time-freqs", "unconditional", "attention-res", "heads", "dropout"},
	"path":  {"path", "sigma-min", "sigma-max", "beta-min", "beta-max"},
	"time":  {"time-sampling", "logit-mean", "logit-std", "time-shift"},
	"steps": {"steps"}, "batch": {"batch"}, "seed": {"seed"}, "optimizer": {"optimizer"}, "lr": {"lr"},
	"weight_decay": {"weight-decay"}, "max_grad_norm": {"clip-grad"}, "warmup": {"warmup"}, "schedule": {"schedule"},
	"min_lr_frac": {"min-lr-frac"}, "ema_decay": {"ema"}, "class_dropout": {"class-dropout"}, "preset": {"preset"},
	"coupling": {"coupling", "ot-reg", "coupling-blocks"}, "precision": {"precision"},
}

// flagPart extracts from a configuration the part one flag of a
// structured setting (the network, the path, the time sampling) sets: a
// resumed run compares the flags given, and takes the rest of the setting
// from the checkpoint (a run resumed with its own --time-freqs was
// refused because --hidden, not given, held its default).
var flagPart = map[string]func(c *train.Config) any{
	"model":         func(c *train.Config) any { return c.Model.Kind },
	"hidden":        func(c *train.Config) any { return c.Model.Hidden },
	"time-freqs":    func(c *train.Config) any { return c.Model.TimeEmbed.Freqs },
	"unconditional": func(c *train.Config) any { return c.Model.Classes == 0 },
	"base":          unetPart(func(u *model.UNetConfig) any { return u.Base }),
	"mults":         unetPart(func(u *model.UNetConfig) any { return u.Mults }),
	"res-blocks":    unetPart(func(u *model.UNetConfig) any { return u.ResBlocks }),
	"attention":     unetPart(func(u *model.UNetConfig) any { return u.Attention }),
	"groups":        unetPart(func(u *model.UNetConfig) any { return u.Groups }),
	"attention-res": unetPart(func(u *model.UNetConfig) any { return u.AttentionRes }),
	"heads":         unetPart(func(u *model.UNetConfig) any { return u.HeadCount() }),
	"dropout":       unetPart(func(u *model.UNetConfig) any { return u.Dropout }),
	"path":          func(c *train.Config) any { return c.Path.Kind },
	"sigma-min":     func(c *train.Config) any { return c.Path.SigmaMin },
	"sigma-max":     func(c *train.Config) any { return c.Path.SigmaMax },
	"beta-min":      func(c *train.Config) any { return c.Path.BetaMin },
	"beta-max":      func(c *train.Config) any { return c.Path.BetaMax },
	"time-sampling": func(c *train.Config) any { return c.Time.Kind },
	"logit-mean":    func(c *train.Config) any { return c.Time.Mean },
	"logit-std":     func(c *train.Config) any { return c.Time.Std },
	"time-shift":    func(c *train.Config) any { return c.Time.Shift },
}

func unetPart(f func(u *model.UNetConfig) any) func(c *train.Config) any {
	return func(c *train.Config) any {
		if c.Model.UNet == nil {
			return "no U-Net"
		}
		return f(c.Model.UNet)
	}
}

// changedFlag returns the first flag given for setting whose part of the
// configuration differs between was and now ("" if none does), and
// whether every flag given has a part to compare.
func changedFlag(setting string, explicit map[string]bool, was, now *train.Config) (string, bool) {
	for _, f := range settingFlags[setting] {
		if !explicit[f] {
			continue
		}
		part, ok := flagPart[f]
		if !ok {
			return "", false
		}
		if fmt.Sprint(part(was)) != fmt.Sprint(part(now)) {
			return f, true
		}
	}
	return "", true
}

type trainOptions struct {
	data, out, device                  string
	cfg                                train.Config
	checkpointEvery, logEvery, threads int
	stopAfter                          int
	nData                              int
	resume, plot                       bool
	coupling                           couplingFlags
	quiet                              bool
	modelKind                          string
	unconditional                      bool
	image                              data.ImageOptions
	csv                                data.CSVOptions
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
		&ucli.StringFlag{Name: "path", Value: "ot", Category: catPath, Usage: "probability path: ot, linear-vp, cosine, vp or ve"},
		&ucli.Float64Flag{Name: "sigma-min", Category: catPath, DefaultText: "ot 0, ve 0.01", Usage: "ot and ve: sigma_min"},
		&ucli.Float64Flag{Name: "sigma-max", Category: catPath, DefaultText: "10", Usage: "ve: sigma_max"},
		&ucli.Float64Flag{Name: "beta-min", Category: catPath, DefaultText: "0.1", Usage: "vp: beta_min"},
		&ucli.Float64Flag{Name: "beta-max", Category: catPath, DefaultText: "20", Usage: "vp: beta_max"},
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
	}
	s = pathParamsFromFlags(c, s)
	if _, err := flow.New(s); err != nil {
		return s, usagef("%v", err)
	}
	return s, nil
}

// pathParamsFromFlags is s with the path parameters given set.
func pathParamsFromFlags(c *ucli.Context, s flow.Spec) flow.Spec {
	for _, name := range []string{"sigma-min", "sigma-max", "beta-min", "beta-max"} {
		if !c.IsSet(name) {
			continue
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
	return s
}

// csvFlags are the options of CSV input.
func csvFlags(category string) []ucli.Flag {
	return []ucli.Flag{
		&ucli.StringFlag{Name: "delimiter", Value: ",", Category: category, Usage: "FILE.csv: the field separator, one character or \"tab\""},
		&ucli.BoolFlag{Name: "header", Category: category, DisableDefaultText: true, Usage: "FILE.csv: the first line is a header even if it looks like numbers"},
	}
}

// csvOptionsFrom reads --delimiter and --header, which only a .csv file
// takes.
func csvOptionsFrom(c *ucli.Context, dataFlag string, paths ...string) (data.CSVOptions, error) {
	var o data.CSVOptions
	var err error
	if o.Delimiter, err = parseDelimiter("delimiter", c.String("delimiter")); err != nil {
		return o, err
	}
	o.Header = c.Bool("header")
	if len(paths) > 0 && (c.IsSet("delimiter") || c.IsSet("header")) {
		csv := false
		for _, p := range paths {
			csv = csv || strings.EqualFold(filepath.Ext(p), ".csv")
		}
		if !csv {
			flag := "delimiter"
			if !c.IsSet("delimiter") {
				flag = "header"
			}
			return o, usagef("--%s applies to a .csv file, not --%s %s", flag, dataFlag, strings.Join(paths, ", "))
		}
	}
	return o, nil
}

// parseDelimiter reads a delimiter flag: one character, or "tab".
func parseDelimiter(flag, d string) (rune, error) {
	switch {
	case d == "tab" || d == `\t`:
		return '\t', nil
	case len([]rune(d)) == 1:
		return []rune(d)[0], nil
	}
	return 0, usagef("--%s %q: want one character or \"tab\"", flag, d)
}

// dataError is a usage error for data that did not load, with the flag to
// use when a CSV file seems to have another delimiter.
func dataError(err error) error { return delimiterError(err, "delimiter") }

// delimiterError is dataError for a file whose delimiter the flag sets.
func delimiterError(err error, flag string) error {
	var de *data.CSVDelimiterError
	if errors.As(err, &de) {
		d := string(de.Seen)
		if de.Seen == '\t' {
			d = "tab"
		}
		return usagef("%v (pass --%s '%s')", err, flag, d)
	}
	return usageError{err}
}

func trainCommand() *ucli.Command {
	flags := []ucli.Flag{
		&ucli.StringFlag{Name: "data", Category: catData, Usage: "(required) built-in set (" + strings.Join(data.BuiltinNames(), ", ") + "), FILE.npy / FILE.csv, an image set (" + strings.Join(data.ImageDataNames(), ", ") + ") or a DIR of PNG/JPEG images (a directory named like a built-in set is ./NAME); with --resume, the checkpoint's when not given"},
		&ucli.IntFlag{Name: "n-data", Value: defaultBuiltinN, Category: catData, Usage: "points drawn for a built-in set, or the first images of mnist / fashion-mnist / a DIR"},
		&ucli.StringFlag{Name: "data-dir", Category: catData, DefaultText: "see README", Usage: "mnist / fashion-mnist: the directory holding the idx files; cifar10: the cifar-10-batches-bin folder (or $FMGPU_CIFAR10_DIR)"},
		&ucli.IntFlag{Name: "image-size", Category: catData, DefaultText: "native, or 32 when sizes differ", Usage: "image folders: side of the square images"},
		&ucli.IntFlag{Name: "channels", Category: catData, DefaultText: "as the images are", Usage: "image folders: 1 (gray) or 3 (RGB)"},
		&ucli.BoolFlag{Name: "unconditional", Category: catData, DisableDefaultText: true, Usage: "ignore the class labels of image data"},

		&ucli.StringFlag{Name: "model", Value: "auto", Category: catModel, Usage: "mlp, unet, or auto (unet for images, mlp otherwise)"},
		&ucli.StringFlag{Name: "hidden", Value: defaultHidden, Category: catModel, Usage: "mlp: hidden layer widths"},
		&ucli.IntFlag{Name: "time-freqs", Value: defaultTimeFreqs, Category: catModel, Usage: "sinusoidal time-embedding frequencies (0: feed t itself)"},
		&ucli.IntFlag{Name: "base", Value: 32, Category: catModel, Usage: "unet: channels of the first level"},
		&ucli.StringFlag{Name: "mults", Value: "1,2,2", Category: catModel, Usage: "unet: channel multiplier per level (each level after the first halves the resolution)"},
		&ucli.IntFlag{Name: "res-blocks", Value: 1, Category: catModel, Usage: "unet: residual blocks per level"},
		&ucli.BoolFlag{Name: "attention", Category: catModel, DisableDefaultText: true, Usage: "unet: self-attention at the lowest resolution"},
		&ucli.IntFlag{Name: "groups", Value: 8, Category: catModel, Usage: "unet: GroupNorm groups"},
		&ucli.Float64Flag{Name: "class-dropout", Value: 0.1, Category: catModel, Usage: "class-conditional models: probability of training on the null class (classifier-free guidance)"},

		&ucli.StringFlag{Name: "time-sampling", Value: "uniform", Category: catPath, Usage: "uniform or logit-normal"},
		&ucli.Float64Flag{Name: "logit-mean", Value: 0, Category: catPath, Usage: "logit-normal time sampling: mean m"},
		&ucli.Float64Flag{Name: "logit-std", Value: 1, Category: catPath, Usage: "logit-normal time sampling: std s"},
		&ucli.Float64Flag{Name: "time-shift", Value: 1, Category: catPath, Usage: "SD3 time shift, applied in training and sampling (0 or 1: none)"},
		&ucli.StringFlag{Name: "coupling", Value: "independent", Category: catPath, Usage: "pairing of each batch's noise with its data: independent, ot (exact minibatch optimal transport) or sinkhorn (entropic plan); within each class for labelled data"},
		&ucli.Float64Flag{Name: "ot-reg", Value: defaultOTReg, Category: catPath, Usage: "--coupling sinkhorn: entropic regularization, in squared standardized distance"},
		&ucli.IntFlag{Name: "coupling-blocks", Value: 1, Category: catPath, Usage: "--coupling ot|sinkhorn: pair the batch in this many contiguous blocks of rows, each on its own; with as many blocks as data-parallel ranks each rank pairs only its own rows (1: the whole global batch, on every rank)"},

		&ucli.IntFlag{Name: "steps", Value: defaultSteps, Category: catOptim, Usage: "training steps (image data: 1500)"},
		&ucli.IntFlag{Name: "batch", Value: defaultBatch, Category: catOptim, Usage: "batch size (image data: 64)"},
		&ucli.Float64Flag{Name: "lr", Value: defaultLR, Category: catOptim, Usage: "peak learning rate (image data: 1e-3)"},
		&ucli.StringFlag{Name: "optimizer", Value: "adam", Category: catOptim, Usage: "adam or adamw"},
		&ucli.Float64Flag{Name: "weight-decay", Value: 0, Category: catOptim, Usage: "weight decay (L2 for adam, decoupled for adamw)"},
		&ucli.Float64Flag{Name: "clip-grad", Value: defaultClip, Category: catOptim, Usage: "clip the global gradient norm (0: off)"},
		&ucli.IntFlag{Name: "warmup", Category: catOptim, DefaultText: "min(200, steps/5)", Usage: "linear learning-rate warm-up steps"},
		&ucli.StringFlag{Name: "schedule", Value: "cosine", Category: catOptim, Usage: "after warm-up: cosine or constant"},
		&ucli.Float64Flag{Name: "min-lr-frac", Value: 0.05, Category: catOptim, Usage: "cosine schedule ends at lr*min-lr-frac"},
		&ucli.Float64Flag{Name: "ema", Value: defaultEMA, Category: catOptim, Usage: "EMA decay of the weights used for sampling (0: off)"},
		&ucli.Uint64Flag{Name: "seed", Value: 1, Category: catOptim, Usage: "random seed (initialization, batches, built-in data)"},

		&ucli.StringFlag{Name: "out", Category: catOutput, Usage: "(required) output directory (checkpoint, metrics, plots); one run at a time"},
		&ucli.BoolFlag{Name: "resume", Category: catOutput, DisableDefaultText: true, Usage: "continue OUT/checkpoint.safetensors exactly: settings not given are the checkpoint's; " +
			"--steps, --lr, --warmup, --schedule, --min-lr-frac, --weight-decay, --clip-grad and --ema may be changed (noted in metrics.jsonl), " +
			"other settings and the data may not"},
		&ucli.IntFlag{Name: "stop-after", Category: catOutput, Usage: "end this run after step K of --steps with a checkpoint (resume later with --resume)"},
		&ucli.IntFlag{Name: "checkpoint-every", Value: 0, Category: catOutput, Usage: "also write the checkpoint every N steps (0: only at the end; image data: 500, with a grid of samples each time)"},
		&ucli.IntFlag{Name: "log-every", Value: defaultLogEvery, Category: catOutput, Usage: "read the loss and write metrics every N steps"},
		&ucli.BoolFlag{Name: "no-plot", Category: catOutput, DisableDefaultText: true, Usage: "do not draw samples.png and loss.png"},
		&ucli.BoolFlag{Name: "quiet", Category: catOutput, DisableDefaultText: true, Usage: "no progress output"},
		&ucli.StringFlag{Name: "device", Value: "auto", Category: catOutput, Usage: "auto, cpu or cuda"},
		precisionFlag(catOutput),
		&ucli.IntFlag{Name: "threads", Value: 0, Category: catOutput, Usage: "CPU worker threads (0: all cores)"},
	}
	flags = append(flags, pathFlags()...)
	flags = append(flags, csvFlags(catData)...)
	flags = append(flags, presetFlags()...)
	return &ucli.Command{
		Name:  "train",
		Usage: "train a flow-matching model",
		Description: "Writes OUT/checkpoint.safetensors and OUT/metrics.jsonl (the loss per element at every --log-every steps), " +
			"and OUT/samples.png and OUT/loss.png unless --no-plot. Ctrl-C or SIGTERM saves a checkpoint and exits with 130.",
		Flags: flags,
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
	if err := applyPreset(c); err != nil {
		return trainOptions{}, err
	}
	o := trainOptions{
		data: c.String("data"), out: c.String("out"), device: c.String("device"),
		checkpointEvery: c.Int("checkpoint-every"), logEvery: c.Int("log-every"), threads: c.Int("threads"),
		nData: c.Int("n-data"), resume: c.Bool("resume"), stopAfter: c.Int("stop-after"), plot: !c.Bool("no-plot"), quiet: c.Bool("quiet"),
		modelKind: c.String("model"), unconditional: c.Bool("unconditional"),
		image:    data.ImageOptions{Size: c.Int("image-size"), Channels: c.Int("channels"), Dir: c.String("data-dir")},
		explicit: map[string]bool{},
	}
	for _, f := range c.Command.Flags {
		for _, n := range f.Names() {
			o.explicit[n] = c.IsSet(n)
		}
	}
	if err := requireFlags(c, "out"); err != nil {
		return o, err
	}
	if !o.resume {
		if err := requireFlags(c, "data"); err != nil {
			return o, err
		}
	}
	if steps := c.Int("steps"); steps < 1 {
		return o, usagef("--steps %d: need at least 1", steps)
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
	if err := unetBlocksFrom(c, unet); err != nil {
		return o, err
	}
	hidden, err := model.ParseHidden(c.String("hidden"))
	if err != nil {
		return o, usagef("--hidden: %v", err)
	}
	var ps flow.Spec
	if c.Bool("resume") && !c.IsSet("path") {
		// the kind is the checkpoint's: its parameters given are compared
		// with the checkpoint's in resumeConfig, whatever the default
		// --path would take
		ps = pathParamsFromFlags(c, flow.DefaultSpec(flow.KindOT))
	} else {
		ps, err = pathFromFlags(c)
	}
	if err != nil {
		return o, err
	}
	tk, err := flow.ParseTimeKind(c.String("time-sampling"))
	if err != nil {
		return o, usagef("--time-sampling: %v", err)
	}
	ts := flow.DefaultTimeSampler(tk)
	if tk == flow.TimeLogitNormal || c.Bool("resume") && !c.IsSet("time-sampling") {
		// (resumed: the kind is the checkpoint's, and the parameters
		// given are compared with its own in resumeConfig)
		ts.Mean, ts.Std = c.Float64("logit-mean"), c.Float64("logit-std")
	} else {
		for _, f := range []string{"logit-mean", "logit-std"} {
			if c.IsSet(f) {
				return o, usagef("--%s applies to --time-sampling logit-normal", f)
			}
		}
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
		Preset: c.String("preset"),
	}
	o.cfg.Model.UNet = unet
	o.coupling = couplingFlagsFrom(c)
	if !o.resume {
		if o.cfg.Coupling, err = o.coupling.coupling(train.Coupling{}); err != nil {
			return o, err
		}
	}
	if o.cfg.Precision, err = precisionFrom(c); err != nil {
		return o, err
	}
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
	case o.stopAfter < 0:
		return o, usagef("--stop-after %d: need 0..--steps", o.stopAfter)
	case o.explicit["warmup"] && o.cfg.Warmup < 0:
		return o, usagef("--warmup %d: need >= 0", o.cfg.Warmup)
	}
	if o.cfg.EMADecay != 0 && !(o.cfg.EMADecay > 0 && o.cfg.EMADecay < 1) {
		return o, usagef("--ema %g: need 0 <= decay < 1", o.cfg.EMADecay)
	}
	var paths []string
	if o.data != "" {
		paths = []string{o.data}
		if err := checkDataFlags(o); err != nil {
			return o, err
		}
	}
	if o.csv, err = csvOptionsFrom(c, "data", paths...); err != nil {
		return o, err
	}
	return o, nil
}

// checkDataFlags refuses data flags that the kind of --data would ignore;
// a resumed run checks again once its data is the checkpoint's.
func checkDataFlags(o trainOptions) error {
	if o.explicit["delimiter"] || o.explicit["header"] {
		if !strings.EqualFold(filepath.Ext(o.data), ".csv") {
			flag := "delimiter"
			if !o.explicit["delimiter"] {
				flag = "header"
			}
			return usagef("--%s applies to a .csv file, not --data %s", flag, o.data)
		}
	}
	if data.IsImageData(o.data) {
		if o.explicit["data-dir"] && !dataDirApplies(o.data) {
			return usagef("--data-dir applies to --data mnist, fashion-mnist or cifar10, not the folder %s", o.data)
		}
		return nil
	}
	if o.explicit["image-size"] || o.explicit["channels"] || o.explicit["data-dir"] {
		return usagef("--image-size, --channels and --data-dir apply to image data, not %s", o.data)
	}
	if data.IsBuiltin(o.data) {
		return nil
	}
	if o.explicit["n-data"] {
		return usagef("--n-data applies to built-in sets and image data, not --data %s (every row of a file is used)", o.data)
	}
	return nil
}

// dataDirApplies is an image set whose files --data-dir locates: mnist,
// fashion-mnist (with a split) or cifar10, not a folder of images.
func dataDirApplies(spec string) bool {
	return isNamedImageSet(spec) || data.IsCIFAR10(spec)
}

// loadTrainingData reads --data: an image set through LoadImages (with the
// image flags), anything else through data.LoadWith.
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
	return data.LoadWith(o.data, data.LoadOptions{N: o.nData, Seed: o.cfg.Seed, CSV: o.csv})
}

// fitModel completes the model configuration from the data: its dimension,
// the kind (auto: unet for images), the image shape and the classes; flags
// of the other kind of network are refused, not ignored.
func fitModel(o *trainOptions, ds *data.Dataset) error {
	m := &o.cfg.Model
	m.Dim = ds.D
	if o.cfg.Preset != "" && ds.Image == nil {
		return usagef("--preset %s trains a U-Net on image data, not %s", o.cfg.Preset, o.data)
	}
	kind := o.modelKind
	if kind == "auto" {
		kind = "mlp"
		if ds.Image != nil {
			kind = "unet"
		}
	}
	m.Kind = model.Kind(kind)
	if kind == "mlp" {
		for _, f := range []string{"base", "mults", "res-blocks", "attention", "groups", "attention-res", "heads", "dropout"} {
			if o.explicit[f] {
				return usagef("--%s applies to --model unet; %s trains an MLP (see --hidden)", f, o.data)
			}
		}
		if o.unconditional || o.explicit["class-dropout"] {
			flag := "--class-dropout"
			if o.unconditional {
				flag = "--unconditional"
			}
			return usagef("%s applies to labelled image data, not %s", flag, o.data)
		}
		m.UNet = nil
		return nil
	}
	if ds.Image == nil {
		return usagef("--model unet needs image data (mnist, fashion-mnist or a directory of images), not %s", o.data)
	}
	if o.explicit["hidden"] {
		return usagef("--hidden applies to --model mlp; %s trains a U-Net (see --base, --mults, --res-blocks)", o.data)
	}
	m.Hidden = nil
	m.Image = &model.ImageShape{Channels: ds.Image.Channels, Height: ds.Image.Height, Width: ds.Image.Width}
	if m.TimeEmbed.Freqs == 0 {
		return usagef("--model unet needs a sinusoidal time embedding (--time-freqs > 0)")
	}
	labelled := len(ds.Image.Classes) > 0 && ds.Labels != nil
	if !labelled && (o.unconditional || o.explicit["class-dropout"]) {
		flag := "--class-dropout"
		if o.unconditional {
			flag = "--unconditional"
		}
		return usagef("%s applies to labelled image data; %s has no classes", flag, o.data)
	}
	if labelled && !o.unconditional {
		m.Classes = len(ds.Image.Classes)
	} else if o.explicit["class-dropout"] {
		return usagef("--class-dropout applies to class-conditional models, not with --unconditional")
	}
	return nil
}

// fitData settles what the data decide: the image defaults, the warm-up's
// default and the model's kind, shape and classes (fitModel).
func (o *trainOptions) fitData(ds *data.Dataset) error {
	if ds.Image != nil {
		o.applyImageDefaults()
	}
	if !o.explicit["warmup"] {
		o.cfg.Warmup = defaultWarmup(o.cfg.Steps)
	}
	return fitModel(o, ds)
}

// checkOutOutsideData refuses an --out inside an image --data folder: the
// run's checkpoint and grids would become training images of the next run.
func checkOutOutsideData(o trainOptions) error {
	if !data.IsImageData(o.data) {
		return nil
	}
	if st, err := os.Stat(o.data); err != nil || !st.IsDir() {
		return nil
	}
	d, err1 := absReal(o.data)
	out, err2 := absReal(o.out)
	if err1 != nil || err2 != nil {
		return nil
	}
	if rel, err := filepath.Rel(d, out); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return usagef("--out %s is inside --data %s: its checkpoint and sample grids would be read as images next time; choose a directory outside it", o.out, o.data)
	}
	return nil
}

// absReal is path made absolute with its existing part's links resolved.
func absReal(path string) (string, error) {
	p, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	var rest []string
	for {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			return filepath.Join(append([]string{r}, rest...)...), nil
		}
		parent := filepath.Dir(p)
		if parent == p {
			return filepath.Join(append([]string{p}, rest...)...), nil
		}
		rest = append([]string{filepath.Base(p)}, rest...)
		p = parent
	}
}

// resumeData takes from the checkpoint what a resumed run was not told:
// how often it logged and saved, the data source, the points drawn
// (--n-data) and the seed they were drawn with (which, given, must be the
// checkpoint's: it draws every batch).
func resumeData(o *trainOptions, ck *train.Checkpoint) error {
	in := ck.Meta.Data
	if in.Source == train.SourceGo {
		switch {
		case in.SHA256 == "":
			return usagef("--resume: %s was trained on rows a Go program streamed (fmgpu's library, a Source read step by step): resume it there, with TrainOptions.Resume and the same source", ck.Path)
		case o.data == "":
			return usagef("--resume: %s was trained on rows a Go program held in memory (fmgpu's library): give the same rows with --data FILE", ck.Path)
		}
	}
	if o.data == "" {
		o.data = recordedPath(in.Source, in.AbsPath)
	}
	if !o.explicit["n-data"] && ck.Meta.Data.Rows > 0 {
		o.nData = ck.Meta.Data.Rows
	}
	if im := ck.Meta.Config.Model.Image; im != nil && data.IsImageData(o.data) {
		// the images as the run read them: otherwise another size or
		// channel count, or no CIFAR-10 directory at all
		if !o.explicit["image-size"] {
			o.image.Size = im.Height
		}
		if !o.explicit["channels"] {
			o.image.Channels = im.Channels
		}
		if !o.explicit["data-dir"] && in.DataDir != "" {
			o.image.Dir = in.DataDir
		}
	}
	if csv := in.CSV; csv != nil && (o.data == in.Source || o.data == in.AbsPath || sameFile(o.data, recordedPath(in.Source, in.AbsPath))) {
		// read as the run began: a header of numbers that needed --header
		// was otherwise read as a row, and the file reported changed
		if d := []rune(csv.Delimiter); len(d) == 1 && !o.explicit["delimiter"] {
			o.csv.Delimiter = d[0]
		}
		if !o.explicit["header"] {
			o.csv.Header = csv.Header
		}
	}
	if s := ck.Meta.Schedule; s != nil {
		// the rhythm of the run's metrics and grids, as it began
		if !o.explicit["log-every"] {
			o.logEvery = s.LogEvery
		}
		if !o.explicit["checkpoint-every"] {
			o.checkpointEvery = s.CheckpointEvery
		}
	}
	if was := ck.Meta.Config.Seed; !o.explicit["seed"] {
		o.cfg.Seed = was
	} else if o.cfg.Seed != was {
		return usagef("--resume: --seed differs from the checkpoint's (checkpoint %d, flags %d); it cannot change in a resumed run", was, o.cfg.Seed)
	}
	return nil
}

// checkResumeData refuses to continue a run on other data than it was
// trained on: another source, other rows (--n-data), other contents.
func checkResumeData(o trainOptions, ck *train.Checkpoint, ds *data.Dataset, sum string) error {
	in := ck.Meta.Data
	same := o.data == in.Source || o.data == in.AbsPath || sameFile(o.data, in.Source)
	if in.SHA256 != "" && sum == in.SHA256 {
		return nil // the same points, whatever the file is called now
	}
	if !same {
		return usagef("--resume: --data differs from the checkpoint's (checkpoint %s, flags %s); a resumed run continues on the same data", in.Source, o.data)
	}
	if c := in.CSV; c != nil && (ds.N != in.Rows || ds.D != in.Dim) {
		// the same file read another way, not a changed file
		switch {
		case o.explicit["header"] && o.csv.Header != c.Header:
			return usagef("--resume: --header reads %s otherwise than the run did (it read it %s a declared header): leave --header out", o.data, map[bool]string{true: "with", false: "without"}[c.Header])
		case o.explicit["delimiter"] && string(o.csv.Delimiter) != c.Delimiter:
			return usagef("--resume: --delimiter %q reads %s otherwise than the run did (it read it with %q): leave --delimiter out", string(o.csv.Delimiter), o.data, c.Delimiter)
		}
	}
	if ds.N != in.Rows {
		if data.IsBuiltin(o.data) || data.IsImageData(o.data) {
			return usagef("--resume: --n-data differs from the checkpoint's (checkpoint %d, flags %d)", in.Rows, o.nData)
		}
		return usagef("--resume: --data %s has %d rows, the checkpoint's data had %d: the file changed", o.data, ds.N, in.Rows)
	}
	if ds.D != in.Dim && ds.Image != nil {
		return usagef("--resume: --data %s read at %dx%d, %d channel(s), is %d values an image, the checkpoint's data %d: leave out --image-size and --channels to read it as the checkpoint did",
			o.data, ds.Image.Height, ds.Image.Width, ds.Image.Channels, ds.D, in.Dim)
	}
	if ds.D != in.Dim {
		return usagef("--resume: --data %s has %d columns, the checkpoint's data had %d", o.data, ds.D, in.Dim)
	}
	if in.SHA256 != "" {
		return usagef("--resume: --data %s holds other values than the data the checkpoint was trained on (same %d x %d shape): the file changed", o.data, ds.N, ds.D)
	}
	return nil
}

func sameFile(a, b string) bool {
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}

// resumeConfig reconciles the run's configuration with the checkpoint's:
// a setting whose flag was not given takes the checkpoint's value; one
// given and different is a change a resumed run may make (returned, to be
// noted in metrics.jsonl) or refused, naming the flag.
func resumeConfig(o *trainOptions, ck *train.Checkpoint) ([]train.Change, error) {
	was := ck.Meta.Config
	if o.coupling.given() {
		cp, err := o.coupling.coupling(was.Coupling)
		if err != nil {
			return nil, err
		}
		if cp.Normalized() != was.Coupling.Normalized() {
			flag := "coupling"
			switch {
			case o.coupling.kindSet:
			case o.coupling.regSet:
				flag = "ot-reg"
			default:
				flag = "coupling-blocks"
			}
			return nil, usagef("--resume: --%s differs from the checkpoint's (checkpoint: %s; flags: %s); the coupling cannot change in a resumed run", flag, describeCoupling(was.Coupling), describeCoupling(cp))
		}
	}
	o.cfg.Coupling = was.Coupling
	var changes []train.Change
	for _, c := range train.Diff(was, o.cfg) {
		flag := ""
		for _, f := range settingFlags[c.Setting] {
			if o.explicit[f] {
				flag = f
				break
			}
		}
		if flag != "" && !resumeMayChange[c.Setting] {
			// the flags given may all agree with the checkpoint: the rest
			// of the setting is then the checkpoint's, not their defaults
			if f, ok := changedFlag(c.Setting, o.explicit, &was, &o.cfg); ok {
				flag = f
			}
		}
		switch {
		case flag == "":
			if err := setConfigField(&o.cfg, c.Setting, c.Was); err != nil {
				return nil, err
			}
		case resumeMayChange[c.Setting]:
			if c.Setting == "precision" {
				// fp32 is omitted from a checkpoint's configuration: name it
				for _, v := range []*json.RawMessage{&c.Was, &c.Now} {
					if len(*v) == 0 {
						*v = json.RawMessage(`"fp32"`)
					}
				}
			}
			changes = append(changes, c)
		case c.Setting == "model":
			if part, ok := flagPart[flag]; ok {
				return nil, usagef("--resume: the network differs from the checkpoint's (--%s: checkpoint %v, flags %v); it cannot change in a resumed run", flag, part(&was), part(&o.cfg))
			}
			return nil, usagef("--resume: the network differs from the checkpoint's (--%s; checkpoint %v, flags %v)", flag, was.Model, o.cfg.Model)
		default:
			was, now := describeSetting(c.Setting, c.Was), describeSetting(c.Setting, c.Now)
			if part, ok := flagPart[flag]; ok {
				was, now = fmt.Sprint(part(&ck.Meta.Config)), fmt.Sprint(part(&o.cfg))
			}
			return nil, usagef("--resume: --%s differs from the checkpoint's (checkpoint %s, flags %s); it cannot change in a resumed run", flag, was, now)
		}
	}
	return changes, nil
}

// describeSetting writes a configuration field's JSON value for a
// message: the path and the time sampling by name ("ve(sigma_min=0.01,
// sigma_max=80)" rather than {"kind":2,...}), other fields as they are.
func describeSetting(setting string, v json.RawMessage) string {
	var s fmt.Stringer
	switch setting {
	case "path":
		var p flow.Spec
		if json.Unmarshal(v, &p) == nil {
			s = p
		}
	case "time":
		var t flow.TimeSampler
		if json.Unmarshal(v, &t) == nil {
			s = t
		}
	}
	if s != nil {
		return s.String()
	}
	return string(v)
}

// setConfigField sets one top-level field of c, by its JSON name, from JSON.
func setConfigField(c *train.Config, name string, v json.RawMessage) error {
	js, err := json.Marshal(c)
	if err != nil {
		return err
	}
	m := map[string]json.RawMessage{}
	if err := json.Unmarshal(js, &m); err != nil {
		return err
	}
	m[name] = v
	if js, err = json.Marshal(m); err != nil {
		return err
	}
	var out train.Config
	if err := json.Unmarshal(js, &out); err != nil {
		return err
	}
	*c = out
	return nil
}

func runTrain(ctx context.Context, o trainOptions, stdout, stderr io.Writer) (err error) {
	launch, err := detectLaunch()
	if err != nil {
		return usageError{err} // the launch as given: exit 2, as a bad flag
	}
	rank := launch.Rank
	if rank != 0 { // rank 0 alone writes and reports (distributed.go)
		o.quiet, o.plot = true, false
	}
	if err := checkOutOutsideData(o); err != nil {
		return err
	}
	// leaveOut releases --out and, after a failure, removes what it made
	// there while still empty: at return, or before an MPI abort, which
	// ends the process without running deferred calls
	var undoOut, releaseOut func()
	var leaveOnce sync.Once
	leaveOut := func(failed bool) {
		leaveOnce.Do(func() {
			if releaseOut != nil {
				releaseOut()
			}
			if failed && undoOut != nil {
				undoOut()
			}
		})
	}
	defer func() { leaveOut(err != nil) }()
	if rank == 0 {
		undo, mkErr := atomicfile.MkdirAll(o.out)
		if mkErr != nil {
			return fmt.Errorf("--out %s: %w", o.out, mkErr)
		}
		// a run refused before it wrote anything leaves no empty --out,
		// nor the parents it made for it
		undoOut = func() { undo() }
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
		releaseOut = func() { release() }
	}
	ckPath := filepath.Join(o.out, train.CheckpointName)
	var ck *train.Checkpoint
	if o.resume {
		if ck, err = train.Load(ckPath); err != nil {
			return fmt.Errorf("--resume: %w", err)
		}
		if err := resumeData(&o, ck); err != nil {
			return err
		}
		if err := checkDataFlags(o); err != nil {
			return err
		}
		if err := checkOutOutsideData(o); err != nil {
			return err
		}
		if err := checkTrainResumable(ck, o.out); err != nil {
			return err
		}
	} else if _, err := os.Stat(ckPath); err == nil {
		return usagef("--out %s already holds a checkpoint: pass --resume to continue it or choose another directory", o.out)
	}
	say := func(format string, a ...any) {
		if !o.quiet {
			fmt.Fprintf(stderr, "fmgpu train: "+format+"\n", a...)
		}
	}
	// The backend and the engine open after the data, so that bad data is
	// reported before a device is opened; but before it when the ranks of
	// a distributed run read an image directory, each decoding its share
	// of the files (data.ImageShard) and the engine exchanging them.
	var b gpu.Backend
	var comm collective.Comm
	commOpen := false
	defer func() {
		if b != nil {
			b.Close()
		}
	}()
	defer func() {
		if commOpen { // failed before the run ended
			err = endComm(comm, launch, err, stderr, func() { leaveOut(true) })
		}
	}()
	openEngine := func() error {
		var err error
		if b, err = openRankBackend(launch, o.device, o.threads); err != nil {
			return err
		}
		copts, err := commOptions(launch)
		if err != nil {
			return err
		}
		if comm, err = train.OpenComm(b, copts); err != nil {
			return err
		}
		commOpen = launch.Distributed()
		return nil
	}
	shard := launch.Distributed() && data.IsImageDir(o.data)
	if shard {
		if err := openEngine(); err != nil {
			return err
		}
		o.image.Shard = &data.ImageShard{Rank: comm.Rank(), Size: comm.Size(), Reduce: func(x []float32) error {
			return comm.AllReduceSum(collective.Host(x))
		}}
	}
	if data.IsImageData(o.data) && !launch.Distributed() {
		say("loading %s", o.data) // a distributed run's first line names its engine
	}
	ds, err := loadTrainingData(o)
	if err != nil {
		return dataError(err)
	}
	if err := ctx.Err(); err != nil {
		return err // interrupted while loading: nothing written
	}
	for _, w := range data.Warnings(ds) {
		if rank == 0 {
			fmt.Fprintf(stderr, "fmgpu train: warning: %s\n", w)
		}
	}
	sum := data.Checksum(ds)
	if ck != nil {
		if err := checkResumeData(o, ck, ds, sum); err != nil {
			return err
		}
	}
	if err := o.fitData(ds); err != nil {
		return err
	}
	var changes []train.Change
	if ck != nil {
		if changes, err = resumeConfig(&o, ck); err != nil {
			return err
		}
	}
	if err := o.cfg.Validate(); err != nil {
		return configError(err)
	}
	switch {
	case o.explicit["warmup"] && o.cfg.Warmup > o.cfg.Steps:
		return usagef("--warmup %d exceeds --steps %d", o.cfg.Warmup, o.cfg.Steps)
	case o.stopAfter > o.cfg.Steps:
		return usagef("--stop-after %d: need 0..--steps (%d)", o.stopAfter, o.cfg.Steps)
	case o.explicit["min-lr-frac"] && o.cfg.Schedule == train.Constant:
		// (a resumed run's schedule is the checkpoint's)
		return usagef("--min-lr-frac applies to the cosine schedule only (this run's is constant)")
	}
	if ck != nil {
		if o.stopAfter > 0 && o.stopAfter <= ck.Meta.Step {
			return usagef("--stop-after %d: the checkpoint is already at step %d", o.stopAfter, ck.Meta.Step)
		}
		if ck.Meta.Step >= o.cfg.Steps {
			return usagef("--resume: %s is at step %d; raise --steps above it to train further", ckPath, ck.Meta.Step)
		}
		if o.cfg.Warmup > o.cfg.Steps && rank == 0 {
			// the checkpoint's warm-up, kept: a run shortened below it ends
			// before its learning rate reaches the peak, which is allowed
			// (stopping a long run early) but worth saying
			fmt.Fprintf(stderr, "fmgpu train: note: --steps %d ends the run during its warm-up of %d steps: the learning rate stays below --lr (give --warmup to change it)\n", o.cfg.Steps, o.cfg.Warmup)
		}
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

	if !shard {
		if err := openEngine(); err != nil {
			return err
		}
	}
	if err := setPrecision(b, o.cfg.Precision); err != nil {
		return err
	}
	if launch.Distributed() {
		if err := agreeSettings(comm, o); err != nil {
			return err
		}
	}
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
	if rank == 0 {
		if err := atomicfile.CheckSpace(o.out, 2*(16*int64(tr.Net().NumParams())+1<<16)); err != nil {
			return fmt.Errorf("--out: %w", err)
		}
	}
	if ck != nil {
		if err := tr.Resume(ck); err != nil {
			return usageError{err}
		}
	}
	parallel := ""
	if launch.Distributed() {
		if err := tr.Distribute(comm); err != nil {
			var fe *train.FieldError
			if errors.As(err, &fe) {
				return configError(err)
			}
			return err
		}
		parallel = describeParallel(comm, launch)
	}
	if !o.quiet {
		preset := ""
		if o.cfg.Preset != "" {
			preset = " (preset " + o.cfg.Preset + ")"
		}
		fmt.Fprintf(stderr, "fmgpu train: %s%s, %d x %d data from %s, %s path, %d parameters, on %s%s%s\n",
			o.cfg.Model.Kind, preset, ds.N, ds.D, o.data, o.cfg.Path, tr.Net().NumParams(), describeBackend(b), precisionNote(b), parallel)
		for _, c := range changes {
			fmt.Fprintf(stderr, "fmgpu train: resuming with %s %s (the checkpoint's was %s)\n", c.Setting, c.Now, c.Was)
		}
	}
	info := dataInfo(o.data, ds)
	if o.image.Dir != "" {
		if abs, err := filepath.Abs(o.image.Dir); err == nil {
			info.DataDir = abs
		}
	}
	if strings.EqualFold(filepath.Ext(o.data), ".csv") {
		info.CSV = &train.CSVInfo{Delimiter: string(o.csv.Delimiter), Header: o.csv.Header}
	}
	info.SHA256 = sum
	if launch.Distributed() {
		// the ranks stop together inside Run, after a step
		onInterrupt(ctx, "saving a checkpoint")
	} else if err := enterPhase(ctx, "saving a checkpoint"); err != nil {
		return err // interrupted before the first step: nothing written
	}
	prog := newProgress(stderr, o.quiet, "fmgpu train", "step", tr.StepsDone(), o.cfg.Steps)
	warnedSinkhorn := false
	var grid []float32 // the samples of the last checkpoint's grid, at gridStep
	gridStep := -1
	// samples.png and loss.png show an earlier step once this run saves a
	// newer checkpoint: they go then, and are drawn again at the end
	// unless --no-plot, --stop-after or a signal says otherwise.
	checkpointed, removedPlots := false, false
	runErr := tr.Run(ctx, train.RunOptions{
		OutDir: o.out, CheckpointEvery: o.checkpointEvery, LogEvery: o.logEvery,
		Std: std, Data: info, Changes: changes,
		OnLog: func(m train.Metric) {
			prog.log(m)
			if m.SinkhornUnconverged > 0 && !warnedSinkhorn && rank == 0 {
				warnedSinkhorn = true
				_, worst := tr.SinkhornUnconverged()
				prog.warn("by step %d, %d Sinkhorn plans stopped at the %d-iteration limit short of their tolerance (rows' marginals off by up to %.2g, tolerance %g): those pairs follow a coarser plan; a larger --ot-reg converges sooner (metrics.jsonl counts such steps, sinkhorn_unconverged)",
					m.Step, m.SinkhornUnconverged, coupling.DefaultSinkhornMaxIter, worst, coupling.DefaultSinkhornTol)
			}
		},
		OnStep: prog.step, StopAt: o.stopAfter,
		OnCheckpoint: func(step int) error {
			if !checkpointed && rank == 0 {
				checkpointed = true
				var err error
				if removedPlots, err = removePlots(o.out); err != nil {
					return err
				}
			}
			if !o.plot || ds.Image == nil {
				return nil
			}
			onInterrupt(ctx, fmt.Sprintf("skipping the sample grid (the checkpoint of step %d is saved)", step))
			defer onInterrupt(ctx, "saving a checkpoint")
			prog.phase("drawing samples_%06d.png", step)
			x, err := sampleGridAt(ctx, b, tr, std, o, ds, step)
			grid, gridStep = x, step
			return err
		},
	})
	prog.finish(runErr == nil)
	if commOpen { // every rank ends the run here; rank 0 alone goes on to the plots
		commOpen = false
		runErr = endComm(comm, launch, runErr, stderr, func() { leaveOut(true) })
	}
	var nf *train.NonFiniteError
	switch {
	case errors.Is(runErr, context.Canceled) && rank != 0:
		return interrupted("rank %d stopped after step %d; rank 0 saves the checkpoint", rank, tr.StepsDone())
	case errors.Is(runErr, context.Canceled) && tr.StepsDone() >= o.cfg.Steps:
		// the signal came with the last step: nothing is left to resume
		what := ""
		if o.plot {
			what = " (without its plots" + drawLater(o.out, ckPath, ds) + ")"
		}
		return interrupted("saved %s at step %d, the last: the run is complete%s", ckPath, tr.StepsDone(), what)
	case errors.Is(runErr, context.Canceled):
		return interrupted("saved %s at step %d; continue with --resume", ckPath, tr.StepsDone())
	case errors.As(runErr, &nf):
		return nonFiniteError(nf, o, ckPath)
	case runErr != nil:
		return runErr
	}
	if tr.StepsDone() < o.cfg.Steps && rank == 0 {
		fmt.Fprintf(stderr, "fmgpu train: stopped at step %d of %d as asked (saved %s); continue with --resume\n", tr.StepsDone(), o.cfg.Steps, ckPath)
		return nil
	}
	if o.plot {
		onInterrupt(ctx, "skipping the plots (the checkpoint is saved)")
		say("drawing loss.png and samples.png")
		if gridStep != tr.StepsDone() {
			grid = nil
		}
		if err := trainPlots(ctx, b, tr, std, ds, o, grid); err != nil {
			if errors.Is(err, context.Canceled) {
				return interrupted("saved %s at step %d; loss.png and samples.png were not drawn%s", ckPath, tr.StepsDone(), drawLater(o.out, ckPath, ds))
			}
			return err
		}
	}
	if removedPlots && !o.plot && !o.quiet {
		fmt.Fprintf(stderr, "fmgpu train: note: removed samples.png and loss.png, which showed an earlier step (--no-plot draws none)\n")
	}
	if !o.quiet {
		fmt.Fprintf(stdout, "wrote %s and %s\n", ckPath, filepath.Join(o.out, train.MetricsName))
	}
	return nil
}

// drawLater is how to draw a finished run's samples after all, "; draw
// the samples with fmgpu sample ...", or nothing for 1-D data, which
// train does not plot.
func drawLater(dir, ckPath string, ds *data.Dataset) string {
	switch {
	case ds.Image != nil:
		return fmt.Sprintf("; draw the samples with fmgpu sample --checkpoint %s --grid %s", ckPath, filepath.Join(dir, "samples.png"))
	case ds.D >= 2:
		return fmt.Sprintf("; draw the samples with fmgpu sample --checkpoint %s --out %s --plot %s", ckPath, filepath.Join(dir, "samples.npy"), filepath.Join(dir, "samples.png"))
	}
	return ""
}

// removePlots removes DIR/samples.png and DIR/loss.png, saying whether
// either was there.
func removePlots(dir string) (bool, error) {
	removed := false
	for _, name := range []string{"samples.png", "loss.png"} {
		err := os.Remove(filepath.Join(dir, name))
		switch {
		case err == nil:
			removed = true
		case !errors.Is(err, os.ErrNotExist):
			return removed, err
		}
	}
	return removed, nil
}

// nonFiniteError words a diverged run's error by what is true: whether
// the gradients were clipped already, and which checkpoint (if any) is
// on disk.
func nonFiniteError(nf *train.NonFiniteError, o trainOptions, ckPath string) error {
	hint := "lower --lr or set --clip-grad"
	if o.cfg.MaxGradNorm > 0 {
		hint = fmt.Sprintf("lower --lr (gradients are clipped at norm %g already)", o.cfg.MaxGradNorm)
	}
	kept := "no checkpoint was written"
	if ck, err := train.Load(ckPath); err == nil {
		kept = fmt.Sprintf("%s of step %d is kept", ckPath, ck.Meta.Step)
	}
	return fmt.Errorf("%v: %s; %s", nf, hint, kept)
}

// configFlags names the train flag of each train.Config field that has one.
var configFlags = map[string]string{
	"steps": "steps", "batch": "batch", "optimizer": "optimizer", "lr": "lr", "weight_decay": "weight-decay",
	"max_grad_norm": "clip-grad", "warmup": "warmup", "schedule": "schedule", "min_lr_frac": "min-lr-frac",
	"ema_decay": "ema", "class_dropout": "class-dropout", "ot_reg": "ot-reg",
	"coupling_blocks": "coupling-blocks",
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
	var me *model.FieldError
	if errors.As(err, &me) {
		var flags []string
		for _, f := range me.Fields {
			if flag, ok := modelFlags[f]; ok {
				flags = append(flags, "--"+flag)
			}
		}
		if len(flags) > 0 {
			return usagef("%s: %v", strings.Join(flags, ", "), me.Err)
		}
	}
	return usageError{err}
}

// modelFlags are the flags of the network's settings that model.FieldError
// names.
var modelFlags = map[string]string{
	"image.size": "image-size", "image.channels": "channels", "unet.base": "base", "unet.mults": "mults",
	"unet.res_blocks": "res-blocks", "unet.attention": "attention", "unet.heads": "heads",
	"unet.attention_res": "attention-res", "unet.dropout": "dropout", "unet.groups": "groups",
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
	named := data.IsBuiltin(source) || data.IsImageData(source) && !data.IsImageDir(source)
	if !named && !filepath.IsAbs(source) {
		if abs, err := filepath.Abs(source); err == nil {
			in.AbsPath = abs
		}
	}
	if ds.Image != nil {
		in.Classes = ds.Image.Classes
	}
	return in
}
