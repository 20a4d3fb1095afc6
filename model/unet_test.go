package model_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/fmgpu/fmgpu/gpu"
	"github.com/fmgpu/fmgpu/internal/numtest"
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

// unetGradCase is one network and batch of the gradient checks, and how
// many of its parameters (per tensor: the largest gradient element and
// random others) and input coordinates are centrally differenced. Each
// difference is two runs of the gorgonia graph, 10 to 15 ms each on a
// shared CPU: every element of every case would take minutes.
type unetGradCase struct {
	name        string
	cfg         model.Config
	rows        int
	labels      []int // nil: SetLabels(nil)
	cdPerTensor int
	cdInputs    int  // 0: all
	cdLong      bool // differenced only without -short
	// dropout, when not nil, trains with dropout (SetDropout) with this
	// draw: the masks are fixed, so the gradients are those of a fixed
	// linear map in each dropout.
	dropout *gpu.DropoutDraw
}

// unetGradCases: 1x8x8 two levels, no attention, unconditional; 2x4x4 two
// levels with attention and 3 classes (a null-class row among them),
// differenced most thoroughly (its graph is the fastest); 1x8x8 three
// levels, two blocks a level (identity skips on the way down), a level
// that keeps its width, attention on 2x2, 2 classes, labels nil (null).
var unetGradCases = []unetGradCase{
	{"1x8x8-b4-m1,2-r1", unetConfig(1, 8, 8, 4, []int{1, 2}, 1, 2, false, 0), 3, nil, 1, 12, true, nil},
	{"2x4x4-b4-m1,2-r1-attn-c3", unetConfig(2, 4, 4, 4, []int{1, 2}, 1, 2, true, 3), 3, []int{2, 0, 3}, 3, 0, false, nil},
	{"1x8x8-b4-m1,1,2-r2-attn-c2-null", unetConfig(1, 8, 8, 4, []int{1, 1, 2}, 2, 2, true, 2), 2, nil, 1, 12, true, nil},
	{"2x8x8-b4-m1,2-r1-attn8-heads2-dropout0.3-c3", cifarLikeUNet, 2, []int{1, 3}, 2, 12, false, &gpu.DropoutDraw{Seed: 11, Step: 5}},
}

// cifarLikeUNet has the blocks of the cifar10 preset at a tiny size:
// attention after the residual blocks of the 8x8 level (down and up) and
// in the middle, two heads everywhere, dropout 0.3, 3 classes.
var cifarLikeUNet = func() model.Config {
	c := unetConfig(2, 8, 8, 4, []int{1, 2}, 1, 2, true, 3)
	c.UNet.AttentionRes, c.UNet.Heads, c.UNet.Dropout = []int{8}, 2, 0.3
	return c
}()

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

// unetTiny is unetGradCases[0]'s network, whose parameter and flop counts
// are worked out by hand below.
var unetTiny = unetConfig(1, 8, 8, 4, []int{1, 2}, 1, 2, false, 0)

// TestUNetCounts checks NumParams and FLOPsPerRow of unetTiny (1x8x8, Base
// 4, Mults 1,2, one block a level, no attention, E = 16, 8 embedding
// columns) against counts made by hand, block by block; a residual block
// from ci to co channels has 2ci + (9 co ci + co) + (16 co + co) + 2co +
// (9 co co + co) parameters, plus (co ci + co) for a 1x1 skip.
func TestUNetCounts(t *testing.T) {
	u := newUNet(t, newBackend(t), unetTiny, 1)
	params := 0 +
		(16*8 + 16) + (16*16 + 16) + // time_embed.0, .2
		(4*1*9 + 4) + // input
		380 + // down.0.res.0, 4 -> 4
		148 + // down.0.downsample
		1080 + // down.1.res.0, 4 -> 8 (1x1 skip)
		2*1336 + // mid.res.0, .1, 8 -> 8
		2064 + // up.1.res.0, 8+8 -> 8
		1736 + // up.1.res.1, 8+4 -> 8
		584 + // up.1.upsample
		736 + // up.0.res.0, 8+4 -> 4
		568 + // up.0.res.1, 4+4 -> 4
		(2*4 + 1*4*9 + 1) // out.norm, out.conv
	if u.NumParams() != params {
		t.Errorf("NumParams = %d, counted by hand %d", u.NumParams(), params)
	}
	// 2 x multiply-adds: a conv is 2 co ci k^2 (output positions).
	flops := 0 +
		2*8*16 + 2*16*16 + // time MLP
		2*4*1*9*64 + // input, 8x8
		2*(2*4*4*9*64) + 2*16*4 + // down.0.res.0: conv1, conv2, emb
		2*4*4*9*16 + // downsample to 4x4
		2*8*4*9*16 + 2*8*8*9*16 + 2*8*4*16 + 2*16*8 + // down.1.res.0 with skip
		2*(2*(2*8*8*9*16)+2*16*8) + // mid
		2*8*16*9*16 + 2*8*8*9*16 + 2*8*16*16 + 2*16*8 + // up.1.res.0
		2*8*12*9*16 + 2*8*8*9*16 + 2*8*12*16 + 2*16*8 + // up.1.res.1
		2*8*8*9*64 + // up.1.upsample conv at 8x8
		2*4*12*9*64 + 2*4*4*9*64 + 2*4*12*64 + 2*16*4 + // up.0.res.0
		2*4*8*9*64 + 2*4*4*9*64 + 2*4*8*64 + 2*16*4 + // up.0.res.1
		2*1*4*9*64 // out.conv
	if u.FLOPsPerRow() != flops {
		t.Errorf("FLOPsPerRow = %d, counted by hand %d", u.FLOPsPerRow(), flops)
	}
}

// mnistUNet is the MNIST-size network of the timing: 1x28x28, Base
// 32, Mults 1,2,2 (28, 14, 7), attention at 7x7, 10 classes, the default
// time embedding.
func mnistUNet(res int) model.Config {
	c := unetConfig(1, 28, 28, 32, []int{1, 2, 2}, res, 8, true, 10)
	c.TimeEmbed = model.DefaultTimeEmbedding
	return c
}

func TestUNetValidate(t *testing.T) {
	good := []model.Config{smallUNet, unetTiny, mnistUNet(1), mnistUNet(2), unetGradCases[1].cfg,
		unetConfig(3, 1, 1, 1, []int{1}, 4, 1, true, 0), // 1x1 RGB, one level, attention on one token
		unetConfig(4, 32, 16, 8, []int{1, 1, 2, 2, 4}, 1, 4, false, 65536)}
	for _, c := range good {
		if err := c.Validate(); err != nil {
			t.Errorf("Validate(%+v, %+v, %+v) = %v, want nil", c, *c.Image, *c.UNet, err)
		}
	}
	edit := func(f func(*model.Config)) model.Config {
		c := smallUNet
		im, u := *c.Image, *c.UNet
		u.Mults = slices.Clone(u.Mults)
		c.Image, c.UNet = &im, &u
		f(&c)
		return c
	}
	bad := map[string]model.Config{
		"no image":           edit(func(c *model.Config) { c.Image = nil }),
		"no unet":            edit(func(c *model.Config) { c.UNet = nil }),
		"hidden widths":      edit(func(c *model.Config) { c.Hidden = []int{8} }),
		"channels 0":         edit(func(c *model.Config) { c.Image.Channels = 0; c.Dim = 0 }),
		"channels 5":         edit(func(c *model.Config) { c.Image.Channels = 5; c.Dim = 5 * 64 }),
		"height 0":           edit(func(c *model.Config) { c.Image.Height = 0 }),
		"width -8":           edit(func(c *model.Config) { c.Image.Width = -8 }),
		"dim not C*H*W":      edit(func(c *model.Config) { c.Dim = 127 }),
		"height 7, 2 levels": edit(func(c *model.Config) { c.Image.Height = 7; c.Dim = 2 * 7 * 8 }),
		"width 10, 3 levels": edit(func(c *model.Config) {
			c.Image.Width = 10
			c.Dim = 2 * 8 * 10
			c.UNet.Mults = []int{1, 2, 2}
		}),
		"raw time": edit(func(c *model.Config) { c.TimeEmbed = gpu.TimeEmbedding{} }),
		"attention at 64x64": edit(func(c *model.Config) {
			c.Image.Height, c.Image.Width, c.Dim = 128, 128, 2*128*128
		}),
		"base 0":           edit(func(c *model.Config) { c.UNet.Base = 0 }),
		"base 4097":        edit(func(c *model.Config) { c.UNet.Base = 4097; c.UNet.Groups = 1 }),
		"no levels":        edit(func(c *model.Config) { c.UNet.Mults = nil }),
		"6 levels":         edit(func(c *model.Config) { c.UNet.Mults = []int{1, 1, 1, 1, 1, 1} }),
		"mult 0":           edit(func(c *model.Config) { c.UNet.Mults[1] = 0 }),
		"width over 4096":  edit(func(c *model.Config) { c.UNet.Mults[1] = 2000 }),
		"res blocks 0":     edit(func(c *model.Config) { c.UNet.ResBlocks = 0 }),
		"res blocks 5":     edit(func(c *model.Config) { c.UNet.ResBlocks = 5 }),
		"groups 0":         edit(func(c *model.Config) { c.UNet.Groups = 0 }),
		"groups 3 of 4":    edit(func(c *model.Config) { c.UNet.Groups = 3 }),
		"groups 8 of 4":    edit(func(c *model.Config) { c.UNet.Groups = 8 }),
		"classes negative": edit(func(c *model.Config) { c.Classes = -1 }),
		"kind mlp":         edit(func(c *model.Config) { c.Kind = "mlp"; c.Hidden = []int{8} }),
	}
	b := newBackend(t)
	for name, c := range bad {
		if err := c.Validate(); err == nil {
			t.Errorf("%s: Validate = nil, want an error", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
		if _, _, err := model.TensorLayout(c); err == nil {
			t.Errorf("%s: TensorLayout gave no error", name)
		}
		if c.Kind != "unet" {
			continue // New of an mlp is NewMLP's business
		}
		if n, err := model.New(b, c); err == nil || n != nil {
			t.Errorf("%s: New = %v, %v; want nil and an error", name, n, err)
		}
	}
	n, err := model.New(b, smallUNet)
	if _, ok := n.(*model.UNet); err != nil || !ok {
		t.Errorf("New(unet) = %T, %v; want a *model.UNet", n, err)
	}
}

// TestUNetInit: seeded and deterministic; PyTorch's default bounds; the
// zero-initialized convolutions (so the network's output starts at 0),
// GroupNorm 1 and 0, the class table N(0, 1).
func TestUNetInit(t *testing.T) {
	b := newBackend(t)
	a, a2, c := newUNet(t, b, mnistUNet(1), 7), newUNet(t, b, mnistUNet(1), 7), newUNet(t, b, mnistUNet(1), 8)
	pa, pa2, pc := hostData(t, a.Params()), hostData(t, a2.Params()), hostData(t, c.Params())
	if !slices.Equal(pa, pa2) {
		t.Error("Init with the same seed gave different weights")
	}
	if slices.Equal(pa, pc) {
		t.Error("Init with seeds 7 and 8 gave the same weights")
	}
	ts := a.Tensors()
	for i, tn := range ts {
		v := pa[tn.Offset : tn.Offset+tn.Size()]
		zero := strings.Contains(tn.Name, ".conv2.") || strings.HasPrefix(tn.Name, "mid.attn.proj.") || strings.HasPrefix(tn.Name, "out.conv.")
		norm := strings.Contains(tn.Name, "norm")
		switch {
		case zero || (norm && strings.HasSuffix(tn.Name, ".bias")):
			if maxAbs(v) != 0 {
				t.Errorf("%s: want zeros, max |w| %g", tn.Name, maxAbs(v))
			}
		case norm:
			for _, x := range v {
				if x != 1 {
					t.Errorf("%s: want ones, got %g", tn.Name, x)
					break
				}
			}
		case tn.Name == "label_embed.weight":
			// 11 x 128 draws: mean 0 and variance 1 within 5 standard errors.
			m, s2 := meanVar(v)
			if math.Abs(m) > 5/math.Sqrt(float64(len(v))) || math.Abs(s2-1) > 5*math.Sqrt(2/float64(len(v))) {
				t.Errorf("%s: mean %.3g, variance %.3g; want N(0, 1)", tn.Name, m, s2)
			}
		default:
			w := tn
			if len(tn.Shape) == 1 {
				w = ts[i-1]
			}
			bound := 1 / math.Sqrt(float64(w.Size()/w.Shape[0]))
			if mx := maxAbs(v); mx > bound || mx == 0 {
				t.Errorf("%s: max |w| %g, want in (0, %g]", tn.Name, mx, bound)
			}
			// U(-b, b) has variance b^2/3; within 5 standard errors
			// (that of a sample variance of a uniform, b^2 sqrt(4/45 n)).
			if n := float64(len(v)); n >= 1000 {
				_, s2 := meanVar(v)
				if math.Abs(s2-bound*bound/3) > 5*bound*bound*math.Sqrt(4/(45*n)) {
					t.Errorf("%s: variance %.4g, want %.4g (uniform on ±%.4g)", tn.Name, s2, bound*bound/3, bound)
				}
			}
		}
	}
	// The output convolution is zero: v = 0 exactly at initialization.
	const rows = 2
	bt := newBatch(rand.New(rand.NewPCG(1, 1)), rows, a.Dim())
	v := b.Alloc(rows * a.Dim())
	b.Fill(v, 1)
	a.Forward(rows, upload(b, bt.t), upload(b, bt.x), v)
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	if mx := maxAbs(hostData(t, v)); mx != 0 {
		t.Errorf("initial output: max |v| %g, want 0", mx)
	}
}

func meanVar(v []float32) (float64, float64) {
	m := 0.0
	for _, x := range v {
		m += float64(x)
	}
	m /= float64(len(v))
	s := 0.0
	for _, x := range v {
		s += (float64(x) - m) * (float64(x) - m)
	}
	return m, s / float64(len(v))
}

// randomUNet is a U-Net of cfg with setRandomParams weights.
func randomUNet(t testing.TB, b gpu.Backend, cfg model.Config, seed uint64) *model.UNet {
	t.Helper()
	u := newUNet(t, b, cfg, seed)
	setRandomParams(t, b, u, rand.New(rand.NewPCG(seed, 99)))
	return u
}

// unetBatch is a random batch of rows for u with a N(0, 1) cotangent (tgt),
// uploaded.
func unetBatch(b gpu.Backend, u model.Net, rows int, seed uint64) (bt batch, x, tb, e gpu.Buffer) {
	bt = newBatch(rand.New(rand.NewPCG(seed, 5)), rows, u.Dim())
	return bt, upload(b, bt.x), upload(b, bt.t), upload(b, bt.tgt)
}

// TestUNetDeterministic: the same call twice, and a second network built
// and initialized with the same seed, give bitwise the same output,
// gradient and VJP; so do one and two CPU threads.
func TestUNetDeterministic(t *testing.T) {
	b := newBackend(t)
	u := randomUNet(t, b, smallUNet, 3)
	u.SetLabels(labelsBuf(b, 0, 1, 2, 3, 1))
	_, x, tb, e := unetBatch(b, u, 5, 1)
	v1, g1, w1 := unetRun(t, b, u, 5, x, tb, e)
	v2, g2, w2 := unetRun(t, b, u, 5, x, tb, e)
	if !slices.Equal(v1, v2) || !slices.Equal(g1, g2) || !slices.Equal(w1, w2) {
		t.Error("the same Forward, Backward, InputVJP twice differ")
	}
	u2 := randomUNet(t, b, smallUNet, 3)
	u2.SetLabels(labelsBuf(b, 0, 1, 2, 3, 1))
	v3, g3, w3 := unetRun(t, b, u2, 5, x, tb, e)
	if !slices.Equal(v1, v3) || !slices.Equal(g1, g3) || !slices.Equal(w1, w3) {
		t.Error("a second network with the same seed differs")
	}
	b1 := gpu.NewCPU(1)
	defer b1.Close()
	u1 := randomUNet(t, b1, smallUNet, 3)
	u1.SetLabels(labelsBuf(b1, 0, 1, 2, 3, 1))
	bt, _, _, _ := unetBatch(b1, u1, 5, 1)
	v4, g4, w4 := unetRun(t, b1, u1, 5, upload(b1, bt.x), upload(b1, bt.t), upload(b1, bt.tgt))
	if !slices.Equal(v1, v4) || !slices.Equal(g1, g4) || !slices.Equal(w1, w4) {
		t.Errorf("one CPU thread and %d differ", b.Info().Threads)
	}
}

// TestUNetWithWeights: a network over other weights computes what a
// network holding them does, and its workspaces are its own.
func TestUNetWithWeights(t *testing.T) {
	b := newBackend(t)
	u := randomUNet(t, b, smallUNet, 1)
	other := randomUNet(t, b, smallUNet, 2)
	const rows = 3
	_, x, tb, e := unetBatch(b, u, rows, 2)
	wantU, wantUG, wantUW := unetRun(t, b, u, rows, x, tb, e)
	wantO, wantOG, wantOW := unetRun(t, b, other, rows, x, tb, e)

	p := b.Alloc(u.NumParams())
	b.Copy(p, other.Params())
	w := u.WithWeights(p)
	if w.Params() != p || w.NumParams() != u.NumParams() || len(w.Tensors()) != len(u.Tensors()) || w.Config().UNet != u.Config().UNet {
		t.Fatal("WithWeights: a network of another shape or over other weights")
	}
	// Interleaved: u's Forward, w's whole pass, then u's backward passes.
	d := u.Dim()
	vb, gb, wb := b.Alloc(rows*d), b.Alloc(u.NumParams()), b.Alloc(rows*d)
	u.Forward(rows, tb, x, vb)
	gotO, gotOG, gotOW := unetRun(t, b, w, rows, x, tb, e)
	u.Backward(e, gb)
	u.InputVJP(e, wb)
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(gotO, wantO) || !slices.Equal(gotOG, wantOG) || !slices.Equal(gotOW, wantOW) {
		t.Error("WithWeights(other's weights) differs from other")
	}
	if !slices.Equal(hostData(t, vb), wantU) || !slices.Equal(hostData(t, gb), wantUG) || !slices.Equal(hostData(t, wb), wantUW) {
		t.Error("a WithWeights network's calls disturbed the original's")
	}
}

// TestUNetLabels: nil labels are the null class; the class changes the
// output; an unconditional network ignores labels.
func TestUNetLabels(t *testing.T) {
	b := newBackend(t)
	u := randomUNet(t, b, smallUNet, 4) // 3 classes, null = 3
	const rows = 4
	_, x, tb, e := unetBatch(b, u, rows, 3)
	u.SetLabels(nil)
	vNil, gNil, wNil := unetRun(t, b, u, rows, x, tb, e)
	u.SetLabels(labelsBuf(b, 3, 3, 3, 3))
	vNull, gNull, wNull := unetRun(t, b, u, rows, x, tb, e)
	if !slices.Equal(vNil, vNull) || !slices.Equal(gNil, gNull) || !slices.Equal(wNil, wNull) {
		t.Error("SetLabels(nil) and explicit null labels differ")
	}
	u.SetLabels(labelsBuf(b, 0, 1, 2, 3))
	v, _, _ := unetRun(t, b, u, rows, x, tb, e)
	d := u.Dim()
	for r := 0; r < rows; r++ {
		same := slices.Equal(v[r*d:(r+1)*d], vNull[r*d:(r+1)*d])
		if same != (r == 3) {
			t.Errorf("row %d (class %d): output equal to the null class's: %v, want %v", r, r, same, r == 3)
		}
	}
	// Only the class, not its row, matters: the same images with the
	// classes reversed give the rows' outputs back for the reversed classes.
	bt, _, _, _ := unetBatch(b, u, rows, 3)
	rx, rt := make([]float32, len(bt.x)), make([]float32, rows)
	for r := 0; r < rows; r++ {
		copy(rx[r*d:(r+1)*d], bt.x[(rows-1-r)*d:(rows-r)*d])
		rt[r] = bt.t[rows-1-r]
	}
	u.SetLabels(labelsBuf(b, 3, 2, 1, 0))
	vr, _, _ := unetRun(t, b, u, rows, upload(b, rx), upload(b, rt), e)
	for r := 0; r < rows; r++ {
		numtest.AllClose(t, fmt.Sprintf("row %d reversed", r), vr[(rows-1-r)*d:(rows-r)*d], v[r*d:(r+1)*d], 1e-6, 1e-5)
	}

	plain := randomUNet(t, b, unetConfig(2, 8, 8, 4, []int{1, 2}, 2, 2, true, 0), 4)
	v0, _, _ := unetRun(t, b, plain, rows, x, tb, e)
	plain.SetLabels(labelsBuf(b, 0, 1, 2, 3))
	v1, _, _ := unetRun(t, b, plain, rows, x, tb, e)
	if !slices.Equal(v0, v1) {
		t.Error("an unconditional network's output depends on the labels")
	}
}

// TestUNetVelocityVJP: Velocity is Forward with t in every row, VJP is
// Velocity then InputVJP.
func TestUNetVelocityVJP(t *testing.T) {
	b := newBackend(t)
	u := randomUNet(t, b, smallUNet, 5)
	const rows, tv = 3, 0.375
	_, x, _, e := unetBatch(b, u, rows, 4)
	tcol := upload(b, []float32{tv, tv, tv})
	want, _, wantW := unetRun(t, b, u, rows, x, tcol, e)
	d := u.Dim()
	v, w := b.Alloc(rows*d), b.Alloc(rows*d)
	u.Velocity(tv, rows, x, v)
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(hostData(t, v), want) {
		t.Error("Velocity differs from Forward with a constant t")
	}
	b.Fill(v, 0)
	u.VJP(tv, rows, x, e, v, w)
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(hostData(t, v), want) || !slices.Equal(hostData(t, w), wantW) {
		t.Error("VJP differs from Forward then InputVJP")
	}
}

// TestUNetReserveGrows: growing, shrinking (workspaces larger than
// needed), growing again and after Release, each result equals a fresh
// network's at that size.
func TestUNetReserveGrows(t *testing.T) {
	b := newBackend(t)
	grown := randomUNet(t, b, smallUNet, 6)
	grown.Reserve(2)
	for i, rows := range []int{1, 3, 7, 3, 9, 1, 9} {
		if i == 5 {
			grown.Release()
		}
		_, x, tb, e := unetBatch(b, grown, rows, uint64(i))
		fresh := randomUNet(t, b, smallUNet, 6)
		v, g, w := unetRun(t, b, fresh, rows, x, tb, e)
		gv, gg, gw := unetRun(t, b, grown, rows, x, tb, e)
		if !slices.Equal(v, gv) || !slices.Equal(g, gg) || !slices.Equal(w, gw) {
			t.Errorf("step %d, rows %d: differs from a fresh network's", i, rows)
		}
	}
}

// TestUNetBackwardContract: Backward overwrites grads, leaves dOut as it
// was, gives the same result twice and after an InputVJP; InputVJP does
// not touch the parameters' gradient.
func TestUNetBackwardContract(t *testing.T) {
	b := newBackend(t)
	u := randomUNet(t, b, smallUNet, 7)
	const rows = 3
	bt, x, tb, e := unetBatch(b, u, rows, 7)
	_, want, wantW := unetRun(t, b, u, rows, x, tb, e)
	g := b.Alloc(u.NumParams())
	b.Fill(g, float32(math.NaN()))
	w := b.Alloc(rows * u.Dim())
	u.Backward(e, g)
	u.InputVJP(e, w)
	u.Backward(e, g)
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(hostData(t, g), want) || !slices.Equal(hostData(t, w), wantW) {
		t.Error("Backward into a NaN-filled buffer, twice around an InputVJP, differs from one Backward")
	}
	if !slices.Equal(hostData(t, e), bt.tgt) {
		t.Error("Backward or InputVJP modified dOut")
	}
}

// TestUNetEmptyBatch: zero rows on a fresh network is a no-op forward, a
// zero gradient and an empty VJP.
func TestUNetEmptyBatch(t *testing.T) {
	b := newBackend(t)
	u := randomUNet(t, b, smallUNet, 8)
	empty := b.Alloc(0)
	u.Forward(0, empty, empty, empty)
	g := b.Alloc(u.NumParams())
	b.Fill(g, float32(math.NaN()))
	u.Backward(empty, g)
	u.InputVJP(empty, empty)
	randomUNet(t, b, smallUNet, 8).Velocity(0.5, 0, empty, empty)
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	numtest.AllClose(t, "gradient of an empty batch", hostData(t, g), make([]float32, u.NumParams()), 0, 0)
}

// TestUNetAllocs: after a warm-up, a training step's Forward and Backward
// and a sampler's VJP allocate nothing in the model (the CPU backend's
// own allocations, if any, are counted too).
func TestUNetAllocs(t *testing.T) {
	b := newBackend(t)
	u := randomUNet(t, b, smallUNet, 9)
	const rows = 8
	_, x, tb, e := unetBatch(b, u, rows, 9)
	u.SetLabels(labelsBuf(b, 0, 1, 2, 3, 0, 1, 2, 3))
	d := u.Dim()
	v, g, w := b.Alloc(rows*d), b.Alloc(u.NumParams()), b.Alloc(rows*d)
	step := func() {
		u.Forward(rows, tb, x, v)
		u.Backward(e, g)
		u.VJP(0.5, rows, x, e, v, w)
	}
	step()
	if allocs := testing.AllocsPerRun(5, step); allocs != 0 {
		t.Errorf("Forward+Backward+VJP: %.0f allocations per step, want 0", allocs)
	}
}
