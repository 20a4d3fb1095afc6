package model_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/fmgpu/fmgpu/gpu"
	"github.com/fmgpu/fmgpu/model"
)

// withUNet is cfg with its U-Net settings changed by f (a copy).
func withUNet(cfg model.Config, f func(u *model.UNetConfig)) model.Config {
	u := *cfg.UNet
	u.Mults = slices.Clone(u.Mults)
	u.AttentionRes = slices.Clone(u.AttentionRes)
	f(&u)
	cfg.UNet = &u
	return cfg
}

// TestUNetDropout: the dropout layers change nothing until SetDropout (a
// network with Dropout 0.3 and one with 0 compute the same bits on the
// same weights), then the same draw gives the same pass, another step
// another one, a step in device memory (StepFrom) the same as that step
// given directly; Velocity and VJP never drop; SetDropout(nil) turns the
// layers off again. The gradients with dropout are checked against central
// differences in TestUNetCentralDifferences.
func TestUNetDropout(t *testing.T) {
	b := newBackend(t)
	const rows = 3
	noDrop := withUNet(cifarLikeUNet, func(u *model.UNetConfig) { u.Dropout = 0 })
	u := randomUNet(t, b, cifarLikeUNet, 4)
	ref := randomUNet(t, b, noDrop, 4)
	for _, n := range []*model.UNet{u, ref} {
		n.SetLabels(labelsBuf(b, 0, 3, 2))
	}
	_, x, tb, e := unetBatch(b, u, rows, 6)
	v0, g0, w0 := unetRun(t, b, ref, rows, x, tb, e)
	v1, g1, w1 := unetRun(t, b, u, rows, x, tb, e)
	if !slices.Equal(v0, v1) || !slices.Equal(g0, g1) || !slices.Equal(w0, w1) {
		t.Fatal("dropout 0.3 before SetDropout differs from dropout 0")
	}

	u.SetDropout(&gpu.DropoutDraw{Seed: 9, Step: 41})
	v2, g2, w2 := unetRun(t, b, u, rows, x, tb, e)
	if slices.Equal(v2, v0) || slices.Equal(g2, g0) || slices.Equal(w2, w0) {
		t.Error("SetDropout changed neither the output, nor the gradient, nor the VJP")
	}
	v3, g3, w3 := unetRun(t, b, u, rows, x, tb, e)
	if !slices.Equal(v2, v3) || !slices.Equal(g2, g3) || !slices.Equal(w2, w3) {
		t.Error("the same dropout draw twice differs")
	}
	step := gpu.StepWords(41)
	u.SetDropout(&gpu.DropoutDraw{Seed: 9, Step: 7, StepFrom: upload(b, step[:])})
	v4, g4, w4 := unetRun(t, b, u, rows, x, tb, e)
	if !slices.Equal(v2, v4) || !slices.Equal(g2, g4) || !slices.Equal(w2, w4) {
		t.Error("the step read from StepFrom differs from the same step given in Step")
	}
	u.SetDropout(&gpu.DropoutDraw{Seed: 9, Step: 42})
	if v5, _, _ := unetRun(t, b, u, rows, x, tb, e); slices.Equal(v5, v2) {
		t.Error("steps 41 and 42 drop the same elements")
	}

	// The sampler's field ignores the dropout, and so does the VJP after it.
	d := u.Dim()
	vel, velRef := b.Alloc(rows*d), b.Alloc(rows*d)
	wv, wvRef := b.Alloc(rows*d), b.Alloc(rows*d)
	u.VJP(0.4, rows, x, e, vel, wv)
	ref.VJP(0.4, rows, x, e, velRef, wvRef)
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(hostData(t, vel), hostData(t, velRef)) || !slices.Equal(hostData(t, wv), hostData(t, wvRef)) {
		t.Error("Velocity/VJP of a network training with dropout differ from the network without")
	}
	u.SetDropout(nil)
	if v6, g6, w6 := unetRun(t, b, u, rows, x, tb, e); !slices.Equal(v6, v0) || !slices.Equal(g6, g0) || !slices.Equal(w6, w0) {
		t.Error("SetDropout(nil) does not turn the dropout off")
	}
	// WithWeights networks (the EMA's, for sampling) do not inherit it.
	u.SetDropout(&gpu.DropoutDraw{Seed: 9, Step: 41})
	if v7, _, _ := unetRun(t, b, u.WithWeights(u.Params()), rows, x, tb, e); !slices.Equal(v7, v0) {
		t.Error("a WithWeights network drops")
	}
}

// TestUNetHeads: Heads 0 and 1 are the same network bit for bit (single
// head, as before heads existed); with 2 heads the layout is the same and
// the output differs. The multi-head gradients are checked against
// central differences in TestUNetCentralDifferences.
func TestUNetHeads(t *testing.T) {
	b := newBackend(t)
	const rows = 2
	one := withUNet(cifarLikeUNet, func(u *model.UNetConfig) { u.Heads, u.Dropout = 1, 0 })
	zero := withUNet(one, func(u *model.UNetConfig) { u.Heads = 0 })
	two := withUNet(one, func(u *model.UNetConfig) { u.Heads = 2 })
	u0, u1, u2 := randomUNet(t, b, zero, 8), randomUNet(t, b, one, 8), randomUNet(t, b, two, 8)
	_, x, tb, e := unetBatch(b, u0, rows, 3)
	v0, g0, w0 := unetRun(t, b, u0, rows, x, tb, e)
	v1, g1, w1 := unetRun(t, b, u1, rows, x, tb, e)
	if !slices.Equal(v0, v1) || !slices.Equal(g0, g1) || !slices.Equal(w0, w1) {
		t.Error("heads 0 and 1 differ")
	}
	if u2.NumParams() != u1.NumParams() {
		t.Errorf("2 heads have %d parameters, 1 head %d", u2.NumParams(), u1.NumParams())
	}
	if v2, _, _ := unetRun(t, b, u2, rows, x, tb, e); slices.Equal(v2, v1) {
		t.Error("2 heads compute what 1 head does")
	}
}

// TestUNetAttentionResValidate: bad attention resolutions and head counts
// are refused with the setting named.
func TestUNetAttentionResValidate(t *testing.T) {
	for _, c := range []struct {
		f    func(u *model.UNetConfig)
		want string
	}{
		{func(u *model.UNetConfig) { u.AttentionRes = []int{6} }, "attention resolution 6"},
		{func(u *model.UNetConfig) { u.AttentionRes = []int{8, 8} }, "attention resolution 8"},
		{func(u *model.UNetConfig) { u.Heads = 3 }, "heads 3"},
		{func(u *model.UNetConfig) { u.Heads = -1 }, "heads -1"},
		{func(u *model.UNetConfig) { u.Dropout = 1 }, "dropout 1"},
		{func(u *model.UNetConfig) { u.Dropout = -0.1 }, "dropout -0.1"},
	} {
		err := withUNet(cifarLikeUNet, c.f).Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("want an error naming %q, got %v", c.want, err)
		}
	}
	if err := cifarLikeUNet.Validate(); err != nil {
		t.Errorf("cifarLikeUNet: %v", err)
	}
}
