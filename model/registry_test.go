package model

import (
	"errors"
	"strings"
	"testing"

	"github.com/fmgpu/fmgpu/gpu"
)

// asMLP is a Config of a registered kind read as the MLP's.
func asMLP(c Config) Config { c.Kind = KindMLP; return c }

// mlpAlias is an Architecture that builds the MLP under another kind:
// enough to see New, Validate and TensorLayout go through the registry.
var mlpAlias = Architecture{
	Validate: func(c Config) error { return asMLP(c).Validate() },
	Layout:   func(c Config) []Tensor { return mlpParams(asMLP(c)).tensors },
	New: func(b gpu.Backend, c Config) (Net, error) {
		m, err := NewMLP(b, asMLP(c))
		if err != nil {
			return nil, err
		}
		return m, nil
	},
}

func TestRegister(t *testing.T) {
	const kind Kind = "test-mlp-alias"
	if err := Register(kind, mlpAlias); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"twice":    Register(kind, mlpAlias),
		"built-in": Register(KindMLP, mlpAlias),
		"empty":    Register("", mlpAlias),
		"nil New":  Register("test-nil-new", Architecture{Validate: mlpAlias.Validate, Layout: mlpAlias.Layout}),
	} {
		if err == nil {
			t.Errorf("Register %s: no error", name)
		}
	}
	c := Config{Kind: kind, Dim: 3, Hidden: []int{8}, TimeEmbed: DefaultTimeEmbedding}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := c
	bad.Hidden = nil
	if err := bad.Validate(); err == nil {
		t.Error("the architecture's Validate was not called")
	}
	tensors, n, err := TensorLayout(c)
	want := mlpParams(asMLP(c))
	if err != nil || n != want.size || len(tensors) != len(want.tensors) {
		t.Fatalf("layout: %d tensors, %d parameters, %v", len(tensors), n, err)
	}
	b := gpu.NewCPU(1)
	defer b.Close()
	net, err := New(b, c)
	if err != nil || net.NumParams() != n {
		t.Fatalf("New: %v", err)
	}
	if _, err := New(b, bad); err == nil {
		t.Error("New of an invalid registered config: no error")
	}
	if _, err := New(b, Config{Kind: "test-unknown", Dim: 2}); err == nil || !strings.Contains(err.Error(), "want mlp or unet") {
		t.Errorf("an unknown kind: %v", err)
	}
}

// A registered kind whose network disagrees with its layout, or whose
// layout has gaps, is refused before anything uses it.
func TestRegisteredLayoutChecked(t *testing.T) {
	short := mlpAlias
	short.Layout = func(c Config) []Tensor { return mlpParams(asMLP(c)).tensors[:1] }
	gap := mlpAlias
	gap.Layout = func(c Config) []Tensor {
		ts := append([]Tensor(nil), mlpParams(asMLP(c)).tensors...)
		ts[1].Offset++
		return ts
	}
	failing := mlpAlias
	failing.New = func(gpu.Backend, Config) (Net, error) { return nil, errors.New("no luck") }
	b := gpu.NewCPU(1)
	defer b.Close()
	for kind, a := range map[Kind]Architecture{"test-short": short, "test-gap": gap, "test-failing": failing} {
		if err := Register(kind, a); err != nil {
			t.Fatal(err)
		}
		c := Config{Kind: kind, Dim: 2, Hidden: []int{4}}
		if _, err := New(b, c); err == nil {
			t.Errorf("%s: New gave no error", kind)
		}
		if kind == "test-gap" {
			if _, _, err := TensorLayout(c); err == nil || !strings.Contains(err.Error(), "without gaps") {
				t.Errorf("%s: TensorLayout: %v", kind, err)
			}
		}
	}
}
