package model_test

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/fmgpu/fmgpu/gpu"
	"github.com/fmgpu/fmgpu/model"
)

// unetForwardRTol bounds UNet.Forward (float32) against the float64
// oracle: |got - want| <= unetForwardRTol (|want| + rms(want)). Each output
// is some fifteen convolutions and group norms deep, each a float32 sum of
// up to a few hundred products (rounding about 1e-7 of the sum's scale,
// growing like the square root of the depth); both sides embed the same
// float32 t, the backend's sinusoid to float32 rounding.
const unetForwardRTol = 1e-5

// unetConfig is a U-Net configuration with the small sin4 time embedding.
func unetConfig(c, h, w, base int, mults []int, res, groups int, attn bool, classes int) model.Config {
	return model.Config{Kind: "unet", Dim: c * h * w, TimeEmbed: sin4, Classes: classes,
		Image: &model.ImageShape{Channels: c, Height: h, Width: w},
		UNet:  &model.UNetConfig{Base: base, Mults: mults, ResBlocks: res, Groups: groups, Attention: attn}}
}

// newUNet builds and initializes a U-Net on b.
func newUNet(t testing.TB, b gpu.Backend, cfg model.Config, seed uint64) *model.UNet {
	t.Helper()
	u, err := model.NewUNet(b, cfg)
	if err != nil {
		t.Fatalf("NewUNet(%+v): %v", cfg, err)
	}
	u.Init(seed)
	return u
}

// setRandomParams replaces Init's weights with ones where nothing is zero:
// Init zeroes the last convolution of every residual branch and the output
// convolution (the network's output is then 0 and most gradients vanish),
// so the numeric checks draw every convolution and linear weight and bias
// uniform on ±1.5/sqrt(fan_in), the GroupNorm scales 1 ± 0.3 and shifts
// ±0.3, the class table N(0, 1).
func setRandomParams(t testing.TB, b gpu.Backend, u *model.UNet, r *rand.Rand) {
	t.Helper()
	host := make([]float32, u.NumParams())
	ts := u.Tensors()
	for i, tn := range ts {
		v := host[tn.Offset : tn.Offset+tn.Size()]
		uni := func(bound float64) float32 { return float32((2*r.Float64() - 1) * bound) }
		switch {
		case strings.HasPrefix(tn.Name, "label_embed"):
			for j := range v {
				v[j] = float32(r.NormFloat64())
			}
		case strings.Contains(tn.Name, "norm") && strings.HasSuffix(tn.Name, ".weight"):
			for j := range v {
				v[j] = 1 + uni(0.3)
			}
		case strings.Contains(tn.Name, "norm"):
			for j := range v {
				v[j] = uni(0.3)
			}
		default:
			w := tn
			if len(tn.Shape) == 1 {
				w = ts[i-1] // the bias follows its weight
			}
			bound := 1.5 / math.Sqrt(float64(w.Size()/w.Shape[0]))
			for j := range v {
				v[j] = uni(bound)
			}
		}
	}
	b.Upload(u.Params(), host)
}

// labelsBuf uploads labels as float32.
func labelsBuf(b gpu.Backend, labels ...int) gpu.Buffer {
	lf := make([]float32, len(labels))
	for i, l := range labels {
		lf[i] = float32(l)
	}
	return upload(b, lf)
}

// unetRun is Forward then Backward and InputVJP with cotangent e, all
// downloaded.
func unetRun(t testing.TB, b gpu.Backend, n model.Net, rows int, x, tb, e gpu.Buffer) (v, g, w []float32) {
	t.Helper()
	d := n.Dim()
	vb, gb, wb := b.Alloc(rows*d), b.Alloc(n.NumParams()), b.Alloc(rows*d)
	n.Forward(rows, tb, x, vb)
	n.Backward(e, gb)
	n.InputVJP(e, wb)
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	v = slices.Clone(hostData(t, vb))
	g = slices.Clone(hostData(t, gb))
	w = slices.Clone(hostData(t, wb))
	b.Free(vb)
	b.Free(gb)
	b.Free(wb)
	return v, g, w
}

// smallUNet is a configuration with every kind of block (attention,
// classes, identity and 1x1 skips) for the property tests.
var smallUNet = unetConfig(2, 8, 8, 4, []int{1, 2}, 2, 2, true, 3)

func TestUNetTensorLayout(t *testing.T) {
	b := newBackend(t)
	for _, cfg := range []model.Config{smallUNet, unetGradCases[0].cfg, unetGradCases[2].cfg} {
		u := newUNet(t, b, cfg, 1)
		ts, n, err := model.TensorLayout(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if n != u.NumParams() || u.Params().Len() != n {
			t.Errorf("TensorLayout size %d, NumParams %d, Params().Len() %d", n, u.NumParams(), u.Params().Len())
		}
		got := u.Tensors()
		if len(ts) != len(got) {
			t.Fatalf("TensorLayout has %d tensors, Tensors %d", len(ts), len(got))
		}
		off := 0
		names := map[string]bool{}
		for i := range ts {
			if ts[i].Name != got[i].Name || !slices.Equal(ts[i].Shape, got[i].Shape) || ts[i].Offset != got[i].Offset {
				t.Errorf("tensor %d: TensorLayout %+v, Tensors %+v", i, ts[i], got[i])
			}
			if ts[i].Offset != off {
				t.Errorf("%s at offset %d, want %d (contiguous)", ts[i].Name, ts[i].Offset, off)
			}
			if names[ts[i].Name] {
				t.Errorf("tensor name %s twice", ts[i].Name)
			}
			names[ts[i].Name] = true
			off += ts[i].Size()
		}
		if off != n {
			t.Errorf("tensors cover %d elements, layout size %d", off, n)
		}
	}

	// Shapes of a few tensors of smallUNet (C 2, Base 4, E 16, 3 classes).
	ts, _, _ := model.TensorLayout(smallUNet)
	shape := map[string][]int{}
	for _, tn := range ts {
		shape[tn.Name] = tn.Shape
	}
	for name, want := range map[string][]int{
		"time_embed.0.weight":       {16, 8},
		"time_embed.2.bias":         {16},
		"label_embed.weight":        {4, 16},
		"input.weight":              {4, 2, 3, 3},
		"down.0.res.1.conv1.weight": {4, 4, 3, 3},
		"down.0.res.0.emb.weight":   {4, 16},
		"down.0.downsample.weight":  {4, 4, 3, 3},
		"down.1.res.0.norm1.weight": {4},
		"down.1.res.0.skip.weight":  {8, 4, 1, 1},
		"down.1.res.0.conv2.bias":   {8},
		"mid.res.0.norm2.bias":      {8},
		"mid.attn.qkv.weight":       {24, 8, 1, 1},
		"mid.attn.proj.bias":        {8},
		"up.1.res.0.norm1.weight":   {16}, // [8 up, 8 skip]
		"up.1.res.2.conv1.weight":   {8, 12, 3, 3},
		"up.1.res.2.skip.weight":    {8, 12, 1, 1}, // [8, the 4 of down.0.downsample]
		"up.1.upsample.weight":      {8, 8, 3, 3},
		"up.0.res.0.conv1.weight":   {4, 12, 3, 3},
		"up.0.res.2.skip.weight":    {4, 8, 1, 1}, // [4, the 4 of input]
		"out.norm.bias":             {4},
		"out.conv.weight":           {2, 4, 3, 3},
		"down.0.res.0.skip.weight":  nil, // identity skips: no tensor
		"mid.res.0.skip.weight":     nil,
		"down.1.downsample.weight":  nil, // no downsampling at the last level
		"up.0.upsample.weight":      nil, // nor upsampling at the first
		"up.1.res.3.conv1.weight":   nil, // ResBlocks+1 blocks a level up
		"down.0.res.2.conv1.weight": nil, // ResBlocks down
	} {
		if got, ok := shape[name]; ok != (want != nil) || !slices.Equal(got, want) {
			t.Errorf("tensor %s: shape %v (present %v), want %v", name, got, ok, want)
		}
	}
}
