//go:build kernelsim

package kernels_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	// An external test package (with the package's names in scope): an
	// internal one would compile the C++ harness a second time, for minutes.
	. "github.com/fmgpu/fmgpu/kernels"
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

// bf16 is cvt.rn.bf16.f32 by arithmetic: x to a multiple of its binade's
// bf16 spacing 2^(e - 8) (8 significant bits), halves to even
// (math.RoundToEven); past the largest bf16 (2^128 - 2^120, whose rounding
// boundary is 2^128 - 2^119) infinity.
func bf16(x float32) float32 {
	if x == 0 || math.IsInf(float64(x), 0) || math.IsNaN(float64(x)) {
		return x
	}
	_, e := math.Frexp(float64(x))
	e = max(e, -125)
	ulp := math.Ldexp(1, e-1-7)
	return float32(math.RoundToEven(float64(x)/ulp) * ulp) // float32 of 2^128: +Inf
}

func TestBF16Reference(t *testing.T) {
	for _, c := range [][2]float32{
		{1, 1},
		{1 + 1.0/256, 1},                        // a tie: to even (1), not away (1 + 2^-7)
		{1 + 3.0/256, 1 + 1.0/64},               // a tie: to even (1 + 2^-6)
		{-(1 + 3.0/256), -(1 + 1.0/64)},         // a negative tie
		{1 + 1.0/256 + 1.0/65536, 1 + 1.0/128},  // above the tie
		{2 - 1.0/256, 2},                        // a carry into the exponent
		{3.0e38, 1.765625 * 0x1p127},            // 1.7632 2^127: to 226/128 2^127
		{math.MaxFloat32, float32(math.Inf(1))}, // past the largest bf16: infinity
		{0x1p-133 * 3, 0x1p-133 * 3},            // a subnormal with 2 significant bits: exact
		{0x1p-126 * (1 + 1.0/256), 0x1p-126},    // a tie at the smallest normal
	} {
		if got := bf16(c[0]); got != c[1] {
			t.Errorf("bf16(%v) = %v, want %v", c[0], got, c[1])
		}
	}
}

// fm_bf16x2 (cvt.rn.bf16x2.f32) against bf16 above, bit for bit, on ties,
// carries, overflow, subnormals, signed zeros, infinities, NaN and random
// values; and the packing: the first operand in the low half.
func TestSimBF16x2(t *testing.T) {
	vals := []float32{1, -2, 1 + 1.0/256, 1 + 3.0/256, -(1 + 3.0/256), 2 - 1.0/256, 3.0e38, math.MaxFloat32,
		-math.MaxFloat32, 0x1p-133 * 3, 0x1p-126 * (1 + 1.0/256), 0x1p-149, float32(math.Copysign(0, -1)), 0,
		float32(math.Inf(1)), float32(math.Inf(-1)), 1.0 / 3, -1.0 / 3, 65535, 0.1}
	rng := rand.New(rand.NewPCG(3, 4))
	for len(vals) < 512 {
		vals = append(vals, float32(rng.NormFloat64()*math.Exp(rng.NormFloat64()*10)))
	}
	vals = append(vals, float32(math.NaN()), 5)
	n := len(vals) / 2
	in, out := alloc(t, 2*n), alloc(t, n)
	SimHtoD(in.p, vals)
	if err := launch("simtest_bf16x2_kernel", [3]uint32{uint32((n + 31) / 32), 1, 1}, [3]uint32{32, 1, 1}, 0,
		[]uint64{in.p, out.p, uint64(n)}, "ppi"); err != nil {
		t.Fatal(err)
	}
	got := out.get()
	// hand-computed: bf16(1) = 0x3f80 low, bf16(-2) = 0xc000 high
	if u := math.Float32bits(got[0]); u != 0xc0003f80 {
		t.Errorf("fm_bf16x2(1, -2) = 0x%08x, want 0xc0003f80", u)
	}
	for i := 0; i < n; i++ {
		u := math.Float32bits(got[i])
		for h := 0; h < 2; h++ {
			x := vals[2*i+h]
			half := math.Float32frombits((u >> (16 * h) & 0xffff) << 16)
			if math.IsNaN(float64(x)) {
				if !math.IsNaN(float64(half)) {
					t.Errorf("bf16(NaN) = %v, want a NaN", half)
				}
				continue
			}
			if want := bf16(x); math.Float32bits(half) != math.Float32bits(want) {
				t.Errorf("fm_bf16x2 element %d (%v): %v (0x%04x), want %v", 2*i+h, x, half, u>>(16*h)&0xffff, want)
			}
		}
	}
}

// One warp's 2 x 2 m16n8k16 bf16 products (simtest_mma_bf16_kernel).
//   - Known values: A[i][k] = 2^(i % 3) at k = (3 i + 1) % 16 only, B[k][j]
//     = 16 k + j (integers below 256: exact in bf16), C = i - j, so that
//     D[i][j] = i - j + 2^(i % 3) (16 ((3 i + 1) % 16) + j) exactly: every
//     element names the A and B elements it came from, and a fragment read
//     from a wrong place shows.
//   - Random values with ties of the bf16 rounding, against C + bf16(A)
//     bf16(B) in float64: the emulation adds the exact products in double
//     and rounds once, within 2^-23 of sum |terms|.
//   - The kernel with the halves of A's registers swapped (mode 0) fails
//     both.
func TestSimMmaBF16(t *testing.T) {
	const m, n, k = 32, 16, 16
	da, db, dc, dd := alloc(t, m*k), alloc(t, k*n), alloc(t, m*n), alloc(t, m*n)
	run := func(mode int) []float32 {
		t.Helper()
		if err := launch("simtest_mma_bf16_kernel", [3]uint32{1, 1, 1}, [3]uint32{32, 1, 1}, 0,
			[]uint64{da.p, db.p, dc.p, dd.p, uint64(mode)}, "ppppi"); err != nil {
			t.Fatal(err)
		}
		return dd.get()
	}
	a, b, c := make([]float32, m*k), make([]float32, k*n), make([]float32, m*n)
	for i := 0; i < m; i++ {
		a[i*k+(3*i+1)%16] = float32(int(1) << (i % 3))
		for j := 0; j < n; j++ {
			c[i*n+j] = float32(i - j)
		}
	}
	for l := 0; l < k; l++ {
		for j := 0; j < n; j++ {
			b[l*n+j] = float32(16*l + j)
		}
	}
	SimHtoD(da.p, a)
	SimHtoD(db.p, b)
	SimHtoD(dc.p, c)
	known := func(got []float32) (bad int) {
		for i := 0; i < m; i++ {
			for j := 0; j < n; j++ {
				want := float32(i - j + (1<<(i%3))*(16*((3*i+1)%16)+j))
				if got[i*n+j] != want {
					bad++
				}
			}
		}
		return bad
	}
	if bad := known(run(1)); bad != 0 {
		t.Errorf("known values: %d of %d elements wrong", bad, m*n)
	}
	if bad := known(run(0)); bad == 0 {
		t.Errorf("known values with A's halves swapped: every element right, want errors")
	}

	rng := rand.New(rand.NewPCG(1, 2))
	for i := range a {
		a[i] = float32(rng.NormFloat64())
	}
	for i := range b {
		b[i] = float32(rng.NormFloat64())
	}
	for i := range c {
		c[i] = float32(rng.NormFloat64())
	}
	for _, i := range []int{0, 9, 77, 200} { // ties: to even, down and up
		a[i] = float32(1 + 1.0/256)
		b[i%(k*n)] = -float32(2 + 3.0/128)
	}
	SimHtoD(da.p, a)
	SimHtoD(db.p, b)
	SimHtoD(dc.p, c)
	random := func(got []float32, report bool) (bad int) {
		for i := 0; i < m; i++ {
			for j := 0; j < n; j++ {
				want, scale := float64(c[i*n+j]), math.Abs(float64(c[i*n+j]))
				for l := 0; l < k; l++ {
					p := float64(bf16(a[i*k+l])) * float64(bf16(b[l*n+j]))
					want += p
					scale += math.Abs(p)
				}
				if d := math.Abs(float64(got[i*n+j]) - want); !(d <= scale*0x1p-23) {
					if bad++; report && bad <= 5 {
						t.Errorf("D[%d][%d] = %v, want %v (difference %.3g, bound %.3g)", i, j, got[i*n+j], want, d, scale*0x1p-23)
					}
				}
			}
		}
		return bad
	}
	random(run(1), true)
	if bad := random(run(0), false); bad == 0 {
		t.Errorf("random values with A's halves swapped: every element within the bound, want errors")
	}
	// A warp of fewer than 32 lanes cannot issue it.
	err := launch("simtest_mma_bf16_kernel", [3]uint32{1, 1, 1}, [3]uint32{16, 1, 1}, 0, []uint64{da.p, db.p, dc.p, dd.p, 1}, "ppppi")
	wantErr(t, "partial warp", err, "synccheck", "mma.sync", "warp 0 has 16 lanes")
}
