// Package gputest is the one conformance and benchmark suite every
// gpu.Backend implementation runs (after gonum's blas/testblas): each
// implementation calls Run and Bench from a one-line test,
//
//	func TestCPUConformance(t *testing.T) {
//		gputest.Run(t, func(t *testing.T) gpu.Backend { return gpu.NewCPU(0) })
//	}
//
// Every operation is compared, on random inputs of awkward sizes, with a
// float64 reference written here in plain loops: nothing is shared with the
// CPU backend, so the CPU backend is checked by the same suite as the
// others. The Philox words come from gpu.PhiloxBlock, gpu.Uniform01 and
// gpu.IndexBelow, which are the documented definitions (with their own
// known-answer tests); Box-Muller, the time transform and the paths'
// arithmetic are evaluated here in float64 from the documentation.
//
// The checks of each op family of package gpu are in the file of its name
// (gpu/F.go: F.go here), its benchmarks beside them.
//
// Tolerances (docs/design.md, "Conventions"), each check stating its bound:
//   - elementwise float32 arithmetic: rtol 1e-5 (a few roundings of
//     2^-24 = 6e-8 each), relative to the sum of the magnitudes of the terms
//     where a result may cancel;
//   - elementwise ops with transcendentals (SiLU, sin, cos, exp, log, the
//     paths' coefficients), which a GPU evaluates with float32 library
//     functions of a few ulp: rtol 2e-5 plus a small atol;
//   - reductions and matrix products: 1e-4 relative to sum |a_i| |b_i|
//     (or sum |x_i| for sums), which covers float32 accumulation over the
//     lengths used here (k <= 4097: typical error sqrt(k) 2^-24 < 4e-6,
//     blocked or pairwise sums far less than the sequential worst case).
//
// Precisions (gpu.Precision): the products of Gemm, Linear and
// LinearBackward and the convolutions run once in each precision the
// backend accepts (subtests Gemm, Gemm_tf32x3, Gemm_tf32, ...; a backend
// refusing one skips it, saying why). fp32 and tf32x3 are held to the bound above (3xTF32 is
// within about 2^-21 of sum |a||b|: gpu/precision.go). tf32 rounds each
// operand to 10 mantissa bits (relative error <= 2^-11), so a product a b
// to within 2^-10 |a b| and a sum of them to within 2^-10 sum |a||b|
// whatever k (a worst case; with random signs the error is nearer
// 2^-11 sqrt(k) |a b|), plus the accumulation: rtolTF32. bf16 rounds each
// operand to 8 significant bits (unit roundoff 2^-8), so a product to
// within (1 + 2^-8)^2 - 1 = 2^-7 + 2^-16 of |a b| and a sum to within
// that of sum |a||b|, plus the accumulation: rtolBF16. Where a device
// backend runs a product on its tensor cores (the checks' aligned
// operands: gpu/device_products.go; every convolution, whose gathers take
// any alignment: gpu/device_conv.go), the bf16 result is also held to the
// tighter bound of the float32 accumulation alone, rtolRed, against a
// float64 reference of the operands rounded to bf16 (to nearest even, as
// cvt.rn.bf16x2.f32): that catches a kernel rounding the wrong way, or
// not at all, which rtolBF16 would hide.
//
// NaN never passes (numtest.Close). A failure prints the first few bad
// indices with got, want and the tolerance.
package gputest

import (
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/fmgpu/fmgpu/gpu"
	"github.com/fmgpu/fmgpu/internal/numtest"
)

// Tolerances shared by the checks; see the package comment.
const (
	// rtolElem: float32 elementwise arithmetic, a few roundings.
	rtolElem = 1e-5
	// rtolTrans, atolTrans: elementwise results through float32
	// transcendental functions (expf, sinf, logf: a few ulp on a GPU, and
	// their arguments rounded to float32 first).
	rtolTrans = 2e-5
	atolTrans = 1e-6
	// rtolRed: reductions and products, relative to sum |a||b|.
	rtolRed = 1e-4
	// rtolTF32: products of operands rounded to tf32, relative to sum
	// |a||b|: 2^-10 for the rounding, rtolRed for the accumulation.
	rtolTF32 = 0x1p-10 + rtolRed
	// rtolBF16: products of operands rounded to bf16, relative to sum
	// |a||b|: 2^-7 + 2^-16 for the rounding, rtolRed for the accumulation.
	rtolBF16 = 0x1p-7 + 0x1p-16 + rtolRed
	// tiny: absolute floor for results whose scale is exactly zero (a
	// product of zeros is exact in any order, so this never hides an error
	// of size).
	tiny = 1e-30
)

// sentinel fills memory an op must not touch (padding, the rest of a
// parent buffer): a quiet NaN with a recognisable payload, so that reading
// it poisons a result and writing over it is seen bit for bit.
var sentinel = math.Float32frombits(0x7fc0dead)

// Run runs the conformance suite: one subtest per Backend method, family by
// family, each on a backend from newBackend (called once per subtest; the
// suite Syncs it, checks that no error was recorded, and Closes it when the
// subtest ends).
func Run(t *testing.T, newBackend func(t *testing.T) gpu.Backend) {
	tests := []struct {
		name string
		fn   func(e *env)
	}{
		// Memory (memory.go)
		{"Info", testInfo},
		{"Alloc", testAlloc},
		{"Free", testFree},
		{"Upload", testUpload},
		{"Download", testDownload},
		{"Copy", testCopy},
		{"Fill", testFill},
		{"Sync", testSync},
		// Products (products.go)
		{"Gemm", testGemm},
		{"GemmAligned", testGemmAligned},
		{"GemmBatched", testGemmBatched},
		// Dense (dense.go)
		{"Linear", testLinear},
		{"LinearBackward", testLinearBackward},
		{"BiasActBackward", testBiasActBackward},
		{"Activate", testActivate},
		{"EmbedInput", testEmbedInput},
		{"OneHot", testOneHot},
		{"MSELoss", testMSELoss},
		// Optimizer (optimizer.go)
		{"SumSquares", testSumSquares},
		{"AdamEMA", testAdamEMA},
		// Draw (draw.go)
		{"PathTarget", testPathTarget},
		{"DrawBatch", testDrawBatch},
		{"DrawLabels", testDrawLabels},
		// Random (random.go)
		{"RandNormal", testRandNormal},
		{"RandRademacher", testRandRademacher},
		{"Dropout", testDropout},
		// ODE (ode.go)
		{"Axpy", testAxpy},
		{"LinComb", testLinComb},
		{"ErrorNorm", testErrorNorm},
		{"RowDot", testRowDot},
		{"UnitColumn", testUnitColumn},
		// Conv (conv.go)
		{"Conv2D", testConv2D},
		{"Conv2DBackwardData", testConv2DBackwardData},
		{"Conv2DBackwardFilter", testConv2DBackwardFilter},
		// Norm (norm.go)
		{"GroupNorm", testGroupNorm},
		{"GroupNormBackward", testGroupNormBackward},
		{"GroupNormAct", testGroupNormAct},
		{"GroupNormActBackward", testGroupNormActBackward},
		{"GroupNormActBackwardRecompute", testGroupNormActBackwardRecompute},
		// Layout (layout.go)
		{"AddChannelBias", testAddChannelBias},
		{"ChannelSum", testChannelSum},
		{"Upsample2x", testUpsample2x},
		{"Upsample2xBackward", testUpsample2xBackward},
		{"CopyChannels", testCopyChannels},
		{"Transpose", testTranspose},
		// Attention (attention.go)
		{"Softmax", testSoftmax},
		{"SoftmaxBackward", testSoftmaxBackward},
	}
	// The products run in every precision: fp32 under their own name, the
	// others as name_precision.
	var runs []struct {
		name string
		fn   func(e *env)
		prec gpu.Precision
	}
	for _, tc := range tests {
		runs = append(runs, struct {
			name string
			fn   func(e *env)
			prec gpu.Precision
		}{tc.name, tc.fn, gpu.PrecisionFP32})
		if !precisionOps[tc.name] {
			continue
		}
		for _, p := range gpu.Precisions()[1:] {
			runs = append(runs, struct {
				name string
				fn   func(e *env)
				prec gpu.Precision
			}{tc.name + "_" + p.String(), tc.fn, p})
		}
	}
	for _, tc := range runs {
		t.Run(tc.name, func(t *testing.T) {
			be := newBackend(t)
			closed := false
			defer func() {
				if !closed {
					be.Close()
				}
			}()
			// A fixed seed per subtest, from its name: failures reproduce,
			// and a subtest run alone (-run) sees the same inputs as in the
			// full suite, whatever the table's order.
			seed := fnv.New64a()
			seed.Write([]byte(tc.name))
			e := &env{t: t, be: be, rng: rand.New(rand.NewPCG(0x5eed, seed.Sum64())), prec: tc.prec}
			if err := gpu.SetPrecision(be, tc.prec); err != nil {
				t.Skipf("the backend refuses precision %s: %v", tc.prec, err)
			}
			tc.fn(e)
			if err := be.Sync(); err != nil {
				t.Errorf("Sync after %s: %v", tc.name, err)
			}
			closed = true
			if err := be.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
}

// precisionOps are the checks of the ops whose products depend on the
// backend's precision: Run repeats them in every precision.
var precisionOps = map[string]bool{
	"Gemm": true, "GemmAligned": true, "Linear": true, "LinearBackward": true,
	"Conv2D": true, "Conv2DBackwardData": true, "Conv2DBackwardFilter": true,
}

// env is what a conformance check works with.
type env struct {
	t    *testing.T
	be   gpu.Backend
	rng  *rand.Rand
	prec gpu.Precision // the backend's, set by Run
}

// rtolProd is the bound of a product's error relative to sum |a||b| in the
// backend's precision (package comment).
func (e *env) rtolProd() float64 {
	switch e.prec {
	case gpu.PrecisionTF32:
		return rtolTF32
	case gpu.PrecisionBF16:
		return rtolBF16
	}
	return rtolRed
}

// prodRef is how a check computes the reference of a product: the
// operands through round, and the bound rtol relative to sum |a||b| of
// those. In bf16 on operands a tensor-core kernel reads (aligned), round
// rounds them to bf16 and rtol is rtolRed (package comment); otherwise
// round keeps them and rtol is rtolProd's.
func (e *env) prodRef(aligned bool) (round func([]float32) []float32, rtol float64) {
	if e.prec == gpu.PrecisionBF16 && aligned {
		return roundBF16s, rtolRed
	}
	return func(v []float32) []float32 { return v }, e.rtolProd()
}

// roundBF16 is x rounded to bf16 (cvt.rn.bf16.f32), by arithmetic: to a
// multiple of its binade's spacing 2^(e - 8), halves to even; infinity
// past the largest bf16.
func roundBF16(x float32) float32 {
	if x == 0 || math.IsInf(float64(x), 0) || math.IsNaN(float64(x)) {
		return x
	}
	_, ex := math.Frexp(float64(x))
	ulp := math.Ldexp(1, max(ex, -125)-8)
	return float32(math.RoundToEven(float64(x)/ulp) * ulp)
}

// roundBF16s is a copy of v with every element rounded to bf16.
func roundBF16s(v []float32) []float32 {
	r := make([]float32, len(v))
	for i, x := range v {
		r[i] = roundBF16(x)
	}
	return r
}

// sync fails the test if the backend recorded an error.
func (e *env) sync(what string) {
	e.t.Helper()
	if err := e.be.Sync(); err != nil {
		e.t.Fatalf("%s: Sync: %v", what, err)
	}
}

// upload allocates a buffer holding v.
func (e *env) upload(v []float32) gpu.Buffer {
	b := e.be.Alloc(len(v))
	e.be.Upload(b, v)
	return b
}

// download returns the contents of b.
func (e *env) download(b gpu.Buffer) []float32 {
	out := make([]float32, b.Len())
	e.be.Download(out, b)
	return out
}

// padded is a view of n elements at offset off of a parent buffer whose
// other elements hold the sentinel: ops given the view must leave them be.
type padded struct {
	parent, view gpu.Buffer
	host         []float32 // the parent's contents as uploaded
	off, n       int
}

// viewOf uploads v into a view at offset off of a parent with tail more
// sentinel elements after it.
func (e *env) viewOf(v []float32, off, tail int) padded {
	host := make([]float32, off+len(v)+tail)
	for i := range host {
		host[i] = sentinel
	}
	copy(host[off:], v)
	p := e.upload(host)
	return padded{parent: p, view: p.Slice(off, len(v)), host: host, off: off, n: len(v)}
}

// checkOutside checks that the parent's elements outside the view are
// bit for bit as uploaded.
func (e *env) checkOutside(name string, p padded) {
	e.t.Helper()
	got := e.download(p.parent)
	checkBits(e.t, name+" (outside the view)", got, p.host, func(i int) bool { return i < p.off || i >= p.off+p.n })
}

// checkBits checks got[i] == want[i] bit for bit wherever sel(i) (all i
// when sel is nil), printing the first few differences.
func checkBits(t testing.TB, name string, got, want []float32, sel func(int) bool) bool {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: length %d, want %d", name, len(got), len(want))
		return false
	}
	bad := 0
	for i := range got {
		if sel != nil && !sel(i) {
			continue
		}
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			if bad < 5 {
				t.Errorf("%s[%d] = %v (%#08x), want %v (%#08x)", name, i, got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
			}
			bad++
		}
	}
	if bad > 5 {
		t.Errorf("%s: %d elements differ", name, bad)
	}
	return bad == 0
}

// checkTol checks |got[i] - want[i]| <= tol[i] with numtest.Close (NaN
// never passes). cols > 0 prints indices as [row, col].
func checkTol(t testing.TB, name string, got []float32, want, tol []float64, cols int) bool {
	t.Helper()
	if len(got) != len(want) || len(tol) != len(want) {
		t.Errorf("%s: length %d, want %d (tolerances %d)", name, len(got), len(want), len(tol))
		return false
	}
	bad := 0
	worst, worstI := 0.0, -1
	for i := range got {
		g := float64(got[i])
		if numtest.Close(g, want[i], tol[i], 0) {
			continue
		}
		if bad < 5 {
			t.Errorf("%s%s = %.9g, want %.9g (|diff| %.3g > tol %.3g)", name, index(i, cols), g, want[i], math.Abs(g-want[i]), tol[i])
		}
		bad++
		if r := math.Abs(g-want[i]) / tol[i]; !(r <= worst) {
			worst, worstI = r, i
		}
	}
	if bad > 5 {
		t.Errorf("%s: %d of %d elements out of tolerance, worst %s at %.3g x tol", name, bad, len(got), index(worstI, cols), worst)
	}
	return bad == 0
}

// checkScalar checks one value against its reference and bound.
func checkScalar(t testing.TB, name string, got float32, want, tol float64) bool {
	t.Helper()
	return checkTol(t, name, []float32{got}, []float64{want}, []float64{tol}, 0)
}

func index(i, cols int) string {
	if cols > 0 {
		return fmt.Sprintf("[%d, %d]", i/cols, i%cols)
	}
	return fmt.Sprintf("[%d]", i)
}

// normals returns n draws of N(0, std^2) rounded to float32.
func normals(rng *rand.Rand, n int, std float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(std * rng.NormFloat64())
	}
	return v
}

// uniforms returns n draws of U(lo, hi) rounded to float32.
func uniforms(rng *rand.Rand, n int, lo, hi float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(lo + (hi-lo)*rng.Float64())
	}
	return v
}

func filled(n int, v float32) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = v
	}
	return s
}

func f64(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

// Row and width lists the checks draw their shapes from: 1 and 3 (smaller
// than any vector width or block), 17, 255 and 257 (around powers of two
// and a warp multiple), 1000 (larger than the parallel split thresholds).
var (
	rowSizes   = []int{1, 3, 17, 255, 257, 1000}
	widthSizes = []int{1, 2, 3, 31, 64, 257}
)

// fdIndices picks up to n distinct indices below size (all of them when
// size <= n).
func fdIndices(rng *rand.Rand, size, n int) []int {
	if size <= n {
		idx := make([]int, size)
		for i := range idx {
			idx[i] = i
		}
		return idx
	}
	return rng.Perm(size)[:n]
}

// checkFD checks got[i] (a backend's gradient) at the indices idx against
// the central difference of f in the coordinate i of v, (f(v + h e_i) -
// f(v - h e_i)) / 2h, within tol(i, fd).
func checkFD(e *env, name string, got []float32, v []float64, idx []int, h float64, f func([]float64) float64, tol func(i int, fd float64) float64) {
	e.t.Helper()
	p := append([]float64(nil), v...)
	want, tl, gotI := make([]float64, len(idx)), make([]float64, len(idx)), make([]float32, len(idx))
	for k, i := range idx {
		p[i] = v[i] + h
		fp := f(p)
		p[i] = v[i] - h
		fm := f(p)
		p[i] = v[i]
		want[k] = (fp - fm) / (2 * h)
		tl[k] = tol(i, want[k])
		gotI[k] = got[i]
	}
	checkTol(e.t, fmt.Sprintf("%s at indices %v against central differences", name, idx), gotI, want, tl, 0)
}

// f64or is f64, nil for nil.
func f64or(v []float32) []float64 {
	if v == nil {
		return nil
	}
	return f64(v)
}
