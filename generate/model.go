// Package generate turns a trained network into samples and
// log-likelihoods, in the units of the data it was trained on: it loads a
// checkpoint onto a backend, solves the flow's ODE from noise in chunks
// that bound the device memory, applies classifier-free guidance to
// class-conditional models, undoes the training standardization, and
// scores points by the instantaneous change of variables with the prior
// and the standardization's Jacobian (docs/math.md).
//
// It is the library under `fmgpu sample` and `fmgpu likelihood`: every
// long call takes a context and stops between steps when it is cancelled,
// errors are values, and nothing is printed.
package generate

import (
	"context"
	"fmt"

	"github.com/fmgpu/fmgpu/data"
	"github.com/fmgpu/fmgpu/flow"
	"github.com/fmgpu/fmgpu/gpu"
	"github.com/fmgpu/fmgpu/model"
	"github.com/fmgpu/fmgpu/train"
)

// Model is a trained network on a backend with what sampling and scoring
// need from its training configuration.
type Model struct {
	// Checkpoint is the checkpoint the model was loaded from; nil for a
	// network still in training (FromTrainer).
	Checkpoint *train.Checkpoint
	Net        model.Net
	Path       flow.Path
	// TimeShift is the SD3 time shift training used; sampling applies it to
	// a fixed-step grid unless told otherwise.
	TimeShift float64
	// Std is the standardization the network was trained in: samples are
	// mapped back through it, scored points forward, with its Jacobian.
	Std data.Standardization

	b     gpu.Backend
	owned bool // Close releases Net
}

// LoadOptions are the choices of Load.
type LoadOptions struct {
	// RawWeights uses the trained weights instead of their exponential
	// moving average (the default for sampling when training kept one).
	RawWeights bool
}

// Load reads the checkpoint at path (see train.Load for what is checked)
// and rebuilds its network on b.
func Load(ctx context.Context, b gpu.Backend, path string, o LoadOptions) (*Model, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ck, err := train.Load(path)
	if err != nil {
		return nil, err
	}
	return FromCheckpoint(b, ck, o)
}

// FromCheckpoint rebuilds ck's network on b with its EMA weights (or its
// raw weights, see LoadOptions).
func FromCheckpoint(b gpu.Backend, ck *train.Checkpoint, o LoadOptions) (*Model, error) {
	c := ck.Meta.Config
	p, err := flow.New(c.Path)
	if err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", ck.Path, err)
	}
	net, err := model.New(b, c.Model)
	if err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", ck.Path, err)
	}
	w := ck.Params
	if !o.RawWeights && c.EMADecay > 0 {
		w = ck.EMA
	}
	b.Upload(net.Params(), w)
	m := &Model{Checkpoint: ck, Net: net, Path: p, TimeShift: c.Time.Shift, Std: ck.Meta.Standardization, b: b, owned: true}
	if err := b.Sync(); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// FromTrainer is the EMA network of a run in progress, for the samples
// drawn during training; std is the standardization of its data. The
// network stays the trainer's: Close does not release it.
func FromTrainer(b gpu.Backend, tr *train.Trainer, std data.Standardization) (*Model, error) {
	c := tr.Config()
	p, err := flow.New(c.Path)
	if err != nil {
		return nil, err
	}
	return &Model{Net: tr.EMANet(), Path: p, TimeShift: c.Time.Shift, Std: std, b: b}, nil
}

// Close releases the network's device memory (weights and workspaces)
// when the model owns it.
func (m *Model) Close() {
	if m.owned && m.Net != nil {
		m.Net.Release() // the workspaces
		m.b.Free(m.Net.Params())
		m.Net = nil
	}
}

// Dim is the data dimension D.
func (m *Model) Dim() int { return m.Net.Dim() }

// Classes is the number of classes of a class-conditional model, 0 for an
// unconditional one.
func (m *Model) Classes() int { return m.Net.Config().Classes }

// Config is the network's configuration.
func (m *Model) Config() model.Config { return m.Net.Config() }

// Backend is the backend the network lives on.
func (m *Model) Backend() gpu.Backend { return m.b }
