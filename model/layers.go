package model

import (
	"github.com/fmgpu/fmgpu/gpu"
)

// pass is what the layers of one Forward or backward call share.
type pass struct {
	b    gpu.Backend
	rows int
	w    []gpu.Buffer // the weights, one view per tensor
	// g is the parameter gradient, one view per tensor; nil when the call
	// wants none (Forward, InputVJP).
	g []gpu.Buffer
	// discard receives the parameter gradients GroupNormBackward writes
	// when the call wants none.
	discard *workspace
	// drop, when not nil, turns the dropout layers on with masks from
	// this draw (each layer sets Layer); nil: no element is dropped.
	drop *gpu.DropoutDraw
}

func (p *pass) grads() bool { return p.g != nil }

// layer is one module of a network. Forward reads x and writes y (rows of
// p.rows) and keeps in its stored workspaces what Backward needs.
// Backward, after that Forward and with the same x, takes dy, the gradient
// of a loss with respect to y, writes that with respect to x into dx and,
// when the pass wants them, its parameters' gradients; dy and x are not
// modified. Only a network's first layer is given a nil dx (no input
// gradient wanted), and only a convolution accepts one.
//
// A new kind of block (dropout, multi-head attention) is a new layer: a
// type with these two methods, a builder method adding its tensors (in
// checkpoint order) and workspaces, and a node in buildUNet's chain.
type layer interface {
	Forward(p *pass, x, y gpu.Buffer)
	Backward(p *pass, x, dy, dx gpu.Buffer)
}

// conv is a 2-D convolution with a bias (nn.Conv2d).
type conv struct {
	w, b  param
	shape gpu.ConvShape // Batch unset: the pass's rows
}

func (c *conv) at(rows int) gpu.ConvShape {
	s := c.shape
	s.Batch = rows
	return s
}

func (c *conv) Forward(p *pass, x, y gpu.Buffer) {
	p.b.Conv2D(c.at(p.rows), x, p.w[c.w], p.w[c.b], y)
}

func (c *conv) Backward(p *pass, x, dy, dx gpu.Buffer) {
	if p.grads() {
		c.backwardFilter(p, x, dy)
	}
	if dx != nil {
		c.backwardData(p, dy, dx)
	}
}

// backwardFilter writes the weight and bias gradients.
func (c *conv) backwardFilter(p *pass, x, dy gpu.Buffer) {
	p.b.Conv2DBackwardFilter(c.at(p.rows), x, dy, p.g[c.w], p.g[c.b])
}

// backwardData writes the input gradient.
func (c *conv) backwardData(p *pass, dy, dx gpu.Buffer) {
	p.b.Conv2DBackwardData(c.at(p.rows), dy, p.w[c.w], dx)
}

// groupNorm is nn.GroupNorm: a scale gamma and a shift beta per channel;
// Forward stores each image's group means and reciprocal deviations.
type groupNorm struct {
	gamma, beta param
	shape       gpu.GroupNormShape // Batch unset
	mean, rstd  *workspace         // Groups a row each
}

func (n *groupNorm) at(rows int) gpu.GroupNormShape {
	s := n.shape
	s.Batch = rows
	return s
}

func (n *groupNorm) Forward(p *pass, x, y gpu.Buffer) {
	p.b.GroupNorm(n.at(p.rows), x, p.w[n.gamma], p.w[n.beta], y, n.mean.at(p.rows), n.rstd.at(p.rows))
}

func (n *groupNorm) Backward(p *pass, x, dy, dx gpu.Buffer) {
	n.backwardAct(p, gpu.ActNone, x, dy, nil, nil, dx, nil)
}

// backwardAct is the backward of act(GroupNorm(x)), whose output y the
// forward pass stored (nil: the backend recomputes it from x and the
// statistics), from dA, the gradient of act's output (used as
// workspace); dx receives the input gradient plus add when add is not
// nil, dxSum (when not nil) its sums per image and channel.
func (n *groupNorm) backwardAct(p *pass, act gpu.Act, x, dA, y, add, dx, dxSum gpu.Buffer) {
	var dg, db gpu.Buffer
	if p.grads() {
		dg, db = p.g[n.gamma], p.g[n.beta]
	} else {
		c := n.shape.C
		dg, db = p.discard.slice(0, c), p.discard.slice(c, c)
	}
	var beta gpu.Buffer
	if y == nil && act != gpu.ActNone {
		beta = p.w[n.beta]
	}
	p.b.GroupNormActBackward(n.at(p.rows), act, dA, y, x, p.w[n.gamma], beta, n.mean.at(p.rows), n.rstd.at(p.rows), add, dx, dg, db, dxSum)
}

// dense is a fully connected layer y = act(x W^T + b), W out x in
// (nn.Linear's layout), with the activation fused into the product.
type dense struct {
	w, b    param
	in, out int
}

// Forward computes y for the pass's rows of x (row stride in); pre, when
// not nil, receives the pre-activation x W^T + b for Backward.
func (d *dense) Forward(p *pass, act gpu.Act, x, pre, y gpu.Buffer) {
	p.b.Linear(p.rows, d.in, d.out, x, d.in, p.w[d.w], p.w[d.b], act, pre, y)
}

// Backward turns dy, the gradient of y, into that of the pre-activation
// in place (act'(pre) dy), writes the weight and bias gradients when the
// pass wants them, and, when dx is not nil, dx = beta dx + dy W restricted
// to x's first cols columns (row stride cols).
func (d *dense) Backward(p *pass, act gpu.Act, pre, x, dy, dx gpu.Buffer, cols int, beta float32) {
	if act != gpu.ActNone {
		p.b.BiasActBackward(act, p.rows, d.out, dy, pre, dy, nil)
	}
	d.backwardPre(p, x, dy, gpu.ActNone, nil, dx, cols, beta)
}

// backwardPre is Backward from dPre, the gradient of the pre-activation:
// one LinearBackward, dx taken through xAct's gradient at xPre (the
// previous layer's activation, fused).
func (d *dense) backwardPre(p *pass, x, dPre gpu.Buffer, xAct gpu.Act, xPre, dx gpu.Buffer, cols int, beta float32) {
	var dW, dB gpu.Buffer
	if p.grads() {
		dW, dB = p.g[d.w], p.g[d.b]
	}
	if dW == nil && dx == nil {
		return
	}
	p.b.LinearBackward(p.rows, d.in, d.out, dPre, x, d.in, p.w[d.w], dW, dB, cols, xAct, xPre, beta, dx)
}

// normSiLUConv is y = conv(SiLU(GroupNorm(x))), the unit of DDPM's residual
// block and output head. Forward stores the SiLU of the GroupNorm output
// (computed in one pass, kept rather than recomputed in Backward: the
// filter gradient's input), not the GroupNorm output itself: the
// backward pass, which reads x anyway, recomputes it (a workspace of the
// input's size less, written once and read once less a step). The
// caller lends the backward's temporary.
type normSiLUConv struct {
	norm groupNorm
	a    *workspace // SiLU(GroupNorm(x)), stored (after the dropout): the filter gradient's input
	conv *conv
	inC  int // elements of an image of x
	// drop, when not nil and the pass trains with dropout, masks SiLU(n)
	// before the convolution (in place in a).
	drop *dropout
}

// dropout is a dropout layer: the elements of its input dropped with
// probability p (the mask of Philox stream layer of the pass's draw) and
// the rest scaled by 1 / (1 - p). The mask depends only on the draw, the
// layer and the element's index, so Backward applies the same op to the
// output's gradient: nothing is stored.
type dropout struct {
	p     float32
	layer uint32
}

// apply masks x into y (the same buffer or not) when the pass drops.
func (d *dropout) apply(p *pass, x, y gpu.Buffer) {
	if d == nil || p.drop == nil {
		return
	}
	dr := *p.drop
	dr.Layer = d.layer
	p.b.Dropout(dr, d.p, x, y)
}

func (l *normSiLUConv) Forward(p *pass, x, y gpu.Buffer) {
	l.forwardBias(p, x, nil, y)
}

// forwardBias is Forward of x plus xBias (one value per image and
// channel, added into x in place) when xBias is not nil.
func (l *normSiLUConv) forwardBias(p *pass, x, xBias, y gpu.Buffer) {
	a, s := l.a.at(p.rows), &l.norm
	p.b.GroupNormAct(s.at(p.rows), gpu.ActSiLU, x, xBias, p.w[s.gamma], p.w[s.beta], nil, a, s.mean.at(p.rows), s.rstd.at(p.rows))
	l.drop.apply(p, a, a)
	l.conv.Forward(p, a, y)
}

// backwardConv writes into da the gradient of the SiLU's output (through
// the dropout when there is one) for dy
// (and the convolution's parameter gradients); da is inC elements a row.
func (l *normSiLUConv) backwardConv(p *pass, dy, da gpu.Buffer) {
	if p.grads() {
		l.conv.backwardFilter(p, l.a.at(p.rows), dy)
	}
	l.conv.backwardData(p, dy, da)
	l.drop.apply(p, da, da)
}

// backwardNorm takes da (from backwardConv; used as workspace) through the
// SiLU and the GroupNorm: dx = the input gradient, plus add when not nil;
// dxSum, when not nil, its sums per image and channel (forwardBias's
// xBias gradient).
func (l *normSiLUConv) backwardNorm(p *pass, x, da, add, dx, dxSum gpu.Buffer) {
	l.norm.backwardAct(p, gpu.ActSiLU, x, da, nil, add, dx, dxSum)
}

// Backward: da is a temporary of inC elements a row.
func (l *normSiLUConv) Backward(p *pass, x, dy, dx, da gpu.Buffer) {
	l.backwardConv(p, dy, da)
	l.backwardNorm(p, x, da, nil, dx, nil)
}
