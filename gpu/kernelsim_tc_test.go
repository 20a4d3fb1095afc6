//go:build kernelsim

package gpu_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/fmgpu/fmgpu/gpu"
)

// tf32 is cvt.rna.tf32.f32 by arithmetic: x to a multiple of its binade's
// tf32 spacing 2^(e - 10), halves away from zero.
func tf32(x float32) float64 {
	if x == 0 || math.IsInf(float64(x), 0) || math.IsNaN(float64(x)) {
		return float64(x)
	}
	_, e := math.Frexp(float64(x))
	ulp := math.Ldexp(1, max(e, -125)-11)
	return math.Round(float64(x)/ulp) * ulp
}

// bf16 is cvt.rn.bf16.f32 by arithmetic: x to a multiple of its binade's
// bf16 spacing 2^(e - 8), halves to even.
func bf16(x float32) float64 {
	if x == 0 || math.IsInf(float64(x), 0) || math.IsNaN(float64(x)) {
		return float64(x)
	}
	_, e := math.Frexp(float64(x))
	ulp := math.Ldexp(1, max(e, -125)-8)
	return math.RoundToEven(float64(x)/ulp) * ulp
}

// The tensor-core kernels' numbers beyond the conformance suite's bounds
// (which hold any fp32-accurate result in tf32 too): in tf32 the product
// is that of the operands rounded to nearest, ties away (cvt.rna), to
// float32 accumulation (1e-6 of sum |a||b| here, where truncating the
// operands instead would be off by about 2^-12 / sqrt(k) = 1.4e-5), and
// far from the exact product (the rounding happened); in tf32x3 within
// 2^-19 of the exact product (3xTF32: about 2^-21); in bf16 the product is
// that of the operands rounded to nearest, ties to even (cvt.rn), to
// float32 accumulation, and far from the exact product. Each launches its
// own kernel, split over k or not.
func TestKernelSimTensorCoreNumbers(t *testing.T) {
	be := newKernelSim(t, gpu.KernelSimOptions{})
	defer be.Close()
	rng := rand.New(rand.NewPCG(3, 4))
	for _, c := range []struct {
		ta      bool
		m, n, k int
		kernels string
	}{
		{false, 150, 72, 300, "gemm_%s_nn_forward_kernel"}, // ldb = n: a multiple of 4
		{true, 64, 72, 1100, "gemm_%s_tn_forward_kernel gemm_split_reduce_kernel"},
	} {
		a, b := make([]float32, c.m*c.k), make([]float32, c.k*c.n)
		for i := range a {
			a[i] = float32(rng.NormFloat64())
		}
		for i := range b {
			b[i] = float32(rng.NormFloat64())
		}
		lda := c.k
		if c.ta {
			lda = c.m
		}
		da, db, dc := be.Alloc(len(a)), be.Alloc(len(b)), be.Alloc(c.m*c.n)
		be.Upload(da, a)
		be.Upload(db, b)
		at := func(i, l int) float32 {
			if c.ta {
				return a[l*c.m+i]
			}
			return a[i*c.k+l]
		}
		for _, p := range []gpu.Precision{gpu.PrecisionTF32, gpu.PrecisionTF32x3, gpu.PrecisionBF16} {
			round := tf32
			if p == gpu.PrecisionBF16 {
				round = bf16
			}
			if err := gpu.SetPrecision(be, p); err != nil {
				t.Fatal(err)
			}
			gpu.ResetKernelStats(be)
			be.Gemm(c.ta, false, c.m, c.n, c.k, 1, da, lda, db, c.n, 0, dc, c.n)
			got := make([]float32, c.m*c.n)
			be.Download(got, dc)
			if err := be.Sync(); err != nil {
				t.Fatal(err)
			}
			want := fmt.Sprintf(c.kernels, p)
			var ran string
			for name, st := range gpu.KernelStats(be) {
				for i := int64(0); i < st.Launches; i++ {
					ran += " " + name
				}
			}
			if !sameWords(ran, want) {
				t.Errorf("%s, %dx%dx%d: launched%s, want %s", p, c.m, c.n, c.k, ran, want)
			}
			worstExact, worstRounded := 0.0, 0.0
			for i := 0; i < c.m; i++ {
				for j := 0; j < c.n; j++ {
					exact, rounded, scale := 0.0, 0.0, 0.0
					for l := 0; l < c.k; l++ {
						av, bv := at(i, l), b[l*c.n+j]
						exact += float64(av) * float64(bv)
						rounded += round(av) * round(bv)
						scale += math.Abs(float64(av) * float64(bv))
					}
					g := float64(got[i*c.n+j])
					worstExact = max(worstExact, math.Abs(g-exact)/scale)
					worstRounded = max(worstRounded, math.Abs(g-rounded)/scale)
				}
			}
			t.Logf("%s %dx%dx%d: worst error relative to sum |a||b|: %.3g against the exact product, %.3g against that of the rounded operands",
				p, c.m, c.n, c.k, worstExact, worstRounded)
			switch p {
			case gpu.PrecisionTF32:
				if !(worstRounded <= 1e-6) || !(worstExact >= 2e-6) {
					t.Errorf("tf32: %.3g from the rounded operands' product (want <= 1e-6), %.3g from the exact one (want >= 2e-6)", worstRounded, worstExact)
				}
			case gpu.PrecisionTF32x3:
				if !(worstExact <= 0x1p-19) {
					t.Errorf("tf32x3: %.3g from the exact product, want <= 2^-19", worstExact)
				}
			case gpu.PrecisionBF16:
				if !(worstRounded <= 1e-6) || !(worstExact >= 2e-5) {
					t.Errorf("bf16: %.3g from the rounded operands' product (want <= 1e-6), %.3g from the exact one (want >= 2e-5)", worstRounded, worstExact)
				}
			}
		}
		be.Free(da)
		be.Free(db)
		be.Free(dc)
	}
}

// sameWords reports whether two space-separated lists hold the same words,
// in any order.
func sameWords(a, b string) bool {
	count := map[string]int{}
	for _, w := range strings.Fields(a) {
		count[w]++
	}
	for _, w := range strings.Fields(b) {
		count[w]--
	}
	for _, n := range count {
		if n != 0 {
			return false
		}
	}
	return true
}
