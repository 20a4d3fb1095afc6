package flow_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/fmgpu/fmgpu/flow"
	"github.com/fmgpu/fmgpu/internal/numtest"
)

// batch is a random minibatch for the batched routines: B rows of width d,
// times spread over the path's whole time range with its two ends as the
// first two rows, x0 ~ N(0, 1), x1 ~ U(-3, 3).
type batch struct {
	b, d   int
	t      []float64
	x0, x1 []float64
}

func newBatch(p flow.Path, b, d int, seed uint64) batch {
	r := rand.New(rand.NewPCG(seed, 7))
	lo, hi := p.TimeRange()
	bt := batch{b: b, d: d, t: make([]float64, b), x0: make([]float64, b*d), x1: make([]float64, b*d)}
	for i := range bt.t {
		bt.t[i] = lo + (hi-lo)*r.Float64()
	}
	bt.t[0], bt.t[1] = lo, hi
	for i := range bt.x0 {
		bt.x0[i], bt.x1[i] = drawX(r)
	}
	return bt
}

func to32(x []float64) []float32 {
	y := make([]float32, len(x))
	for i, v := range x {
		y[i] = float32(v)
	}
	return y
}

func to64(x []float32) []float64 {
	y := make([]float64, len(x))
	for i, v := range x {
		y[i] = float64(v)
	}
	return y
}

// targetRef computes the batched target element by element with the scalar
// reference functions Phi and VelocityX0, and the size of each output's
// two terms (|sigma x0| + |alpha x1|, |sigma' x0| + |alpha' x1|).
func targetRef(p flow.Path, d int, x0, x1, t []float64) (xt, ut, xtTerms, utTerms []float64) {
	n := len(t) * d
	xt, ut = make([]float64, n), make([]float64, n)
	xtTerms, utTerms = make([]float64, n), make([]float64, n)
	for r, tt := range t {
		c := p.At(tt)
		for j := r * d; j < (r+1)*d; j++ {
			xt[j] = flow.Phi(p, tt, x0[j], x1[j])
			ut[j] = flow.VelocityX0(p, tt, x0[j], x1[j])
			xtTerms[j] = math.Abs(c.Sigma*x0[j]) + math.Abs(c.Alpha*x1[j])
			utTerms[j] = math.Abs(c.DSigma*x0[j]) + math.Abs(c.DAlpha*x1[j])
		}
	}
	return
}

// maxTermRelErr is max_i |got_i - want_i| / max(|want_i|, terms_i): the
// relative error with, as floor, the magnitude of the terms the element is
// the sum of. Rounding errors of a sum of two products are proportional to
// that magnitude, not to the (possibly cancelling) sum. NaN gives +Inf.
func maxTermRelErr[F numtest.Float](got []F, want, terms []float64) float64 {
	m := 0.0
	for i := range want {
		if e := numtest.RelErr(float64(got[i]), want[i], terms[i]); e > m || math.IsNaN(e) {
			m = e
		}
	}
	return m
}

// TestTargetFloat64 checks the batched float64 target against the scalar
// Phi and VelocityX0, element by element, for every kind. Both evaluate
// sigma x0 + alpha x1 from the same coefficients in the same order, so they
// agree to the last bit where the compiler emits the same instructions
// (amd64); the 1e-15 bound (relative to the terms' magnitude, a few ulps)
// leaves room for a fused multiply-add on another architecture.
func TestTargetFloat64(t *testing.T) {
	const b, d = 257, 7
	const tol = 1e-15
	for ci, c := range pathCases() {
		p := flow.MustNew(c.spec)
		bt := newBatch(p, b, d, uint64(ci))
		xt, ut := make([]float64, b*d), make([]float64, b*d)
		flow.Target(p, d, bt.x0, bt.x1, bt.t, xt, ut)
		wxt, wut, xtTerms, utTerms := targetRef(p, d, bt.x0, bt.x1, bt.t)
		ex, eu := maxTermRelErr(xt, wxt, xtTerms), maxTermRelErr(ut, wut, utTerms)
		t.Logf("%s; %s", numtest.Describe("Target[float64] x_t vs Phi, "+c.name, ex, tol),
			numtest.Describe("u_t vs VelocityX0", eu, tol))
		if !(ex <= tol && eu <= tol) {
			t.Errorf("%s: batched target differs from the scalar reference (x_t %.3g, u_t %.3g)", c.name, ex, eu)
		}
	}
}

// TestTargetFloat32 checks Target[float32] against the float64 reference
// computed from the same float32 inputs (converted exactly to float64), so
// only the float32 arithmetic is measured: the four coefficients rounded to
// float32 (each relative 2^-24 = 6e-8), two products and a sum rounded
// (6e-8 each). That is at most about 3 * 6e-8 = 1.8e-7 of the terms'
// magnitude |sigma x0| + |alpha x1|, which serves as the floor (see
// maxTermRelErr): within rel 1e-6, tighter than the 1e-5 for fp32
// elementwise of docs/design.md, "Tests".
func TestTargetFloat32(t *testing.T) {
	const b, d = 513, 5
	const tol = 1e-6
	for ci, c := range pathCases() {
		p := flow.MustNew(c.spec)
		bt := newBatch(p, b, d, 100+uint64(ci))
		t32, x032, x132 := to32(bt.t), to32(bt.x0), to32(bt.x1)
		xt, ut := make([]float32, b*d), make([]float32, b*d)
		flow.Target(p, d, x032, x132, t32, xt, ut)
		wxt, wut, xtTerms, utTerms := targetRef(p, d, to64(x032), to64(x132), to64(t32))
		ex, eu := maxTermRelErr(xt, wxt, xtTerms), maxTermRelErr(ut, wut, utTerms)
		t.Logf("%s; %s", numtest.Describe("Target[float32] x_t vs float64, "+c.name, ex, tol),
			numtest.Describe("u_t", eu, tol))
		if !(ex <= tol && eu <= tol) {
			t.Errorf("%s: float32 target off by %.3g (x_t), %.3g (u_t) relative", c.name, ex, eu)
		}
	}
}

// TestTargetRowMatchesTarget: TargetRow, which the backends' CPU kernels
// share, with a row's coefficients gives exactly Target's row.
func TestTargetRowMatchesTarget(t *testing.T) {
	p := flow.MustNew(flow.DefaultSpec(flow.KindVP))
	const b, d = 9, 11
	bt := newBatch(p, b, d, 3)
	xt, ut := make([]float64, b*d), make([]float64, b*d)
	flow.Target(p, d, bt.x0, bt.x1, bt.t, xt, ut)
	rxt, rut := make([]float64, d), make([]float64, d)
	for r := 0; r < b; r++ {
		flow.TargetRow(p.At(bt.t[r]), bt.x0[r*d:(r+1)*d], bt.x1[r*d:(r+1)*d], rxt, rut)
		for j := 0; j < d; j++ {
			if rxt[j] != xt[r*d+j] || rut[j] != ut[r*d+j] {
				t.Fatalf("row %d col %d: TargetRow gives (%g, %g), Target (%g, %g)", r, j, rxt[j], rut[j], xt[r*d+j], ut[r*d+j])
			}
		}
	}
}

// TestTargetShapes: an empty batch is a no-op, extra buffer length is left
// alone, and a buffer shorter than len(t)*d panics.
func TestTargetShapes(t *testing.T) {
	p := flow.MustNew(flow.DefaultSpec(flow.KindOT))
	flow.Target[float32](p, 4, nil, nil, nil, nil, nil)
	x0, x1 := []float64{1, 2, 3}, []float64{4, 5, 6}
	xt, ut := []float64{-7, -7, -7}, []float64{-7, -7, -7}
	flow.Target(p, 2, x0, x1, []float64{0.5}, xt, ut)
	if xt[2] != -7 || ut[2] != -7 {
		t.Errorf("Target wrote past len(t)*d: xt %v, ut %v", xt, ut)
	}
	if xt[0] != 2.5 || ut[0] != 3 { // 0.5*1 + 0.5*4, 4 - 1
		t.Errorf("Target ot t=0.5 row: xt %v, ut %v", xt, ut)
	}
	for name, f := range map[string]func(){
		"x0": func() { flow.Target(p, 2, x0[:1], x1, []float64{0.5}, xt, ut) },
		"x1": func() { flow.Target(p, 2, x0, x1[:1], []float64{0.5}, xt, ut) },
		"xt": func() { flow.Target(p, 2, x0, x1, []float64{0.5}, xt[:1], ut) },
		"ut": func() { flow.Target(p, 2, x0, x1, []float64{0.5}, xt, ut[:1]) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Target with a short %s did not panic", name)
				}
			}()
			f()
		}()
	}
}

// TestBatchedAllocs: Target, VelocityXBatch and Loss allocate nothing, for
// both element types and every kind.
func TestBatchedAllocs(t *testing.T) {
	const b, d = 64, 16
	for ci, c := range pathCases() {
		p := flow.MustNew(c.spec)
		bt := newBatch(p, b, d, 200+uint64(ci))
		xt, ut := make([]float64, b*d), make([]float64, b*d)
		t32, x032, x132 := to32(bt.t), to32(bt.x0), to32(bt.x1)
		xt32, ut32 := make([]float32, b*d), make([]float32, b*d)
		for name, f := range map[string]func(){
			"Target[float64]":         func() { flow.Target(p, d, bt.x0, bt.x1, bt.t, xt, ut) },
			"Target[float32]":         func() { flow.Target(p, d, x032, x132, t32, xt32, ut32) },
			"VelocityXBatch[float64]": func() { flow.VelocityXBatch(p, d, xt, bt.x1, bt.t, ut) },
			"VelocityXBatch[float32]": func() { flow.VelocityXBatch(p, d, xt32, x132, t32, ut32) },
			"Loss[float64]":           func() { flow.Loss(b, xt, ut, bt.x0) },
			"Loss[float32]":           func() { flow.Loss(b, xt32, ut32, x032) },
		} {
			if a := testing.AllocsPerRun(100, f); a != 0 {
				t.Errorf("%s, %s: %g allocations per call, want 0", name, c.name, a)
			}
		}
	}
}

// TestVelocityXBatch: the batched x-form equals VelocityX element by
// element. float64: the same expression, to a few ulps (1e-15, for the
// same fused-multiply-add reason as TestTargetFloat64). float32: the batch
// computes in float64 from the float32 inputs and rounds once, so against
// the float64 VelocityX of the same inputs it is within half an ulp,
// relative 2^-24 (floor: the smallest normal float32).
func TestVelocityXBatch(t *testing.T) {
	const b, d = 129, 6
	for ci, c := range pathCases() {
		p := flow.MustNew(c.spec)
		bt := newBatch(p, b, d, 300+uint64(ci))
		if c.spec == flow.DefaultSpec(flow.KindOT) {
			bt.t[1] = 0.999 // sigma_1 = 0 for ot: the x-form divides by it
		}
		// evaluate the field at x = x_t and at unrelated x
		x := make([]float64, b*d)
		r := rand.New(rand.NewPCG(9, uint64(ci)))
		for i := range x {
			x[i] = 3 * r.NormFloat64()
		}
		out := make([]float64, b*d)
		flow.VelocityXBatch(p, d, x, bt.x1, bt.t, out)
		want := make([]float64, b*d)
		for i := range want {
			want[i] = flow.VelocityX(p, bt.t[i/d], x[i], bt.x1[i])
		}
		e64 := numtest.MaxRelErr(out, want, 1e-300)
		t32, x32, x132 := to32(bt.t), to32(x), to32(bt.x1)
		out32 := make([]float32, b*d)
		flow.VelocityXBatch(p, d, x32, x132, t32, out32)
		for i := range want {
			want[i] = flow.VelocityX(p, float64(t32[i/d]), float64(x32[i]), float64(x132[i]))
		}
		e32 := numtest.MaxRelErr(out32, want, 0x1p-126)
		t.Logf("%s; %s", numtest.Describe("VelocityXBatch[float64] vs VelocityX, "+c.name, e64, 1e-15),
			numtest.Describe("[float32]", e32, 0x1p-24))
		if !(e64 <= 1e-15) || !(e32 <= 0x1p-24*(1+1e-9)) {
			t.Errorf("%s: VelocityXBatch off by %.3g (float64), %.3g (float32)", c.name, e64, e32)
		}
	}
}

// TestLossHandComputed: B = 2 rows, d = 3, values exact in binary.
//
//	pred   = [1, 2, 3 | -1, 0.5, 0]
//	target = [0.5, 2, 1 | 1, 0.5, -2]
//	e      = [0.5, 0, 2 | -2, 0, 2]
//	row sums of e^2: 0.25 + 0 + 4 = 4.25 and 4 + 0 + 4 = 8
//	loss = (4.25 + 8) / 2 = 6.125;  grad = 2 e / B = e
func TestLossHandComputed(t *testing.T) {
	pred := []float64{1, 2, 3, -1, 0.5, 0}
	target := []float64{0.5, 2, 1, 1, 0.5, -2}
	wantGrad := []float64{0.5, 0, 2, -2, 0, 2}
	grad := make([]float64, 6)
	if l := flow.Loss(2, pred, target, grad); l != 6.125 {
		t.Errorf("Loss = %.17g, want 6.125", l)
	}
	numtest.AllClose(t, "grad", grad, wantGrad, 0, 0)
	grad32 := make([]float32, 6)
	if l := flow.Loss(2, to32(pred), to32(target), grad32); l != 6.125 {
		t.Errorf("Loss[float32] = %.17g, want 6.125", l)
	}
	numtest.AllClose(t, "grad[float32]", grad32, wantGrad, 0, 0)
	if l := flow.Loss(2, pred, target, nil); l != 6.125 {
		t.Errorf("Loss without grad = %g, want 6.125", l)
	}
	if l := flow.Loss(0, pred, target, grad); l != 0 {
		t.Errorf("Loss over 0 rows = %g, want 0", l)
	}
	defer func() {
		if recover() == nil {
			t.Errorf("Loss with a short target did not panic")
		}
	}()
	flow.Loss(2, pred, target[:5], grad)
}

// lossRef is the CFM loss written directly: the mean over rows of the
// squared Euclidean distance.
func lossRef(b, d int, pred, target []float64) float64 {
	sum := 0.0
	for r := 0; r < b; r++ {
		row := 0.0
		for j := r * d; j < (r+1)*d; j++ {
			e := pred[j] - target[j]
			row += e * e
		}
		sum += row
	}
	return sum / float64(b)
}

// TestLossRandom checks Loss against lossRef and its gradient against
// 2 (pred - target) / B and against a central difference of the loss in
// each element of pred.
//
// The central difference of a quadratic has no truncation error, only
// rounding: about 2 eps L / (2h) with eps = 1.1e-16, L the loss (~20 here)
// and h = 1e-6, i.e. ~2e-9 absolute, whatever the gradient element. So the
// relative error has a floor of 1e-2 (grad elements are 2 e / B with e
// ~ N(0, 2), B = 8: O(0.3)); above it the check is relative 1e-6.
func TestLossRandom(t *testing.T) {
	const b, d = 8, 10
	r := rand.New(rand.NewPCG(11, 0))
	pred, target := make([]float64, b*d), make([]float64, b*d)
	for i := range pred {
		pred[i], target[i] = r.NormFloat64(), r.NormFloat64()
	}
	grad := make([]float64, b*d)
	l := flow.Loss(b, pred, target, grad)
	if want := lossRef(b, d, pred, target); !numtest.Close(l, want, 0, 1e-14) {
		t.Errorf("Loss = %.17g, want %.17g", l, want)
	}
	wantGrad := make([]float64, b*d)
	for i := range wantGrad {
		wantGrad[i] = 2 * (pred[i] - target[i]) / b
	}
	numtest.AllClose(t, "grad vs 2(pred-target)/B", grad, wantGrad, 0, 1e-15)

	const h, floor, tol = 1e-6, 1e-2, 1e-6
	maxErr := 0.0
	p := append([]float64(nil), pred...)
	for i := range p {
		cd := numtest.CentralDiff(func(v float64) float64 {
			p[i] = v
			return flow.Loss(b, p, target, nil)
		}, pred[i], h)
		p[i] = pred[i]
		maxErr = math.Max(maxErr, numtest.RelErr(grad[i], cd, floor))
	}
	t.Log(numtest.Describe(fmt.Sprintf("loss gradient vs central difference (B=%d, d=%d, loss %.3g)", b, d, l), maxErr, tol))
	if !(maxErr <= tol) {
		t.Errorf("loss gradient differs from the central difference by %.3g relative", maxErr)
	}

	// float32: the differences pred - target are rounded to float32
	// (relative 2^-24 each, so 2^-23 on their squares) and summed in
	// float64: within rel 1e-6 of the float64 loss of the same inputs; the
	// gradient elements 2/B * e are each rounded twice (e and the product;
	// 2/B = 0.25 is exact): rel 2^-23 ~ 1.2e-7, checked at 1e-6 with a tiny
	// floor.
	p32, t32 := to32(pred), to32(target)
	g32 := make([]float32, b*d)
	l32 := flow.Loss(b, p32, t32, g32)
	p64, t64 := to64(p32), to64(t32)
	if want := lossRef(b, d, p64, t64); !numtest.Close(l32, want, 0, 1e-6) {
		t.Errorf("Loss[float32] = %.9g, want %.9g", l32, want)
	}
	for i := range wantGrad {
		wantGrad[i] = 2 * (p64[i] - t64[i]) / b
	}
	e := numtest.MaxRelErr(g32, wantGrad, 1e-30)
	t.Log(numtest.Describe("Loss[float32] gradient vs float64", e, 1e-6))
	if !(e <= 1e-6) {
		t.Errorf("float32 gradient off by %.3g relative", e)
	}
}

// Benchmarks.

// BenchmarkTarget times the float32 batched target, the op the backends
// fuse. Bytes moved per call: x0 and x1 read and xt and ut written (4 B*D
// float32 values) plus t read (B values): 4 (4 B D + B) bytes, reported as
// MB/s by SetBytes and as GB/s.
func BenchmarkTarget(b *testing.B) {
	for _, k := range []flow.Kind{flow.KindOT, flow.KindVP} {
		p := flow.MustNew(flow.DefaultSpec(k))
		for _, d := range []int{2, 64, 784} {
			const rows = 4096
			b.Run(fmt.Sprintf("kind=%v/B=%d,D=%d", k, rows, d), func(b *testing.B) {
				bt := newBatch(p, rows, d, 1)
				t32, x0, x1 := to32(bt.t), to32(bt.x0), to32(bt.x1)
				xt, ut := make([]float32, rows*d), make([]float32, rows*d)
				bytes := int64(4 * (4*rows*d + rows))
				b.SetBytes(bytes)
				b.ReportAllocs()
				n := 0
				for b.Loop() {
					flow.Target(p, d, x0, x1, t32, xt, ut)
					n++
				}
				b.ReportMetric(float64(bytes)*float64(n)/b.Elapsed().Seconds()/1e9, "GB/s")
			})
		}
	}
}

// BenchmarkLoss times the float32 loss with its gradient: pred and target
// read, grad written, 4 (3 B D) bytes per call.
func BenchmarkLoss(b *testing.B) {
	for _, d := range []int{2, 64, 784} {
		const rows = 4096
		b.Run(fmt.Sprintf("B=%d,D=%d", rows, d), func(b *testing.B) {
			r := rand.New(rand.NewPCG(5, 5))
			pred, target, grad := make([]float32, rows*d), make([]float32, rows*d), make([]float32, rows*d)
			for i := range pred {
				pred[i], target[i] = float32(r.NormFloat64()), float32(r.NormFloat64())
			}
			bytes := int64(4 * 3 * rows * d)
			b.SetBytes(bytes)
			b.ReportAllocs()
			n := 0
			sink := 0.0
			for b.Loop() {
				sink += flow.Loss(rows, pred, target, grad)
				n++
			}
			b.ReportMetric(float64(bytes)*float64(n)/b.Elapsed().Seconds()/1e9, "GB/s")
			if math.IsNaN(sink) {
				b.Fatal("NaN loss")
			}
		})
	}
}
