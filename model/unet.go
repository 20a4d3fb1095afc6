package model

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/fmgpu/fmgpu/gpu"
)

// UNet is the velocity network for images, v(t, x, class) with rows of x
// flattened NCHW images (Dim = C*H*W): DDPM's U-Net (Ho et al. 2020) with
// a learned class embedding as in ADM (Dhariwal and Nichol 2021), small
// enough for the CPU. Tensors are named and laid out as in PyTorch
// (nn.Conv2d, nn.Linear, nn.GroupNorm, nn.Embedding).
//
//	emb   = Linear(SiLU(Linear(sinusoid(t)))) [+ label_embed[class]], width E = 4 Base
//	h     = conv3x3(x) to Base channels                      (skip 0)
//	down  level l (width Base*Mults[l]): ResBlocks residual blocks (each a
//	      skip), then a stride-2 conv3x3 except at the last level (a skip)
//	mid   residual block, self-attention (if Attention), residual block
//	up    level l from the last: ResBlocks+1 residual blocks on [h, skip]
//	      concatenated along channels, then nearest 2x upsampling and a
//	      conv3x3 except at level 0
//	v     = conv3x3(SiLU(GroupNorm(h))) to C channels
//
// A residual block from Cin to Cout channels is
//
//	h = conv3x3(SiLU(GroupNorm(x))) + Linear(SiLU(emb))   (a bias per image and channel)
//	y = skip(x) + conv3x3(SiLU(GroupNorm(h)))             (skip: 1x1 conv if Cin != Cout)
//
// and the attention block (one head over the H*W positions as tokens)
//
//	q, k, v = conv1x1(GroupNorm(x)) (one conv to 3C channels)
//	y = x + conv1x1(v softmax(q^T k / sqrt(C))^T)
//
// GroupNorm has Config.UNet.Groups groups and eps 1e-5 (PyTorch's
// default). The backward pass is written by hand over the Backend ops.
// Forward keeps, per block, the two GroupNorm outputs, the first
// convolution's output and the block's output; Backward recomputes the
// SiLUs and the up path's concatenations (elementwise work and copies) to
// keep the workspaces small: at 1x28x28, Base 32, Mults 1,2,2, one block a
// level, about 290 MB for 64 rows.
type UNet struct {
	cfg     Config
	b       gpu.Backend
	p       *unetPlan // shapes and tensor indices, shared with WithWeights
	params  gpu.Buffer
	pv      []gpu.Buffer // per tensor views of params
	labels  gpu.Buffer   // SetLabels' buffer; nil: the null class
	capRows int
	rows    int // rows of the last Forward

	// Workspaces for up to capRows rows, kept from one call to the next.
	acts    []wsBuf // stored activations, plan.acts per row each
	scratch [4]wsBuf
	emb     [embBufs]wsBuf // time and class embedding buffers
	nulls   wsBuf          // the null class, for nil labels
	tFill   wsBuf          // a constant time for Velocity
	junk    gpu.Buffer     // dgamma, dbeta of an InputVJP (no parameter gradient)
	owned   []gpu.Buffer
	subs    []subView // views at an offset (attention's k and v)

	gradsOf   gpu.Buffer
	gradViews []gpu.Buffer
}

// wsBuf is a workspace buffer and a few views of its first elements (one
// per row count met), so that steady-state calls allocate nothing.
type wsBuf struct {
	full  gpu.Buffer
	per   int // elements per row
	views []gpu.Buffer
}

// view returns the first n elements of w.
func (w *wsBuf) view(n int) gpu.Buffer {
	for _, v := range w.views {
		if v.Len() == n {
			return v
		}
	}
	if len(w.views) >= 8 {
		w.views = w.views[:0]
	}
	v := w.full.Slice(0, n)
	w.views = append(w.views, v)
	return v
}

// subView is parent.Slice(off, parent.Len()-off), cached.
type subView struct {
	parent gpu.Buffer
	off    int
	v      gpu.Buffer
}

// sub returns parent's elements from off on, reusing a cached view.
func (u *UNet) sub(parent gpu.Buffer, off int) gpu.Buffer {
	for _, s := range u.subs {
		if s.parent == parent && s.off == off {
			return s.v
		}
	}
	if len(u.subs) >= 32 {
		u.subs = u.subs[:0]
	}
	v := parent.Slice(off, parent.Len()-off)
	u.subs = append(u.subs, subView{parent, off, v})
	return v
}

func attnScale(c int) float32 { return float32(1 / math.Sqrt(float64(c))) }

// The embedding workspaces, each rows x the width given in Reserve.
const (
	eTemb0  = iota // sinusoidal features, rows x Tw
	ePre1          // first time layer pre-activation, rows x E
	eAct1          // its SiLU, rows x E
	eEmb           // the embedding, rows x E
	eSEmb          // SiLU(emb), the residual blocks' input, rows x E
	eDSEmb         // gradient of SiLU(emb), rows x E
	eDAct1         // gradient of eAct1, rows x E
	eOneHot        // one-hot labels, rows x (Classes + 1)
	eBias          // a block's channel bias (and its gradient), rows x widest
	embBufs
)

// unetEps is the GroupNorm epsilon (PyTorch's default).
const unetEps = 1e-5

// unetMaxWidth bounds every level's channel count.
const unetMaxWidth = 4096

// unetMaxTokens bounds the positions attention runs over (32x32).
const unetMaxTokens = 1024

// initKind is how Init draws a tensor.
type initKind uint8

const (
	initUniform initKind = iota // U(-1/sqrt(fan_in), 1/sqrt(fan_in))
	initZero
	initOne
	initNormal // N(0, 1): nn.Embedding
)

type convSpec struct {
	w int // weight tensor index; the bias is w+1
	s gpu.ConvShape
}

func (c convSpec) shape(rows int) gpu.ConvShape {
	s := c.s
	s.Batch = rows
	return s
}

type normSpec struct {
	g          int // gamma tensor index; beta is g+1
	s          gpu.GroupNormShape
	mean, rstd int // act ids, Groups per row
}

func (n normSpec) shape(rows int) gpu.GroupNormShape {
	s := n.s
	s.Batch = rows
	return s
}

type stepKind uint8

const (
	stepIn   stepKind = iota // input conv: x -> out
	stepRes                  // residual block: in (or [in, skip]) -> out
	stepDown                 // stride-2 conv: in -> out
	stepUp                   // upsample and conv: in -> out
	stepAttn                 // self-attention: in -> out
	stepOut                  // norm, SiLU, conv: in -> v
)

// step is one module of the forward pass, in order. Activations are act
// ids (plan.acts); -1 where absent.
type step struct {
	kind    stepKind
	in, out int
	cin     int // channels of the input (with the skip, for a cat block)
	cout    int
	hw      int // positions of the output (and input, except for up/down)
	inHW    int
	// A cat block's input is [in (catC channels), skip (skipC channels)],
	// and the skip's gradient goes to dskip.
	skip, dskip, catC, skipC int
	// outGrad: when the output is a skip, the act holding the gradient the
	// up path sent it, added before this step's backward.
	outGrad int

	conv   convSpec // the conv of in/down/up/out steps
	norm   normSpec // out step's and attention's norm
	norm1  normSpec // residual block
	conv1  convSpec
	emb    int // emb Linear weight index (bias emb+1), E -> cout
	h1     int // act: conv1 + channel bias
	n1     int // act: GroupNorm1(x)
	n2     int // act: GroupNorm2(h1)
	norm2  normSpec
	conv2  convSpec
	skipC1 *convSpec // 1x1 skip conv, nil for the identity

	// attention
	n, qkv, probs, o int // acts
	proj             convSpec
}

// unetPlan is everything about a U-Net configuration but its buffers.
type unetPlan struct {
	c        Config
	C, H, W  int
	E, Tw, K int
	tensors  []Tensor
	init     []initKind
	nParams  int
	acts     []int // per-row sizes of the stored activations
	scratch  int   // per-row size of each scratch buffer
	widest   int   // largest channel count (the channel bias buffer)
	maxNorm  int   // largest GroupNorm channel count
	steps    []step
	flops    int
	time0    int // tensor indices: time_embed.0.weight, .2.weight
	time2    int
	table    int // label_embed.weight, -1 when unconditional
	xin      int // act: a copy of the input
}

type planBuilder struct {
	p *unetPlan
}

func (bd *planBuilder) tensor(name string, kind initKind, shape ...int) int {
	p := bd.p
	t := Tensor{Name: name, Shape: shape, Offset: p.nParams}
	p.tensors = append(p.tensors, t)
	p.init = append(p.init, kind)
	p.nParams += t.Size()
	return len(p.tensors) - 1
}

func (bd *planBuilder) act(per int) int {
	bd.p.acts = append(bd.p.acts, per)
	bd.p.scratch = max(bd.p.scratch, per)
	return len(bd.p.acts) - 1
}

func (bd *planBuilder) conv(name string, cin, cout, k, stride, h, w int, zero bool) convSpec {
	kind := initUniform
	if zero {
		kind = initZero
	}
	wi := bd.tensor(name+".weight", kind, cout, cin, k, k)
	bd.tensor(name+".bias", kind, cout)
	s := gpu.ConvShape{InC: cin, H: h, W: w, OutC: cout, K: k, Stride: stride, Pad: k / 2}
	bd.p.flops += 2 * cout * cin * k * k * s.OutH() * s.OutW()
	bd.p.scratch = max(bd.p.scratch, cin*h*w, cout*s.OutH()*s.OutW())
	return convSpec{w: wi, s: s}
}

func (bd *planBuilder) norm(name string, c, hw int) normSpec {
	g := bd.tensor(name+".weight", initOne, c)
	bd.tensor(name+".bias", initZero, c)
	groups := bd.p.c.UNet.Groups
	bd.p.maxNorm = max(bd.p.maxNorm, c)
	return normSpec{g: g, s: gpu.GroupNormShape{C: c, HW: hw, Groups: groups, Eps: unetEps},
		mean: bd.act(groups), rstd: bd.act(groups)}
}

func (bd *planBuilder) linear(name string, in, out int) int {
	w := bd.tensor(name+".weight", initUniform, out, in)
	bd.tensor(name+".bias", initUniform, out)
	bd.p.flops += 2 * in * out
	return w
}

// res adds a residual block from cin to cout channels at h x w reading act
// in; its output act is returned in the step.
func (bd *planBuilder) res(name string, in, cin, cout, h, w int) step {
	hw := h * w
	s := step{kind: stepRes, in: in, cin: cin, cout: cout, hw: hw, inHW: hw, skip: -1, dskip: -1, outGrad: -1}
	s.norm1 = bd.norm(name+".norm1", cin, hw)
	s.n1 = bd.act(cin * hw)
	s.conv1 = bd.conv(name+".conv1", cin, cout, 3, 1, h, w, false)
	s.emb = bd.linear(name+".emb", bd.p.E, cout)
	s.h1 = bd.act(cout * hw)
	s.norm2 = bd.norm(name+".norm2", cout, hw)
	s.n2 = bd.act(cout * hw)
	s.conv2 = bd.conv(name+".conv2", cout, cout, 3, 1, h, w, true)
	if cin != cout {
		c := bd.conv(name+".skip", cin, cout, 1, 1, h, w, false)
		s.skipC1 = &c
	}
	s.out = bd.act(cout * hw)
	bd.p.widest = max(bd.p.widest, cout)
	return s
}

// planUNet lays out a validated configuration.
func planUNet(c Config) *unetPlan {
	u := c.UNet
	im := c.Image
	p := &unetPlan{c: c, C: im.Channels, H: im.Height, W: im.Width, E: 4 * u.Base, Tw: c.TimeEmbed.Width(), K: c.Classes, table: -1}
	bd := &planBuilder{p: p}
	p.time0 = bd.linear("time_embed.0", p.Tw, p.E)
	p.time2 = bd.linear("time_embed.2", p.E, p.E)
	if p.K > 0 {
		p.table = bd.tensor("label_embed.weight", initNormal, p.K+1, p.E)
		p.flops += 2 * (p.K + 1) * p.E
	}
	h, w := p.H, p.W
	p.xin = bd.act(p.C * h * w)
	in := step{kind: stepIn, in: -1, cin: p.C, cout: u.Base, hw: h * w, inHW: h * w, skip: -1, dskip: -1, outGrad: -1}
	in.conv = bd.conv("input", p.C, u.Base, 3, 1, h, w, false)
	in.out = bd.act(u.Base * h * w)
	p.steps = append(p.steps, in)

	type skipRef struct{ step, c int }
	skips := []skipRef{{0, u.Base}}
	ch, cur := u.Base, in.out
	last := len(u.Mults) - 1
	for l, m := range u.Mults {
		co := u.Base * m
		for j := 0; j < u.ResBlocks; j++ {
			s := bd.res(fmt.Sprintf("down.%d.res.%d", l, j), cur, ch, co, h, w)
			p.steps = append(p.steps, s)
			ch, cur = co, s.out
			skips = append(skips, skipRef{len(p.steps) - 1, ch})
		}
		if l < last {
			s := step{kind: stepDown, in: cur, cin: ch, cout: ch, inHW: h * w, skip: -1, dskip: -1, outGrad: -1}
			s.conv = bd.conv(fmt.Sprintf("down.%d.downsample", l), ch, ch, 3, 2, h, w, false)
			h, w = h/2, w/2
			s.hw = h * w
			s.out = bd.act(ch * h * w)
			p.steps = append(p.steps, s)
			cur = s.out
			skips = append(skips, skipRef{len(p.steps) - 1, ch})
		}
	}

	s := bd.res("mid.res.0", cur, ch, ch, h, w)
	p.steps = append(p.steps, s)
	cur = s.out
	if u.Attention {
		t := h * w
		a := step{kind: stepAttn, in: cur, cin: ch, cout: ch, hw: t, inHW: t, skip: -1, dskip: -1, outGrad: -1}
		a.norm = bd.norm("mid.attn.norm", ch, t)
		a.n = bd.act(ch * t)
		a.conv = bd.conv("mid.attn.qkv", ch, 3*ch, 1, 1, h, w, false)
		a.qkv = bd.act(3 * ch * t)
		a.probs = bd.act(t * t)
		a.o = bd.act(ch * t)
		a.proj = bd.conv("mid.attn.proj", ch, ch, 1, 1, h, w, true)
		a.out = bd.act(ch * t)
		p.flops += 4 * t * t * ch // q^T k and v P^T
		p.scratch = max(p.scratch, 3*ch*t, t*t)
		p.steps = append(p.steps, a)
		cur = a.out
	}
	s = bd.res("mid.res.1", cur, ch, ch, h, w)
	p.steps = append(p.steps, s)
	cur = s.out

	for l := last; l >= 0; l-- {
		co := u.Base * u.Mults[l]
		for j := 0; j <= u.ResBlocks; j++ {
			sk := skips[len(skips)-1]
			skips = skips[:len(skips)-1]
			s := bd.res(fmt.Sprintf("up.%d.res.%d", l, j), cur, ch+sk.c, co, h, w)
			s.skip, s.catC, s.skipC = p.steps[sk.step].out, ch, sk.c
			s.dskip = bd.act(sk.c * h * w)
			p.steps[sk.step].outGrad = s.dskip
			p.steps = append(p.steps, s)
			ch, cur = co, s.out
		}
		if l > 0 {
			s := step{kind: stepUp, in: cur, cin: ch, cout: ch, inHW: h * w, skip: -1, dskip: -1, outGrad: -1}
			h, w = 2*h, 2*w
			s.hw = h * w
			s.conv = bd.conv(fmt.Sprintf("up.%d.upsample", l), ch, ch, 3, 1, h, w, false)
			s.out = bd.act(ch * h * w)
			p.steps = append(p.steps, s)
			cur = s.out
		}
	}
	o := step{kind: stepOut, in: cur, cin: ch, cout: p.C, hw: h * w, inHW: h * w, out: -1, skip: -1, dskip: -1, outGrad: -1}
	o.norm = bd.norm("out.norm", ch, h*w)
	o.n = bd.act(ch * h * w)
	o.conv = bd.conv("out.conv", ch, p.C, 3, 1, h, w, true)
	p.steps = append(p.steps, o)
	return p
}

// validateUNet checks the image and U-Net settings of a "unet" Config
// (Validate has checked Dim, the time embedding and Classes).
func validateUNet(c Config) error {
	if len(c.Hidden) > 0 {
		return fmt.Errorf("a unet has no hidden widths (got %v)", c.Hidden)
	}
	im, u := c.Image, c.UNet
	if im == nil {
		return fmt.Errorf("a unet needs the image shape")
	}
	if u == nil {
		return fmt.Errorf("a unet needs its architecture (unet settings)")
	}
	if im.Channels < 1 || im.Channels > 4 {
		return fmt.Errorf("image channels %d outside 1..4", im.Channels)
	}
	if im.Height < 1 || im.Width < 1 {
		return fmt.Errorf("image size %dx%d: need at least 1x1", im.Height, im.Width)
	}
	if im.Channels*im.Height*im.Width != c.Dim {
		return fmt.Errorf("model dim %d is not channels*height*width = %d*%d*%d", c.Dim, im.Channels, im.Height, im.Width)
	}
	if c.TimeEmbed.Freqs < 1 {
		return fmt.Errorf("a unet needs a sinusoidal time embedding (freqs >= 1)")
	}
	if u.Base < 1 || u.Base > unetMaxWidth {
		return fmt.Errorf("unet base width %d outside 1..%d", u.Base, unetMaxWidth)
	}
	if len(u.Mults) < 1 || len(u.Mults) > 5 {
		return fmt.Errorf("unet needs 1 to 5 levels (channel multipliers), got %d", len(u.Mults))
	}
	for _, m := range u.Mults {
		if m < 1 || u.Base*m > unetMaxWidth {
			return fmt.Errorf("unet channel multiplier %d: need >= 1 and base*mult <= %d", m, unetMaxWidth)
		}
	}
	if u.ResBlocks < 1 || u.ResBlocks > 4 {
		return fmt.Errorf("unet residual blocks per level %d outside 1..4", u.ResBlocks)
	}
	if f := 1 << (len(u.Mults) - 1); im.Height%f != 0 || im.Width%f != 0 {
		return fmt.Errorf("image size %dx%d is not divisible by 2^%d (%d levels halve it %d times)", im.Height, im.Width, len(u.Mults)-1, len(u.Mults), len(u.Mults)-1)
	}
	if t := (im.Height >> (len(u.Mults) - 1)) * (im.Width >> (len(u.Mults) - 1)); u.Attention && t > unetMaxTokens {
		return fmt.Errorf("attention over %d positions at the lowest resolution (at most %d: its scores are positions^2 an image); add levels", t, unetMaxTokens)
	}
	if u.Groups < 1 || u.Base%u.Groups != 0 {
		return fmt.Errorf("group norm groups %d must divide the base width %d", u.Groups, u.Base)
	}
	for _, m := range u.Mults {
		if (u.Base*m)%u.Groups != 0 {
			return fmt.Errorf("group norm groups %d must divide every level width (%d)", u.Groups, u.Base*m)
		}
	}
	return nil
}

// unetTensorLayout is TensorLayout for a validated "unet" Config.
func unetTensorLayout(c Config) ([]Tensor, int, error) {
	p := planUNet(c)
	return p.tensors, p.nParams, nil
}

// newUNet is NewUNet as a Net (nil, not a nil *UNet, on error).
func newUNet(b gpu.Backend, c Config) (Net, error) {
	u, err := NewUNet(b, c)
	if err != nil {
		return nil, err
	}
	return u, nil
}

// NewUNet allocates a U-Net with zero parameters on b; call Init or load
// parameters before use.
func NewUNet(b gpu.Backend, c Config) (*UNet, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if c.Kind != KindUNet {
		return nil, fmt.Errorf("model kind %q is not unet", c.Kind)
	}
	u := &UNet{cfg: c, b: b, p: planUNet(c)}
	u.setParams(b.Alloc(u.p.nParams))
	return u, nil
}

func (u *UNet) setParams(p gpu.Buffer) {
	if p.Len() < u.p.nParams {
		panic(fmt.Sprintf("model: parameter buffer of %d elements, need %d", p.Len(), u.p.nParams))
	}
	u.params = p
	u.pv = u.pv[:0]
	for _, t := range u.p.tensors {
		u.pv = append(u.pv, p.Slice(t.Offset, t.Size()))
	}
}

// WithWeights returns a U-Net of the same shape that reads its weights from
// p, with workspaces of its own and the labels SetLabels last gave.
func (u *UNet) WithWeights(p gpu.Buffer) Net {
	c := &UNet{cfg: u.cfg, b: u.b, p: u.p, labels: u.labels}
	c.setParams(p)
	return c
}

func (u *UNet) Config() Config     { return u.cfg }
func (u *UNet) Dim() int           { return u.cfg.Dim }
func (u *UNet) NumParams() int     { return u.p.nParams }
func (u *UNet) Params() gpu.Buffer { return u.params }
func (u *UNet) Tensors() []Tensor  { return u.p.tensors }

// FLOPsPerRow counts 2 x the multiply-adds of one image's forward pass:
// the convolutions, the linear layers (time MLP, each block's embedding
// projection, the one-hot class product) and attention's two products.
// Elementwise work (GroupNorm, SiLU, softmax, the adds: some 15 flops an
// activation against 18 Cin for a 3x3 convolution's output, about 3% at
// Base 32) is left out. A training step costs about three times as much.
func (u *UNet) FLOPsPerRow() int { return u.p.flops }

// SetLabels sets the class labels of the following calls (see Net); an
// unconditional U-Net ignores them.
func (u *UNet) SetLabels(labels gpu.Buffer) { u.labels = labels }

// Init draws PyTorch's default initialization from a seeded generator:
// convolution and linear weights and biases uniform on ±1/sqrt(fan_in)
// (kaiming_uniform with a = sqrt(5)), GroupNorm scale 1 and shift 0, the
// class table N(0, 1) (nn.Embedding). As in DDPM, the last convolution of
// every residual branch (each block's conv2, attention's proj) and the
// output convolution start at zero: every block starts as its skip path and
// the network's output as 0.
func (u *UNet) Init(seed uint64) {
	r := rand.New(rand.NewPCG(seed, 0x756e6574696e6974)) // "unetinit"
	host := make([]float32, u.p.nParams)
	for i, t := range u.p.tensors {
		v := host[t.Offset : t.Offset+t.Size()]
		switch u.p.init[i] {
		case initOne:
			for j := range v {
				v[j] = 1
			}
		case initNormal:
			for j := range v {
				v[j] = float32(r.NormFloat64())
			}
		case initUniform:
			// A bias follows its weight and shares its fan-in.
			wt := t
			if len(t.Shape) == 1 {
				wt = u.p.tensors[i-1]
			}
			fanIn := wt.Size() / wt.Shape[0]
			bound := 1 / math.Sqrt(float64(fanIn))
			for j := range v {
				v[j] = float32((2*r.Float64() - 1) * bound)
			}
		}
	}
	u.b.Upload(u.params, host)
}

// Reserve makes the workspaces hold at least rows rows.
func (u *UNet) Reserve(rows int) {
	rows = max(rows, 1)
	if rows <= u.capRows {
		return
	}
	u.Release()
	alloc := func(w *wsBuf, per int) {
		w.full = u.b.Alloc(rows * per)
		w.per = per
		w.views = w.views[:0]
		u.owned = append(u.owned, w.full)
	}
	p := u.p
	if len(u.acts) != len(p.acts) {
		u.acts = make([]wsBuf, len(p.acts))
	}
	for i, per := range p.acts {
		alloc(&u.acts[i], per)
	}
	for i := range u.scratch {
		alloc(&u.scratch[i], p.scratch)
	}
	for i := range u.emb {
		per := p.E
		switch i {
		case eTemb0:
			per = p.Tw
		case eOneHot:
			per = p.K + 1
		case eBias:
			per = p.widest
		}
		alloc(&u.emb[i], per)
	}
	alloc(&u.nulls, 1)
	u.b.Fill(u.nulls.full, float32(p.K))
	alloc(&u.tFill, 1)
	u.junk = u.b.Alloc(2 * p.maxNorm)
	u.owned = append(u.owned, u.junk)
	u.capRows = rows
}

// Release frees the workspaces (parameters stay).
func (u *UNet) Release() {
	for _, buf := range u.owned {
		u.b.Free(buf)
	}
	u.owned, u.capRows, u.subs = nil, 0, u.subs[:0]
}

// a returns act id's view for the current rows.
func (u *UNet) a(id int) gpu.Buffer {
	w := &u.acts[id]
	return w.view(u.rows * w.per)
}

// e returns embedding buffer i's view for the current rows.
func (u *UNet) e(i int) gpu.Buffer {
	w := &u.emb[i]
	return w.view(u.rows * w.per)
}

// s returns scratch buffer i's view of per elements a row.
func (u *UNet) s(i, per int) gpu.Buffer { return u.scratch[i].view(u.rows * per) }

// w returns tensor i's parameter view.
func (u *UNet) w(i int) gpu.Buffer { return u.pv[i] }

// labelBuf is the label buffer of the current call.
func (u *UNet) labelBuf() gpu.Buffer {
	if u.labels != nil {
		return u.labels
	}
	return u.nulls.full
}

// Forward computes out = v(t, x, labels) for rows rows (t: rows, x and
// out: rows x Dim) and keeps what Backward and InputVJP need (x is copied).
func (u *UNet) Forward(rows int, t, x, out gpu.Buffer) {
	u.Reserve(rows)
	u.rows = rows
	if rows == 0 {
		return
	}
	b, p := u.b, u.p
	E := p.E

	// Time (and class) embedding. x = t with d = 0: the device backend
	// wants a non-nil x even when it reads none of it.
	temb0, pre1, act1, emb, semb := u.e(eTemb0), u.e(ePre1), u.e(eAct1), u.e(eEmb), u.e(eSEmb)
	b.EmbedInput(rows, 0, t, t, p.c.TimeEmbed, temb0)
	b.Linear(rows, p.Tw, E, temb0, p.Tw, u.w(p.time0), u.w(p.time0+1), gpu.ActSiLU, pre1, act1)
	b.Linear(rows, E, E, act1, E, u.w(p.time2), u.w(p.time2+1), gpu.ActNone, nil, emb)
	if p.table >= 0 {
		oh := u.e(eOneHot)
		b.OneHot(rows, p.K+1, u.labelBuf(), oh)
		b.Gemm(false, false, rows, E, p.K+1, 1, oh, p.K+1, u.w(p.table), E, 1, emb, E)
	}
	b.Activate(gpu.ActSiLU, emb, semb)

	// x is copied (rows*Dim elements of a buffer that may be longer).
	xin := u.a(p.xin)
	b.CopyChannels(rows, p.c.Dim, 1, x, 1, 0, xin, 1, 0)

	for i := range p.steps {
		st := &p.steps[i]
		switch st.kind {
		case stepIn:
			b.Conv2D(st.conv.shape(rows), xin, u.w(st.conv.w), u.w(st.conv.w+1), u.a(st.out))
		case stepRes:
			u.resForward(st)
		case stepDown:
			b.Conv2D(st.conv.shape(rows), u.a(st.in), u.w(st.conv.w), u.w(st.conv.w+1), u.a(st.out))
		case stepUp:
			up := u.s(0, st.cin*st.hw)
			hh, ww := st.conv.s.H/2, st.conv.s.W/2
			b.Upsample2x(rows, st.cin, hh, ww, u.a(st.in), up)
			b.Conv2D(st.conv.shape(rows), up, u.w(st.conv.w), u.w(st.conv.w+1), u.a(st.out))
		case stepAttn:
			u.attnForward(st)
		case stepOut:
			n, a := u.a(st.n), u.s(0, st.cin*st.hw)
			b.GroupNorm(st.norm.shape(rows), u.a(st.in), u.w(st.norm.g), u.w(st.norm.g+1), n, u.a(st.norm.mean), u.a(st.norm.rstd))
			b.Activate(gpu.ActSiLU, n, a)
			b.Conv2D(st.conv.shape(rows), a, u.w(st.conv.w), u.w(st.conv.w+1), out)
		}
	}
}

// resInput returns a residual block's input: its in act, or for a cat
// block [in, skip] built into scratch buffer i.
func (u *UNet) resInput(st *step, i int) gpu.Buffer {
	if st.skip < 0 {
		return u.a(st.in)
	}
	x := u.s(i, st.cin*st.hw)
	u.b.CopyChannels(u.rows, st.hw, st.catC, u.a(st.in), st.catC, 0, x, st.cin, 0)
	u.b.CopyChannels(u.rows, st.hw, st.skipC, u.a(st.skip), st.skipC, 0, x, st.cin, st.catC)
	return x
}

func (u *UNet) resForward(st *step) {
	b, rows := u.b, u.rows
	x := u.resInput(st, 1)
	n1, h1, n2, out := u.a(st.n1), u.a(st.h1), u.a(st.n2), u.a(st.out)
	a1 := u.s(0, st.cin*st.hw)
	b.GroupNorm(st.norm1.shape(rows), x, u.w(st.norm1.g), u.w(st.norm1.g+1), n1, u.a(st.norm1.mean), u.a(st.norm1.rstd))
	b.Activate(gpu.ActSiLU, n1, a1)
	b.Conv2D(st.conv1.shape(rows), a1, u.w(st.conv1.w), u.w(st.conv1.w+1), h1)
	eb := u.emb[eBias].view(rows * st.cout)
	b.Linear(rows, u.p.E, st.cout, u.e(eSEmb), u.p.E, u.w(st.emb), u.w(st.emb+1), gpu.ActNone, nil, eb)
	b.AddChannelBias(rows, st.cout, st.hw, h1, eb, h1)
	b.GroupNorm(st.norm2.shape(rows), h1, u.w(st.norm2.g), u.w(st.norm2.g+1), n2, u.a(st.norm2.mean), u.a(st.norm2.rstd))
	a2 := u.s(0, st.cout*st.hw)
	b.Activate(gpu.ActSiLU, n2, a2)
	b.Conv2D(st.conv2.shape(rows), a2, u.w(st.conv2.w), u.w(st.conv2.w+1), out)
	if st.skipC1 != nil {
		sk := u.s(0, st.cout*st.hw)
		b.Conv2D(st.skipC1.shape(rows), x, u.w(st.skipC1.w), u.w(st.skipC1.w+1), sk)
		b.Axpy(1, sk, out)
	} else {
		b.Axpy(1, x, out)
	}
}

// attnForward: with per image q, k, v the C x T blocks of qkv (stride 3CT),
// scores S = q^T k / sqrt(C) (T x T), P = softmax over each row of S,
// o = v P^T (C x T, NCHW again: no transposes), out = x + proj(o).
func (u *UNet) attnForward(st *step) {
	b, rows := u.b, u.rows
	c, t := st.cin, st.hw
	x, n, qkv, probs, o, out := u.a(st.in), u.a(st.n), u.a(st.qkv), u.a(st.probs), u.a(st.o), u.a(st.out)
	b.GroupNorm(st.norm.shape(rows), x, u.w(st.norm.g), u.w(st.norm.g+1), n, u.a(st.norm.mean), u.a(st.norm.rstd))
	b.Conv2D(st.conv.shape(rows), n, u.w(st.conv.w), u.w(st.conv.w+1), qkv)
	ct := c * t
	q, k, v := qkv, u.sub(qkv, ct), u.sub(qkv, 2*ct)
	b.GemmBatched(true, false, rows, t, t, c, attnScale(c), q, t, 3*ct, k, t, 3*ct, 0, probs, t, t*t)
	b.Softmax(rows*t, t, probs, probs)
	b.GemmBatched(false, true, rows, c, t, t, 1, v, t, 3*ct, probs, t, t*t, 0, o, t, ct)
	b.Conv2D(st.proj.shape(rows), o, u.w(st.proj.w), u.w(st.proj.w+1), out)
	b.Axpy(1, x, out)
}

// Backward writes into grads (laid out like Params) the gradient of a
// scalar loss whose gradient with respect to the last Forward's output is
// dOut (rows x Dim). dOut is not modified.
func (u *UNet) Backward(dOut, grads gpu.Buffer) { u.backward(dOut, grads, nil) }

// InputVJP writes w = e^T dv/dx per row for the last Forward (e, w: rows x
// Dim); t and the labels are held fixed.
func (u *UNet) InputVJP(e, w gpu.Buffer) { u.backward(e, nil, w) }

// Velocity is the sampler's field: v(t, x) with one t for every row.
func (u *UNet) Velocity(t float64, rows int, x, v gpu.Buffer) {
	u.Reserve(rows)
	tb := u.tFill.view(rows)
	u.b.Fill(tb, float32(t))
	u.Forward(rows, tb, x, v)
}

// VJP is Velocity followed by InputVJP: v = v(t, x), w = e^T dv/dx.
func (u *UNet) VJP(t float64, rows int, x, e, v, w gpu.Buffer) {
	u.Velocity(t, rows, x, v)
	u.InputVJP(e, w)
}

// g returns tensor i's view of the gradient buffer of the current Backward.
func (u *UNet) g(i int) gpu.Buffer { return u.gradViews[i] }

func (u *UNet) setGradViews(grads gpu.Buffer) {
	if grads == u.gradsOf {
		return
	}
	u.gradViews = u.gradViews[:0]
	for _, t := range u.p.tensors {
		u.gradViews = append(u.gradViews, grads.Slice(t.Offset, t.Size()))
	}
	u.gradsOf = grads
}

// normGrads returns where a GroupNorm's dgamma and dbeta go: the gradient
// views, or scratch when no parameter gradient is wanted.
func (u *UNet) normGrads(n normSpec, grads bool) (gpu.Buffer, gpu.Buffer) {
	if grads {
		return u.g(n.g), u.g(n.g + 1)
	}
	return u.junk, u.sub(u.junk, u.p.maxNorm)
}

// backward runs the backward pass from dOut, writing the parameter
// gradient into grads and the input gradient into dx where not nil. The
// gradient of the current step's output is in scratch buffer cur (0 or
// 1); a step writes its input's gradient into the other one (or, for a cat
// block, splits it into cur and the skip's gradient buffer); scratch 2 and
// 3 are temporaries.
func (u *UNet) backward(dOut, grads, dx gpu.Buffer) {
	b, p, rows := u.b, u.p, u.rows
	g := grads != nil
	if rows == 0 {
		if g {
			b.Fill(grads, 0) // the gradient of an empty sum
		}
		return
	}
	if g {
		u.setGradViews(grads)
		b.Fill(u.e(eDSEmb), 0)
	}
	cur := 0
	for i := len(p.steps) - 1; i >= 0; i-- {
		st := &p.steps[i]
		if st.outGrad >= 0 {
			b.Axpy(1, u.a(st.outGrad), u.s(cur, st.cout*st.hw))
		}
		switch st.kind {
		case stepOut:
			nIn := st.cin * st.hw
			n, t1 := u.a(st.n), u.s(2, nIn)
			cs := st.conv.shape(rows)
			if g {
				b.Activate(gpu.ActSiLU, n, t1)
				b.Conv2DBackwardFilter(cs, t1, dOut, u.g(st.conv.w), u.g(st.conv.w+1))
			}
			b.Conv2DBackwardData(cs, dOut, u.w(st.conv.w), t1)
			b.BiasActBackward(gpu.ActSiLU, 1, rows*nIn, t1, n, t1, nil)
			dg, db := u.normGrads(st.norm, g)
			b.GroupNormBackward(st.norm.shape(rows), t1, u.a(st.in), u.w(st.norm.g), u.a(st.norm.mean), u.a(st.norm.rstd), u.s(0, nIn), dg, db)
			cur = 0
		case stepRes:
			cur = u.resBackward(st, cur, g)
		case stepAttn:
			cur = u.attnBackward(st, cur, g)
		case stepDown:
			cs := st.conv.shape(rows)
			dy := u.s(cur, st.cout*st.hw)
			if g {
				b.Conv2DBackwardFilter(cs, u.a(st.in), dy, u.g(st.conv.w), u.g(st.conv.w+1))
			}
			b.Conv2DBackwardData(cs, dy, u.w(st.conv.w), u.s(1-cur, st.cin*st.inHW))
			cur = 1 - cur
		case stepUp:
			cs := st.conv.shape(rows)
			hh, ww := cs.H/2, cs.W/2
			dy, up := u.s(cur, st.cout*st.hw), u.s(2, st.cin*st.hw)
			if g {
				b.Upsample2x(rows, st.cin, hh, ww, u.a(st.in), up)
				b.Conv2DBackwardFilter(cs, up, dy, u.g(st.conv.w), u.g(st.conv.w+1))
			}
			b.Conv2DBackwardData(cs, dy, u.w(st.conv.w), up)
			b.Upsample2xBackward(rows, st.cin, hh, ww, up, u.s(1-cur, st.cin*st.inHW))
			cur = 1 - cur
		case stepIn:
			cs := st.conv.shape(rows)
			dy := u.s(cur, st.cout*st.hw)
			if g {
				b.Conv2DBackwardFilter(cs, u.a(p.xin), dy, u.g(st.conv.w), u.g(st.conv.w+1))
			}
			if dx != nil {
				b.Conv2DBackwardData(cs, dy, u.w(st.conv.w), dx)
			}
		}
	}
	if g {
		u.embedBackward()
	}
}

// resBackward takes the block output's gradient from scratch cur and
// returns the scratch index holding its input's (see backward).
func (u *UNet) resBackward(st *step, cur int, g bool) int {
	b, p, rows := u.b, u.p, u.rows
	nOut, nIn := st.cout*st.hw, st.cin*st.hw
	dy, dxb := u.s(cur, nOut), u.s(1-cur, nIn)
	n1, h1, n2 := u.a(st.n1), u.a(st.h1), u.a(st.n2)

	// y = skip(x) + conv2(SiLU(n2)), n2 = GroupNorm2(h1)
	c2 := st.conv2.shape(rows)
	t := u.s(2, nOut)
	if g {
		b.Activate(gpu.ActSiLU, n2, t)
		b.Conv2DBackwardFilter(c2, t, dy, u.g(st.conv2.w), u.g(st.conv2.w+1))
	}
	b.Conv2DBackwardData(c2, dy, u.w(st.conv2.w), t)
	b.BiasActBackward(gpu.ActSiLU, 1, rows*nOut, t, n2, t, nil)
	dh1 := u.s(3, nOut)
	dg, db := u.normGrads(st.norm2, g)
	b.GroupNormBackward(st.norm2.shape(rows), t, h1, u.w(st.norm2.g), u.a(st.norm2.mean), u.a(st.norm2.rstd), dh1, dg, db)

	// h1 = conv1(SiLU(n1)) + (SiLU(emb) W_emb^T + b_emb) per channel
	if g {
		E := p.E
		deb := u.emb[eBias].view(rows * st.cout)
		b.ChannelSum(rows, st.cout, st.hw, dh1, deb)
		b.BiasActBackward(gpu.ActNone, rows, st.cout, deb, nil, deb, u.g(st.emb+1))
		b.Gemm(true, false, st.cout, E, rows, 1, deb, st.cout, u.e(eSEmb), E, 0, u.g(st.emb), E)
		b.Gemm(false, false, rows, E, st.cout, 1, deb, st.cout, u.w(st.emb), E, 1, u.e(eDSEmb), E)
	}
	c1 := st.conv1.shape(rows)
	t = u.s(2, nIn)
	if g {
		b.Activate(gpu.ActSiLU, n1, t)
		b.Conv2DBackwardFilter(c1, t, dh1, u.g(st.conv1.w), u.g(st.conv1.w+1))
	}
	b.Conv2DBackwardData(c1, dh1, u.w(st.conv1.w), t)
	b.BiasActBackward(gpu.ActSiLU, 1, rows*nIn, t, n1, t, nil)

	// n1 = GroupNorm1(x), x rebuilt for a cat block (dh1 is spent)
	x := u.resInput(st, 3)
	dg, db = u.normGrads(st.norm1, g)
	b.GroupNormBackward(st.norm1.shape(rows), t, x, u.w(st.norm1.g), u.a(st.norm1.mean), u.a(st.norm1.rstd), dxb, dg, db)
	if st.skipC1 != nil {
		cs := st.skipC1.shape(rows)
		if g {
			b.Conv2DBackwardFilter(cs, x, dy, u.g(st.skipC1.w), u.g(st.skipC1.w+1))
		}
		b.Conv2DBackwardData(cs, dy, u.w(st.skipC1.w), t)
		b.Axpy(1, t, dxb)
	} else {
		b.Axpy(1, dy, dxb)
	}
	if st.skip < 0 {
		return 1 - cur
	}
	// Split [dh, dskip]: dh continues in cur (dy is spent).
	b.CopyChannels(rows, st.hw, st.catC, dxb, st.cin, 0, u.s(cur, st.catC*st.hw), st.catC, 0)
	b.CopyChannels(rows, st.hw, st.skipC, dxb, st.cin, st.catC, u.a(st.dskip), st.skipC, 0)
	return cur
}

// attnBackward is attnForward's backward (see backward for cur).
func (u *UNet) attnBackward(st *step, cur int, g bool) int {
	b, rows := u.b, u.rows
	c, t := st.cin, st.hw
	ct, tt := c*t, t*t
	dy := u.s(cur, ct)
	qkv, probs := u.a(st.qkv), u.a(st.probs)
	q, k, v := qkv, u.sub(qkv, ct), u.sub(qkv, 2*ct)

	// out = x + proj(o)
	ps := st.proj.shape(rows)
	if g {
		b.Conv2DBackwardFilter(ps, u.a(st.o), dy, u.g(st.proj.w), u.g(st.proj.w+1))
	}
	do := u.s(2, ct)
	b.Conv2DBackwardData(ps, dy, u.w(st.proj.w), do)

	// o = v P^T: dv = do P, dP = do^T v
	dqkv := u.s(3, 3*ct)
	dq, dk, dv := dqkv, u.sub(dqkv, ct), u.sub(dqkv, 2*ct)
	b.GemmBatched(false, false, rows, c, t, t, 1, do, t, ct, probs, t, tt, 0, dv, t, 3*ct)
	dP := u.s(1-cur, tt)
	b.GemmBatched(true, false, rows, t, t, c, 1, do, t, ct, v, t, 3*ct, 0, dP, t, tt)
	// P = softmax(S), S = scale q^T k: dq = scale k dS^T, dk = scale q dS
	b.SoftmaxBackward(rows*t, t, probs, dP, dP)
	scale := attnScale(c)
	b.GemmBatched(false, true, rows, c, t, t, scale, k, t, 3*ct, dP, t, tt, 0, dq, t, 3*ct)
	b.GemmBatched(false, false, rows, c, t, t, scale, q, t, 3*ct, dP, t, tt, 0, dk, t, 3*ct)

	// qkv = conv(n), n = GroupNorm(x)
	qs := st.conv.shape(rows)
	if g {
		b.Conv2DBackwardFilter(qs, u.a(st.n), dqkv, u.g(st.conv.w), u.g(st.conv.w+1))
	}
	b.Conv2DBackwardData(qs, dqkv, u.w(st.conv.w), do)
	dxb := u.s(1-cur, ct)
	dg, db := u.normGrads(st.norm, g)
	b.GroupNormBackward(st.norm.shape(rows), do, u.a(st.in), u.w(st.norm.g), u.a(st.norm.mean), u.a(st.norm.rstd), dxb, dg, db)
	b.Axpy(1, dy, dxb)
	return 1 - cur
}

// embedBackward takes the gradient of SiLU(emb) the blocks accumulated to
// the time MLP's and the class table's parameters.
func (u *UNet) embedBackward() {
	b, p, rows := u.b, u.p, u.rows
	E := p.E
	demb := u.e(eDSEmb)
	// emb = act1 W2^T + b2 [+ onehot table]; demb in place.
	b.BiasActBackward(gpu.ActSiLU, rows, E, demb, u.e(eEmb), demb, u.g(p.time2+1))
	if p.table >= 0 {
		b.Gemm(true, false, p.K+1, E, rows, 1, u.e(eOneHot), p.K+1, demb, E, 0, u.g(p.table), E)
	}
	b.Gemm(true, false, E, E, rows, 1, demb, E, u.e(eAct1), E, 0, u.g(p.time2), E)
	dact1 := u.e(eDAct1)
	b.Gemm(false, false, rows, E, E, 1, demb, E, u.w(p.time2), E, 0, dact1, E)
	// act1 = SiLU(temb0 W0^T + b0)
	b.BiasActBackward(gpu.ActSiLU, rows, E, dact1, u.e(ePre1), dact1, u.g(p.time0+1))
	b.Gemm(true, false, E, p.Tw, rows, 1, dact1, E, u.e(eTemb0), p.Tw, 0, u.g(p.time0), p.Tw)
}
