// The U-Net's float64 oracle, a gorgonia graph written from the UNet
// documentation, and the gradient checks against it (not in cuda builds,
// as gorgonia_test.go).

//go:build !cuda

package model_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/fmgpu/fmgpu/gpu"
	"github.com/fmgpu/fmgpu/internal/numtest"
	"github.com/fmgpu/fmgpu/model"
)

// unetOracle is the U-Net as a float64 gorgonia graph computing
// f = sum(e * v(t, x, labels)) for a fixed cotangent e: its gradient with
// respect to the parameters is what Backward(e) computes and with respect
// to x what InputVJP(e) does. The parameters and x are variables whose
// values are views of the caller's flat slices, so that a central
// difference can move one element and rerun the machine.
type unetOracle struct {
	g      *G.ExprGraph
	cfg    model.Config
	rows   int
	params map[string]*G.Node
	x      *G.Node
	v, f   *G.Node
	wrt    G.Nodes // the parameters in Tensors order, then x
	grads  G.Nodes // nil for a forward-only oracle
	vm     G.VM
	all    G.Nodes
}

// oracleBuilder holds what the layer helpers share.
type oracleBuilder struct {
	o       *unetOracle
	tensors map[string]model.Tensor
	p       []float64
	n       int // batch
	groups  int
	consts  int
	eyes    map[int]*G.Node
	err     error
	heads   int
	// drop, when not nil, is the dropout draw: residual block number
	// dropLayer (in build order) multiplies SiLU(GroupNorm2(h)) by its
	// mask over 1 - dropP.
	drop      *gpu.DropoutDraw
	dropP     float32
	dropLayer uint32
}

// dropoutMask is the mask of a dropout layer over n elements: 0 where the
// Philox uniform is below p (the float32 comparison the backends make),
// else 1 / (1 - p) in float64.
func dropoutMask(dr gpu.DropoutDraw, layer uint32, p float32, n int) []float64 {
	dr.Layer = layer
	m := make([]float64, n)
	for i := range m {
		w := gpu.PhiloxBlock(dr.Seed, dr.Purpose(), dr.Step, uint32(i/4))[i%4]
		if gpu.Uniform01(w) >= p {
			m[i] = 1 / (1 - float64(p))
		}
	}
	return m
}

func (ob *oracleBuilder) must(n *G.Node, err error) *G.Node {
	if err != nil && ob.err == nil {
		ob.err = err
	}
	if n != nil {
		ob.o.all = append(ob.o.all, n)
	}
	return n
}

func dense(shape []int, v []float64) *tensor.Dense {
	return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(v))
}

// param returns the node of tensor name, shaped shape (same element
// order), bound to its part of the flat parameters.
func (ob *oracleBuilder) param(name string, shape ...int) *G.Node {
	t, ok := ob.tensors[name]
	if !ok {
		ob.must(nil, fmt.Errorf("no tensor %s", name))
		return nil
	}
	n := 1
	for _, s := range shape {
		n *= s
	}
	if n != t.Size() {
		ob.must(nil, fmt.Errorf("tensor %s: %d elements, oracle shape %v", name, t.Size(), shape))
		return nil
	}
	node := G.NewTensor(ob.o.g, tensor.Float64, len(shape), G.WithShape(shape...), G.WithName(name),
		G.WithValue(dense(shape, ob.p[t.Offset:t.Offset+t.Size()])))
	ob.o.params[name] = node
	return node
}

// constant is a constant tensor. Its name is unique: gorgonia names a
// constant by its printed value, which for large tensors is abridged, and
// merges constants of the same name.
func (ob *oracleBuilder) constant(shape []int, v []float64) *G.Node {
	ob.consts++
	return G.NewConstant(dense(shape, v), G.WithName(fmt.Sprintf("const%d", ob.consts)))
}

// fresh is a copy of the matrix x in new storage, x times the identity.
//
// Gorgonia 0.9.18's tape machine runs an elementwise op in place on its
// first operand when the register allocator sees it die there, but a
// Reshape, Slice or Transpose result shares storage with its operand, a
// different register: an in-place op on such a view overwrites a value
// that is still live (a residual block's input, a variable's value for the
// next run; measured: GroupNorm's centring wrote into x). Every view that
// an elementwise op or a transpose consumes is copied first.
func (ob *oracleBuilder) fresh(x *G.Node) *G.Node {
	k := x.Shape()[1]
	eye, ok := ob.eyes[k]
	if !ok {
		v := make([]float64, k*k)
		for i := 0; i < k; i++ {
			v[i*k+i] = 1
		}
		eye = ob.constant([]int{k, k}, v)
		ob.eyes[k] = eye
	}
	return ob.must(G.Mul(x, eye))
}

// mat is x reshaped to m x k, in fresh storage.
func (ob *oracleBuilder) mat(x *G.Node, m, k int) *G.Node {
	return ob.fresh(ob.must(G.Reshape(x, tensor.Shape{m, k})))
}

// repeat is the (n c) x c matrix R with R[b c + i, i] = 1: R w tiles a
// per-channel column w down the batch.
func (ob *oracleBuilder) repeat(c int) *G.Node {
	v := make([]float64, ob.n*c*c)
	for b := 0; b < ob.n; b++ {
		for i := 0; i < c; i++ {
			v[(b*c+i)*c+i] = 1
		}
	}
	return ob.constant([]int{ob.n * c, c}, v)
}

// addChannel adds a column (n c) x 1 to each position of x (n, c, h, w).
func (ob *oracleBuilder) addChannel(x, col *G.Node) *G.Node {
	s := x.Shape()
	x2 := ob.mat(x, s[0]*s[1], s[2]*s[3])
	y := ob.must(G.BroadcastAdd(x2, col, nil, []byte{1}))
	return ob.must(G.Reshape(y, s.Clone()))
}

// conv is name.weight (co, ci, k, k) convolved with x, zero padding k/2,
// plus name.bias.
func (ob *oracleBuilder) conv(name string, x *G.Node, co, k, stride int) *G.Node {
	ci := x.Shape()[1]
	w := ob.param(name+".weight", co, ci, k, k)
	b := ob.param(name+".bias", co, 1)
	if ob.err != nil {
		return nil
	}
	y := ob.must(G.Conv2d(x, w, tensor.Shape{k, k}, []int{k / 2, k / 2}, []int{stride, stride}, []int{1, 1}))
	if ob.err != nil {
		return nil
	}
	return ob.addChannel(y, ob.must(G.Mul(ob.repeat(co), b)))
}

// groupNorm normalizes each image's groups of c/groups channels by their
// mean and biased variance (eps 1e-5), then scales and shifts per channel.
func (ob *oracleBuilder) groupNorm(name string, x *G.Node) *G.Node {
	s := x.Shape().Clone()
	n, c, hw := s[0], s[1], s[2]*s[3]
	gr := ob.groups
	k := c / gr * hw
	gamma := ob.param(name+".weight", c, 1)
	beta := ob.param(name+".bias", c, 1)
	if ob.err != nil {
		return nil
	}
	avg := make([]float64, k)
	for i := range avg {
		avg[i] = 1 / float64(k)
	}
	avgCol := ob.constant([]int{k, 1}, avg)
	x2 := ob.mat(x, n*gr, k)
	mean := ob.must(G.Mul(x2, avgCol))
	xc := ob.must(G.BroadcastSub(x2, mean, nil, []byte{1}))
	variance := ob.must(G.Mul(ob.must(G.HadamardProd(xc, xc)), avgCol))
	// 1/sqrt, not gorgonia's InverseSqrt: its gradient is wrong in 0.9.18
	// (measured against central differences).
	rstd := ob.must(G.Inverse(ob.must(G.Sqrt(ob.must(G.Add(variance, G.NewConstant(1e-5)))))))
	xn := ob.must(G.BroadcastHadamardProd(xc, rstd, nil, []byte{1}))
	xn = ob.mat(xn, n*c, hw)
	rep := ob.repeat(c)
	y := ob.must(G.BroadcastHadamardProd(xn, ob.must(G.Mul(rep, gamma)), nil, []byte{1}))
	y = ob.must(G.BroadcastAdd(y, ob.must(G.Mul(rep, beta)), nil, []byte{1}))
	return ob.must(G.Reshape(y, s))
}

func (ob *oracleBuilder) silu(x *G.Node) *G.Node {
	return ob.must(G.HadamardProd(x, ob.must(G.Sigmoid(x))))
}

// linear is h (rows x in) name.weight^T + name.bias.
func (ob *oracleBuilder) linear(name string, h *G.Node, out int) *G.Node {
	in := h.Shape()[1]
	w := ob.param(name+".weight", out, in)
	b := ob.param(name+".bias", 1, out)
	if ob.err != nil {
		return nil
	}
	wc := ob.fresh(w)
	return ob.must(G.BroadcastAdd(ob.must(G.Mul(h, ob.must(G.Transpose(wc)))), b, nil, []byte{0}))
}

// res is a residual block (UNet's documentation) with semb = SiLU(emb).
func (ob *oracleBuilder) res(name string, x, semb *G.Node, co int) *G.Node {
	s := x.Shape()
	h := ob.conv(name+".conv1", ob.silu(ob.groupNorm(name+".norm1", x)), co, 3, 1)
	eb := ob.linear(name+".emb", semb, co)
	if ob.err != nil {
		return nil
	}
	h = ob.addChannel(h, ob.mat(eb, s[0]*co, 1))
	a := ob.silu(ob.groupNorm(name+".norm2", h))
	if ob.drop != nil && ob.err == nil {
		sh := a.Shape().Clone()
		a = ob.must(G.HadamardProd(a, ob.constant(sh, dropoutMask(*ob.drop, ob.dropLayer, ob.dropP, sh.TotalSize()))))
		ob.dropLayer++
	}
	h = ob.conv(name+".conv2", a, co, 3, 1)
	skip := x
	if s[1] != co {
		skip = ob.conv(name+".skip", x, co, 1, 1)
	}
	if ob.err != nil {
		return nil
	}
	return ob.must(G.Add(skip, h))
}

// upsample is nearest-neighbour 2x upsampling, as a product with a 0/1
// matrix: (n c, h w) times (h w, 4 h w).
func (ob *oracleBuilder) upsample(x *G.Node) *G.Node {
	s := x.Shape()
	n, c, h, w := s[0], s[1], s[2], s[3]
	u := make([]float64, h*w*4*h*w)
	for i := 0; i < 2*h; i++ {
		for j := 0; j < 2*w; j++ {
			u[((i/2)*w+j/2)*4*h*w+i*2*w+j] = 1
		}
	}
	x2 := ob.mat(x, n*c, h*w)
	y := ob.must(G.Mul(x2, ob.constant([]int{h * w, 4 * h * w}, u)))
	return ob.must(G.Reshape(y, tensor.Shape{n, c, 2 * h, 2 * w}))
}

// attention is the self-attention block, one image and one head at a
// time: q, k, v the C x T row blocks of qkv, head h their rows [h d, (h+1)
// d) with d = C / heads, o_h = v_h softmax(q_h^T k_h / sqrt(d))^T, o the
// heads' outputs stacked.
func (ob *oracleBuilder) attention(name string, x *G.Node) *G.Node {
	s := x.Shape().Clone()
	n, c, t := s[0], s[1], s[2]*s[3]
	qkv := ob.conv(name+".qkv", ob.groupNorm(name+".norm", x), 3*c, 1, 1)
	if ob.err != nil {
		return nil
	}
	qkv2 := ob.mat(qkv, n*3*c, t)
	heads := max(ob.heads, 1)
	d := c / heads
	scale := G.NewConstant(1 / math.Sqrt(float64(d)))
	var outs G.Nodes
	for b := 0; b < n; b++ {
		for h := 0; h < heads; h++ {
			at := func(part int) *G.Node {
				lo := 3*b*c + part*c + h*d
				return ob.fresh(ob.must(G.Slice(qkv2, G.S(lo, lo+d))))
			}
			q, k, v := at(0), at(1), at(2)
			sc := ob.must(G.Mul(ob.must(G.Mul(ob.must(G.Transpose(q)), k)), scale))
			p := ob.must(G.SoftMax(sc))
			outs = append(outs, ob.must(G.Mul(v, ob.must(G.Transpose(ob.fresh(p))))))
		}
	}
	o := outs[0]
	if n > 1 {
		o = ob.must(G.Concat(0, outs...))
	}
	o = ob.must(G.Reshape(o, s))
	return ob.must(G.Add(x, ob.conv(name+".proj", o, c, 1, 1)))
}

// newUNetOracle builds the graph for parameters p (laid out as tensors),
// rows images x, times t, labels (nil: the null class) and cotangent e;
// with grads it also builds gorgonia.Grad of f.
func newUNetOracle(t *testing.T, cfg model.Config, tensors []model.Tensor, p []float64, rows int, x, tv, e []float64, labels []int, grads bool, drop *gpu.DropoutDraw) *unetOracle {
	t.Helper()
	o := &unetOracle{g: G.NewGraph(), cfg: cfg, rows: rows, params: map[string]*G.Node{}}
	ob := &oracleBuilder{o: o, tensors: map[string]model.Tensor{}, p: p, n: rows, groups: cfg.UNet.Groups, eyes: map[int]*G.Node{},
		heads: cfg.UNet.Heads}
	if drop != nil && cfg.UNet.Dropout > 0 {
		ob.drop, ob.dropP = drop, float32(cfg.UNet.Dropout)
	}
	for _, ts := range tensors {
		ob.tensors[ts.Name] = ts
	}
	im, u := cfg.Image, cfg.UNet
	E := 4 * u.Base

	// emb = Linear(SiLU(Linear(sinusoid(t)))) [+ onehot(labels) table]
	tcfg := cfg
	tcfg.Dim = 0
	tw := cfg.TimeEmbed.Width()
	temb := ob.constant([]int{rows, tw}, refEmbed(tcfg, rows, nil, tv))
	emb := ob.linear("time_embed.2", ob.silu(ob.linear("time_embed.0", temb, E)), E)
	if cfg.Classes > 0 {
		k := cfg.Classes + 1
		oh := make([]float64, rows*k)
		for r := 0; r < rows; r++ {
			l := cfg.Classes
			if labels != nil {
				l = labels[r]
			}
			oh[r*k+l] = 1
		}
		table := ob.param("label_embed.weight", k, E)
		emb = ob.must(G.Add(emb, ob.must(G.Mul(ob.constant([]int{rows, k}, oh), table))))
	}
	semb := ob.silu(emb)

	o.x = G.NewTensor(o.g, tensor.Float64, 4, G.WithShape(rows, im.Channels, im.Height, im.Width), G.WithName("x"),
		G.WithValue(dense([]int{rows, im.Channels, im.Height, im.Width}, x)))
	h := ob.conv("input", o.x, u.Base, 3, 1)
	hs := []*G.Node{h}
	last := len(u.Mults) - 1
	for l, m := range u.Mults {
		attn := slices.Contains(u.AttentionRes, im.Height>>l)
		for j := 0; j < u.ResBlocks; j++ {
			h = ob.res(fmt.Sprintf("down.%d.res.%d", l, j), h, semb, u.Base*m)
			if attn && ob.err == nil {
				h = ob.attention(fmt.Sprintf("down.%d.attn.%d", l, j), h)
			}
			hs = append(hs, h)
		}
		if l < last {
			h = ob.conv(fmt.Sprintf("down.%d.downsample", l), h, u.Base*m, 3, 2)
			hs = append(hs, h)
		}
	}
	ch := u.Base * u.Mults[last]
	h = ob.res("mid.res.0", h, semb, ch)
	if u.Attention {
		h = ob.attention("mid.attn", h)
	}
	h = ob.res("mid.res.1", h, semb, ch)
	for l := last; l >= 0; l-- {
		for j := 0; j <= u.ResBlocks; j++ {
			skip := hs[len(hs)-1]
			hs = hs[:len(hs)-1]
			if ob.err != nil {
				break
			}
			cat := ob.must(G.Concat(1, h, skip))
			h = ob.res(fmt.Sprintf("up.%d.res.%d", l, j), cat, semb, u.Base*u.Mults[l])
			if slices.Contains(u.AttentionRes, im.Height>>l) && ob.err == nil {
				h = ob.attention(fmt.Sprintf("up.%d.attn.%d", l, j), h)
			}
		}
		if l > 0 && ob.err == nil {
			h = ob.conv(fmt.Sprintf("up.%d.upsample", l), ob.upsample(h), u.Base*u.Mults[l], 3, 1)
		}
	}
	o.v = ob.conv("out.conv", ob.silu(ob.groupNorm("out.norm", h)), im.Channels, 3, 1)
	if ob.err != nil {
		t.Fatalf("building the gorgonia U-Net: %v", ob.err)
	}
	ec := ob.constant([]int{rows, im.Channels, im.Height, im.Width}, e)
	vc := ob.must(G.Reshape(ob.mat(o.v, rows*im.Channels, im.Height*im.Width), o.v.Shape().Clone()))
	o.f = ob.must(G.Sum(ob.must(G.HadamardProd(vc, ec))))
	if ob.err != nil {
		t.Fatalf("building the gorgonia U-Net: %v", ob.err)
	}
	if len(o.params) != len(tensors) {
		t.Fatalf("the oracle uses %d of the %d tensors", len(o.params), len(tensors))
	}
	for _, ts := range tensors {
		o.wrt = append(o.wrt, o.params[ts.Name])
	}
	o.wrt = append(o.wrt, o.x)
	if grads {
		var err error
		if o.grads, err = G.Grad(o.f, o.wrt...); err != nil {
			t.Fatalf("gorgonia.Grad: %v", err)
		}
	}
	o.vm = G.NewTapeMachine(o.g)
	t.Cleanup(func() { o.vm.Close() })
	return o
}

// run evaluates the graph (again) with the current parameter and input
// values.
func (o *unetOracle) run(t *testing.T) {
	t.Helper()
	o.vm.Reset()
	if err := o.vm.RunAll(); err != nil {
		t.Fatalf("gorgonia run: %v", err)
	}
}

func nodeData(t *testing.T, n *G.Node) []float64 {
	t.Helper()
	d, ok := n.Value().Data().([]float64)
	if !ok {
		t.Fatalf("gorgonia node %v holds %T", n, n.Value().Data())
	}
	return d
}

// value returns f.
func (o *unetOracle) value(t *testing.T) float64 {
	t.Helper()
	f, ok := o.f.Value().Data().(float64)
	if !ok {
		t.Fatalf("gorgonia f is a %T", o.f.Value().Data())
	}
	return f
}

// gradients returns df/dparams (flat, laid out like Params) and df/dx.
func (o *unetOracle) gradients(t *testing.T, tensors []model.Tensor, nParams int) ([]float64, []float64) {
	t.Helper()
	flat := make([]float64, nParams)
	for i, ts := range tensors {
		d := nodeData(t, o.grads[i])
		if len(d) != ts.Size() {
			t.Fatalf("gorgonia gradient of %s: %d elements, want %d", ts.Name, len(d), ts.Size())
		}
		copy(flat[ts.Offset:], d)
	}
	return flat, append([]float64(nil), nodeData(t, o.grads[len(tensors)])...)
}

// unetGradFloorFrac is the floor of the U-Net's element-wise relative
// error, |got - want| / max(|want|, unetGradFloorFrac max|want|) over a
// tensor (gradFloorFrac, 1e-2, is the MLP's). A gradient element of the
// tiny U-Net is some twenty float32 layers deep (convolutions, group
// norms, SiLUs, the embedding), each adding rounding of about 6e-8 of the
// size of its terms, which is that of the tensor's largest elements:
// measured, |got - want| reaches 3.6e-6 of the tensor's largest element
// (and the norm-wise error 4.3e-6), so that an element at 1% of the
// largest cannot be known to 1e-4 of itself in float32. A floor of 10%
// asks every element for an absolute error under 1e-5 of its tensor's
// scale (three times the measured worst) and every element above 10% of
// the largest for a genuine 1e-4. The norm-wise error, checked too, has no
// floor.
const unetGradFloorFrac = 0.1

func unetElemRelErr[F, G float32 | float64](got []F, want []G) float64 {
	return numtest.MaxRelErr(got, want, unetGradFloorFrac*maxAbs(want))
}

// unetGradSetup is a U-Net of the case with random parameters
// (setRandomParams), a random batch and cotangent e, and its float32
// output, gradient and input VJP for e.
type unetGradSetup struct {
	net         *model.UNet
	p           []float64 // the parameters, float64 (exact)
	x, t, e     []float64
	v, grad, vj []float32
}

func newUNetGradSetup(t *testing.T, tc unetGradCase, seed uint64) *unetGradSetup {
	t.Helper()
	b := newBackend(t)
	u := newUNet(t, b, tc.cfg, seed)
	r := rand.New(rand.NewPCG(seed, 77))
	setRandomParams(t, b, u, r)
	bt := newBatch(r, tc.rows, tc.cfg.Dim)
	ev := bt.tgt // N(0, 1): the cotangent
	if tc.labels != nil {
		u.SetLabels(labelsBuf(b, tc.labels...))
	}
	u.SetDropout(tc.dropout)
	x, tb, e := upload(b, bt.x), upload(b, bt.t), upload(b, ev)
	d := tc.cfg.Dim
	v, g, w := b.Alloc(tc.rows*d), b.Alloc(u.NumParams()), b.Alloc(tc.rows*d)
	u.Forward(tc.rows, tb, x, v)
	u.Backward(e, g)
	u.InputVJP(e, w)
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	return &unetGradSetup{net: u, p: to64(hostData(t, u.Params())), x: to64(bt.x), t: to64(bt.t), e: to64(ev),
		v: hostData(t, v), grad: hostData(t, g), vj: hostData(t, w)}
}

// TestUNetMatchesGorgonia: the output against the float64 graph (so the
// oracle is the same network), then Backward and InputVJP against
// gorgonia's symbolic gradients of sum(e * v). Measure: per tensor, the
// norm-wise relative error ||got - want|| / ||want|| and the element-wise
// relative error with the unetGradFloorFrac floor, both under gradRTol
// (1e-4).
func TestUNetMatchesGorgonia(t *testing.T) {
	for ci, tc := range unetGradCases {
		t.Run(tc.name, func(t *testing.T) {
			s := newUNetGradSetup(t, tc, uint64(500+ci))
			o := newUNetOracle(t, tc.cfg, s.net.Tensors(), s.p, tc.rows, s.x, s.t, s.e, tc.labels, true, tc.dropout)
			o.run(t)
			want := nodeData(t, o.v)
			scale := rms(want)
			worstV := 0.0
			for i := range want {
				worstV = math.Max(worstV, math.Abs(float64(s.v[i])-want[i])/(math.Abs(want[i])+scale))
			}
			numtest.AllClose(t, "v against the gorgonia graph", s.v, want, unetForwardRTol*scale, unetForwardRTol)
			t.Log(numtest.Describe("forward |got-want|/(|want|+rms)", worstV, unetForwardRTol))

			gg, gx := o.gradients(t, s.net.Tensors(), s.net.NumParams())
			worstElem, worstNorm := 0.0, 0.0
			for _, ts := range s.net.Tensors() {
				g := s.grad[ts.Offset : ts.Offset+ts.Size()]
				w := gg[ts.Offset : ts.Offset+ts.Size()]
				e, n := unetElemRelErr(g, w), normRelErr(g, w)
				if !(e <= gradRTol) || !(n <= gradRTol) {
					t.Errorf("%s: relative error against gorgonia element-wise %.3g (floor %g of max %.3g), norm-wise %.3g; want < %g", ts.Name, e, unetGradFloorFrac, maxAbs(w), n, gradRTol)
				}
				worstElem, worstNorm = math.Max(worstElem, e), math.Max(worstNorm, n)
			}
			t.Log(numtest.Describe(fmt.Sprintf("gradient vs gorgonia, norm-wise per tensor (%d parameters)", len(s.p)), worstNorm, gradRTol))
			t.Log(numtest.Describe("gradient vs gorgonia, element-wise", worstElem, gradRTol))
			ex, nx := unetElemRelErr(s.vj, gx), normRelErr(s.vj, gx)
			if !(ex <= gradRTol) || !(nx <= gradRTol) {
				t.Errorf("InputVJP against gorgonia: element-wise %.3g, norm-wise %.3g; want < %g", ex, nx, gradRTol)
			}
			t.Log(numtest.Describe("InputVJP vs gorgonia, norm-wise", nx, gradRTol))
			t.Log(numtest.Describe("InputVJP vs gorgonia, element-wise", ex, gradRTol))
		})
	}
}

// TestUNetCentralDifferences checks Backward, InputVJP and the gorgonia
// oracle itself against central differences of f = sum(e * v) computed by
// the float64 graph, on the elements each case names (with -short, the
// attention case alone, one element a tensor and 8 coordinates). Step
// cdStep (1e-5): f and its derivatives are O(1)-O(10), so truncation
// (cdStep^2 f”'/6) and rounding (1e-16 |f| / cdStep) are both about
// 1e-10: the differences are good to about 1e-9 absolute, against
// gradient tensors whose largest elements are 0.1 to 10. Tolerances as
// against gorgonia: gradRTol for the float32 passes, cdOracleRTol (1e-5)
// for gorgonia, element-wise with the unetGradFloorFrac floor of the
// tensor's largest (gorgonia) element.
func TestUNetCentralDifferences(t *testing.T) {
	for ci, tc := range unetGradCases {
		if testing.Short() && tc.cdLong {
			continue
		}
		perTensor, inputs := tc.cdPerTensor, tc.cdInputs
		if testing.Short() {
			perTensor, inputs = 1, 8
		}
		t.Run(tc.name, func(t *testing.T) {
			s := newUNetGradSetup(t, tc, uint64(600+ci))
			og := newUNetOracle(t, tc.cfg, s.net.Tensors(), s.p, tc.rows, s.x, s.t, s.e, tc.labels, true, tc.dropout)
			og.run(t)
			gg, gx := og.gradients(t, s.net.Tensors(), s.net.NumParams())
			// A forward-only graph over the same slices: moving s.p[i] or
			// s.x[i] moves its input.
			o := newUNetOracle(t, tc.cfg, s.net.Tensors(), s.p, tc.rows, s.x, s.t, s.e, tc.labels, false, tc.dropout)
			f := func() float64 { o.run(t); return o.value(t) }
			if f0, f1 := og.value(t), f(); !numtest.Close(f1, f0, 0, 1e-14) {
				t.Fatalf("forward-only graph f = %.17g, gradient graph %.17g", f1, f0)
			}

			r := rand.New(rand.NewPCG(uint64(ci), 6000))
			worst, worstOracle, count := 0.0, 0.0, 0
			for _, ts := range s.net.Tensors() {
				lo, hi := ts.Offset, ts.Offset+ts.Size()
				floor := unetGradFloorFrac * maxAbs(gg[lo:hi])
				idx := []int{lo + argMaxAbs(gg[lo:hi])}
				for k := 1; k < min(perTensor, ts.Size()); k++ {
					idx = append(idx, lo+r.IntN(ts.Size()))
				}
				for _, i := range idx {
					cd := centralDiff(f, s.p, i, cdStep)
					e := numtest.RelErr(float64(s.grad[i]), cd, floor)
					eo := numtest.RelErr(gg[i], cd, floor)
					if !(e <= gradRTol) {
						t.Errorf("%s[%d]: Backward %.9g, central difference %.9g (relative error %.3g, floor %.3g)", ts.Name, i-lo, s.grad[i], cd, e, floor)
					}
					if !(eo <= cdOracleRTol) {
						t.Errorf("%s[%d]: gorgonia %.12g, central difference %.12g (relative error %.3g)", ts.Name, i-lo, gg[i], cd, eo)
					}
					worst, worstOracle = math.Max(worst, e), math.Max(worstOracle, eo)
					count++
				}
			}
			t.Log(numtest.Describe(fmt.Sprintf("Backward vs central differences (%d of %d parameters)", count, len(s.p)), worst, gradRTol))
			t.Log(numtest.Describe("gorgonia vs central differences", worstOracle, cdOracleRTol))

			idx := r.Perm(len(s.x))
			if inputs > 0 && inputs < len(idx) {
				idx = append(idx[:inputs], argMaxAbs(gx))
			}
			floor := unetGradFloorFrac * maxAbs(gx)
			worstX, worstXOracle := 0.0, 0.0
			for _, i := range idx {
				cd := centralDiff(f, s.x, i, cdStep)
				worstX = math.Max(worstX, numtest.RelErr(float64(s.vj[i]), cd, floor))
				worstXOracle = math.Max(worstXOracle, numtest.RelErr(gx[i], cd, floor))
			}
			if !(worstX <= gradRTol) {
				t.Errorf("InputVJP against central differences: element-wise relative error %.3g, want <= %g", worstX, gradRTol)
			}
			if !(worstXOracle <= cdOracleRTol) {
				t.Errorf("gorgonia's input gradient against central differences: %.3g, want <= %g", worstXOracle, cdOracleRTol)
			}
			t.Log(numtest.Describe(fmt.Sprintf("InputVJP vs central differences (%d of %d coordinates)", len(idx), len(s.x)), worstX, gradRTol))
			t.Log(numtest.Describe("gorgonia's input gradient vs central differences", worstXOracle, cdOracleRTol))
		})
	}
}

func argMaxAbs(v []float64) int {
	best := 0
	for i, x := range v {
		if math.Abs(x) > math.Abs(v[best]) {
			best = i
		}
	}
	return best
}
