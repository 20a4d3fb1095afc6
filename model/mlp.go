package model

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/fmgpu/fmgpu/gpu"
)

// MLP is the velocity network for vector data: input [x, emb(t)], hidden
// layers with SiLU, a linear output of width D. Weights are stored out x in
// (PyTorch's nn.Linear layout), so a checkpoint's tensors load into an
// equivalent torch.nn.Sequential unchanged.
type MLP struct {
	cfg     Config
	b       gpu.Backend
	dims    []int // dims[0] = D + embedding width, dims[len] = D
	tensors []Tensor
	nParams int

	params gpu.Buffer
	w, bs  []gpu.Buffer // per layer views of params

	// Workspaces for up to capRows rows, kept from one call to the next so
	// a training step allocates nothing.
	capRows int
	in      gpu.Buffer   // network input, rows x dims[0]
	pre     []gpu.Buffer // hidden pre-activations, rows x dims[l+1]
	act     []gpu.Buffer // hidden activations
	dA, dB  gpu.Buffer   // backward ping-pong, rows x max hidden width
	tFill   gpu.Buffer   // a constant time for Velocity
	tRows   gpu.Buffer   // tFill's view of the last Velocity's rows

	gradsOf   gpu.Buffer   // the gradient buffer gradViews are views of
	gradViews []gpu.Buffer // per tensor
	rows      int          // rows of the last Forward, for Backward
	owned     []gpu.Buffer
}

// NewMLP allocates an MLP with zero parameters on b; call Init or load
// parameters before use.
func NewMLP(b gpu.Backend, cfg Config) (*MLP, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m := &MLP{cfg: cfg, b: b}
	m.dims = append([]int{cfg.Dim + cfg.TimeEmbed.Width()}, cfg.Hidden...)
	m.dims = append(m.dims, cfg.Dim)
	var err error
	if m.tensors, m.nParams, err = TensorLayout(cfg); err != nil {
		return nil, err
	}
	m.setParams(b.Alloc(m.nParams))
	return m, nil
}

func (m *MLP) setParams(p gpu.Buffer) {
	if p.Len() < m.nParams {
		panic(fmt.Sprintf("model: parameter buffer of %d elements, need %d", p.Len(), m.nParams))
	}
	m.params = p
	m.w, m.bs = m.w[:0], m.bs[:0]
	for i := 0; i < len(m.tensors); i += 2 {
		wt, bt := m.tensors[i], m.tensors[i+1]
		m.w = append(m.w, p.Slice(wt.Offset, wt.Size()))
		m.bs = append(m.bs, p.Slice(bt.Offset, bt.Size()))
	}
}

// WithParams returns an MLP of the same shape that reads its weights from p
// (the EMA weights, say) and has workspaces of its own.
func (m *MLP) WithParams(p gpu.Buffer) *MLP {
	c := &MLP{cfg: m.cfg, b: m.b, dims: m.dims, tensors: m.tensors, nParams: m.nParams}
	c.setParams(p)
	return c
}

func (m *MLP) Config() Config       { return m.cfg }
func (m *MLP) Dim() int             { return m.cfg.Dim }
func (m *MLP) NumParams() int       { return m.nParams }
func (m *MLP) Params() gpu.Buffer   { return m.params }
func (m *MLP) Tensors() []Tensor    { return m.tensors }
func (m *MLP) Backend() gpu.Backend { return m.b }

// Layers is the number of linear layers.
func (m *MLP) Layers() int { return len(m.dims) - 1 }

// FLOPsPerRow is the multiply-add count (times 2) of one forward row; a
// training step costs about three times that per row.
func (m *MLP) FLOPsPerRow() int {
	f := 0
	for l := 0; l+1 < len(m.dims); l++ {
		f += 2 * m.dims[l] * m.dims[l+1]
	}
	return f
}

// Init draws PyTorch's nn.Linear default initialization, W and b uniform on
// [-1/sqrt(in), 1/sqrt(in)] (kaiming_uniform with a = sqrt(5)), from a
// seeded generator, and uploads it.
func (m *MLP) Init(seed uint64) {
	r := rand.New(rand.NewPCG(seed, 0x6d6c70696e6974)) // "mlpinit"
	host := make([]float32, m.nParams)
	for i := 0; i < len(m.tensors); i += 2 {
		wt, bt := m.tensors[i], m.tensors[i+1]
		bound := 1 / math.Sqrt(float64(wt.Shape[1]))
		for j := wt.Offset; j < wt.Offset+wt.Size(); j++ {
			host[j] = float32((2*r.Float64() - 1) * bound)
		}
		for j := bt.Offset; j < bt.Offset+bt.Size(); j++ {
			host[j] = float32((2*r.Float64() - 1) * bound)
		}
	}
	m.b.Upload(m.params, host)
}

// Reserve makes the workspaces hold at least rows rows.
func (m *MLP) Reserve(rows int) {
	// At least one row: Forward indexes the per-layer workspaces even for
	// an empty batch.
	rows = max(rows, 1)
	if rows <= m.capRows {
		return
	}
	m.Release()
	alloc := func(n int) gpu.Buffer {
		buf := m.b.Alloc(n)
		m.owned = append(m.owned, buf)
		return buf
	}
	m.in = alloc(rows * m.dims[0])
	widest := m.cfg.Dim // the output layer's dZ shares these buffers
	m.pre, m.act = m.pre[:0], m.act[:0]
	for _, h := range m.cfg.Hidden {
		m.pre = append(m.pre, alloc(rows*h))
		m.act = append(m.act, alloc(rows*h))
		widest = max(widest, h)
	}
	m.dA, m.dB = alloc(rows*widest), alloc(rows*widest)
	m.tFill = alloc(rows)
	m.capRows = rows
}

// Release frees the workspaces (parameters stay).
func (m *MLP) Release() {
	for _, buf := range m.owned {
		m.b.Free(buf)
	}
	m.owned, m.capRows, m.tRows = nil, 0, nil
}

// Forward computes out = v(t, x) for rows rows (t: rows, x and out: rows x
// D) and keeps the activations for Backward and InputVJP.
func (m *MLP) Forward(rows int, t, x, out gpu.Buffer) {
	m.forward(rows, t, x, out, true)
}

// forward is Forward; without keep it does not store the pre-activations,
// which only a backward pass reads (sampling saves a pass over them), and
// a later Backward or InputVJP is invalid.
func (m *MLP) forward(rows int, t, x, out gpu.Buffer, keep bool) {
	m.Reserve(rows)
	m.rows = rows
	d := m.cfg.Dim
	m.b.EmbedInput(rows, d, x, t, m.cfg.TimeEmbed, m.in)
	src := m.in
	last := m.Layers() - 1
	for l := 0; l <= last; l++ {
		in, o := m.dims[l], m.dims[l+1]
		if l == last {
			m.b.Linear(rows, in, o, src, in, m.w[l], m.bs[l], gpu.ActNone, nil, out)
			break
		}
		var pre gpu.Buffer
		if keep {
			pre = m.pre[l]
		}
		m.b.Linear(rows, in, o, src, in, m.w[l], m.bs[l], gpu.ActSiLU, pre, m.act[l])
		src = m.act[l]
	}
}

// Backward writes into grads (laid out like Params) the gradient of a
// scalar loss whose gradient with respect to the last Forward's output is
// dOut (rows x D). dOut is not modified.
func (m *MLP) Backward(dOut, grads gpu.Buffer) {
	m.backward(dOut, grads, nil)
}

// InputVJP writes w = e^T dv/dx per row for the last Forward (e, w: rows x
// D): the vector-Jacobian product the likelihood's divergence needs.
func (m *MLP) InputVJP(e, w gpu.Buffer) {
	m.backward(e, nil, w)
}

func (m *MLP) backward(dOut, grads, dx gpu.Buffer) {
	rows := m.rows
	last := m.Layers() - 1
	dZ := dOut
	cur, next := m.dA, m.dB
	for l := last; l >= 0; l-- {
		in, o := m.dims[l], m.dims[l+1]
		if l < last {
			// dZ = dA * silu'(pre), in place
			var db gpu.Buffer
			if grads != nil {
				db = m.gradView(grads, 2*l+1)
			}
			m.b.BiasActBackward(gpu.ActSiLU, rows, o, cur, m.pre[l], cur, db)
			dZ = cur
		} else if grads != nil {
			// identity activation: dPre is dOut itself, only the bias gradient is new
			m.b.BiasActBackward(gpu.ActNone, rows, o, dOut, nil, dOut, m.gradView(grads, 2*l+1))
		}
		if grads != nil {
			x := m.in
			if l > 0 {
				x = m.act[l-1]
			}
			m.b.Gemm(true, false, o, in, rows, 1, dZ, o, x, in, 0, m.gradView(grads, 2*l), in)
		}
		switch {
		case l > 0:
			m.b.Gemm(false, false, rows, in, o, 1, dZ, o, m.w[l], in, 0, next, in)
			cur, next = next, cur
		case dx != nil:
			// only the x columns of the input: W_0[:, :D], row stride in
			d := m.cfg.Dim
			m.b.Gemm(false, false, rows, d, o, 1, dZ, o, m.w[0], in, 0, dx, d)
		}
	}
}

// gradView returns tensor i's view of grads; the views are made once per
// gradient buffer, so a training step allocates nothing.
func (m *MLP) gradView(grads gpu.Buffer, i int) gpu.Buffer {
	if grads != m.gradsOf {
		m.gradViews = m.gradViews[:0]
		for _, t := range m.tensors {
			m.gradViews = append(m.gradViews, grads.Slice(t.Offset, t.Size()))
		}
		m.gradsOf = grads
	}
	return m.gradViews[i]
}

// rowsView returns a view of buf's first n elements, reusing *cache when it
// already is one.
func rowsView(cache *gpu.Buffer, buf gpu.Buffer, n int) gpu.Buffer {
	if *cache == nil || (*cache).Len() != n {
		*cache = buf.Slice(0, n)
	}
	return *cache
}

// Velocity is the sampler's field: v(t, x) with one t for every row. It
// keeps nothing for a backward pass.
func (m *MLP) Velocity(t float64, rows int, x, v gpu.Buffer) {
	m.forward(rows, m.fillTime(t, rows), x, v, false)
}

func (m *MLP) fillTime(t float64, rows int) gpu.Buffer {
	m.Reserve(rows)
	tb := rowsView(&m.tRows, m.tFill, rows)
	m.b.Fill(tb, float32(t))
	return tb
}

// VJP is Velocity followed by InputVJP: v = v(t, x), w = e^T dv/dx.
func (m *MLP) VJP(t float64, rows int, x, e, v, w gpu.Buffer) {
	m.Forward(rows, m.fillTime(t, rows), x, v)
	m.InputVJP(e, w)
}
