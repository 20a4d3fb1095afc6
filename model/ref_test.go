package model_test

// A float64 reference of the MLP, written plainly from the documentation
// (gpu.TimeEmbedding, model.MLP), and the shared fixtures of the model tests.

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/fmgpu/fmgpu/gpu"
	"github.com/fmgpu/fmgpu/model"
)

// testCase is one network shape the numeric tests run on.
type testCase struct {
	name string
	cfg  model.Config
}

// sin4 is a small sinusoidal embedding; Scale 1000 as in the default, so
// that the embedding's fast frequencies are exercised.
var sin4 = gpu.TimeEmbedding{Freqs: 4, Scale: 1000, MaxPeriod: 10000}

func mlpConfig(dim int, emb gpu.TimeEmbedding, hidden ...int) model.Config {
	return model.Config{Kind: "mlp", Dim: dim, Hidden: hidden, TimeEmbed: emb}
}

// testCases are the shapes of the issue: D = 2 with hidden 8,16 and D = 3
// with hidden 5,7,4, each with the raw time (Freqs = 0) and a sinusoidal
// embedding (the default one for D = 2, 4 frequencies for D = 3).
var testCases = []testCase{
	{"D2-h8,16-raw", mlpConfig(2, gpu.TimeEmbedding{}, 8, 16)},
	{"D2-h8,16-sin16", mlpConfig(2, model.DefaultTimeEmbedding, 8, 16)},
	{"D3-h5,7,4-raw", mlpConfig(3, gpu.TimeEmbedding{}, 5, 7, 4)},
	{"D3-h5,7,4-sin4", mlpConfig(3, sin4, 5, 7, 4)},
}

// testRows are the batch sizes: one row, a few, and a size that is not a
// multiple of anything the CPU backend splits work by.
var testRows = []int{1, 3, 17}

// newBackend returns a CPU backend closed at the end of the test.
func newBackend(t testing.TB) *gpu.CPU {
	b := gpu.NewCPU(0)
	t.Cleanup(func() { b.Close() })
	return b
}

// newMLP builds and initializes an MLP on b.
func newMLP(t testing.TB, b gpu.Backend, cfg model.Config, seed uint64) *model.MLP {
	t.Helper()
	m, err := model.NewMLP(b, cfg)
	if err != nil {
		t.Fatalf("NewMLP(%+v): %v", cfg, err)
	}
	m.Init(seed)
	return m
}

// hostData is gpu.HostData that fails the test for a non-CPU buffer.
func hostData(t testing.TB, buf gpu.Buffer) []float32 {
	t.Helper()
	d, ok := gpu.HostData(buf)
	if !ok {
		t.Fatalf("buffer %T is not a CPU buffer", buf)
	}
	return d
}

// upload allocates a buffer on b holding v.
func upload(b gpu.Backend, v []float32) gpu.Buffer {
	buf := b.Alloc(len(v))
	b.Upload(buf, v)
	return buf
}

func to64(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

// batch is a random input batch: x and target N(0, 1), t U(0, 1), all
// float32 values so that the float64 reference sees exactly what the
// network sees.
type batch struct {
	rows      int
	x, t, tgt []float32
}

func newBatch(r *rand.Rand, rows, dim int) batch {
	bt := batch{rows: rows, x: make([]float32, rows*dim), t: make([]float32, rows), tgt: make([]float32, rows*dim)}
	for i := range bt.x {
		bt.x[i] = float32(r.NormFloat64())
		bt.tgt[i] = float32(r.NormFloat64())
	}
	for i := range bt.t {
		bt.t[i] = float32(r.Float64())
	}
	return bt
}

// refEmbed builds the network input [x, emb(t)] (rows x (D + width)) as
// gpu.TimeEmbedding documents it: Freqs = 0 appends t; otherwise
// [sin(Scale t w_j)..., cos(Scale t w_j)...], w_j = MaxPeriod^(-j/Freqs).
func refEmbed(cfg model.Config, rows int, x, t []float64) []float64 {
	d, e := cfg.Dim, cfg.TimeEmbed
	w := d + e.Width()
	out := make([]float64, rows*w)
	for r := 0; r < rows; r++ {
		o := out[r*w : (r+1)*w]
		copy(o, x[r*d:(r+1)*d])
		if e.Freqs == 0 {
			o[d] = t[r]
			continue
		}
		for j := 0; j < e.Freqs; j++ {
			wj := math.Pow(float64(e.MaxPeriod), -float64(j)/float64(e.Freqs))
			arg := float64(e.Scale) * t[r] * wj
			o[d+j] = math.Sin(arg)
			o[d+e.Freqs+j] = math.Cos(arg)
		}
	}
	return out
}

// refDims is [D + embedding width, hidden..., D].
func refDims(cfg model.Config) []int {
	dims := append([]int{cfg.Dim + cfg.TimeEmbed.Width()}, cfg.Hidden...)
	return append(dims, cfg.Dim)
}

func silu64(z float64) float64 { return z / (1 + math.Exp(-z)) }

// siluGrad64 is d/dz z s(z) = s(z) (1 + z (1 - s(z))), s the logistic.
func siluGrad64(z float64) float64 {
	s := 1 / (1 + math.Exp(-z))
	return s * (1 + z*(1-s))
}

// refForward is the network on an embedded input (rows x dims[0]) with
// parameters p laid out as the tensors say (layer l: weight tensor 2l of
// shape (out, in), bias tensor 2l+1): y = x W^T + b, SiLU between layers,
// linear output.
func refForward(cfg model.Config, tensors []model.Tensor, p []float64, rows int, in []float64) []float64 {
	dims := refDims(cfg)
	h := in
	for l := 0; l+1 < len(dims); l++ {
		ni, no := dims[l], dims[l+1]
		w := p[tensors[2*l].Offset:]
		bias := p[tensors[2*l+1].Offset:]
		y := make([]float64, rows*no)
		for r := 0; r < rows; r++ {
			for o := 0; o < no; o++ {
				z := bias[o]
				for i := 0; i < ni; i++ {
					z += h[r*ni+i] * w[o*ni+i]
				}
				if l+2 < len(dims) {
					z = silu64(z)
				}
				y[r*no+o] = z
			}
		}
		h = y
	}
	return h
}

// refLoss is flow matching's minibatch loss (docs/math.md): the sum over the
// batch of ||v - target||^2 divided by rows.
func refLoss(rows int, v, tgt []float64) float64 {
	s := 0.0
	for i := range v {
		e := v[i] - tgt[i]
		s += e * e
	}
	return s / float64(rows)
}

// refJacobian returns dv/dx (D x D, row-major: [i][j] = dv_i/dx_j) of one
// embedded input row, by forward-mode differentiation in float64: the
// tangent of the input is [I_D; 0] (t does not move with x).
func refJacobian(cfg model.Config, tensors []model.Tensor, p []float64, inRow []float64) []float64 {
	dims := refDims(cfg)
	d := cfg.Dim
	h := append([]float64(nil), inRow...)
	tan := make([]float64, dims[0]*d) // dims[l] x D
	for j := 0; j < d; j++ {
		tan[j*d+j] = 1
	}
	for l := 0; l+1 < len(dims); l++ {
		ni, no := dims[l], dims[l+1]
		w := p[tensors[2*l].Offset:]
		bias := p[tensors[2*l+1].Offset:]
		y := make([]float64, no)
		ty := make([]float64, no*d)
		for o := 0; o < no; o++ {
			z := bias[o]
			for i := 0; i < ni; i++ {
				z += h[i] * w[o*ni+i]
				for j := 0; j < d; j++ {
					ty[o*d+j] += w[o*ni+i] * tan[i*d+j]
				}
			}
			if l+2 < len(dims) {
				g := siluGrad64(z)
				for j := 0; j < d; j++ {
					ty[o*d+j] *= g
				}
				z = silu64(z)
			}
			y[o] = z
		}
		h, tan = y, ty
	}
	return tan
}

// centralDiff is the central difference of f at x[i] with step h (x[i] is
// restored).
func centralDiff(f func() float64, x []float64, i int, h float64) float64 {
	x0 := x[i]
	x[i] = x0 + h
	fp := f()
	x[i] = x0 - h
	fm := f()
	x[i] = x0
	return (fp - fm) / (2 * h)
}

func maxAbs[F float32 | float64](v []F) float64 {
	m := 0.0
	for _, x := range v {
		m = math.Max(m, math.Abs(float64(x)))
	}
	return m
}

// normRelErr is ||got - want||_2 / ||want||_2 (+Inf when want is zero and
// got is not, or on NaN).
func normRelErr[F, G float32 | float64](got []F, want []G) float64 {
	var num, den float64
	for i := range got {
		e := float64(got[i]) - float64(want[i])
		num += e * e
		den += float64(want[i]) * float64(want[i])
	}
	if math.IsNaN(num) || math.IsNaN(den) {
		return math.Inf(1)
	}
	if num == 0 {
		return 0
	}
	return math.Sqrt(num / den)
}

// tinyCase is a network small enough that every check can afford every
// parameter (20 of them) and every input coordinate.
var tinyCase = testCase{"tiny-D2-h3-raw", mlpConfig(2, gpu.TimeEmbedding{}, 3)}
