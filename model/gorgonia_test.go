// gorgonia's own cuda build tag pulls in cuDNN; the oracle runs in the
// plain and kernelsim builds.

//go:build !cuda

package model_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/fmgpu/fmgpu/gpu"
	"github.com/fmgpu/fmgpu/internal/numtest"
	"github.com/fmgpu/fmgpu/model"
)

// gradRTol is the bound on the hand-written backward against an
// independent gradient: relative error under 1e-4.
const gradRTol = 1e-4

// gradFloorFrac sets the floor of the element-wise relative error of a
// gradient tensor: |got - want| / max(|want|, gradFloorFrac * max|want|),
// the max over the same tensor. A float32 gradient element is a sum over
// the batch (and, for earlier layers, over the layers above) of products
// whose size is that of the tensor's largest elements, computed from
// float32 activations (and a float32 time embedding), so its error is a
// few units of float32 rounding (6e-8) of the tensor's scale, whatever its
// own value: an element that cancels to 1e-4 of the largest one cannot be
// known to 1e-4 of itself in float32 (measured: such an element of
// layers.0.weight off by 7e-8 of the tensor's largest). A floor of 1e-2 of
// the largest element asks every element for an absolute error under 1e-6
// of the tensor's scale (about 16 float32 ulps) and every element above 1%
// of the largest for a genuine 1e-4 relative error. The norm-wise error,
// also checked, has no floor.
const gradFloorFrac = 1e-2

// elemRelErr is the element-wise relative error with the floor above.
func elemRelErr[F, G float32 | float64](got []F, want []G) float64 {
	return numtest.MaxRelErr(got, want, gradFloorFrac*maxAbs(want))
}

// gorgoniaGrads builds the MLP as a float64 gorgonia graph with parameters
// p (flat, laid out as tensors), input in (rows x dims[0], a constant) and
// target tgt (rows x D, a constant), loss = sum ||v - tgt||^2 / rows, and
// returns the loss and gorgonia.Grad's gradient as one flat vector laid out
// like p, computed by a TapeMachine.
func gorgoniaGrads(t *testing.T, cfg model.Config, tensors []model.Tensor, p []float64, rows int, in, tgt []float64) (float64, []float64) {
	t.Helper()
	dims := refDims(cfg)
	g := G.NewGraph()
	dense := func(shape []int, v []float64) *tensor.Dense {
		return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(append([]float64(nil), v...)))
	}
	h := G.NewConstant(dense([]int{rows, dims[0]}, in), G.WithName("input"))
	var wrt G.Nodes
	for l := 0; l+1 < len(dims); l++ {
		ni, no := dims[l], dims[l+1]
		wt, bt := tensors[2*l], tensors[2*l+1]
		w := G.NewMatrix(g, tensor.Float64, G.WithShape(no, ni), G.WithName(wt.Name),
			G.WithValue(dense([]int{no, ni}, p[wt.Offset:wt.Offset+wt.Size()])))
		// The bias is a 1 x out row broadcast down the batch.
		b := G.NewMatrix(g, tensor.Float64, G.WithShape(1, no), G.WithName(bt.Name),
			G.WithValue(dense([]int{1, no}, p[bt.Offset:bt.Offset+bt.Size()])))
		wrt = append(wrt, w, b)
		z := G.Must(G.BroadcastAdd(G.Must(G.Mul(h, G.Must(G.Transpose(w)))), b, nil, []byte{0}))
		if l+2 < len(dims) {
			z = G.Must(G.HadamardProd(z, G.Must(G.Sigmoid(z)))) // SiLU
		}
		h = z
	}
	target := G.NewConstant(dense([]int{rows, cfg.Dim}, tgt), G.WithName("target"))
	sq := G.Must(G.Sum(G.Must(G.Square(G.Must(G.Sub(h, target))))))
	loss := G.Must(G.Div(sq, G.NewConstant(float64(rows))))
	grads, err := G.Grad(loss, wrt...)
	if err != nil {
		t.Fatalf("gorgonia.Grad: %v", err)
	}
	vm := G.NewTapeMachine(g)
	defer vm.Close()
	if err := vm.RunAll(); err != nil {
		t.Fatalf("gorgonia run: %v", err)
	}
	flat := make([]float64, len(p))
	for i, gn := range grads {
		d, ok := gn.Value().Data().([]float64)
		if !ok || len(d) != tensors[i].Size() {
			t.Fatalf("gorgonia gradient of %s: %T of %d elements, want %d float64", tensors[i].Name, gn.Value().Data(), len(d), tensors[i].Size())
		}
		copy(flat[tensors[i].Offset:], d)
	}
	lv, ok := loss.Value().Data().(float64)
	if !ok {
		t.Fatalf("gorgonia loss is a %T", loss.Value().Data())
	}
	return lv, flat
}

// mlpGrads runs Forward and Backward with dOut = 2 (v - target) / rows
// (the gradient of refLoss) and returns v and the gradient, both float32.
func mlpGrads(t *testing.T, b gpu.Backend, m *model.MLP, bt batch) (v, grads []float32) {
	t.Helper()
	d := m.Dim()
	x, tb := upload(b, bt.x), upload(b, bt.t)
	out, dOut := b.Alloc(bt.rows*d), b.Alloc(bt.rows*d)
	gb := b.Alloc(m.NumParams())
	m.Forward(bt.rows, tb, x, out)
	v = hostData(t, out)
	do := hostData(t, dOut)
	for i := range do {
		do[i] = 2 * (v[i] - bt.tgt[i]) / float32(bt.rows)
	}
	m.Backward(dOut, gb)
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	return v, hostData(t, gb)
}

func TestBackwardMatchesGorgonia(t *testing.T) {
	b := newBackend(t)
	for ci, tc := range testCases {
		for _, rows := range testRows {
			t.Run(fmt.Sprintf("%s/rows=%d", tc.name, rows), func(t *testing.T) {
				m := newMLP(t, b, tc.cfg, uint64(200+ci))
				r := rand.New(rand.NewPCG(uint64(ci), uint64(1000+rows)))
				bt := newBatch(r, rows, tc.cfg.Dim)
				v, got := mlpGrads(t, b, m, bt)

				p := to64(hostData(t, m.Params()))
				in := refEmbed(tc.cfg, rows, to64(bt.x), to64(bt.t))
				loss, want := gorgoniaGrads(t, tc.cfg, m.Tensors(), p, rows, in, to64(bt.tgt))

				// The graph computes the reference's loss: checks the
				// oracle is the same network, to float64 rounding.
				if refL := refLoss(rows, refForward(tc.cfg, m.Tensors(), p, rows, in), to64(bt.tgt)); !numtest.Close(loss, refL, 0, 1e-12) {
					t.Fatalf("gorgonia loss %.17g, reference loss %.17g", loss, refL)
				}
				// And the float32 forward gives the same loss to float32
				// rounding of the products (1e-5, see forwardRTol).
				if l32 := refLoss(rows, to64(v), to64(bt.tgt)); !numtest.Close(l32, loss, 0, 1e-5) {
					t.Errorf("loss of MLP.Forward %.9g, gorgonia %.9g", l32, loss)
				}

				worstElem, worstNorm := 0.0, 0.0
				for _, ts := range m.Tensors() {
					g := got[ts.Offset : ts.Offset+ts.Size()]
					w := want[ts.Offset : ts.Offset+ts.Size()]
					e, n := elemRelErr(g, w), normRelErr(g, w)
					if e > gradRTol || math.IsNaN(e) {
						t.Errorf("%s: element-wise relative error %.3g against gorgonia (floor %g of max %.3g), want < %g", ts.Name, e, gradFloorFrac, maxAbs(w), gradRTol)
					}
					if n > gradRTol || math.IsNaN(n) {
						t.Errorf("%s: norm-wise relative error %.3g against gorgonia, want < %g", ts.Name, n, gradRTol)
					}
					worstElem, worstNorm = math.Max(worstElem, e), math.Max(worstNorm, n)
				}
				t.Log(numtest.Describe("gradient vs gorgonia, element-wise", worstElem, gradRTol))
				t.Log(numtest.Describe("gradient vs gorgonia, norm-wise per tensor", worstNorm, gradRTol))
			})
		}
	}
}
