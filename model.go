package fmgpu

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/fmgpu/fmgpu/data"
	"github.com/fmgpu/fmgpu/generate"
	"github.com/fmgpu/fmgpu/gpu"
	"github.com/fmgpu/fmgpu/sampler"
	"github.com/fmgpu/fmgpu/train"
)

// Model is a trained velocity network on a device, ready to draw samples
// and score points in the units of the data it was trained on. Its
// methods may be called from several goroutines: they take turns on the
// device.
type Model struct {
	g       *generate.Model
	dev     *Device
	ownsDev bool
	info    train.DataInfo
	cfg     train.Config
	std     data.Standardization
	step    int
	// trainer is the Trainer whose network this is (Trainer.Model, Train);
	// with ownsTrainer, Close closes it.
	trainer     *Trainer
	ownsTrainer bool
	// prec is the products' precision of the model's calls, set on the
	// device as each takes its turn (another trainer on the device may
	// have set another): its trainer's, or fp32 for a loaded model, as
	// the sample command's default.
	prec gpu.Precision
}

// LoadOptions are the choices of Load.
type LoadOptions struct {
	// Device runs the model; nil opens DeviceAuto for the model alone
	// (Close closes it). A Device given here is shared: Close leaves it
	// open.
	Device *Device
	// RawWeights uses the trained weights instead of their exponential
	// moving average (the default when training kept one, as the
	// command line's --no-ema). On a checkpoint trained without an EMA
	// (EMADecay 0), whose weights are the raw ones, Load refuses it.
	RawWeights bool
}

// Load reads the checkpoint that `fmgpu train` (or a Trainer) wrote at
// path, checks it (train.Load) and rebuilds its network on a device. A
// network of a registered kind (model.Register) loads in a program that
// registered it.
func Load(ctx context.Context, path string, o LoadOptions) (*Model, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ck, err := train.Load(path)
	if err != nil {
		return nil, err
	}
	if o.RawWeights && ck.Meta.Config.EMADecay == 0 {
		return nil, fmt.Errorf("checkpoint %s: RawWeights: trained without an EMA, its weights are the raw ones", path)
	}
	dev, owns, err := deviceFor(o.Device)
	if err != nil {
		return nil, err
	}
	if err := dev.acquire(ctx); err != nil {
		closeOwned(dev, owns)
		return nil, err
	}
	defer dev.release()
	g, err := generate.FromCheckpoint(dev.b, ck, generate.LoadOptions{RawWeights: o.RawWeights})
	if err != nil {
		closeOwned(dev, owns)
		return nil, err
	}
	return &Model{g: g, dev: dev, ownsDev: owns, info: ck.Meta.Data, cfg: ck.Meta.Config, std: g.Std, step: ck.Meta.Step}, nil
}

// deviceFor is d, or a DeviceAuto of the caller's own when d is nil.
func deviceFor(d *Device) (dev *Device, owns bool, err error) {
	if d != nil && d.b == nil {
		return nil, false, errNoDevice
	}
	if d != nil {
		return d, false, nil
	}
	d, err = OpenDevice(DeviceAuto, 0)
	return d, true, err
}

func closeOwned(d *Device, owns bool) error {
	if owns {
		return d.Close()
	}
	return nil
}

// Close releases the model's device memory, and its device when Load
// opened it. The model of a Train call closes its trainer; that of
// Trainer.Model leaves the trainer's network alone.
func (m *Model) Close() error {
	switch {
	case m == nil || m.dev == nil:
		return nil // the zero Model holds nothing
	}
	if err := m.acquire(context.Background()); err != nil {
		return err
	}
	g := m.g
	m.g = nil
	if g != nil {
		g.Close()
	}
	m.release()
	switch {
	case g == nil:
		return nil
	case m.ownsTrainer:
		return m.trainer.Close()
	}
	return closeOwned(m.dev, m.ownsDev)
}

// Dim is the number of values in a point.
func (m *Model) Dim() int { return m.cfg.Model.Dim }

// Classes is the number of classes of a class-conditional model, 0 for an
// unconditional one.
func (m *Model) Classes() int { return m.cfg.Model.Classes }

// ClassNames are the names of the classes, as the training data recorded
// them (nil when it did not).
func (m *Model) ClassNames() []string { return m.info.Classes }

// Config is the training configuration of the model.
func (m *Model) Config() train.Config { return m.cfg }

// Step is the training step the weights are from: the checkpoint's, or
// the trainer's steps done for the model of a Trainer.
func (m *Model) Step() int {
	if m.trainer != nil {
		return m.trainer.StepsDone()
	}
	return m.step
}

// Standardization is the map from data units to the units the network
// was trained in.
func (m *Model) Standardization() data.Standardization { return m.std }

// Device is the device the model runs on.
func (m *Model) Device() *Device { return m.dev }

// Generator is the model as package generate sees it, for what this
// package does not offer (solver statistics, saved trajectories). Calls
// through it do not take the device's turn; nil after Close.
func (m *Model) Generator() *generate.Model { return m.g }

// SampleOptions are the choices of Sample. The zero value is the sample
// command's defaults but for Seed (the command's --seed is 1 unless
// given: Seed 1 gives its samples) and, for a class-conditional model,
// Labels: the command draws every class in turn (sample i of class i mod
// Classes()), nil Labels the null class.
type SampleOptions struct {
	// Solver is the ODE method, as the command line's --solver: "euler",
	// "midpoint", "heun", "rk4" or "dopri5" ("": "rk4").
	Solver string
	// Steps is the step count of a fixed-step solver (0: 100).
	Steps int
	// Rtol and Atol are dopri5's tolerances, in (0, 1) (0: 1e-5).
	Rtol, Atol float64
	// Seed selects the noise: the same seed gives the same samples.
	Seed uint64
	// Labels, for a class-conditional model, holds one class per sample
	// (nil: the null class, unconditional samples).
	Labels []int
	// Guidance is the classifier-free guidance weight w of
	// v_null + w (v_class - v_null) with Labels (0: 2, the sample
	// command's default; w = 1 is plain conditional sampling).
	Guidance float64
}

// solverOptions turns the solver fields into sampler.Options.
func solverOptions(method string, defMethod sampler.Method, steps int, rtol, atol float64) (sampler.Options, error) {
	o := sampler.Options{Method: defMethod, Steps: steps, Rtol: rtol, Atol: atol}
	if method != "" {
		m, err := sampler.ParseMethod(method)
		if err != nil {
			return o, fmt.Errorf("fmgpu: %w", err)
		}
		o.Method = m
	}
	if o.Steps == 0 {
		o.Steps = 100
	}
	if o.Rtol == 0 {
		o.Rtol = 1e-5
	}
	if o.Atol == 0 {
		o.Atol = 1e-5
	}
	switch {
	case o.Steps < 1 || o.Steps > 1<<20:
		return o, fmt.Errorf("fmgpu: %d solver steps: need 1..%d", o.Steps, 1<<20)
	case !(o.Rtol > 0 && o.Rtol < 1) || !(o.Atol > 0 && o.Atol < 1):
		// (the sample and likelihood commands' range: at 1e39 and above,
		// beyond float32, the likelihood's step control failed)
		return o, fmt.Errorf("fmgpu: tolerances %g, %g: need values in (0, 1)", o.Rtol, o.Atol)
	}
	return o, nil
}

// Sample draws n samples from the model and returns them row-major, n x
// Dim values in data units. It stops between solver steps when ctx is
// done, returning ctx's error. A sample that comes out NaN or infinite is
// a *generate.NonFiniteError.
func (m *Model) Sample(ctx context.Context, n int, o SampleOptions) ([]float32, error) {
	if m == nil || m.dev == nil {
		return nil, errClosed
	}
	so, err := solverOptions(o.Solver, sampler.RK4, o.Steps, o.Rtol, o.Atol)
	if err != nil {
		return nil, err
	}
	w := o.Guidance
	switch {
	case w == 0 && o.Labels == nil:
		w = 1 // the null class alone: one network evaluation, the same field
	case w == 0:
		w = 2
	}
	if n < 1 || n > 1<<26 {
		return nil, fmt.Errorf("fmgpu: %d samples: need 1..%d", n, 1<<26)
	}
	if v := int64(n) * int64(m.Dim()); v > maxSampleValues {
		return nil, fmt.Errorf("fmgpu: %d samples of %d values: more than the %d values one call returns; sample in parts with other seeds", n, m.Dim(), maxSampleValues)
	}
	if err := m.acquire(ctx); err != nil {
		return nil, err
	}
	defer m.release()
	if err := m.usable(); err != nil {
		return nil, err
	}
	x, _, err := generate.Sample(ctx, m.g, n, generate.SampleOptions{Solver: so, Seed: o.Seed, Labels: o.Labels, Guidance: w})
	return x, err
}

var errClosed = errors.New("fmgpu: the model is closed")

// usable reports why m cannot run, holding the device's turn: closed, or
// the model of a Trainer closed since (whose network is freed).
func (m *Model) usable() error {
	switch {
	case m.g == nil:
		return errClosed
	case m.trainer != nil && m.trainer.tr == nil:
		return errTrainerClosed
	}
	return nil
}

// acquire is the device's turn for m (for a trainer's model, after the
// trainer's models: Trainer.holdModels), or why there is none: a closed
// (or zero) Model.
func (m *Model) acquire(ctx context.Context) error {
	switch {
	case m == nil || m.dev == nil:
		return errClosed
	case m.trainer != nil:
		// a trainer's model waits for its Run, but for OnLog
		if err := m.trainer.holdModels(ctx, m.dev); err != nil {
			return err
		}
	default:
		if err := m.dev.acquire(ctx); err != nil {
			return err
		}
	}
	gpu.SetPrecision(m.dev.b, m.prec) // valid: fp32, or the trainer's own
	return nil
}

// release gives back what acquire took.
func (m *Model) release() {
	if m.trainer != nil {
		m.trainer.releaseModels(m.dev)
		return
	}
	m.dev.release()
}

// maxSampleValues bounds the values one Sample returns (4 GiB of float32),
// as the sample command bounds one output.
const maxSampleValues = 1 << 30

// LogProbOptions are the choices of LogProb. The zero value is the
// likelihood command's defaults but for Seed (the command's --seed is 2
// unless given).
type LogProbOptions struct {
	// Solver is the ODE method, as for SampleOptions ("": "dopri5").
	Solver string
	// Steps, Rtol and Atol are as for SampleOptions.
	Steps      int
	Rtol, Atol float64
	// Divergence is "exact" (Dim backward passes per evaluation) or
	// "hutchinson" (Probes random probes); "" is exact for vector models
	// of up to 64 dimensions and hutchinson for more, and for images.
	Divergence string
	// Probes is the number of Hutchinson probes per point (0: 1), drawn
	// from Seed; Probe is "rademacher" (the default) or "gaussian".
	Probes int
	Probe  string
	Seed   uint64
}

// exactDivergenceMaxDim is the largest dimension the default divergence
// is exact for: beyond it, Dim backward passes per evaluation cost more
// than Hutchinson's estimate (the likelihood command's rule).
const exactDivergenceMaxDim = 64

// LogProb returns log p(x) in nats for each point of x (rows of Dim values
// in data units, n = len(x)/Dim of them; 8-bit images dequantized first,
// see data.Dequantize), by the instantaneous change of variables from the
// data to the prior, with the prior's log-density and the log-Jacobian of
// the training standardization. x is not modified. It stops between
// solver steps when ctx is done, returning ctx's error.
func (m *Model) LogProb(ctx context.Context, x []float32, o LogProbOptions) ([]float64, error) {
	if m == nil || m.dev == nil {
		return nil, errClosed
	}
	so, err := solverOptions(o.Solver, sampler.Dopri5, o.Steps, o.Rtol, o.Atol)
	if err != nil {
		return nil, err
	}
	d := m.Dim()
	if len(x) == 0 || len(x)%d != 0 {
		return nil, fmt.Errorf("fmgpu: %d values are not rows of %d", len(x), d)
	}
	for i, v := range x {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return nil, fmt.Errorf("fmgpu: point %d holds %g in column %d", i/d, v, i%d)
		}
	}
	lo := generate.LikelihoodOptions{Solver: so, Probes: max(o.Probes, 1), Seed: o.Seed}
	switch {
	case o.Divergence != "":
		if lo.Divergence, err = sampler.ParseDivergence(o.Divergence); err != nil {
			return nil, fmt.Errorf("fmgpu: %w", err)
		}
	case m.cfg.Model.Image != nil || d > exactDivergenceMaxDim:
		lo.Divergence = sampler.Hutchinson
	}
	if o.Probe != "" {
		if lo.ProbeKind, err = sampler.ParseProbeKind(o.Probe); err != nil {
			return nil, fmt.Errorf("fmgpu: %w", err)
		}
	}
	if o.Probes < 0 || o.Probes > 1<<10 {
		return nil, fmt.Errorf("fmgpu: %d probes: need 1..%d", o.Probes, 1<<10)
	}
	if err := m.acquire(ctx); err != nil {
		return nil, err
	}
	defer m.release()
	if err := m.usable(); err != nil {
		return nil, err
	}
	lp, _, err := generate.LogLikelihood(ctx, m.g, x, len(x)/d, lo)
	return lp, err
}
