package model

import (
	"errors"
	"fmt"
	"sync"

	"github.com/fmgpu/fmgpu/gpu"
)

// Architecture is a velocity network of a caller's own, registered under a
// Kind so that New, TensorLayout and Config.Validate treat a Config of
// that kind as they treat the MLP's and the U-Net's: the trainer builds
// it, checkpoints record it, and generate rebuilds it from a checkpoint,
// in any program that registered it.
//
// Its Config uses the fields it needs (Dim always; Hidden, TimeEmbed,
// Classes and Image as the architecture defines them); Config.Validate
// has checked their ranges before Validate is called.
type Architecture struct {
	// Validate checks a Config of this kind.
	Validate func(c Config) error
	// Layout lists the network's parameter tensors in the order of its
	// flat parameter buffer, each with its offset there, without
	// allocating anything: checkpoints are checked against it before
	// their tensors are read.
	Layout func(c Config) []Tensor
	// New builds the network on b with zero weights; its NumParams and
	// Tensors must match Layout.
	New func(b gpu.Backend, c Config) (Net, error)
}

var registry = struct {
	sync.RWMutex
	arch map[Kind]Architecture
}{arch: map[Kind]Architecture{}}

// Register makes kind build the networks of a (typically from an init
// function). It is an error to register a built-in kind, a kind twice,
// an empty kind or an Architecture with a nil function.
func Register(kind Kind, a Architecture) error {
	switch {
	case kind == "":
		return errors.New("model: Register of an empty kind")
	case kind == KindMLP || kind == KindUNet:
		return fmt.Errorf("model: Register of the built-in kind %q", kind)
	case a.Validate == nil || a.Layout == nil || a.New == nil:
		return fmt.Errorf("model: Register of kind %q with a nil Validate, Layout or New", kind)
	}
	registry.Lock()
	defer registry.Unlock()
	if _, ok := registry.arch[kind]; ok {
		return fmt.Errorf("model: kind %q registered twice", kind)
	}
	registry.arch[kind] = a
	return nil
}

// registered returns the Architecture of a registered kind.
func registered(kind Kind) (Architecture, bool) {
	registry.RLock()
	defer registry.RUnlock()
	a, ok := registry.arch[kind]
	return a, ok
}

// registeredLayout checks a registered architecture's layout: tensors of
// positive size, in order, each starting where the previous one ends.
func registeredLayout(a Architecture, c Config) ([]Tensor, int, error) {
	tensors := a.Layout(c)
	if len(tensors) == 0 {
		return nil, 0, fmt.Errorf("model kind %q: no parameter tensors", c.Kind)
	}
	n := 0
	for _, t := range tensors {
		if t.Offset != n {
			return nil, 0, fmt.Errorf("model kind %q: tensor %s at offset %d, want %d (tensors in order, without gaps)", c.Kind, t.Name, t.Offset, n)
		}
		for _, s := range t.Shape {
			if s < 1 || s > 1<<30 {
				return nil, 0, fmt.Errorf("model kind %q: tensor %s has shape %v", c.Kind, t.Name, t.Shape)
			}
		}
		n += t.Size()
		if n > 1<<34 {
			return nil, 0, fmt.Errorf("model kind %q: more than 2^34 parameters", c.Kind)
		}
	}
	return tensors, n, nil
}

// newRegistered builds a registered kind's network and checks it against
// its layout.
func newRegistered(a Architecture, b gpu.Backend, c Config) (Net, error) {
	_, n, err := registeredLayout(a, c)
	if err != nil {
		return nil, err
	}
	net, err := a.New(b, c)
	if err != nil {
		return nil, err
	}
	if net == nil || net.NumParams() != n {
		got := -1
		if net != nil {
			got = net.NumParams()
			net.Release()
		}
		return nil, fmt.Errorf("model kind %q: New built %d parameters, its Layout lists %d", c.Kind, got, n)
	}
	return net, nil
}
