package fmgpu_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/fmgpu/fmgpu"
	"github.com/fmgpu/fmgpu/gpu"
	"github.com/fmgpu/fmgpu/model"
	"github.com/fmgpu/fmgpu/train"
)

// resMLP is a velocity network of one's own: a residual MLP,
//
//	h_0     = W_in [x, emb(t)] + b_in
//	h_{k+1} = h_k + silu(W_k h_k + b_k)     k = 0..K-1
//	v       = W_out h_K + b_out
//
// written over the backend's operations (gpu.Dense's Linear and
// BiasActBackward, gpu.Products' Gemm) with its backward pass, so that it
// runs on the CPU and on a GPU alike. Its Config's Hidden holds the width
// once per residual block.
type resMLP struct {
	cfg      model.Config
	b        gpu.Backend
	d, e, h  int // data, input (data + time embedding) and hidden widths
	k        int // residual blocks
	tensors  []model.Tensor
	size     int
	weights  gpu.Buffer
	w        []gpu.Buffer // views of the weights, one per tensor
	rows     int          // of the last Forward
	capRows  int
	owned    []gpu.Buffer
	in, hs   gpu.Buffer // the input [x, emb(t)] and h_0..h_K, stored by Forward
	pre, act gpu.Buffer // W_k h_k + b_k and its silu, per block
	dh, dpre gpu.Buffer // backward temporaries
	tFill    gpu.Buffer
}

const resMLPKind model.Kind = "resmlp"

func init() {
	err := model.Register(resMLPKind, model.Architecture{
		Validate: validateResMLP,
		Layout:   func(c model.Config) []model.Tensor { ts, _ := resMLPLayout(c); return ts },
		New:      newResMLP,
	})
	if err != nil {
		log.Fatal(err)
	}
}

func validateResMLP(c model.Config) error {
	if len(c.Hidden) == 0 || c.Classes > 0 || c.Image != nil || c.UNet != nil {
		return errors.New("resmlp: needs Hidden (the width once per block), no classes, no image")
	}
	for _, w := range c.Hidden {
		if w != c.Hidden[0] || w > 4096 {
			return fmt.Errorf("resmlp: widths %v: need one width up to 4096", c.Hidden)
		}
	}
	return nil
}

// resMLPLayout names the tensors in nn.Linear's layout (out x in).
func resMLPLayout(c model.Config) ([]model.Tensor, int) {
	e, h := c.Dim+c.TimeEmbed.Width(), c.Hidden[0]
	var ts []model.Tensor
	off := 0
	add := func(name string, shape ...int) {
		t := model.Tensor{Name: name, Shape: shape, Offset: off}
		ts = append(ts, t)
		off += t.Size()
	}
	add("in.weight", h, e)
	add("in.bias", h)
	for k := range c.Hidden {
		add(fmt.Sprintf("blocks.%d.weight", k), h, h)
		add(fmt.Sprintf("blocks.%d.bias", k), h)
	}
	add("out.weight", c.Dim, h)
	add("out.bias", c.Dim)
	return ts, off
}

func newResMLP(b gpu.Backend, c model.Config) (model.Net, error) {
	n := buildResMLP(b, c)
	n.setWeights(b.Alloc(n.size))
	return n, nil
}

func buildResMLP(b gpu.Backend, c model.Config) *resMLP {
	ts, size := resMLPLayout(c)
	return &resMLP{cfg: c, b: b, d: c.Dim, e: c.Dim + c.TimeEmbed.Width(), h: c.Hidden[0], k: len(c.Hidden), tensors: ts, size: size}
}

func (n *resMLP) setWeights(p gpu.Buffer) {
	n.weights, n.w = p, nil
	for _, t := range n.tensors {
		n.w = append(n.w, p.Slice(t.Offset, t.Size()))
	}
}

// The tensors' indices in n.w and in a gradient's views.
func (n *resMLP) wIn() int         { return 0 }
func (n *resMLP) wBlock(k int) int { return 2 + 2*k }
func (n *resMLP) wOut() int        { return 2 + 2*n.k }

func (n *resMLP) Config() model.Config    { return n.cfg }
func (n *resMLP) Dim() int                { return n.d }
func (n *resMLP) NumParams() int          { return n.size }
func (n *resMLP) Params() gpu.Buffer      { return n.weights }
func (n *resMLP) Tensors() []model.Tensor { return n.tensors }
func (n *resMLP) SetLabels(gpu.Buffer)    {}
func (n *resMLP) FLOPsPerRow() int        { return 2 * n.h * (n.e + n.k*n.h + n.d) }

// Init draws nn.Linear's initialization, uniform within 1/sqrt(fan-in).
func (n *resMLP) Init(seed uint64) {
	r := rand.New(rand.NewPCG(seed, 0x7265736d6c70)) // "resmlp"
	host := make([]float32, n.size)
	for i := 0; i < len(n.tensors); i += 2 {
		w, bias := n.tensors[i], n.tensors[i+1]
		bound := 1 / math.Sqrt(float64(w.Shape[1]))
		for j := w.Offset; j < bias.Offset+bias.Size(); j++ {
			host[j] = float32((2*r.Float64() - 1) * bound)
		}
	}
	n.b.Upload(n.weights, host)
}

func (n *resMLP) WithWeights(p gpu.Buffer) model.Net {
	c := buildResMLP(n.b, n.cfg)
	c.setWeights(p)
	return c
}

// Reserve sizes the workspaces for rows rows; Release frees them.
func (n *resMLP) Reserve(rows int) {
	if rows <= n.capRows {
		return
	}
	n.Release()
	alloc := func(size int) gpu.Buffer {
		buf := n.b.Alloc(size)
		n.owned = append(n.owned, buf)
		return buf
	}
	n.in, n.hs = alloc(rows*n.e), alloc((n.k+1)*rows*n.h)
	n.pre, n.act = alloc(n.k*rows*n.h), alloc(n.k*rows*n.h)
	n.dh, n.dpre, n.tFill = alloc(rows*n.h), alloc(rows*max(n.h, n.d)), alloc(rows)
	n.capRows = rows
}

func (n *resMLP) Release() {
	for _, buf := range n.owned {
		n.b.Free(buf)
	}
	n.owned, n.capRows = nil, 0
}

// hk is h_k of the last Forward; preK and actK block k's stored values.
func (n *resMLP) hk(k int) gpu.Buffer   { return n.hs.Slice(k*n.rows*n.h, n.rows*n.h) }
func (n *resMLP) preK(k int) gpu.Buffer { return n.pre.Slice(k*n.rows*n.h, n.rows*n.h) }
func (n *resMLP) actK(k int) gpu.Buffer { return n.act.Slice(k*n.rows*n.h, n.rows*n.h) }

func (n *resMLP) Forward(rows int, t, x, out gpu.Buffer) {
	b := n.b
	n.Reserve(rows)
	n.rows = rows
	in := n.in.Slice(0, rows*n.e)
	b.EmbedInput(rows, n.d, x, t, n.cfg.TimeEmbed, in)
	b.Linear(rows, n.e, n.h, in, n.e, n.w[n.wIn()], n.w[n.wIn()+1], gpu.ActNone, nil, n.hk(0))
	for k := range n.k {
		i := n.wBlock(k)
		b.Linear(rows, n.h, n.h, n.hk(k), n.h, n.w[i], n.w[i+1], gpu.ActSiLU, n.preK(k), n.actK(k))
		b.Copy(n.hk(k+1), n.hk(k))
		b.Axpy(1, n.actK(k), n.hk(k+1))
	}
	b.Linear(rows, n.h, n.d, n.hk(n.k), n.h, n.w[n.wOut()], n.w[n.wOut()+1], gpu.ActNone, nil, out)
}

func (n *resMLP) Backward(dOut, grads gpu.Buffer) { n.backward(dOut, grads, nil) }

func (n *resMLP) InputVJP(e, w gpu.Buffer) { n.backward(e, nil, w) }

// backward takes dOut back through the network: into the parameter
// gradient grads (laid out like Params) when not nil, into the gradient
// of x, dx, when not nil.
func (n *resMLP) backward(dOut, grads, dx gpu.Buffer) {
	b, rows, h := n.b, n.rows, n.h
	var g []gpu.Buffer
	if grads != nil {
		for _, t := range n.tensors {
			g = append(g, grads.Slice(t.Offset, t.Size()))
		}
	}
	dh, dpre := n.dh.Slice(0, rows*h), n.dpre.Slice(0, rows*h)
	if g != nil { // v = W_out h_K + b_out
		o := n.wOut()
		b.Gemm(true, false, n.d, h, rows, 1, dOut, n.d, n.hk(n.k), h, 0, g[o], h)
		b.BiasActBackward(gpu.ActNone, rows, n.d, dOut, nil, n.dpre.Slice(0, rows*n.d), g[o+1])
	}
	b.Gemm(false, false, rows, h, n.d, 1, dOut, n.d, n.w[n.wOut()], h, 0, dh, h)
	for k := n.k - 1; k >= 0; k-- { // dh_k = dh_{k+1} + (silu'(pre_k) dh_{k+1}) W_k
		i := n.wBlock(k)
		var dBias gpu.Buffer
		if g != nil {
			dBias = g[i+1]
		}
		b.BiasActBackward(gpu.ActSiLU, rows, h, dh, n.preK(k), dpre, dBias)
		if g != nil {
			b.Gemm(true, false, h, h, rows, 1, dpre, h, n.hk(k), h, 0, g[i], h)
		}
		b.Gemm(false, false, rows, h, h, 1, dpre, h, n.w[i], h, 1, dh, h)
	}
	if g != nil { // h_0 = W_in [x, emb(t)] + b_in
		b.BiasActBackward(gpu.ActNone, rows, h, dh, nil, dpre, g[n.wIn()+1])
		b.Gemm(true, false, h, n.e, rows, 1, dh, h, n.in.Slice(0, rows*n.e), n.e, 0, g[n.wIn()], n.e)
	}
	if dx != nil { // the first d columns of dh_0 W_in
		b.Gemm(false, false, rows, n.d, h, 1, dh, h, n.w[n.wIn()], n.e, 0, dx, n.d)
	}
}

func (n *resMLP) Velocity(t float64, rows int, x, v gpu.Buffer) {
	n.Forward(rows, n.fillTime(t, rows), x, v)
}

func (n *resMLP) VJP(t float64, rows int, x, e, v, w gpu.Buffer) {
	n.Forward(rows, n.fillTime(t, rows), x, v)
	n.InputVJP(e, w)
}

func (n *resMLP) fillTime(t float64, rows int) gpu.Buffer {
	n.Reserve(rows)
	tb := n.tFill.Slice(0, rows)
	n.b.Fill(tb, float32(t))
	return tb
}

// A network of one's own: registered under a kind (in init above), it is
// configured, trained, saved and loaded back like the built-in MLP and
// U-Net. Here a residual MLP learns a spiral from a generator of points.
func Example_customNetwork() {
	ctx := context.Background()
	cpu, _ := fmgpu.OpenDevice(fmgpu.DeviceCPU, 0)
	defer cpu.Close()
	rng := rand.New(rand.NewPCG(5, 6))
	spiral := fmgpu.SourceFunc(2, func(_ context.Context, x []float32, _ []int32) error {
		for i := 0; i < len(x); i += 2 {
			s := 3 * math.Pi * math.Sqrt(rng.Float64())
			x[i] = float32(s*math.Cos(s)/4 + 0.05*rng.NormFloat64())
			x[i+1] = float32(s*math.Sin(s)/4 + 0.05*rng.NormFloat64())
		}
		return nil
	})
	cfg := fmgpu.DefaultConfig(2)
	cfg.Model = model.Config{Kind: resMLPKind, Dim: 2, Hidden: []int{64, 64, 64}, TimeEmbed: model.DefaultTimeEmbedding}
	cfg.Steps, cfg.Warmup = 2500, 200
	out, _ := os.MkdirTemp("", "resmlp")
	defer os.RemoveAll(out)
	trained, err := fmgpu.Train(ctx, cfg, spiral, fmgpu.TrainOptions{Device: cpu, OutDir: out})
	if err != nil {
		log.Fatal(err)
	}
	trained.Close()

	m, err := fmgpu.Load(ctx, filepath.Join(out, train.CheckpointName), fmgpu.LoadOptions{Device: cpu})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	x, err := m.Sample(ctx, 1000, fmgpu.SampleOptions{Seed: 3})
	if err != nil {
		log.Fatal(err)
	}
	// The samples lie near the spiral: their mean distance to it tends to
	// that of the training points (0.05 sqrt(pi / 2), 0.06) as training
	// goes on.
	var dist float64
	for i := 0; i < len(x); i += 2 {
		near := math.Inf(1)
		for j := range 3000 {
			s := 3 * math.Pi * float64(j) / 2999
			near = math.Min(near, math.Hypot(float64(x[i])-s*math.Cos(s)/4, float64(x[i+1])-s*math.Sin(s)/4))
		}
		dist += near / 1000
	}
	fmt.Printf("%s, %d parameters\n", m.Config().Model, m.Generator().Net.NumParams())
	fmt.Println("mean distance to the spiral below 0.15:", dist < 0.15)
	// Output:
	// resmlp dim 2, 14850 parameters
	// mean distance to the spiral below 0.15: true
}
