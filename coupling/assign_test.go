package coupling

import (
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/fmgpu/fmgpu/internal/numtest"
	"github.com/fmgpu/fmgpu/internal/wasserstein"
)

// bruteForceAssign tries every permutation of n <= 9: the reference
// optimum of small problems.
func bruteForceAssign(cost []float64, n int) float64 {
	best := math.Inf(1)
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	var rec func(k int, s float64)
	rec = func(k int, s float64) {
		if k == n {
			best = math.Min(best, s)
			return
		}
		for i := k; i < n; i++ {
			p[k], p[i] = p[i], p[k]
			rec(k+1, s+cost[k*n+p[k]])
			p[k], p[i] = p[i], p[k]
		}
	}
	rec(0, 0)
	return best
}

func total64(cost []float64, n int, p []int) float64 {
	s := 0.0
	for i, j := range p[:n] {
		s += cost[i*n+j]
	}
	return s
}

func checkPerm(t *testing.T, p []int, n int) {
	t.Helper()
	seen := make([]bool, n)
	for i, j := range p[:n] {
		if j < 0 || j >= n || seen[j] {
			t.Fatalf("not a permutation: p[%d] = %d in %v", i, j, p[:n])
		}
		seen[j] = true
	}
}

func randNormal32(r *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	return x
}

func sqDist64(x, y []float32, nx, ny, d int) []float64 {
	c := make([]float64, nx*ny)
	for i := range nx {
		for j := range ny {
			s := 0.0
			for k := range d {
				e := float64(x[i*d+k]) - float64(y[j*d+k])
				s += e * e
			}
			c[i*ny+j] = s
		}
	}
	return c
}

// costKinds are the cost matrices the exactness tests run on: uniform
// reals, small integers (many ties, where the equality tests of the
// search matter) and squared distances of 2-D points.
var costKinds = []struct {
	name string
	make func(r *rand.Rand, n int) []float64
}{
	{"uniform", func(r *rand.Rand, n int) []float64 {
		c := make([]float64, n*n)
		for k := range c {
			c[k] = r.Float64()
		}
		return c
	}},
	{"ties", func(r *rand.Rand, n int) []float64 {
		c := make([]float64, n*n)
		for k := range c {
			c[k] = float64(r.IntN(3))
		}
		return c
	}},
	{"sqdist-2d", func(r *rand.Rand, n int) []float64 {
		return sqDist64(randNormal32(r, 2*n), randNormal32(r, 2*n), n, n, 2)
	}},
	{"constant", func(_ *rand.Rand, n int) []float64 {
		c := make([]float64, n*n)
		for k := range c {
			c[k] = 7
		}
		return c
	}},
}

func TestAssignBruteForce(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var a Assigner // reused across sizes: growing and shrinking buffers
	for _, kind := range costKinds {
		for n := 1; n <= 8; n++ {
			for trial := range 20 {
				c := kind.make(r, n)
				p := make([]int, n)
				if err := a.Assign64(p, c, n); err != nil {
					t.Fatal(err)
				}
				checkPerm(t, p, n)
				got, want := total64(c, n, p), bruteForceAssign(c, n)
				// Sums of at most 8 terms in [0, 20]: exact to a few ulps.
				if !numtest.Close(got, want, 1e-12, 1e-12) {
					t.Errorf("%s n=%d trial %d: total %.17g, brute force %.17g", kind.name, n, trial, got, want)
				}
			}
		}
	}
}

// In one dimension the optimal matching under squared distance is the
// monotone one (sorted to sorted), a known optimum at any size.
func TestAssignOneDimensionSorted(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{2, 17, 100, 256, 500} {
		x0 := randNormal32(r, n)
		x1 := make([]float32, n)
		for i := range x1 {
			x1[i] = float32(3*r.Float64() - 1)
		}
		cost := make([]float32, n*n)
		SqDist(cost, x0, x1, n, n, 1)
		p := make([]int, n)
		var a Assigner
		if err := a.Assign(p, cost, n); err != nil {
			t.Fatal(err)
		}
		checkPerm(t, p, n)
		o0, o1 := argsort(x0), argsort(x1)
		want := make([]int, n)
		for k := range n {
			want[o0[k]] = o1[k]
		}
		// The optimum is unique for distinct reals; the float32 cost can
		// still tie two near-equal matchings, so compare totals in float64
		// on the exact points, within the float32 rounding of the costs.
		got64, want64 := 0.0, 0.0
		for i := range n {
			e := float64(x0[i]) - float64(x1[p[i]])
			got64 += e * e
			e = float64(x0[i]) - float64(x1[want[i]])
			want64 += e * e
		}
		if !numtest.Close(got64, want64, 1e-6*float64(n), 1e-6) {
			t.Errorf("n=%d: total %.9g, sorted matching %.9g", n, got64, want64)
		}
		if same := slices.Equal(p, want); !same && n <= 100 {
			t.Errorf("n=%d: not the sorted matching", n)
		}
	}
}

func argsort(x []float32) []int {
	o := make([]int, len(x))
	for i := range o {
		o[i] = i
	}
	sort.SliceStable(o, func(a, b int) bool { return x[o[a]] < x[o[b]] })
	return o
}

// TestAssignDualCertificate checks optimality by linear programming
// duality: with u_i = C[i, p(i)] - v_p(i), every reduced cost
// C[i, j] - u_i - v_j must be >= 0, so no other permutation is cheaper.
func TestAssignDualCertificate(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, c := range []struct{ n, d int }{{256, 2}, {256, 784}, {300, 3}, {64, 1}} {
		x0 := randNormal32(r, c.n*c.d)
		x1 := make([]float32, c.n*c.d)
		for i := range x1 {
			x1[i] = float32(2*r.Float64() - 1)
		}
		cost := make([]float32, c.n*c.n)
		SqDist(cost, x0, x1, c.n, c.n, c.d)
		p := make([]int, c.n)
		var a Assigner
		if err := a.Assign(p, cost, c.n); err != nil {
			t.Fatal(err)
		}
		checkPerm(t, p, c.n)
		scale := 0.0
		for _, x := range a.c {
			scale = math.Max(scale, math.Abs(x))
		}
		worst := 0.0
		for i := range c.n {
			ui := a.c[i*c.n+p[i]] - a.v[p[i]]
			for j := range c.n {
				worst = math.Min(worst, a.c[i*c.n+j]-ui-a.v[j])
			}
		}
		// Prices are sums of O(n) float64 differences of costs.
		if worst < -1e-12*scale*float64(c.n) {
			t.Errorf("n=%d d=%d: a reduced cost is %.3g (cost scale %.3g)", c.n, c.d, worst, scale)
		}
	}
}

// The Hungarian method of internal/wasserstein is an independent
// implementation of the same optimum.
func TestAssignAgainstHungarian(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for _, c := range []struct{ n, d int }{{50, 2}, {128, 2}, {100, 10}, {64, 784}} {
		x0, x1 := randNormal32(r, c.n*c.d), randNormal32(r, c.n*c.d)
		cost := sqDist64(x0, x1, c.n, c.n, c.d)
		p := make([]int, c.n)
		var a Assigner
		if err := a.Assign64(p, cost, c.n); err != nil {
			t.Fatal(err)
		}
		a64, b64 := make([]float64, len(x0)), make([]float64, len(x1))
		for i := range x0 {
			a64[i], b64[i] = float64(x0[i]), float64(x1[i])
		}
		w, _, err := wasserstein.W2(a64, b64, c.n, c.d)
		if err != nil {
			t.Fatal(err)
		}
		got, want := total64(cost, c.n, p), w*w*float64(c.n)
		if !numtest.Close(got, want, 0, 1e-12) {
			t.Errorf("n=%d d=%d: total %.17g, Hungarian %.17g", c.n, c.d, got, want)
		}
	}
}

// Data that is a slightly moved copy of the noise in another order is
// paired back with its origin.
func TestAssignRecoversPermutation(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	const n, d = 256, 16
	x0 := randNormal32(r, n*d)
	sigma := r.Perm(n)
	x1 := make([]float32, n*d)
	for i, s := range sigma {
		for k := range d {
			x1[s*d+k] = x0[i*d+k] + float32(1e-3*r.NormFloat64())
		}
	}
	cost := make([]float32, n*n)
	SqDist(cost, x0, x1, n, n, d)
	p := make([]int, n)
	var a Assigner
	if err := a.Assign(p, cost, n); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(p, sigma) {
		t.Errorf("did not recover the permutation")
	}
}

// Adding a constant to each row and each column, as handing over -2 G
// instead of the squared distances does, leaves the assignment unchanged.
func TestAssignGramEquivalent(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	const n, d = 200, 8
	x0, x1 := randNormal32(r, n*d), randNormal32(r, n*d)
	g := make([]float32, n*n)
	Gram(g, x0, x1, n, n, d)
	for k := range g {
		g[k] *= -2
	}
	c := make([]float32, n*n)
	SqDist(c, x0, x1, n, n, d)
	pg, pc := make([]int, n), make([]int, n)
	var a Assigner
	if err := a.Assign(pg, g, n); err != nil {
		t.Fatal(err)
	}
	if err := a.Assign(pc, c, n); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(pg, pc) {
		// Different roundings may split a near-tie differently: compare
		// the transport costs instead.
		if got, want := MeanCost(c, n, pg), MeanCost(c, n, pc); !numtest.Close(got, want, 0, 1e-6) {
			t.Errorf("mean cost from -2G %.9g, from C %.9g", got, want)
		}
	}
}

func TestAssignErrors(t *testing.T) {
	var a Assigner
	for _, c := range []struct {
		name string
		cost []float32
		n    int
		perm int
		want string
	}{
		{"nan", []float32{0, 1, float32(math.NaN()), 2}, 2, 2, "cost[1][0] = NaN"},
		{"inf", []float32{0, float32(math.Inf(1)), 1, 2}, 2, 2, "cost[0][1] = +Inf"},
		{"short cost", []float32{0, 1, 2}, 2, 2, "needs 4 costs"},
		{"short perm", []float32{0, 1, 2, 3}, 2, 1, "2 slots"},
		{"negative", nil, -1, 0, "size -1"},
	} {
		err := a.Assign(make([]int, c.perm), c.cost, c.n)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.name, err, c.want)
		}
	}
	if err := a.Assign(nil, nil, 0); err != nil {
		t.Errorf("n = 0: %v", err)
	}
	// Finite but too large for the solve's sums: an error, not an index
	// out of range or a wrong permutation.
	huge := []float64{1e308, -1e308, 1e308, -1e308, 1e308, -1e308, 1e308, -1e308, 1e308}
	if err := a.Assign64(make([]int, 3), huge, 3); err == nil || !strings.Contains(err.Error(), "cost[0][0] = 1e+308") {
		t.Errorf("huge costs: error %v", err)
	}
}

// Costs just inside maxCost64 still solve exactly: integer costs in
// [-3, 3] times a power of two near the limit, against brute force.
func TestAssign64LargeCosts(t *testing.T) {
	const n = 4
	scale := math.Ldexp(1, math.Ilogb(maxCost64(n)/3))
	rng := rand.New(rand.NewPCG(4, 5))
	var a Assigner
	cost := make([]float64, n*n)
	perm := make([]int, n)
	for trial := 0; trial < 300; trial++ {
		for k := range cost {
			cost[k] = float64(rng.IntN(7)-3) * scale
		}
		if err := a.Assign64(perm, cost, n); err != nil {
			t.Fatal(err)
		}
		checkPerm(t, perm, n)
		if got, want := total64(cost, n, perm), bruteForceAssign(cost, n); got != want {
			t.Fatalf("trial %d: total %g, optimum %g (%v)", trial, got, want, cost)
		}
	}
}

// The result depends only on the cost: a reused Assigner, whatever it
// solved before, returns what a fresh one does (the trainer's exact
// resume relies on it).
func TestAssignReuse(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	var used Assigner
	for _, n := range []int{256, 40, 256, 3, 256} {
		cost := make([]float32, n*n)
		SqDist(cost, randNormal32(r, 2*n), randNormal32(r, 2*n), n, n, 2)
		got, want := make([]int, n), make([]int, n)
		if err := used.Assign(got, cost, n); err != nil {
			t.Fatal(err)
		}
		var fresh Assigner
		if err := fresh.Assign(want, cost, n); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("n=%d: a reused Assigner differs from a fresh one", n)
		}
	}
}

// Points on a small integer grid make costs with many ties: through
// Assign (the float32 costs' conversion, and the vector kernels from n =
// 16 on) the total is still the optimum, exactly (integer sums).
func TestAssignTiesAgainstHungarian(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	var a Assigner
	for _, n := range []int{15, 16, 17, 33, 64, 100} {
		for trial := range 5 {
			x0, x1 := make([]float32, 2*n), make([]float32, 2*n)
			for k := range x0 {
				x0[k], x1[k] = float32(r.IntN(4)), float32(r.IntN(4))
			}
			cost := make([]float32, n*n)
			SqDist(cost, x0, x1, n, n, 2)
			p := make([]int, n)
			if err := a.Assign(p, cost, n); err != nil {
				t.Fatal(err)
			}
			checkPerm(t, p, n)
			a64, b64 := make([]float64, 2*n), make([]float64, 2*n)
			for k := range x0 {
				a64[k], b64[k] = float64(x0[k]), float64(x1[k])
			}
			w, _, err := wasserstein.W2(a64, b64, n, 2)
			if err != nil {
				t.Fatal(err)
			}
			got := 0.0
			for i, j := range p {
				got += float64(cost[i*n+j])
			}
			if want := math.Round(w * w * float64(n)); got != want {
				t.Errorf("n=%d trial %d: total %v, Hungarian %v", n, trial, got, want)
			}
		}
	}
}
