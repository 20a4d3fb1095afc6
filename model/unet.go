package model

import (
	"fmt"
	"slices"
	"strings"

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
// The blocks (unet_blocks.go) are layers run in a chain; a block's output
// that is also a skip receives, in the backward pass, the gradient the up
// path's block sent it. GroupNorm has Config.UNet.Groups groups and eps
// 1e-5 (PyTorch's default). The backward pass is written by hand over the
// Backend ops. Forward keeps, per residual block, the two GroupNorm
// outputs, the first convolution's output and the block's output;
// Backward recomputes the SiLUs and the up path's concatenations
// (elementwise work and copies) to keep the workspaces small.
type UNet struct {
	cfg     Config
	b       gpu.Backend
	params  *paramSet
	flops   int
	weights gpu.Buffer
	wv, gv  tensorViews // views of the weights and of the last gradient buffer
	labels  gpu.Buffer  // SetLabels' buffer; nil: the null class
	rows    int         // rows of the last Forward
	// drop is SetDropout's draw (nil: off); lastDrop the last Forward's,
	// which its Backward and InputVJP reuse (nil for Velocity's).
	drop, lastDrop *gpu.DropoutDraw

	cond  *embedding
	nodes []node
	xin   *workspace    // a copy of the input
	grad  [2]*workspace // the backward pass's gradients between nodes
	nulls *workspace    // the null class, for nil labels
	tFill *workspace    // a constant time for Velocity
	ws    workspaces
	pass  pass
}

// node is a layer of the U-Net's chain and its stored input and output.
type node struct {
	layer
	in, out *workspace // out nil: the network's output
	// skipGrad, when this output is also a later block's skip input, is
	// where that block leaves the skip's gradient.
	skipGrad *workspace
}

// unetEps is the GroupNorm epsilon (PyTorch's default).
const unetEps = 1e-5

// unetMaxWidth bounds every level's channel count.
const unetMaxWidth = 4096

// unetMaxTokens bounds the positions attention runs over (32x32).
const unetMaxTokens = 1024

// unetBuilder makes the layers of a U-Net, adding their tensors and
// workspaces in order.
type unetBuilder struct {
	c       Config
	params  *paramSet
	ws      *workspaces
	flops   int
	maxNorm int // the widest GroupNorm: the discarded dgamma and dbeta
	// dropLayers counts the dropout layers so far: each draws its masks
	// from a Philox stream of its own.
	dropLayers uint32
}

func (bd *unetBuilder) conv(name string, cin, cout, k, stride, h, w int, zero bool) *conv {
	wi, bi := bd.params.weightBias(name, zero, cout, cin, k, k)
	s := gpu.ConvShape{InC: cin, H: h, W: w, OutC: cout, K: k, Stride: stride, Pad: k / 2}
	bd.flops += 2 * cout * cin * k * k * s.OutH() * s.OutW()
	return &conv{w: wi, b: bi, shape: s}
}

func (bd *unetBuilder) norm(name string, c, hw int) groupNorm {
	g := bd.params.add(name+".weight", initOne, 0, c)
	b := bd.params.add(name+".bias", initZero, 0, c)
	groups := bd.c.UNet.Groups
	bd.maxNorm = max(bd.maxNorm, c)
	return groupNorm{gamma: g, beta: b, shape: gpu.GroupNormShape{C: c, HW: hw, Groups: groups, Eps: unetEps},
		mean: bd.ws.stored(name+".mean", groups), rstd: bd.ws.stored(name+".rstd", groups)}
}

func (bd *unetBuilder) dense(name string, in, out int) dense {
	w, b := bd.params.weightBias(name, false, out, in)
	bd.flops += 2 * in * out
	return dense{w: w, b: b, in: in, out: out}
}

// normSiLUConv adds GroupNorm norm of cin channels and conv conv to cout
// at h x w.
func (bd *unetBuilder) normSiLUConv(norm, conv string, cin, cout, h, w int, zero bool) normSiLUConv {
	l := normSiLUConv{norm: bd.norm(norm, cin, h*w), inC: cin * h * w}
	l.a = bd.ws.stored(norm+".silu", cin*h*w)
	l.conv = bd.conv(conv, cin, cout, 3, 1, h, w, zero)
	return l
}

func (bd *unetBuilder) embedding() *embedding {
	c := bd.c
	E, tw := 4*c.UNet.Base, c.TimeEmbed.Width()
	e := &embedding{te: c.TimeEmbed, width: E, table: -1, tableRows: c.Classes + 1}
	e.time0 = bd.dense("time_embed.0", tw, E)
	e.time2 = bd.dense("time_embed.2", E, E)
	if c.Classes > 0 {
		e.table = bd.params.add("label_embed.weight", initNormal, 0, e.tableRows, E)
		bd.flops += 2 * e.tableRows * E
	}
	ws := bd.ws
	e.sinus, e.pre1, e.act1, e.emb = ws.stored("embed.sinus", tw), ws.stored("embed.pre1", E), ws.stored("embed.act1", E), ws.stored("embed.emb", E)
	e.onehot = ws.stored("embed.onehot", e.tableRows)
	e.silu, e.dsilu = ws.stored("embed.silu", E), ws.stored("embed.dsilu", E)
	ws.layer()
	e.dact1 = ws.temp("embed.dact1", E)
	return e
}

// res adds a residual block from cin to cout channels at h x w; cat, when
// not nil, makes its input [x, cat.skip].
func (bd *unetBuilder) res(name string, cond *embedding, cat *concat, cin, cout, h, w int) *resBlock {
	hw := h * w
	r := &resBlock{cond: cond, cat: cat, cin: cin, cout: cout, hw: hw}
	r.in1 = bd.normSiLUConv(name+".norm1", name+".conv1", cin, cout, h, w, false)
	r.emb = bd.dense(name+".emb", cond.width, cout)
	r.h = bd.ws.stored(name+".h", cout*hw)
	r.in2 = bd.normSiLUConv(name+".norm2", name+".conv2", cout, cout, h, w, true)
	if p := bd.c.UNet.Dropout; p > 0 {
		r.in2.drop = &dropout{p: float32(p), layer: bd.dropLayers}
		bd.dropLayers++
	}
	if cin != cout {
		r.skip = bd.conv(name+".skip", cin, cout, 1, 1, h, w, false)
	}
	ws := bd.ws
	ws.layer()
	nIn, nOut := cin*hw, cout*hw
	r.act = ws.temp(name+".act", max(nIn, nOut))
	r.bias = ws.temp(name+".bias", cout)
	if cat != nil {
		cat.x = bd.ws.stored(name+".cat", nIn)
		r.hid = ws.temp(name+".hid", nOut)
		r.dcat = ws.temp(name+".dcat", nIn)
	} else {
		r.hid = ws.temp(name+".hid", nOut)
	}
	return r
}

func (bd *unetBuilder) attention(name string, c, h, w int) *attention {
	t := h * w
	heads := bd.c.UNet.HeadCount()
	a := &attention{c: c, t: t, heads: heads}
	a.norm = bd.norm(name+".norm", c, t)
	a.qkv = bd.conv(name+".qkv", c, 3*c, 1, 1, h, w, false)
	a.proj = bd.conv(name+".proj", c, c, 1, 1, h, w, true)
	bd.flops += 4 * t * t * c // q^T k and v P^T
	ws := bd.ws
	a.n, a.q, a.probs, a.o = ws.stored(name+".n", c*t), ws.stored(name+".qkv", 3*c*t), ws.stored(name+".probs", heads*t*t), ws.stored(name+".o", c*t)
	ws.layer()
	a.dO, a.dQKV, a.dP = ws.temp(name+".dO", c*t), ws.temp(name+".dQKV", 3*c*t), ws.temp(name+".dP", heads*t*t)
	return a
}

// buildUNet lays out a validated configuration: the layers, tensors and
// workspaces, with no buffer allocated.
func buildUNet(c Config) *UNet {
	u := &UNet{cfg: c, params: &paramSet{}}
	bd := &unetBuilder{c: c, params: u.params, ws: &u.ws}
	ws := &u.ws
	base, im := c.UNet.Base, c.Image
	h, w := im.Height, im.Width
	u.cond = bd.embedding()

	// add appends a node reading the last one's output (the input's copy
	// for the first) and returns its index.
	u.xin = ws.stored("input.x", im.Channels*h*w)
	add := func(name string, l layer, outPer int) int {
		in := u.xin
		if len(u.nodes) > 0 {
			in = u.nodes[len(u.nodes)-1].out
		}
		n := node{layer: l, in: in}
		if outPer > 0 {
			n.out = ws.stored(name+".out", outPer)
		}
		u.nodes = append(u.nodes, n)
		return len(u.nodes) - 1
	}

	type skipRef struct{ node, c int }
	skips := []skipRef{{add("input", bd.conv("input", im.Channels, base, 3, 1, h, w, false), base*h*w), base}}
	ch := base
	last := len(c.UNet.Mults) - 1
	for l, m := range c.UNet.Mults {
		co := base * m
		attn := slices.Contains(c.UNet.AttentionRes, h)
		for j := 0; j < c.UNet.ResBlocks; j++ {
			name := fmt.Sprintf("down.%d.res.%d", l, j)
			i := add(name, bd.res(name, u.cond, nil, ch, co, h, w), co*h*w)
			if attn {
				an := fmt.Sprintf("down.%d.attn.%d", l, j)
				i = add(an, bd.attention(an, co, h, w), co*h*w)
			}
			skips = append(skips, skipRef{i, co})
			ch = co
		}
		if l < last {
			name := fmt.Sprintf("down.%d.downsample", l)
			down := bd.conv(name, ch, ch, 3, 2, h, w, false)
			h, w = h/2, w/2
			skips = append(skips, skipRef{add(name, down, ch*h*w), ch})
		}
	}

	add("mid.res.0", bd.res("mid.res.0", u.cond, nil, ch, ch, h, w), ch*h*w)
	if c.UNet.Attention {
		add("mid.attn", bd.attention("mid.attn", ch, h, w), ch*h*w)
	}
	add("mid.res.1", bd.res("mid.res.1", u.cond, nil, ch, ch, h, w), ch*h*w)

	for l := last; l >= 0; l-- {
		co := base * c.UNet.Mults[l]
		for j := 0; j <= c.UNet.ResBlocks; j++ {
			sk := skips[len(skips)-1]
			skips = skips[:len(skips)-1]
			name := fmt.Sprintf("up.%d.res.%d", l, j)
			cat := &concat{skip: u.nodes[sk.node].out, xC: ch, skipC: sk.c, hw: h * w}
			cat.dskip = ws.stored(name+".dskip", sk.c*h*w)
			u.nodes[sk.node].skipGrad = cat.dskip
			add(name, bd.res(name, u.cond, cat, ch+sk.c, co, h, w), co*h*w)
			if slices.Contains(c.UNet.AttentionRes, h) {
				an := fmt.Sprintf("up.%d.attn.%d", l, j)
				add(an, bd.attention(an, co, h, w), co*h*w)
			}
			ch = co
		}
		if l > 0 {
			name := fmt.Sprintf("up.%d.upsample", l)
			up := &upsample{c: ch, h: h, w: w}
			h, w = 2*h, 2*w
			up.conv = bd.conv(name, ch, ch, 3, 1, h, w, false)
			ws.layer()
			up.up = ws.temp(name+".up", ch*h*w)
			add(name, up, ch*h*w)
		}
	}
	head := &outputHead{normSiLUConv: bd.normSiLUConv("out.norm", "out.conv", ch, im.Channels, h, w, true)}
	ws.layer()
	head.act = ws.temp("out.act", ch*h*w)
	add("out", head, 0)

	flow := 0
	for _, n := range u.nodes {
		flow = max(flow, n.in.per)
	}
	u.grad = [2]*workspace{ws.stored("grad.0", flow), ws.stored("grad.1", flow)}
	u.nulls = ws.stored("labels.null", 1)
	u.tFill = ws.stored("velocity.t", 1)
	u.pass.discard = ws.fixedSize("discard", 2*bd.maxNorm)
	u.flops = bd.flops
	return u
}

// unetTensorLayout is TensorLayout for a validated "unet" Config.
func unetTensorLayout(c Config) ([]Tensor, int, error) {
	p := buildUNet(c).params
	return p.tensors, p.size, nil
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
	u := buildUNet(c)
	u.b = b
	u.setWeights(b.Alloc(u.params.size))
	return u, nil
}

func (u *UNet) setWeights(p gpu.Buffer) {
	u.pass.w = u.wv.bind(p, u.params)
	u.weights = p
}

// WithWeights returns a U-Net of the same shape that reads its weights from
// p, with workspaces of its own and the labels SetLabels last gave.
func (u *UNet) WithWeights(p gpu.Buffer) Net {
	c := buildUNet(u.cfg)
	c.b, c.labels = u.b, u.labels
	c.setWeights(p)
	return c
}

func (u *UNet) Config() Config     { return u.cfg }
func (u *UNet) Dim() int           { return u.cfg.Dim }
func (u *UNet) NumParams() int     { return u.params.size }
func (u *UNet) Params() gpu.Buffer { return u.weights }
func (u *UNet) Tensors() []Tensor  { return u.params.tensors }

// FLOPsPerRow counts 2 x the multiply-adds of one image's forward pass:
// the convolutions, the linear layers (time MLP, each block's embedding
// projection, the one-hot class product) and attention's two products.
// Elementwise work (GroupNorm, SiLU, softmax, the adds: some 15 flops an
// activation against 18 Cin for a 3x3 convolution's output, about 3% at
// Base 32) is left out. A training step costs about three times as much.
func (u *UNet) FLOPsPerRow() int { return u.flops }

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
	u.b.Upload(u.weights, u.params.initial(seed, 0x756e6574696e6974)) // "unetinit"
}

// Reserve makes the workspaces hold at least rows rows.
func (u *UNet) Reserve(rows int) {
	if u.ws.reserve(u.b, rows) {
		u.b.Fill(u.nulls.buf, float32(u.cfg.Classes))
	}
}

// Release frees the workspaces (parameters stay).
func (u *UNet) Release() { u.ws.release(u.b) }

// begin readies the pass of a call over rows rows; grads nil: no parameter
// gradient.
func (u *UNet) begin(rows int, grads gpu.Buffer) *pass {
	p := &u.pass
	p.b, p.rows = u.b, rows
	p.g = u.gv.bind(grads, u.params)
	p.drop = u.lastDrop
	return p
}

// SetDropout turns the dropout layers (Config.UNet.Dropout) on for the
// following Forward calls, and the Backward and InputVJP after each, with
// masks from d (its Layer field is each layer's own); nil turns them off.
// Velocity and VJP never drop: they are the sampler's field.
func (u *UNet) SetDropout(d *gpu.DropoutDraw) {
	if d == nil {
		u.drop = nil
		return
	}
	c := *d
	u.drop = &c
}

// Forward computes out = v(t, x, labels) for rows rows (t: rows, x and
// out: rows x Dim) and keeps what Backward and InputVJP need (x is copied).
func (u *UNet) Forward(rows int, t, x, out gpu.Buffer) { u.forward(rows, t, x, out, u.drop) }

// forward is Forward with the dropout draw drop (nil: none).
func (u *UNet) forward(rows int, t, x, out gpu.Buffer, drop *gpu.DropoutDraw) {
	u.Reserve(rows)
	u.lastDrop = drop
	u.rows = rows
	if rows == 0 {
		return
	}
	p := u.begin(rows, nil)
	labels := u.labels
	if labels == nil {
		labels = u.nulls.at(rows)
	}
	u.cond.Forward(p, t, labels)
	// x is copied (rows*Dim elements of a buffer that may be longer).
	u.b.CopyChannels(rows, u.cfg.Dim, 1, x, 1, 0, u.xin.at(rows), 1, 0)
	for i := range u.nodes {
		n := &u.nodes[i]
		y := out
		if n.out != nil {
			y = n.out.at(rows)
		}
		n.Forward(p, n.in.at(rows), y)
	}
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
	tb := u.tFill.at(rows)
	u.b.Fill(tb, float32(t))
	u.forward(rows, tb, x, v, nil)
}

// VJP is Velocity followed by InputVJP: v = v(t, x), w = e^T dv/dx.
func (u *UNet) VJP(t float64, rows int, x, e, v, w gpu.Buffer) {
	u.Velocity(t, rows, x, v)
	u.InputVJP(e, w)
}

// backward runs the chain backward from dOut, writing the parameter
// gradient into grads and the input gradient into dx where not nil. The
// gradient between two nodes alternates between the two grad workspaces.
func (u *UNet) backward(dOut, grads, dx gpu.Buffer) {
	rows := u.rows
	if rows == 0 {
		if grads != nil {
			u.b.Fill(grads, 0) // the gradient of an empty sum
		}
		return
	}
	p := u.begin(rows, grads)
	if p.grads() {
		u.b.Fill(u.cond.dsilu.at(rows), 0)
	}
	dy, next := dOut, 0
	for i := len(u.nodes) - 1; i >= 0; i-- {
		n := &u.nodes[i]
		if n.skipGrad != nil {
			u.b.Axpy(1, n.skipGrad.at(rows), dy)
		}
		din := dx
		if i > 0 {
			din = u.grad[next].view(rows, n.in.per)
			next = 1 - next
		}
		n.Backward(p, n.in.at(rows), dy, din)
		dy = din
	}
	if p.grads() {
		u.cond.Backward(p)
	}
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
		return fieldErrorf([]string{"image.channels"}, "image channels %d outside 1..4", im.Channels)
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
		return fieldErrorf([]string{"unet.base"}, "unet base width %d outside 1..%d", u.Base, unetMaxWidth)
	}
	if len(u.Mults) < 1 || len(u.Mults) > 5 {
		return fieldErrorf([]string{"unet.mults"}, "unet needs 1 to 5 levels (channel multipliers), got %d", len(u.Mults))
	}
	for _, m := range u.Mults {
		if m < 1 || u.Base*m > unetMaxWidth {
			return fieldErrorf([]string{"unet.mults", "unet.base"}, "unet channel multiplier %d: need >= 1 and base*mult <= %d", m, unetMaxWidth)
		}
	}
	if u.ResBlocks < 1 || u.ResBlocks > 4 {
		return fieldErrorf([]string{"unet.res_blocks"}, "unet residual blocks per level %d outside 1..4", u.ResBlocks)
	}
	if f := 1 << (len(u.Mults) - 1); im.Height%f != 0 || im.Width%f != 0 {
		return fieldErrorf([]string{"unet.mults", "image.size"}, "image size %dx%d is not divisible by 2^%d (%d levels halve it %d times)", im.Height, im.Width, len(u.Mults)-1, len(u.Mults), len(u.Mults)-1)
	}
	if t := (im.Height >> (len(u.Mults) - 1)) * (im.Width >> (len(u.Mults) - 1)); u.Attention && t > unetMaxTokens {
		return fieldErrorf([]string{"unet.attention", "unet.mults"}, "attention over %d positions at the lowest resolution (at most %d: its scores are positions^2 an image); add levels", t, unetMaxTokens)
	}
	if !(u.Dropout >= 0 && u.Dropout < 1) {
		return fieldErrorf([]string{"unet.dropout"}, "unet dropout %g: need 0 <= p < 1", u.Dropout)
	}
	if u.Heads < 0 || u.Heads > unetMaxWidth {
		return fieldErrorf([]string{"unet.heads"}, "unet attention heads %d outside 0..%d", u.Heads, unetMaxWidth)
	}
	if len(u.AttentionRes) > len(u.Mults) {
		return fieldErrorf([]string{"unet.attention_res"}, "unet attention resolutions %v: more than the %d levels", u.AttentionRes, len(u.Mults))
	}
	heads := u.HeadCount()
	if u.Attention {
		if w := u.Base * u.Mults[len(u.Mults)-1]; w%heads != 0 {
			return fieldErrorf([]string{"unet.heads"}, "unet attention heads %d do not divide the lowest level's width %d", heads, w)
		}
	}
	for i, r := range u.AttentionRes {
		l := -1
		for lv := range u.Mults {
			if im.Height>>lv == r {
				l = lv
			}
		}
		if l < 0 || slices.Contains(u.AttentionRes[:i], r) {
			return fieldErrorf([]string{"unet.attention_res"}, "unet attention resolution %d: want distinct heights of the levels (%s)", r, levelHeights(im.Height, len(u.Mults)))
		}
		if t := (im.Height >> l) * (im.Width >> l); t > unetMaxTokens {
			return fieldErrorf([]string{"unet.attention_res"}, "attention over %d positions at resolution %d (at most %d: its scores are positions^2 an image)", t, r, unetMaxTokens)
		}
		if w := u.Base * u.Mults[l]; w%heads != 0 {
			return fieldErrorf([]string{"unet.heads"}, "unet attention heads %d do not divide the width %d of the level at resolution %d", heads, w, r)
		}
	}
	if u.Groups < 1 || u.Base%u.Groups != 0 {
		return fieldErrorf([]string{"unet.groups"}, "group norm groups %d must divide the base width %d", u.Groups, u.Base)
	}
	for _, m := range u.Mults {
		if (u.Base*m)%u.Groups != 0 {
			return fieldErrorf([]string{"unet.groups"}, "group norm groups %d must divide every level width (%d)", u.Groups, u.Base*m)
		}
	}
	return nil
}

// FieldError is a configuration no network can be built from, with the
// settings at fault (image.size, image.channels, unet.base, unet.mults,
// ...: Config's fields), so that a command line can name its flags.
type FieldError struct {
	Fields []string
	Err    error
}

func (e *FieldError) Error() string { return e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

func fieldErrorf(fields []string, format string, args ...any) error {
	return &FieldError{Fields: fields, Err: fmt.Errorf(format, args...)}
}

// levelHeights lists the image heights of the levels, "32, 16, 8".
func levelHeights(h, levels int) string {
	var b strings.Builder
	for l := range levels {
		if l > 0 {
			b.WriteString(", ")
		}
		fmt.Fprint(&b, h>>l)
	}
	return b.String()
}
