package fmgpu

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fmgpu/fmgpu/data"
	"github.com/fmgpu/fmgpu/flow"
	"github.com/fmgpu/fmgpu/generate"
	"github.com/fmgpu/fmgpu/gpu"
	"github.com/fmgpu/fmgpu/internal/atomicfile"
	"github.com/fmgpu/fmgpu/internal/dirlock"
	"github.com/fmgpu/fmgpu/model"
	"github.com/fmgpu/fmgpu/train"
)

// DefaultConfig is the configuration `fmgpu train` uses for vector data
// of dim columns: an MLP of three hidden layers of 256 over a 16-frequency
// time embedding, the OT path with uniform times, 6000 steps of batch 256,
// Adam at 2e-3 with 200 warm-up steps and a cosine decay to 5%, gradients
// clipped at norm 1, an EMA of 0.999, seed 1. The command line takes the
// warm-up as min(200, Steps/5): set Warmup when changing Steps.
func DefaultConfig(dim int) train.Config {
	c := train.Config{
		Model: model.Config{Kind: model.KindMLP, Dim: dim, Hidden: []int{256, 256, 256}, TimeEmbed: model.DefaultTimeEmbedding},
		Path:  flow.DefaultSpec(flow.KindOT), Time: flow.DefaultTimeSampler(flow.TimeUniform),
		Steps: 6000, Batch: 256, Seed: 1,
		Optimizer: train.Adam, LR: 2e-3, MaxGradNorm: 1, Warmup: 200, Schedule: train.Cosine, MinLRFrac: 0.05,
		EMADecay: 0.999, ClassDropout: 0.1,
	}
	c.Defaults()
	return c
}

// DefaultImageConfig is the configuration `fmgpu train` uses for images
// of the given shape (rows of channels x height x width values, NCHW,
// pixels in [-1, 1]): a U-Net of base width 32, levels 1, 2, 2, one
// residual block a level and 8 groups, 1500 steps of batch 64 at 1e-3,
// otherwise as DefaultConfig. classes > 0 makes it class-conditional, its
// labels dropped to the null class with probability 0.1 (for
// classifier-free guidance).
func DefaultImageConfig(channels, height, width, classes int) train.Config {
	c := DefaultConfig(channels * height * width)
	c.Model.Kind, c.Model.Hidden, c.Model.Classes = model.KindUNet, nil, classes
	c.Model.Image = &model.ImageShape{Channels: channels, Height: height, Width: width}
	c.Model.UNet = &model.UNetConfig{Base: 32, Mults: []int{1, 2, 2}, ResBlocks: 1, Groups: 8}
	c.Steps, c.Batch, c.LR = 1500, 64, 1e-3
	return c
}

// TrainOptions are the choices of a Trainer beyond its configuration.
type TrainOptions struct {
	// Device runs the training; nil opens DeviceAuto for the trainer alone.
	// A Device given here is shared: Close leaves it open.
	Device *Device
	// OutDir, when set, receives checkpoint.safetensors and metrics.jsonl
	// as `fmgpu train --out` writes them: the checkpoint every
	// CheckpointEvery steps (0: at the end only), when Run stops on a
	// cancelled context or a failing source, and at the end. One Trainer at
	// a time may use a directory. Empty: nothing is written (Save writes a
	// checkpoint on demand).
	OutDir          string
	CheckpointEvery int
	// Resume continues the checkpoint in OutDir: its weights, optimizer
	// state, step and standardization. The configuration must be the
	// checkpoint's except for Steps, LR, Warmup, Schedule, MinLRFrac,
	// WeightDecay, MaxGradNorm and EMADecay (the settings `fmgpu train
	// --resume` may change), and in-memory rows must be the ones it was
	// trained on. Without Resume, an OutDir holding a checkpoint is an
	// error.
	Resume bool
	// LogEvery is how often (in steps) the loss is read back and OnLog
	// called (0: the resumed checkpoint's, else 100).
	LogEvery int
	// OnLog receives the progress at every read. It runs between steps,
	// with the device lent: the trainer's Model (samples of the weights
	// at that step), and other Models and Trainers on the device, may be
	// used from it; the trainer's Run, Save and Close return an error
	// there.
	OnLog func(train.Metric)
	// StopAt, between the current step and Steps, ends the Run that
	// reaches it after that step, as if interrupted there: a later Run
	// (or a Trainer resuming OutDir) goes on to Steps.
	StopAt int
	// Standardization maps data units to the units the network trains in
	// (and a checkpoint records it, so that samples come back in data
	// units). nil fits it: to every row of an in-memory Source, to the
	// first FitRows rows of a stream (read ahead, then trained on first);
	// image models (Model.Image set) take the identity, their pixels
	// being scaled already. data.Identity turns it off.
	Standardization *data.Standardization
	// FitRows is how many rows of a stream fit the standardization (0:
	// 10000).
	FitRows int
	// DataName names the data in the checkpoint (its data.source); "" is
	// the data set's name for DatasetRows, else "go".
	DataName string
	// ClassNames names the classes of a class-conditional model in the
	// checkpoint.
	ClassNames []string
}

// Trainer trains a flow-matching model on rows from a Source: an
// in-memory one (Rows, LabeledRows, DatasetRows) is uploaded once and its
// batches drawn on the device; any other is streamed, each step's rows
// read from it on the host and uploaded (train.NewStream).
//
// What a run guarantees: the initial weights, and each step's noise x0
// and times t, come from seeded counter-based generators indexed by the
// step, so a run is reproducible whenever its rows are. In memory, the
// rows of each step are drawn the same way, and a run resumed from its
// checkpoint ends with the weights of an uninterrupted run, bit for bit
// on the same device. A stream gives the rows it gives: a resumed stream
// run is exact when its source is a RowSeeker that, sought to row
// Step x Batch, delivers what the first run would have read next (a
// source that read rows ahead to fit the standardization counts them as
// read).
type Trainer struct {
	tr      *train.Trainer
	dev     *Device
	ownsDev bool
	std     data.Standardization
	info    train.DataInfo
	o       TrainOptions
	cfg     train.Config
	changes []train.Change
	unlock  func()
	steps   atomic.Int64 // steps done, readable while Run runs
	// busy is held by Run, Save and Close; models by them and by the
	// calls of the trainer's Model, then the device's turn, in that
	// order. While OnLog runs, Run lends models and the turn, not busy:
	// the trainer's Model may sample there, its Run, Save and Close not.
	busy, models chan struct{}
	// mu guards tr and changes for the calls that do not wait for busy
	// (Model, Device, Changes); their writers hold busy too.
	mu sync.Mutex
	// inOnLog is set while Run calls OnLog: the trainer's Run, Save and
	// Close from there would wait for the Run that calls them.
	inOnLog atomic.Bool
}

// maxFitRows bounds TrainOptions.FitRows: the rows read ahead are held in
// memory (the CLI's --n-data takes as many).
const maxFitRows = 1 << 26

// defaultFitRows is TrainOptions.FitRows when it is 0: enough rows that
// the means and deviations are within about 1% of the stream's.
const defaultFitRows = 10000

// resumeMayChange are the settings (train.Config JSON names) a resumed run
// may change, those of `fmgpu train --resume`.
var resumeMayChange = map[string]bool{
	"steps": true, "lr": true, "warmup": true, "schedule": true, "min_lr_frac": true,
	"weight_decay": true, "max_grad_norm": true, "ema_decay": true,
}

// NewTrainer builds a trainer for cfg over src. cfg.Model.Dim, when 0, is
// src's. A configuration out of range is an error naming the field
// (*train.FieldError for the optimizer's settings). ctx bounds what
// NewTrainer reads from a stream to fit the standardization.
func NewTrainer(ctx context.Context, cfg train.Config, src Source, o TrainOptions) (t *Trainer, err error) {
	if src == nil {
		return nil, errors.New("fmgpu: NewTrainer without a source")
	}
	if cfg.Model.Dim == 0 {
		cfg.Model.Dim = src.Dim()
	}
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if d := src.Dim(); d != cfg.Model.Dim {
		return nil, fmt.Errorf("fmgpu: the source's rows have %d values, the model's %d", d, cfg.Model.Dim)
	}
	switch {
	case o.CheckpointEvery < 0:
		return nil, fmt.Errorf("fmgpu: CheckpointEvery %d: need >= 0", o.CheckpointEvery)
	case o.LogEvery < 0:
		return nil, fmt.Errorf("fmgpu: LogEvery %d: need >= 0", o.LogEvery)
	case o.StopAt < 0 || o.StopAt > cfg.Steps:
		return nil, fmt.Errorf("fmgpu: StopAt %d: need 0..Steps (%d)", o.StopAt, cfg.Steps)
	case o.FitRows < 0 || o.FitRows > maxFitRows:
		return nil, fmt.Errorf("fmgpu: FitRows %d: need 0..%d", o.FitRows, maxFitRows)
	case o.Resume && o.OutDir == "":
		return nil, errors.New("fmgpu: Resume needs the OutDir holding the checkpoint")
	case o.Standardization != nil && o.Standardization.Validate() != nil:
		return nil, fmt.Errorf("fmgpu: Standardization: %w", o.Standardization.Validate())
	case o.Standardization != nil && o.Standardization.Dim() != cfg.Model.Dim:
		return nil, fmt.Errorf("fmgpu: a standardization of %d dimensions for a model of %d", o.Standardization.Dim(), cfg.Model.Dim)
	case len(o.ClassNames) > 0 && len(o.ClassNames) != cfg.Model.Classes:
		return nil, fmt.Errorf("fmgpu: %d ClassNames for a model of %d classes", len(o.ClassNames), cfg.Model.Classes)
	}
	logEveryGiven := o.LogEvery != 0
	if o.LogEvery == 0 {
		o.LogEvery = 100
	}
	if o.FitRows == 0 {
		o.FitRows = defaultFitRows
	}
	t = &Trainer{o: o, cfg: cfg, unlock: func() {}, busy: make(chan struct{}, 1), models: make(chan struct{}, 1)}
	undoDirs := func() {} // removes the directories made for OutDir
	defer func() {
		if err != nil {
			t.Close()
			t = nil
			undoDirs()
		}
	}()
	var ck *train.Checkpoint
	if o.OutDir != "" {
		if ck, undoDirs, err = t.lockOut(cfg); err != nil {
			return t, err
		}
	}
	if ck != nil {
		for _, c := range train.Diff(ck.Meta.Config, cfg) {
			if !resumeMayChange[c.Setting] {
				return t, fmt.Errorf("fmgpu: Resume: %s differs from the checkpoint's (checkpoint %s, now %s); it cannot change in a resumed run", c.Setting, c.Was, c.Now)
			}
			t.changes = append(t.changes, c)
		}
		if ck.Meta.Step >= cfg.Steps {
			return t, fmt.Errorf("fmgpu: Resume: the checkpoint is at step %d; raise Steps above it to train further", ck.Meta.Step)
		}
		if o.StopAt > 0 && o.StopAt <= ck.Meta.Step {
			return t, fmt.Errorf("fmgpu: StopAt %d: the checkpoint is at step %d already", o.StopAt, ck.Meta.Step)
		}
		std := ck.Meta.Standardization
		o.Standardization = &std
		if s := ck.Meta.Schedule; s != nil && s.LogEvery > 0 && !logEveryGiven {
			o.LogEvery = s.LogEvery
		}
	}
	if o.Standardization == nil && cfg.Model.Image != nil {
		id := data.Identity(cfg.Model.Dim)
		o.Standardization = &id
	}
	t.o = o
	if t.dev, t.ownsDev, err = deviceFor(o.Device); err != nil {
		return t, err
	}
	if err := t.dev.acquire(ctx); err != nil {
		return t, err
	}
	defer t.dev.release()
	if ms, ok := src.(*memSource); ok {
		err = t.buildInMemory(cfg, ms, ck)
	} else {
		err = t.buildStream(ctx, cfg, src)
	}
	if err != nil {
		return t, err
	}
	if t.info.Source == "" {
		t.info.Source = train.SourceGo
	}
	t.info.Dim, t.info.Classes = cfg.Model.Dim, o.ClassNames
	if ck != nil {
		// the checkpoint's account of its data (class names, how a file
		// was read, where it was), which `fmgpu train --resume` needs
		// later, when these are its rows: in memory, checked against its
		// checksum (buildInMemory); streamed as it was, without one
		info := t.info
		if ck.Meta.Data.SHA256 == t.info.SHA256 {
			info = ck.Meta.Data
		}
		switch {
		case o.ClassNames != nil:
			info.Classes = o.ClassNames
		case info.Classes == nil:
			info.Classes = ck.Meta.Data.Classes
		}
		t.info = info
	}
	if o.DataName != "" {
		t.info.Source = o.DataName
	}
	if ck != nil {
		if err := t.tr.Resume(ck); err != nil {
			return t, err
		}
	}
	t.steps.Store(int64(t.tr.StepsDone()))
	return t, nil
}

// lockOut makes and locks OutDir and returns its checkpoint when
// resuming, and undo, which removes the directories it made while they
// are empty (after the unlock).
func (t *Trainer) lockOut(cfg train.Config) (ck *train.Checkpoint, undo func(), err error) {
	dir := t.o.OutDir
	undo, err = atomicfile.MkdirAll(dir)
	if err != nil {
		return nil, undo, fmt.Errorf("fmgpu: OutDir: %w", err)
	}
	release, err := dirlock.Lock(dir)
	if err != nil {
		return nil, undo, fmt.Errorf("fmgpu: OutDir: %w", err)
	}
	t.unlock = release
	path := filepath.Join(dir, train.CheckpointName)
	if !t.o.Resume {
		if _, err := os.Stat(path); err == nil {
			return nil, undo, fmt.Errorf("fmgpu: OutDir %s already holds a checkpoint: set Resume to continue it, or choose another directory", dir)
		}
		return nil, undo, nil
	}
	ck, err = train.Load(path)
	return ck, undo, err
}

// buildInMemory builds the trainer over rows uploaded once.
func (t *Trainer) buildInMemory(cfg train.Config, ms *memSource, ck *train.Checkpoint) error {
	n, err := ms.rows()
	if err != nil {
		return err
	}
	for i, v := range ms.x[:n*ms.d] {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("fmgpu: row %d of the rows holds %g in column %d", i/ms.d, v, i%ms.d)
		}
	}
	ds := &data.Dataset{Name: ms.name, X: ms.x, N: n, D: ms.d, Labels: ms.labels}
	sum := data.Checksum(ds)
	if ck != nil && ck.Meta.Data.SHA256 != "" && ck.Meta.Data.SHA256 != sum {
		return fmt.Errorf("fmgpu: Resume: the rows differ from those the checkpoint was trained on (%d x %d now, %d x %d then)", n, ms.d, ck.Meta.Data.Rows, ck.Meta.Data.Dim)
	}
	std := data.Fit(ds)
	if t.o.Standardization != nil {
		std = *t.o.Standardization
	}
	x := append([]float32(nil), ms.x...)
	std.Apply(x)
	var labels []int32
	if cfg.Model.Classes > 0 {
		if ms.labels == nil {
			return fmt.Errorf("fmgpu: a model of %d classes needs labelled rows (LabeledRows)", cfg.Model.Classes)
		}
		labels = ms.labels
	}
	tr, err := train.NewConditional(t.dev.b, cfg, x, labels, n)
	if err != nil {
		return err
	}
	t.tr, t.std = tr, std
	t.info = train.DataInfo{Source: ms.name, Rows: n, SHA256: sum}
	return nil
}

// buildStream builds the streaming trainer.
func (t *Trainer) buildStream(ctx context.Context, cfg train.Config, src Source) error {
	s, std, err := newStdSource(ctx, src, t.o.Standardization, t.o.FitRows, cfg.Model.Classes > 0)
	if err != nil {
		return err
	}
	tr, err := train.NewStream(t.dev.b, cfg, s)
	if err != nil {
		return err
	}
	t.tr, t.std = tr, std
	return nil
}

// Run trains until the configured step count (or StopAt). It stops when
// ctx is done, returning ctx's error, after saving a checkpoint when
// OutDir is set (a later Trainer continues it with Resume; this one
// continues with another Run); a failing stream is a *train.SourceError,
// a diverged run a *train.NonFiniteError.
func (t *Trainer) Run(ctx context.Context) error {
	if err := t.acquire(ctx); err != nil {
		return err
	}
	defer t.release()
	if t.tr == nil {
		return errTrainerClosed
	}
	// the backend's product precision is the device's, which another
	// trainer on it may have set since
	if err := gpu.SetPrecision(t.dev.b, t.cfg.Precision); err != nil {
		return err
	}
	stopAt := t.o.StopAt
	if stopAt <= t.tr.StepsDone() {
		stopAt = 0 // reached by an earlier Run: this one goes on to Steps
	}
	if t.o.OutDir != "" {
		t.mu.Lock()
		changes := t.changes
		t.changes = nil
		t.mu.Unlock()
		return t.tr.Run(ctx, train.RunOptions{OutDir: t.o.OutDir, CheckpointEvery: t.o.CheckpointEvery, LogEvery: t.o.LogEvery,
			Std: t.std, Data: t.info, OnLog: t.onLog(), StopAt: stopAt, Changes: changes,
			OnStep: func(s int) { t.steps.Store(int64(s)) }})
	}
	return t.runInMemory(ctx, stopAt)
}

var errTrainerClosed = errors.New("fmgpu: the trainer is closed")

// errInOnLog is what the trainer's Run, Save and Close return while its
// Run is in OnLog.
var errInOnLog = errors.New("fmgpu: the trainer's Run, Save or Close was called while its Run was in OnLog (from OnLog they would wait for that Run): call them after Run returns; its Model may sample from OnLog")

// acquire is the trainer and the device's turn for t, or why there is
// none.
func (t *Trainer) acquire(ctx context.Context) error {
	switch {
	case t == nil || t.dev == nil:
		return errTrainerClosed
	case t.inOnLog.Load():
		return errInOnLog
	}
	return t.hold(ctx)
}

// hold waits for the trainer (busy), then for its models and the
// device's turn (holdModels).
func (t *Trainer) hold(ctx context.Context) error {
	if err := take(ctx, t.busy); err != nil {
		return err
	}
	if err := t.holdModels(ctx, t.dev); err != nil {
		<-t.busy
		return err
	}
	return nil
}

// holdModels waits for the trainer's models (free between Runs, and while
// Run is in OnLog), then for dev's turn (the trainer's device, which its
// Model keeps after the trainer's Close).
func (t *Trainer) holdModels(ctx context.Context, dev *Device) error {
	if err := take(ctx, t.models); err != nil {
		return err
	}
	if err := dev.acquire(ctx); err != nil {
		<-t.models
		return err
	}
	return nil
}

// take waits for the one-slot semaphore s, or for ctx to be done.
func take(ctx context.Context, s chan struct{}) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case s <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// release gives back what hold took.
func (t *Trainer) release() {
	t.releaseModels(t.dev)
	<-t.busy
}

// releaseModels gives back what holdModels took.
func (t *Trainer) releaseModels(dev *Device) {
	dev.release()
	<-t.models
}

// onLog is OnLog with inOnLog set around it (nil when OnLog is nil). Run
// lends the trainer's models and the device's turn while OnLog runs,
// between steps: the trainer's Model, and other Models and Trainers on
// the device, may run then, from OnLog or from other goroutines (a graph
// the trainer recorded is recorded again if their calls freed a buffer or
// moved the scratch space), while the trainer itself stays busy.
func (t *Trainer) onLog() func(train.Metric) {
	if t.o.OnLog == nil {
		return nil
	}
	return func(m train.Metric) {
		t.inOnLog.Store(true)
		t.releaseModels(t.dev)
		defer func() {
			t.models <- struct{}{}
			t.dev.turn <- struct{}{}
			gpu.SetPrecision(t.dev.b, t.cfg.Precision) // as Run set it before
			t.inOnLog.Store(false)
		}()
		t.o.OnLog(m)
	}
}

// runInMemory is Run without an OutDir: the same steps and reads, nothing
// written.
func (t *Trainer) runInMemory(ctx context.Context, stopAt int) error {
	tr, c := t.tr, t.tr.Config()
	end := c.Steps
	if stopAt > 0 && stopAt < end {
		end = stopAt
	}
	d := float64(c.Model.Dim)
	start := time.Now()
	lastT, lastStep := start, tr.StepsDone()
	tr.AddCarriedLoss()
	for tr.StepsDone() < end {
		var err error
		if tr.Streaming() {
			err = tr.StepStream(ctx)
		} else {
			tr.Step()
		}
		if err != nil {
			return err
		}
		s := tr.StepsDone()
		t.steps.Store(int64(s))
		cancelled := ctx.Err() != nil
		if s%t.o.LogEvery != 0 && s != end && !cancelled {
			continue
		}
		p, err := tr.Read()
		if err != nil {
			return err
		}
		partial := s%t.o.LogEvery != 0 && s != c.Steps
		tr.MarkPartial(partial)
		now := time.Now()
		if onLog := t.onLog(); onLog != nil {
			onLog(train.Metric{Step: s, Loss: p.Loss / d, LossSum: p.Loss, LR: p.LR, GradNorm: p.GradNorm,
				StepsPerS: float64(s-lastStep) / now.Sub(lastT).Seconds(), ElapsedSec: now.Sub(start).Seconds(), Partial: partial})
		}
		lastT, lastStep = now, s
		if cancelled {
			return ctx.Err()
		}
	}
	return nil
}

// Save writes the run's checkpoint to path, as Run writes it in OutDir.
func (t *Trainer) Save(ctx context.Context, path string) error {
	if err := t.acquire(ctx); err != nil {
		return err
	}
	defer t.release()
	if t.tr == nil {
		return errTrainerClosed
	}
	return t.tr.Save(path, t.std, t.info)
}

// StepsDone is the number of steps trained (queued on the device), which
// may be read while Run runs.
func (t *Trainer) StepsDone() int { return int(t.steps.Load()) }

// Config is the run's configuration.
func (t *Trainer) Config() train.Config { return t.cfg }

// Standardization is the map from data units to the units the network
// trains in.
func (t *Trainer) Standardization() data.Standardization { return t.std }

// Device is the device the trainer runs on; nil after Close.
func (t *Trainer) Device() *Device {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tr == nil {
		return nil // closed (and the device with it, when the trainer opened it)
	}
	return t.dev
}

// Changes are the settings this run changed from the checkpoint it
// resumed (noted in OutDir's metrics.jsonl by the next Run).
func (t *Trainer) Changes() []train.Change {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.changes
}

// Model is the network in training with its EMA weights (the raw ones
// when EMADecay is 0), as they are at each call, for samples and scores
// between runs (a run with StopAt, say, continued by another Run) or from
// OnLog, between steps. Called from another goroutine while Run runs, its
// methods wait for Run to return or to call OnLog. The trainer's Save and
// Close wait for Run to return, and return an error while Run is in OnLog
// (from OnLog they would wait for the run that calls it). It shares the
// trainer's device and network: after the Trainer's Close its calls
// return an error, and its own Close releases only itself (its later
// calls return an error), not the trainer's network.
func (t *Trainer) Model() (*Model, error) {
	t.mu.Lock()
	tr := t.tr
	t.mu.Unlock()
	if t.dev == nil || tr == nil {
		return nil, errTrainerClosed
	}
	g, err := generate.FromTrainer(t.dev.b, tr, t.std)
	if err != nil {
		return nil, err
	}
	return &Model{g: g, dev: t.dev, cfg: t.cfg, std: t.std, info: t.info, trainer: t, prec: t.cfg.Precision}, nil
}

// Close releases the trainer's device memory, the lock on OutDir, and the
// device when NewTrainer opened it.
func (t *Trainer) Close() error {
	if t == nil {
		return nil
	}
	if t.inOnLog.Load() {
		return errInOnLog // Run holds the trainer, and would wait for itself
	}
	if t.dev == nil { // NewTrainer failed before it had a device, or the zero Trainer
		if t.unlock != nil {
			t.unlock()
		}
		t.unlock = func() {}
		return nil
	}
	t.hold(context.Background())
	if t.tr != nil {
		t.tr.Close()
		t.mu.Lock()
		t.tr = nil
		t.mu.Unlock()
	}
	owns, unlock := t.ownsDev, t.unlock
	t.ownsDev, t.unlock = false, func() {}
	t.release()
	unlock()
	// t.dev stays: a call waiting for the trainer releases its turn after
	// finding it closed (t.tr nil)
	return closeOwned(t.dev, owns)
}

// Train trains cfg on src (NewTrainer, Run) and returns the trained model,
// ready to sample and score: its EMA weights on the training device. The
// returned Model's Close releases the training's resources as well. An
// error from Run closes everything, after saving a checkpoint in OutDir
// when one was set.
func Train(ctx context.Context, cfg train.Config, src Source, o TrainOptions) (*Model, error) {
	t, err := NewTrainer(ctx, cfg, src, o)
	if err != nil {
		return nil, err
	}
	if err := t.Run(ctx); err != nil {
		t.Close()
		return nil, err
	}
	m, err := t.Model()
	if err != nil {
		t.Close()
		return nil, err
	}
	m.ownsTrainer = true
	return m, nil
}
