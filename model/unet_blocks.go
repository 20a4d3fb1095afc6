package model

import (
	"math"

	"github.com/fmgpu/fmgpu/gpu"
)

// The U-Net's blocks. Each is a layer (the input and downsampling
// convolutions are plain convs) except the embedding, which every residual
// block reads.

// embedding is the conditioning: emb = Linear(SiLU(Linear(sinusoid(t))))
// [+ label_embed[class]], width E, and SiLU(emb), the residual blocks'
// input. Its gradient is the sum of the blocks' (dsilu).
type embedding struct {
	time0, time2 dense
	table        param // label_embed.weight, K+1 x E; -1: unconditional
	tableRows    int   // K+1: the classes and the null class
	te           gpu.TimeEmbedding
	width        int // E

	sinus, pre1, act1, emb, onehot *workspace // stored
	silu, dsilu                    *workspace // SiLU(emb) and its gradient
	dact1                          *workspace // temporary
}

// Forward computes the embedding of the times t (one a row) and labels.
func (e *embedding) Forward(p *pass, t, labels gpu.Buffer) {
	b, rows, E := p.b, p.rows, e.width
	sinus, act1, emb := e.sinus.at(rows), e.act1.at(rows), e.emb.at(rows)
	// x = t with d = 0: the device backend wants a non-nil x even when it
	// reads none of it.
	b.EmbedInput(rows, 0, t, t, e.te, sinus)
	e.time0.Forward(p, gpu.ActSiLU, sinus, e.pre1.at(rows), act1)
	e.time2.Forward(p, gpu.ActNone, act1, nil, emb)
	if e.table >= 0 {
		oh := e.onehot.at(rows)
		b.OneHot(rows, e.tableRows, labels, oh)
		b.Gemm(false, false, rows, E, e.tableRows, 1, oh, e.tableRows, p.w[e.table], E, 1, emb, E)
	}
	b.Activate(gpu.ActSiLU, emb, e.silu.at(rows))
}

// Backward takes the gradient the blocks left in dsilu to the time MLP's
// and the class table's parameters (t and the labels have none).
func (e *embedding) Backward(p *pass) {
	rows, E := p.rows, e.width
	demb, dact1 := e.dsilu.at(rows), e.dact1.at(rows)
	// emb's SiLU comes after the table's row is added: pre is emb. The
	// first layer's SiLU is fused into the second's backward.
	p.b.BiasActBackward(gpu.ActSiLU, rows, E, demb, e.emb.at(rows), demb, nil)
	e.time2.backwardPre(p, e.act1.at(rows), demb, gpu.ActSiLU, e.pre1.at(rows), dact1, e.time0.out, 0)
	if e.table >= 0 {
		p.b.Gemm(true, false, e.tableRows, E, rows, 1, e.onehot.at(rows), e.tableRows, demb, E, 0, p.g[e.table], E)
	}
	e.time0.backwardPre(p, e.sinus.at(rows), dact1, gpu.ActNone, nil, nil, 0, 0)
}

// concat is a block's input [x, skip] along channels: the previous block's
// output and an earlier one's, built by Forward and stored for Backward.
type concat struct {
	skip      *workspace // the earlier block's output
	dskip     *workspace // stored: its gradient, which the network adds to that block's output gradient
	x         *workspace // stored: [x, skip]
	xC, skipC int        // channels of x and of skip
	hw        int
}

// build writes [x, skip] into the stored concatenation and returns it.
func (c *concat) build(p *pass, x gpu.Buffer) gpu.Buffer {
	cin := c.xC + c.skipC
	into := c.x.at(p.rows)
	p.b.CopyChannels(p.rows, c.hw, c.xC, x, c.xC, 0, into, cin, 0)
	p.b.CopyChannels(p.rows, c.hw, c.skipC, c.skip.at(p.rows), c.skipC, 0, into, cin, c.xC)
	return into
}

// split sends the gradient d of [x, skip] to dx and dskip.
func (c *concat) split(p *pass, d, dx gpu.Buffer) {
	cin := c.xC + c.skipC
	p.b.CopyChannels(p.rows, c.hw, c.xC, d, cin, 0, dx, c.xC, 0)
	p.b.CopyChannels(p.rows, c.hw, c.skipC, d, cin, c.xC, c.dskip.at(p.rows), c.skipC, 0)
}

// resBlock is DDPM's residual block from cin to cout channels, conditioned
// by a bias per image and channel:
//
//	h = conv1(SiLU(GroupNorm1(x))) + Linear(SiLU(emb))
//	y = skip(x) + conv2(SiLU(GroupNorm2(h)))      (skip: 1x1 conv if cin != cout)
//
// On the way up x is [the previous block's output, a skip] (cat).
type resBlock struct {
	cond     *embedding
	cat      *concat // nil: x is the input itself
	in1, in2 normSiLUConv
	emb      dense // SiLU(emb) to the channel bias
	skip     *conv // nil: the identity
	h        *workspace

	// Temporaries.
	act  *workspace // the skip's output in Forward; in Backward the gradient of a SiLU's output
	hid  *workspace // in Backward the gradient of h
	bias *workspace // the channel bias and its gradient
	dcat *workspace // the gradient of [x, skip]

	cin, cout, hw int
}

func (r *resBlock) Forward(p *pass, x, y gpu.Buffer) {
	b, rows := p.b, p.rows
	if r.cat != nil {
		x = r.cat.build(p, x)
	}
	h, bias := r.h.at(rows), r.bias.at(rows)
	r.in1.Forward(p, x, h)
	r.emb.Forward(p, gpu.ActNone, r.cond.silu.at(rows), nil, bias)
	r.in2.forwardBias(p, h, bias, y) // h += the channel bias, in place

	if r.skip == nil {
		b.Axpy(1, x, y)
		return
	}
	sk := r.act.view(rows, r.cout*r.hw)
	r.skip.Forward(p, x, sk)
	b.Axpy(1, sk, y)
}

func (r *resBlock) Backward(p *pass, x, dy, dx gpu.Buffer) {
	rows := p.rows
	nIn, nOut := r.cin*r.hw, r.cout*r.hw
	dn, dh := r.act.view(rows, nOut), r.hid.view(rows, nOut)
	r.in2.backwardConv(p, dy, dn)
	var db gpu.Buffer // the channel bias's gradient: dh's channel sums
	if p.grads() {
		db = r.bias.at(rows)
	}
	r.in2.backwardNorm(p, r.h.at(rows), dn, nil, dh, db)
	if p.grads() {
		r.emb.Backward(p, gpu.ActNone, nil, r.cond.silu.at(rows), db, r.cond.dsilu.at(rows), r.cond.width, 1)
	}
	dn = r.act.view(rows, nIn)
	r.in1.backwardConv(p, dh, dn)
	dIn := dx
	if r.cat != nil {
		x = r.cat.x.at(rows)
		dIn = r.dcat.at(rows)
	}
	// The skip's gradient first, then the main path's added to it.
	add := dy
	if r.skip != nil {
		if p.grads() {
			r.skip.backwardFilter(p, x, dy)
		}
		r.skip.backwardData(p, dy, dIn)
		add = dIn
	}
	r.in1.backwardNorm(p, x, dn, add, dIn, nil)
	if r.cat != nil {
		r.cat.split(p, dIn, dx)
	}
}

// attention is multi-head self-attention over an image's H*W positions
// as tokens, in NCHW with no transposes: per image q, k, v are the C x T
// blocks of qkv, and head h of Heads takes rows [h d, (h+1) d) of each,
// d = C / Heads:
//
//	qkv = conv1x1(GroupNorm(x)),  P_h = softmax(q_h^T k_h / sqrt(d)) (over each row),
//	y = x + proj([v_0 P_0^T; ...; v_{Heads-1} P_{Heads-1}^T])
//
// Each product runs once a head over the batch of images (one call with
// Heads 1, as before heads existed), the softmax once over every head.
type attention struct {
	norm        groupNorm
	qkv, proj   *conv
	c, t, heads int

	n, q, probs, o *workspace // stored: GroupNorm(x), qkv, P (Heads T x T blocks an image), the heads' outputs
	dO, dQKV, dP   *workspace // temporaries
}

func attnScale(d int) float32 { return float32(1 / math.Sqrt(float64(d))) }

// head returns the views of head h: its rows of q, k and v (or of their
// gradients in from) and its P block; strides between images are 3 C T
// and Heads T^2.
func (a *attention) head(rows, h int, from *workspace) (q, k, v gpu.Buffer) {
	ct, dt := a.c*a.t, a.c/a.heads*a.t
	return from.from(rows, h*dt), from.from(rows, ct+h*dt), from.from(rows, 2*ct+h*dt)
}

func (a *attention) Forward(p *pass, x, y gpu.Buffer) {
	b, rows := p.b, p.rows
	c, t, heads := a.c, a.t, a.heads
	d := c / heads
	ct, tt, dt := c*t, t*t, d*t
	n, o := a.n.at(rows), a.o.at(rows)
	a.norm.Forward(p, x, n)
	a.qkv.Forward(p, n, a.q.at(rows))
	scale := attnScale(d)
	for h := range heads {
		q, k, _ := a.head(rows, h, a.q)
		b.GemmBatched(true, false, rows, t, t, d, scale, q, t, 3*ct, k, t, 3*ct, 0, a.probs.from(rows, h*tt), t, heads*tt)
	}
	probs := a.probs.at(rows)
	b.Softmax(rows*heads*t, t, probs, probs)
	for h := range heads {
		_, _, v := a.head(rows, h, a.q)
		b.GemmBatched(false, true, rows, d, t, t, 1, v, t, 3*ct, a.probs.from(rows, h*tt), t, heads*tt, 0, a.o.from(rows, h*dt), t, ct)
	}
	a.proj.Forward(p, o, y)
	b.Axpy(1, x, y)
}

func (a *attention) Backward(p *pass, x, dy, dx gpu.Buffer) {
	b, rows := p.b, p.rows
	c, t, heads := a.c, a.t, a.heads
	d := c / heads
	ct, tt, dt := c*t, t*t, d*t
	dO := a.dO.at(rows)

	// y = x + proj(o)
	a.proj.Backward(p, a.o.at(rows), dy, dO)
	// o_h = v_h P_h^T: dv_h = do_h P_h, dP_h = do_h^T v_h
	for h := range heads {
		_, _, v := a.head(rows, h, a.q)
		_, _, dv := a.head(rows, h, a.dQKV)
		P, dP, dOh := a.probs.from(rows, h*tt), a.dP.from(rows, h*tt), a.dO.from(rows, h*dt)
		b.GemmBatched(false, false, rows, d, t, t, 1, dOh, t, ct, P, t, heads*tt, 0, dv, t, 3*ct)
		b.GemmBatched(true, false, rows, t, t, d, 1, dOh, t, ct, v, t, 3*ct, 0, dP, t, heads*tt)
	}
	// P = softmax(S), S = scale q^T k: dq = scale k dS^T, dk = scale q dS
	dP := a.dP.at(rows)
	b.SoftmaxBackward(rows*heads*t, t, a.probs.at(rows), dP, dP)
	scale := attnScale(d)
	for h := range heads {
		q, k, _ := a.head(rows, h, a.q)
		dq, dk, _ := a.head(rows, h, a.dQKV)
		dPh := a.dP.from(rows, h*tt)
		b.GemmBatched(false, true, rows, d, t, t, scale, k, t, 3*ct, dPh, t, heads*tt, 0, dq, t, 3*ct)
		b.GemmBatched(false, false, rows, d, t, t, scale, q, t, 3*ct, dPh, t, heads*tt, 0, dk, t, 3*ct)
	}
	// qkv = conv(n), n = GroupNorm(x); dO is spent and takes dn
	a.qkv.Backward(p, a.n.at(rows), a.dQKV.at(rows), dO)
	a.norm.backwardAct(p, gpu.ActNone, x, dO, nil, dy, dx, nil)
}

// upsample is nearest 2x upsampling of c channels of h x w then a 3x3
// convolution; the upsampled input is recomputed in Backward.
type upsample struct {
	conv    *conv
	c, h, w int
	up      *workspace // temporary, c x 2h x 2w a row
}

func (u *upsample) Forward(p *pass, x, y gpu.Buffer) {
	up := u.up.at(p.rows)
	p.b.Upsample2x(p.rows, u.c, u.h, u.w, x, up)
	u.conv.Forward(p, up, y)
}

func (u *upsample) Backward(p *pass, x, dy, dx gpu.Buffer) {
	up := u.up.at(p.rows)
	if p.grads() {
		p.b.Upsample2x(p.rows, u.c, u.h, u.w, x, up)
		u.conv.backwardFilter(p, up, dy)
	}
	u.conv.backwardData(p, dy, up)
	p.b.Upsample2xBackward(p.rows, u.c, u.h, u.w, up, dx)
}

// outputHead is v = conv3x3(SiLU(GroupNorm(h))) to the image's channels.
type outputHead struct {
	normSiLUConv
	act *workspace // temporary
}

func (o *outputHead) Forward(p *pass, x, y gpu.Buffer) {
	o.normSiLUConv.Forward(p, x, y)
}

func (o *outputHead) Backward(p *pass, x, dy, dx gpu.Buffer) {
	o.normSiLUConv.Backward(p, x, dy, dx, o.act.at(p.rows))
}
