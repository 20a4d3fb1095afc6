package model

import (
	"fmt"

	"github.com/fmgpu/fmgpu/gpu"
)

// MLP is the velocity network for vector data: input [x, emb(t)], hidden
// layers with SiLU, a linear output of width D. Weights are stored out x in
// (PyTorch's nn.Linear layout), so a checkpoint's tensors load into an
// equivalent torch.nn.Sequential once layers.K is renamed to the
// Sequential's index of that Linear (2K, its SiLUs counted).
type MLP struct {
	cfg     Config
	b       gpu.Backend
	dims    []int // dims[0] = D + embedding width, dims[len] = D
	params  *paramSet
	layers  []dense
	weights gpu.Buffer
	wv, gv  tensorViews // views of the weights and of the last gradient buffer
	rows    int         // rows of the last Forward, for Backward

	// Workspaces, kept from one call to the next so that a training step
	// allocates nothing.
	ws       workspaces
	in       *workspace   // network input, dims[0] a row
	pre, act []*workspace // hidden pre-activations and activations
	grad     [2]*workspace
	tFill    *workspace // a constant time for Velocity
	pass     pass
}

// mlpDims are the widths of an MLP's layers, input first.
func mlpDims(c Config) []int {
	dims := append([]int{c.Dim + c.TimeEmbed.Width()}, c.Hidden...)
	return append(dims, c.Dim)
}

// mlpParams lays out an MLP's tensors: layers.l.weight and .bias.
func mlpParams(c Config) *paramSet {
	dims := mlpDims(c)
	s := &paramSet{}
	for l := 0; l+1 < len(dims); l++ {
		s.weightBias(fmt.Sprintf("layers.%d", l), false, dims[l+1], dims[l])
	}
	return s
}

// NewMLP allocates an MLP with zero parameters on b; call Init or load
// parameters before use.
func NewMLP(b gpu.Backend, cfg Config) (*MLP, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Kind != KindMLP {
		return nil, fmt.Errorf("model kind %q is not mlp", cfg.Kind)
	}
	m := buildMLP(b, cfg)
	m.setWeights(b.Alloc(m.params.size))
	return m, nil
}

// buildMLP lays out a validated configuration with no buffer allocated.
func buildMLP(b gpu.Backend, cfg Config) *MLP {
	m := &MLP{cfg: cfg, b: b, dims: mlpDims(cfg), params: mlpParams(cfg)}
	ws := &m.ws
	m.in = ws.stored("input", m.dims[0])
	widest := 0
	for l, h := range cfg.Hidden {
		m.pre = append(m.pre, ws.stored(fmt.Sprintf("layers.%d.pre", l), h))
		m.act = append(m.act, ws.stored(fmt.Sprintf("layers.%d.act", l), h))
		widest = max(widest, h)
	}
	m.grad = [2]*workspace{ws.stored("grad.0", widest), ws.stored("grad.1", widest)}
	m.tFill = ws.stored("velocity.t", 1)
	for l := 0; l+1 < len(m.dims); l++ {
		m.layers = append(m.layers, dense{w: param(2 * l), b: param(2*l + 1), in: m.dims[l], out: m.dims[l+1]})
	}
	return m
}

func (m *MLP) setWeights(p gpu.Buffer) {
	m.pass.w = m.wv.bind(p, m.params)
	m.weights = p
}

// WithWeights returns an MLP of the same shape that reads its weights from
// p (the EMA weights, say) and has workspaces of its own.
func (m *MLP) WithWeights(p gpu.Buffer) Net {
	c := buildMLP(m.b, m.cfg)
	c.setWeights(p)
	return c
}

// SetLabels: the MLP is unconditional (Config.Validate rejects classes).
func (m *MLP) SetLabels(gpu.Buffer) {}

func (m *MLP) Config() Config       { return m.cfg }
func (m *MLP) Dim() int             { return m.cfg.Dim }
func (m *MLP) NumParams() int       { return m.params.size }
func (m *MLP) Params() gpu.Buffer   { return m.weights }
func (m *MLP) Tensors() []Tensor    { return m.params.tensors }
func (m *MLP) Backend() gpu.Backend { return m.b }

// Layers is the number of linear layers.
func (m *MLP) Layers() int { return len(m.layers) }

// FLOPsPerRow is the multiply-add count (times 2) of one forward row; a
// training step costs about three times that per row.
func (m *MLP) FLOPsPerRow() int {
	f := 0
	for _, d := range m.layers {
		f += 2 * d.in * d.out
	}
	return f
}

// Init draws PyTorch's nn.Linear default initialization, W and b uniform on
// [-1/sqrt(in), 1/sqrt(in)] (kaiming_uniform with a = sqrt(5)), from a
// seeded generator, and uploads it.
func (m *MLP) Init(seed uint64) {
	m.b.Upload(m.weights, m.params.initial(seed, 0x6d6c70696e6974)) // "mlpinit"
}

// Reserve makes the workspaces hold at least rows rows.
func (m *MLP) Reserve(rows int) { m.ws.reserve(m.b, rows) }

// Release frees the workspaces (parameters stay).
func (m *MLP) Release() { m.ws.release(m.b) }

// begin readies the pass of a call over rows rows; grads nil: no parameter
// gradient.
func (m *MLP) begin(rows int, grads gpu.Buffer) *pass {
	p := &m.pass
	p.b, p.rows = m.b, rows
	p.g = m.gv.bind(grads, m.params)
	return p
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
	p := m.begin(rows, nil)
	src := m.in.at(rows)
	m.b.EmbedInput(rows, m.cfg.Dim, x, t, m.cfg.TimeEmbed, src)
	last := len(m.layers) - 1
	for l := range m.layers[:last] {
		var pre gpu.Buffer
		if keep {
			pre = m.pre[l].at(rows)
		}
		act := m.act[l].at(rows)
		m.layers[l].Forward(p, gpu.ActSiLU, src, pre, act)
		src = act
	}
	m.layers[last].Forward(p, gpu.ActNone, src, nil, out)
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

// backward runs the layers backward from dOut; the gradient between two
// layers alternates between the two grad workspaces. Each layer is one
// LinearBackward: its weight and bias gradients, when the pass wants them,
// and the gradient of the previous layer's pre-activation (the SiLU's
// backward fused in). dx, where not nil, receives the gradient of x (the
// input's first D columns). dOut (the output layer has no activation: it
// is that layer's pre-activation gradient) is not modified.
func (m *MLP) backward(dOut, grads, dx gpu.Buffer) {
	rows := m.rows
	p := m.begin(rows, grads)
	last := len(m.layers) - 1
	dPre, next := dOut, 0
	for l := last; l >= 0; l-- {
		d := &m.layers[l]
		var dW, dB gpu.Buffer
		if p.grads() {
			dW, dB = p.g[d.w], p.g[d.b]
		}
		if l == 0 {
			m.b.LinearBackward(rows, d.in, d.out, dPre, m.in.at(rows), d.in, p.w[d.w], dW, dB, m.cfg.Dim, gpu.ActNone, nil, 0, dx)
			break
		}
		din := m.grad[next].view(rows, d.in)
		m.b.LinearBackward(rows, d.in, d.out, dPre, m.act[l-1].at(rows), d.in, p.w[d.w], dW, dB, d.in, gpu.ActSiLU, m.pre[l-1].at(rows), 0, din)
		dPre, next = din, 1-next
	}
}

// Velocity is the sampler's field: v(t, x) with one t for every row. It
// keeps nothing for a backward pass.
func (m *MLP) Velocity(t float64, rows int, x, v gpu.Buffer) {
	m.forward(rows, m.fillTime(t, rows), x, v, false)
}

func (m *MLP) fillTime(t float64, rows int) gpu.Buffer {
	m.Reserve(rows)
	tb := m.tFill.at(rows)
	m.b.Fill(tb, float32(t))
	return tb
}

// VJP is Velocity followed by InputVJP: v = v(t, x), w = e^T dv/dx.
func (m *MLP) VJP(t float64, rows int, x, e, v, w gpu.Buffer) {
	m.Forward(rows, m.fillTime(t, rows), x, v)
	m.InputVJP(e, w)
}
