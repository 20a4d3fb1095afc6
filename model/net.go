package model

import (
	"fmt"

	"github.com/fmgpu/fmgpu/gpu"
)

// Net is a velocity network v_theta(t, x [, class]) over a gpu.Backend:
// the MLP for vectors, the U-Net for images. Parameters live in one flat
// buffer (the optimizer is one fused op over it); Tensors names its parts.
// A Net also serves as the sampler's field (Velocity, VJP).
type Net interface {
	Config() Config
	Dim() int
	NumParams() int
	Params() gpu.Buffer
	Tensors() []Tensor
	// Init draws the initial weights from a seeded generator.
	Init(seed uint64)
	// Reserve sizes the workspaces for rows rows; Release frees them.
	Reserve(rows int)
	Release()
	// WithWeights is a Net of the same shape reading its weights from p
	// (the EMA, say), with workspaces of its own.
	WithWeights(p gpu.Buffer) Net
	// SetLabels makes the following Forward and Velocity calls use the
	// class labels in labels (one per row, float32 integers; the value
	// Config.Classes is the null class). nil means the null class for every
	// row. Unconditional nets ignore it.
	SetLabels(labels gpu.Buffer)
	// Forward computes out = v(t, x) for rows rows and keeps what Backward
	// and InputVJP need.
	Forward(rows int, t, x, out gpu.Buffer)
	// Backward writes the parameter gradient for the output gradient dOut
	// into grads (laid out like Params).
	Backward(dOut, grads gpu.Buffer)
	// InputVJP writes w = e^T dv/dx per row for the last Forward.
	InputVJP(e, w gpu.Buffer)
	// Velocity and VJP are the sampler's field with one t for every row.
	Velocity(t float64, rows int, x, v gpu.Buffer)
	VJP(t float64, rows int, x, e, v, w gpu.Buffer)
	// FLOPsPerRow is the forward pass's flop count per row.
	FLOPsPerRow() int
}

// Dropper is a Net with dropout layers (the U-Net): the trainer turns
// them on with SetDropout(&draw), its step's Philox stream, so that a
// resumed run draws the same masks; nil turns them off. Sampling (Velocity,
// VJP) never drops.
type Dropper interface {
	SetDropout(d *gpu.DropoutDraw)
}

// New builds the network a configuration describes, with zero weights: the
// MLP, the U-Net, or a kind added with Register.
func New(b gpu.Backend, c Config) (Net, error) {
	switch c.Kind {
	case KindMLP:
		m, err := NewMLP(b, c)
		if err != nil {
			return nil, err // not a nil *MLP inside a non-nil Net
		}
		return m, nil
	case KindUNet:
		return newUNet(b, c)
	}
	if a, ok := registered(c.Kind); ok {
		if err := c.Validate(); err != nil {
			return nil, err
		}
		return newRegistered(a, b, c)
	}
	return nil, fmt.Errorf("model kind %q: want mlp or unet, or a kind registered with model.Register", c.Kind)
}
