//go:build kernelsim

package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// The emulation of the tensor-core instructions (mma.cuh, sim_mma.h)
// against references written here from the PTX ISA's definitions.

// tf32 is cvt.rna.tf32.f32 by arithmetic (not by the bit trick of
// sim_mma.h): x to a multiple of its binade's tf32 spacing 2^(e - 10),
// halves away from zero (math.Round's rule).
func tf32(x float32) float32 {
	if x == 0 || math.IsInf(float64(x), 0) || math.IsNaN(float64(x)) {
		return x
	}
	_, e := math.Frexp(float64(x)) // |x| in [2^(e-1), 2^e)
	e = max(e, -125)               // subnormals share the smallest binade's spacing
	ulp := math.Ldexp(1, e-1-10)
	return float32(math.Round(float64(x)/ulp) * ulp)
}

func TestTF32Reference(t *testing.T) {
	for _, c := range [][2]float32{
		{1, 1},
		{1 + 1.0/2048, 1 + 1.0/1024},            // a tie: away from zero
		{-(1 + 1.0/2048), -(1 + 1.0/1024)},      // a negative tie
		{1 + 3.0/4096, 1 + 1.0/1024},            // above the tie
		{1 + 1.0/4096, 1},                       // below it
		{2 - 1.0/4096, 2},                       // a carry into the exponent
		{math.MaxFloat32, float32(math.Inf(1))}, // past the largest tf32: infinity
	} {
		if got := tf32(c[0]); got != c[1] {
			t.Errorf("tf32(%v) = %v, want %v", c[0], got, c[1])
		}
	}
}

// One warp's 2 x 2 m16n8k8 products (simtest_mma_kernel) against
// C + tf32(A) tf32(B) in float64: the emulation adds the exact products in
// double and rounds once, so the result is within one float32 rounding
// (2^-24 relative, bounded here by 2^-23 of sum |terms|) of the reference.
// The inputs include ties of the tf32 rounding, so that rounding to
// nearest even, or truncation, would fail.
func TestSimMmaTF32(t *testing.T) {
	const m, n, k = 32, 16, 8
	rng := rand.New(rand.NewPCG(1, 2))
	a, b, c := make([]float32, m*k), make([]float32, k*n), make([]float32, m*n)
	for i := range a {
		a[i] = float32(rng.NormFloat64())
	}
	for i := range b {
		b[i] = float32(rng.NormFloat64())
	}
	for i := range c {
		c[i] = float32(rng.NormFloat64())
	}
	// Ties: 1 + 2^-11 (and -) in a few places of A, and in B.
	for _, i := range []int{0, 9, 77, 200} {
		a[i] = float32(1 + 1.0/2048)
		b[i%(k*n)] = -float32(2 + 1.0/1024)
	}
	da, db, dc, dd := alloc(t, m*k), alloc(t, k*n), alloc(t, m*n), alloc(t, m*n)
	SimHtoD(da.p, a)
	SimHtoD(db.p, b)
	SimHtoD(dc.p, c)
	if err := launch("simtest_mma_kernel", [3]uint32{1, 1, 1}, [3]uint32{32, 1, 1}, 0,
		[]uint64{da.p, db.p, dc.p, dd.p, 1}, "ppppi"); err != nil {
		t.Fatal(err)
	}
	check := func(what string, round func(float32) float64, rtol float64) {
		t.Helper()
		got := dd.get()
		bad := 0
		for i := 0; i < m; i++ {
			for j := 0; j < n; j++ {
				want, scale := float64(c[i*n+j]), math.Abs(float64(c[i*n+j]))
				for l := 0; l < k; l++ {
					p := round(a[i*k+l]) * round(b[l*n+j])
					want += p
					scale += math.Abs(p)
				}
				if d := math.Abs(float64(got[i*n+j]) - want); !(d <= scale*rtol) {
					if bad++; bad <= 5 {
						t.Errorf("%s: D[%d][%d] = %v, want %v (difference %.3g, bound %.3g)", what, i, j, got[i*n+j], want, d, scale*rtol)
					}
				}
			}
		}
	}
	check("tf32", func(x float32) float64 { return float64(tf32(x)) }, 0x1p-23)
	// The 3xTF32 split against the exact product: the dropped lo x lo terms
	// and the lo parts' rounding (about 2^-21 each), and three roundings of
	// D to float32: 2^-19 of sum |terms| bounds them.
	if err := launch("simtest_mma_kernel", [3]uint32{1, 1, 1}, [3]uint32{32, 1, 1}, 0,
		[]uint64{da.p, db.p, dc.p, dd.p, 2}, "ppppi"); err != nil {
		t.Fatal(err)
	}
	check("tf32x3", func(x float32) float64 { return float64(x) }, 0x1p-19)
	// Operands not rounded to tf32 are refused.
	err := launch("simtest_mma_kernel", [3]uint32{1, 1, 1}, [3]uint32{32, 1, 1}, 0, []uint64{da.p, db.p, dc.p, dd.p, 0}, "ppppi")
	wantErr(t, "unrounded operand", err, "mma.sync", "not a tf32 value", "cvt.rna.tf32.f32")
	// A warp of fewer than 32 lanes cannot issue it.
	err = launch("simtest_mma_kernel", [3]uint32{1, 1, 1}, [3]uint32{16, 1, 1}, 0, []uint64{da.p, db.p, dc.p, dd.p, 1}, "ppppi")
	wantErr(t, "partial warp", err, "synccheck", "mma.sync", "warp 0 has 16 lanes")
}

// ldmatrix .x4 over a k-contiguous 16 x 8 tile gives every lane the A
// fragments of the PTX layout: register r of lane l = A[g + 8 (r & 1)][t +
// 4 (r >> 1)]; two loads in one call (the emulation's batch), two tiles.
func TestSimLdmatrix(t *testing.T) {
	in, out := alloc(t, 32*8), alloc(t, 32*8)
	a := make([]float32, 32*8)
	for i := range a {
		a[i] = float32(i)
	}
	SimHtoD(in.p, a)
	if err := launch("simtest_ldmatrix_kernel", [3]uint32{1, 1, 1}, [3]uint32{32, 1, 1}, 0, []uint64{in.p, out.p}, "pp"); err != nil {
		t.Fatal(err)
	}
	got := out.get()
	for l := 0; l < 32; l++ {
		g, tg := l>>2, l&3
		for h := 0; h < 2; h++ {
			for r := 0; r < 4; r++ {
				if want := a[(16*h+g+8*(r&1))*8+tg+4*(r>>1)]; got[8*l+4*h+r] != want {
					t.Errorf("lane %d load %d register %d: %v, want %v", l, h, r, got[8*l+4*h+r], want)
				}
			}
		}
	}
}

// cp.async as the harness applies it, at wait_group: the copy and its
// zero fill when complete, and the checks' reports when a kernel reads the
// destination before its wait_group (mode 1: the mutant without it) or
// without the barrier after it.
func TestSimCpAsync(t *testing.T) {
	const n = 250 // the last thread's 16 bytes hold 2 floats of in: zero-filled
	in, out := alloc(t, n), alloc(t, 256)
	host := make([]float32, n)
	for i := range host {
		host[i] = float32(i + 1)
	}
	SimHtoD(in.p, host)
	run := func(mode int) error {
		return launch("simtest_cp_async_kernel", [3]uint32{1, 1, 1}, [3]uint32{64, 1, 1}, 0,
			[]uint64{in.p, n, out.p, uint64(mode)}, "pipi")
	}
	for _, mode := range []int{0, 3} {
		SimMemset32(out.p, 0x7fc00000, 256)
		if err := run(mode); err != nil {
			t.Fatalf("mode %d: %v", mode, err)
		}
		got := out.get()
		for e := 0; e < 256; e++ {
			src := 255 - e
			if mode == 3 && src >= 128 {
				continue
			}
			want := float32(0)
			if src < n {
				want = host[src]
			}
			if got[e] != want {
				t.Errorf("mode %d: out[%d] = %v, want %v", mode, e, got[e], want)
				break
			}
		}
	}
	if !SimChecksAvailable() {
		// Without the checks the early reads see the poison.
		withChecks(0, func() {
			if err := run(1); err != nil {
				t.Fatal(err)
			}
		})
		if v := out.get()[0]; !math.IsNaN(float64(v)) {
			t.Errorf("a read before wait_group gives %v, want the poison (NaN)", v)
		}
		return
	}
	for _, c := range []struct {
		mode int
		want []string
	}{
		{1, []string{"initcheck", "simtest_cp_async_kernel::s", "which no thread of the block has written"}},
		{2, []string{"simtest_cp_async_kernel::s"}},
		{4, []string{"initcheck", "simtest_cp_async_kernel::s"}},
	} {
		wantErr(t, fmt.Sprintf("mode %d", c.mode), run(c.mode), c.want...)
	}
}
