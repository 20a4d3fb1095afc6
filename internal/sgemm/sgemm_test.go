package sgemm

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/fmgpu/fmgpu/internal/numtest"
)

// Tolerance: each element must satisfy
//
//	|got - want| <= 1e-4 * (|alpha| * sum_p |A(i,p)| |B(p,j)| + |beta| |C0(i,j)|)
//
// with want computed in float64. float32 accumulation of k products has a
// worst-case error about k*eps*sum|a||b| and a typical one sqrt(k)*eps; the
// blocked kernels sum at most kc = 256 terms before adding partial sums,
// so 1e-4 relative to the absolute sum holds with a wide margin.
const tol = 1e-4

// forEachKernel runs f once per kernel this CPU and build support.
func forEachKernel(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	defer SetKernel("")
	for _, name := range Kernels() {
		if err := SetKernel(name); err != nil {
			t.Fatal(err)
		}
		t.Run("kernel="+name, f)
	}
}

type gemmCase struct {
	ta, tb      bool
	m, n, k     int
	alpha, beta float32
	padA, padB  int // extra leading-dimension columns
	padC        int
	offA, offB  int // slice start offsets (misalignment)
	offC        int
	ep          *epCase
}

type epCase struct {
	bias bool
	act  Activation
	pre  bool
}

func (c gemmCase) String() string {
	s := fmt.Sprintf("ta=%v,tb=%v/m=%d,n=%d,k=%d/alpha=%g,beta=%g/pad=%d,%d,%d/off=%d,%d,%d",
		c.ta, c.tb, c.m, c.n, c.k, c.alpha, c.beta, c.padA, c.padB, c.padC, c.offA, c.offB, c.offC)
	if c.ep != nil {
		s += fmt.Sprintf("/ep=%v,%d,%v", c.ep.bias, c.ep.act, c.ep.pre)
	}
	return s
}

func randSlice(r *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(r.Float64()*2 - 1)
	}
	return s
}

func silu64(z float64) float64 { return z / (1 + math.Exp(-z)) }

// runCase runs one product and checks it against a float64 reference.
func runCase(t *testing.T, r *rand.Rand, tc gemmCase) {
	t.Helper()
	m, n, k := tc.m, tc.n, tc.k
	ar, ac := m, k
	if tc.ta {
		ar, ac = k, m
	}
	br, bc := k, n
	if tc.tb {
		br, bc = n, k
	}
	lda, ldb, ldc := max(1, ac)+tc.padA, max(1, bc)+tc.padB, max(1, n)+tc.padC
	aAll := randSlice(r, tc.offA+ar*lda)
	bAll := randSlice(r, tc.offB+br*ldb)
	cAll := randSlice(r, tc.offC+m*ldc)
	a, b, c := aAll[tc.offA:], bAll[tc.offB:], cAll[tc.offC:]
	if tc.beta == 0 {
		for i := 0; i < m; i++ {
			for j := 0; j < n; j++ {
				c[i*ldc+j] = float32(math.NaN())
			}
		}
	}
	c0 := append([]float32(nil), cAll...)
	A := func(i, p int) float64 {
		if tc.ta {
			return float64(a[p*lda+i])
		}
		return float64(a[i*lda+p])
	}
	B := func(p, j int) float64 {
		if tc.tb {
			return float64(b[j*ldb+p])
		}
		return float64(b[p*ldb+j])
	}
	var ep *Epilogue
	var bias, pre []float32
	ldPre := n + 3
	if tc.ep != nil {
		ep = &Epilogue{Act: tc.ep.act}
		if tc.ep.bias {
			bias = randSlice(r, n)
			ep.Bias = bias
		}
		if tc.ep.pre {
			pre = make([]float32, m*ldPre)
			for i := range pre {
				pre[i] = -7
			}
			ep.Pre, ep.LdPre = pre, ldPre
		}
	}
	GemmEpilogue(tc.ta, tc.tb, m, n, k, tc.alpha, a, lda, b, ldb, tc.beta, c, ldc, ep)

	bad := 0
	for i := 0; i < m; i++ {
		for j := 0; j < ldc; j++ {
			idx := tc.offC + i*ldc + j
			if j >= n || idx >= len(cAll) {
				if idx < len(cAll) && math.Float32bits(cAll[idx]) != math.Float32bits(c0[idx]) {
					t.Errorf("%v: padding C[%d,%d] changed", tc, i, j)
					return
				}
				continue
			}
			var s, sabs float64
			for p := 0; p < k; p++ {
				s += A(i, p) * B(p, j)
				sabs += math.Abs(A(i, p) * B(p, j))
			}
			want := float64(tc.alpha) * s
			bound := tol * math.Abs(float64(tc.alpha)) * sabs
			if tc.beta != 0 {
				cv := float64(c0[idx])
				want += float64(tc.beta) * cv
				bound += tol * math.Abs(float64(tc.beta)*cv)
			}
			bound += 1e-30
			if tc.ep != nil {
				z := want
				if bias != nil {
					z += float64(bias[j])
					bound += tol * math.Abs(float64(bias[j]))
				}
				if pre != nil && !numtest.Close(float64(pre[i*ldPre+j]), z, bound, 0) {
					if bad < 5 {
						t.Errorf("%v: Pre[%d,%d] = %g, want %g", tc, i, j, pre[i*ldPre+j], z)
					}
					bad++
				}
				want = z
				if tc.ep.act == ActSiLU {
					want = silu64(z)
					bound += 1e-6 * math.Abs(want)
				}
			}
			if got := float64(c[i*ldc+j]); !numtest.Close(got, want, bound, 0) {
				if bad < 5 {
					t.Errorf("%v: C[%d,%d] = %g, want %g (bound %g)", tc, i, j, got, want, bound)
				}
				bad++
			}
		}
	}
	if pre != nil {
		for i := 0; i < m; i++ {
			for j := n; j < ldPre && i*ldPre+j < len(pre); j++ {
				if pre[i*ldPre+j] != -7 {
					t.Errorf("%v: Pre padding changed", tc)
					return
				}
			}
		}
	}
	if bad > 0 {
		t.Errorf("%v: %d bad elements", tc, bad)
	}
}

var alphaBetas = [][2]float32{{1, 0}, {1, 1}, {-0.5, 2}, {2, -0.5}, {0, 2}, {2, 0}, {1, 0}}

func TestGemmSmallCross(t *testing.T) {
	dims := []int{1, 2, 3, 7, 17, 31, 64}
	forEachKernel(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(1, 2))
		cnt := 0
		for _, m := range dims {
			for _, n := range dims {
				for _, k := range dims {
					for tr := 0; tr < 4; tr++ {
						ab := alphaBetas[cnt%len(alphaBetas)]
						tc := gemmCase{ta: tr&1 != 0, tb: tr&2 != 0, m: m, n: n, k: k,
							alpha: ab[0], beta: ab[1],
							padA: cnt % 3, padB: (cnt / 3) % 2, padC: (cnt / 2) % 3,
							offA: cnt % 4, offB: (cnt + 1) % 3, offC: cnt % 2 * 3}
						runCase(t, r, tc)
						cnt++
					}
				}
			}
		}
	})
}

func TestGemmLarge(t *testing.T) {
	shapes := [][3]int{
		{255, 257, 64}, {257, 255, 300}, {1000, 33, 257}, {64, 1000, 255},
		{4097, 17, 3}, {3, 4097, 5}, {17, 3, 4097}, {2, 300, 4097}, {300, 2, 1000},
		{257, 1000, 31}, {31, 64, 1000}, {1000, 1, 7}, {1, 1000, 64}, {1, 1, 4097},
		{256, 256, 256}, {512, 3, 256}, {256, 512, 2},
		{20000, 2, 64}, {20000, 40, 3}, // sampling batch
	}
	if testing.Short() {
		shapes = shapes[:6]
	}
	forEachKernel(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(3, 4))
		for si, s := range shapes {
			for tr := 0; tr < 4; tr++ {
				ab := alphaBetas[(si+tr)%len(alphaBetas)]
				tc := gemmCase{ta: tr&1 != 0, tb: tr&2 != 0, m: s[0], n: s[1], k: s[2],
					alpha: ab[0], beta: ab[1], padA: tr, padB: 5 - tr, padC: si % 2 * 7,
					offA: 1, offB: 3, offC: si % 3}
				runCase(t, r, tc)
			}
		}
	})
}

func TestGemmAlphaBetaGrid(t *testing.T) {
	vals := []float32{0, 1, -0.5, 2}
	forEachKernel(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(5, 6))
		for _, al := range vals {
			for _, be := range vals {
				for tr := 0; tr < 4; tr++ {
					runCase(t, r, gemmCase{ta: tr&1 != 0, tb: tr&2 != 0, m: 37, n: 70, k: 45,
						alpha: al, beta: be, padA: 1, padB: 2, padC: 3, offA: 3, offB: 1, offC: 1})
				}
			}
		}
	})
}

func TestGemmEpilogue(t *testing.T) {
	shapes := [][3]int{{7, 17, 31}, {64, 255, 64}, {257, 64, 255}, {1000, 2, 64}, {300, 3, 7}, {100, 100, 3}}
	eps := []epCase{{true, ActNone, false}, {true, ActSiLU, false}, {true, ActSiLU, true},
		{false, ActSiLU, true}, {true, ActNone, true}, {false, ActSiLU, false}}
	forEachKernel(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(7, 8))
		for si, s := range shapes {
			for ei := range eps {
				tr := (si + ei) % 4
				ab := alphaBetas[(si*7+ei)%len(alphaBetas)]
				runCase(t, r, gemmCase{ta: tr&1 != 0, tb: tr&2 != 0, m: s[0], n: s[1], k: s[2],
					alpha: ab[0], beta: ab[1], padA: 1, padC: 2, offA: 1, offB: 3, offC: 1, ep: &eps[ei]})
			}
		}
	})
}

// TestEpilogueSiLURange checks the vector SiLU over a wide range of inputs,
// including values that overflow exp.
func TestEpilogueSiLURange(t *testing.T) {
	forEachKernel(t, func(t *testing.T) {
		n := 4096
		c := make([]float32, n)
		for i := range c {
			c[i] = float32(-100 + 200*float64(i)/float64(n-1))
		}
		c[0], c[1], c[2], c[3] = -1e30, 1e30, 0, float32(math.Copysign(0, -1))
		want := make([]float64, n)
		for i, v := range c {
			want[i] = silu64(float64(v))
		}
		epilogueBlock(current.Load(), &Epilogue{Act: ActSiLU}, c, n, 0, 1, 0, n)
		for i := range c {
			// atol: for z < -88 exp(-z) is clamped, leaving |silu| <= |z|*e^-88 instead of ~0.
			if !numtest.Close(float64(c[i]), want[i], 1e-7, 2e-6) {
				t.Errorf("silu(%g) = %g, want %g", c[i], c[i], want[i])
			}
		}
	})
}

// TestGemmConcurrent runs products of several sizes from many goroutines
// at once: the pool's hand-off (posted, claimed or cancelled parts, jobs
// recycled while stale queue messages are in flight) must keep every
// result exact.
func TestGemmConcurrent(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	type prob struct {
		m, n, k int
		a, b    []float32
		want    []float32
	}
	var probs []prob
	for _, s := range [][3]int{{300, 200, 150}, {128, 128, 64}, {1000, 64, 32}, {64, 64, 256}} {
		m, n, k := s[0], s[1], s[2]
		p := prob{m: m, n: n, k: k, a: randSlice(r, m*k), b: randSlice(r, k*n), want: make([]float32, m*n)}
		naive(false, false, m, n, k, 1, p.a, k, p.b, n, 0, p.want, n)
		probs = append(probs, p)
	}
	iters := 20
	if testing.Short() {
		iters = 5
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := 0; it < iters; it++ {
				p := probs[(g+it)%len(probs)]
				c := make([]float32, p.m*p.n)
				Gemm(false, false, p.m, p.n, p.k, 1, p.a, p.k, p.b, p.n, 0, c, p.n)
				if e := numtest.MaxRelErr(c, p.want, 1); e > 1e-5 {
					t.Errorf("concurrent %dx%dx%d: max rel err %g", p.m, p.n, p.k, e)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestGemmPanics(t *testing.T) {
	a := make([]float32, 10)
	for _, f := range []func(){
		func() { Gemm(false, false, 2, 2, 2, 1, a, 1, a, 2, 0, a, 2) },  // lda < k
		func() { Gemm(false, false, 4, 4, 4, 1, a, 4, a, 4, 0, a, 4) },  // short
		func() { Gemm(false, false, -1, 2, 2, 1, a, 2, a, 2, 0, a, 2) }, // negative
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			f()
		}()
	}
}

func TestAllocs(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	bias := randSlice(r, 512)
	type shape struct {
		ta, tb  bool
		m, n, k int
		ep      bool
	}
	for _, s := range []shape{
		{false, true, 256, 256, 256, true}, {false, false, 1000, 64, 257, false},
		{true, false, 256, 256, 1024, false}, {false, true, 4096, 2, 256, false},
		{false, true, 2048, 256, 3, true}, {true, false, 3, 17, 5, false},
	} {
		ar, ac := s.m, s.k
		if s.ta {
			ar, ac = s.k, s.m
		}
		br, bc := s.k, s.n
		if s.tb {
			br, bc = s.n, s.k
		}
		a, b, c := randSlice(r, ar*ac), randSlice(r, br*bc), make([]float32, s.m*s.n)
		pre := make([]float32, s.m*s.n)
		var ep *Epilogue
		if s.ep {
			ep = &Epilogue{Bias: bias[:s.n], Act: ActSiLU, Pre: pre, LdPre: s.n}
		}
		forEachKernel(t, func(t *testing.T) {
			f := func() {
				if ep == nil {
					GemmEpilogue(s.ta, s.tb, s.m, s.n, s.k, 1, a, ac, b, bc, 0, c, s.n, nil)
					return
				}
				// An Epilogue built per call must not allocate either.
				GemmEpilogue(s.ta, s.tb, s.m, s.n, s.k, 1, a, ac, b, bc, 0, c, s.n,
					&Epilogue{Bias: ep.Bias, Act: ep.Act, Pre: ep.Pre, LdPre: ep.LdPre})
			}
			f()
			if n := testing.AllocsPerRun(10, f); n != 0 {
				t.Errorf("%+v: %v allocs per call", s, n)
			}
		})
	}
}

func TestKernelsListed(t *testing.T) {
	ks := Kernels()
	if ks[len(ks)-1] != "generic" {
		t.Errorf("Kernels() = %v, want generic last", ks)
	}
	if err := SetKernel("nonesuch"); err == nil {
		t.Error("SetKernel(nonesuch) succeeded")
	}
	t.Logf("kernels: %v (default %s)", ks, Kernel())
}

// TestKernelGeometry checks that every kernel has a micro-kernel for each
// row count and sane blocking.
func TestKernelGeometry(t *testing.T) {
	for _, k := range available {
		if len(k.rowA) != k.mr || len(k.colA) != k.mr {
			t.Errorf("%s: %d/%d micro-kernels for MR = %d", k.name, len(k.rowA), len(k.colA), k.mr)
		}
		if k.nc%k.nr != 0 || k.kc <= 0 {
			t.Errorf("%s: nc = %d not a multiple of NR = %d, or kc = %d", k.name, k.nc, k.nr, k.kc)
		}
		for n := 1; n < dotMaxN && k.dot[1] != nil; n++ {
			if k.dot[n] == nil || k.dot1[n] == nil || k.dotRows[n] < 1 {
				t.Errorf("%s: no dot kernel for n = %d", k.name, n)
			}
		}
	}
}

// TestPoolStress makes many short parallel calls (the caller often
// finishes before a worker claims its part, leaving stale queue messages
// behind), from several goroutines, and fails instead of hanging if the
// pool's bookkeeping ever loses a part.
func TestPoolStress(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	m, n, k := 4096, 2, 256 // just above the parallel threshold, ~40 µs
	a, b := randSlice(r, m*k), randSlice(r, n*k)
	want := make([]float32, m*n)
	naive(false, true, m, n, k, 1, a, k, b, k, 0, want, n)
	iters := 1500
	if testing.Short() {
		iters = 300
	}
	// Start the pool at full size, then also run with one P: workers then
	// run only when the callers are preempted, so parts get cancelled,
	// stale messages fill the queue and are claimed at awkward moments.
	Gemm(false, true, m, n, k, 1, a, k, b, k, 0, make([]float32, m*n), n)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, procs := range []int{1, runtime.GOMAXPROCS(0)} {
			old := runtime.GOMAXPROCS(procs)
			poolStressRound(t, a, b, want, m, n, k, iters)
			runtime.GOMAXPROCS(old)
		}
	}()
	select {
	case <-done:
	case <-time.After(3 * time.Minute):
		t.Fatal("pool stalled: a part was lost")
	}
}

func poolStressRound(t *testing.T, a, b, want []float32, m, n, k, iters int) {
	var wg sync.WaitGroup
	for g := 0; g < 3; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := make([]float32, m*n)
			for it := 0; it < iters; it++ {
				Gemm(false, true, m, n, k, 1, a, k, b, k, 0, c, n)
			}
			if e := numtest.MaxRelErr(c, want, 1); e > 1e-5 {
				t.Errorf("max rel err %g", e)
			}
		}()
	}
	wg.Wait()
}

// TestGemmPackedA covers the packed transposed A (lda a multiple of 512)
// and the packed non-transposed B (many row panels), edge rows included.
func TestGemmPackedA(t *testing.T) {
	forEachKernel(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(15, 16))
		for _, tc := range []gemmCase{
			{ta: true, m: 512, n: 200, k: 300, alpha: 1, beta: 0.5},
			{ta: true, m: 509, n: 130, k: 70, padA: 3, alpha: -0.5, beta: 0, offA: 1},
			{ta: true, tb: true, m: 1021, n: 150, k: 33, padA: 3, alpha: 2, beta: 1, offC: 3},
			{m: 1000, n: 77, k: 64, padB: 512 - 77, alpha: 1, beta: 0},
		} {
			runCase(t, r, tc)
		}
	})
}

// TestEpilogueNTPre covers the non-temporal stores of a large Pre (and
// the fallback for an unaligned one): the results must equal those of a
// small product computed the ordinary way, row block by row block.
func TestEpilogueNTPre(t *testing.T) {
	r := rand.New(rand.NewPCG(31, 32))
	m, n, k := ntPreBytes/(4*256)+5, 256, 8
	a, b := randSlice(r, m*k), randSlice(r, n*k)
	bias := randSlice(r, n)
	forEachKernel(t, func(t *testing.T) {
		for _, off := range []int{0, 1} {
			c := make([]float32, m*n)
			preBuf := make([]float32, m*n+16)
			pre := preBuf[off : off+m*n]
			GemmEpilogue(false, true, m, n, k, 1, a, k, b, k, 0, c, n, &Epilogue{Bias: bias, Act: ActSiLU, Pre: pre, LdPre: n})
			wc, wp := make([]float32, m*n), make([]float32, m*n)
			for r0 := 0; r0 < m; r0 += 1000 {
				rows := min(1000, m-r0)
				GemmEpilogue(false, true, rows, n, k, 1, a[r0*k:], k, b, k, 0, wc[r0*n:], n, &Epilogue{Bias: bias, Act: ActSiLU, Pre: wp[r0*n:], LdPre: n})
			}
			for i := range c {
				if c[i] != wc[i] || pre[i] != wp[i] {
					t.Fatalf("offset %d: element %d: c %g pre %g, want %g %g", off, i, c[i], pre[i], wc[i], wp[i])
				}
			}
		}
	})
}
