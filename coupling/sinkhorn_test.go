package coupling

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/fmgpu/fmgpu/internal/numtest"
)

// logSinkhorn64 is the reference: plain log-domain Sinkhorn in float64,
// f_i = eps ln(1/n) - eps LSE_j((g_j - C_ij)/eps) and the same for g,
// iterated from zero until the row marginals are within 1e-14.
func logSinkhorn64(c []float64, n int, eps float64) []float64 {
	f, g := make([]float64, n), make([]float64, n)
	lnMu := math.Log(1 / float64(n))
	lse := func(vals func(k int) float64) float64 {
		m := math.Inf(-1)
		for k := range n {
			m = math.Max(m, vals(k))
		}
		s := 0.0
		for k := range n {
			s += math.Exp(vals(k) - m)
		}
		return m + math.Log(s)
	}
	p := make([]float64, n*n)
	for it := 0; it < 200000; it++ {
		for i := range n {
			f[i] = eps * (lnMu - lse(func(j int) float64 { return (g[j] - c[i*n+j]) / eps }))
		}
		for j := range n {
			g[j] = eps * (lnMu - lse(func(i int) float64 { return (f[i] - c[i*n+j]) / eps }))
		}
		err := 0.0
		for i := range n {
			r := 0.0
			for j := range n {
				p[i*n+j] = math.Exp((f[i] + g[j] - c[i*n+j]) / eps)
				r += p[i*n+j]
			}
			err += math.Abs(r - 1/float64(n))
		}
		if err < 1e-14 {
			break
		}
	}
	return p
}

func marginalErrs(p []float64, n int) (rows, cols float64) {
	mu := 1 / float64(n)
	cs := make([]float64, n)
	for i := range n {
		r := 0.0
		for j := range n {
			r += p[i*n+j]
			cs[j] += p[i*n+j]
		}
		rows += math.Abs(r - mu)
	}
	for _, c := range cs {
		cols += math.Abs(c - mu)
	}
	return rows, cols
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

func TestSinkhornAgainstLogDomain(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	for _, c := range []struct {
		n, d int
		reg  float64
	}{{12, 2, 0.5}, {20, 2, 0.1}, {16, 5, 1}, {9, 2, 3}} {
		cost := make([]float32, c.n*c.n)
		SqDist(cost, randNormal32(r, c.n*c.d), randNormal32(r, c.n*c.d), c.n, c.n, c.d)
		want := logSinkhorn64(to64(cost), c.n, c.reg)
		got := make([]float64, c.n*c.n)
		var s Sinkhorn
		st, err := s.Plan(got, cost, c.n, SinkhornOptions{Reg: c.reg, Tol: 1e-13, MaxIter: 100000})
		if err != nil || !st.Converged {
			t.Fatalf("n=%d reg=%g: %+v %v", c.n, c.reg, st, err)
		}
		// Both are within 1e-13 of the marginals of the unique plan; the
		// entries agree to the conditioning of the scaling problem.
		numtest.AllClose(t, "plan", got, want, 1e-12, 1e-8)
	}
}

// TestSinkhornGibbsForm checks the two properties that characterize the
// entropic plan without a reference: the marginals, and
// ln P_ij + C_ij/eps = f_i + g_j (a sum of a row and a column term).
func TestSinkhornGibbsForm(t *testing.T) {
	r := rand.New(rand.NewPCG(23, 24))
	const n, d = 64, 3
	cost := make([]float32, n*n)
	SqDist(cost, randNormal32(r, n*d), randNormal32(r, n*d), n, n, d)
	for _, reg := range []float64{0.3, 2} {
		p := make([]float64, n*n)
		var s Sinkhorn
		st, err := s.Plan(p, cost, n, SinkhornOptions{Reg: reg, Tol: 1e-10, MaxIter: 100000})
		if err != nil || !st.Converged {
			t.Fatalf("reg=%g: %+v %v", reg, st, err)
		}
		rows, cols := marginalErrs(p, n)
		if rows > 1e-10 || cols > 1e-12 {
			t.Errorf("reg=%g: marginal errors %.3g (rows), %.3g (columns)", reg, rows, cols)
		}
		h := func(i, j int) float64 { return math.Log(p[i*n+j]) + float64(cost[i*n+j])/reg }
		worst := 0.0
		for i := range n {
			for j := range n {
				worst = math.Max(worst, math.Abs(h(i, j)-h(i, 0)-h(0, j)+h(0, 0)))
			}
		}
		if worst > 1e-9 {
			t.Errorf("reg=%g: ln P + C/eps departs from f_i + g_j by %.3g", reg, worst)
		}
	}
}

func TestSinkhornLimits(t *testing.T) {
	const n, d = 100, 2
	x0, x1 := benchBatch(n, d, 7)
	cost := make([]float32, n*n)
	SqDist(cost, x0, x1, n, n, d)
	p := make([]float64, n*n)
	var s Sinkhorn
	// A huge epsilon: the independent coupling, 1/n^2 everywhere.
	if _, err := s.Plan(p, cost, n, SinkhornOptions{Reg: 1e7}); err != nil {
		t.Fatal(err)
	}
	numtest.AllClose(t, "plan at reg 1e7", p, constSlice(n*n, 1/float64(n*n)), 0, 1e-4)
	// A small epsilon: the transport cost approaches the exact optimum
	// from above, within about eps * ln n (entropy of a plan with n^2
	// entries over the n of a permutation).
	perm := make([]int, n)
	var a Assigner
	if err := a.Assign(perm, cost, n); err != nil {
		t.Fatal(err)
	}
	ot := MeanCost(cost, n, perm)
	for _, reg := range []float64{0.1, 0.01} {
		st, err := s.Plan(p, cost, n, SinkhornOptions{Reg: reg, MaxIter: 20000})
		if err != nil || !st.Converged {
			t.Fatalf("reg=%g: %+v %v", reg, st, err)
		}
		got := 0.0
		for k, v := range p {
			got += v * float64(cost[k])
		}
		if got < ot-1e-4 || got > ot+reg*math.Log(float64(n))+1e-4 {
			t.Errorf("reg=%g: plan cost %.6f, exact OT %.6f", reg, got, ot)
		}
	}
}

func constSlice(n int, v float64) []float64 {
	x := make([]float64, n)
	for i := range x {
		x[i] = v
	}
	return x
}

// Costs in the thousands with a tiny epsilon: every kernel entry
// exp(-C/eps) underflows in float64 unless the potentials absorb the
// scale; the plan must stay finite with exact column marginals.
func TestSinkhornStable(t *testing.T) {
	const n, d = 64, 784
	x0, x1 := benchBatch(n, d, 8)
	cost := make([]float32, n*n)
	SqDist(cost, x0, x1, n, n, d)
	p := make([]float64, n*n)
	var s Sinkhorn
	for _, reg := range []float64{1e-3, 0.05, 5} {
		st, err := s.Plan(p, cost, n, SinkhornOptions{Reg: reg, MaxIter: 300})
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range p {
			if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
				t.Fatalf("reg=%g: plan[%d] = %v", reg, k, v)
			}
		}
		_, cols := marginalErrs(p, n)
		if cols > 1e-10 {
			t.Errorf("reg=%g: column marginal error %.3g", reg, cols)
		}
		if rows, _ := marginalErrs(p, n); st.Converged && rows > DefaultSinkhornTol*(1+1e-9) {
			t.Errorf("reg=%g: %+v, but the plan's row marginals are off by %.3g", reg, st, rows)
		}
	}
}

// An iteration limit that stops the run before its last epsilon level
// leaves a coarser plan: converged at that level, but not at Reg.
func TestSinkhornStoppedEarly(t *testing.T) {
	var s Sinkhorn
	p := make([]float64, 4)
	c := []float32{0, 1, 1, 0}
	for _, maxIter := range []int{1, 2} {
		st, err := s.Plan(p, c, 2, SinkhornOptions{Reg: 1e-3, MaxIter: maxIter})
		if err != nil {
			t.Fatal(err)
		}
		if st.Converged || p[1] < 1e-12 {
			t.Errorf("MaxIter %d: %+v, off-diagonal %.3g: the limit stopped it above Reg", maxIter, st, p[1])
		}
	}
	st, err := s.Plan(p, c, 2, SinkhornOptions{Reg: 1e-3})
	if err != nil {
		t.Fatal(err)
	}
	if !st.Converged || p[1] > 1e-300 {
		t.Errorf("no limit: %+v, off-diagonal %.3g", st, p[1])
	}
}

// Down to the smallest Reg it takes, a plan is still a coupling: finite,
// summing to 1, with exact column marginals.
func TestSinkhornSmallestReg(t *testing.T) {
	const n, d = 17, 2
	x0, x1 := benchBatch(n, d, 3)
	cost := make([]float32, n*n)
	SqDist(cost, x0, x1, n, n, d)
	big := 0.0
	for _, x := range cost {
		big = max(big, math.Abs(float64(x)))
	}
	p := make([]float64, n*n)
	var s Sinkhorn
	for _, scale := range []float32{1, 1e30} {
		c := make([]float32, len(cost))
		for k, x := range cost {
			c[k] = x * scale
		}
		reg := 2 * sinkhornMinRegFrac * big * float64(scale)
		if _, err := s.Plan(p, c, n, SinkhornOptions{Reg: reg}); err != nil {
			t.Fatal(err)
		}
		mass := 0.0
		for _, v := range p {
			mass += v
		}
		rows, cols := marginalErrs(p, n)
		if math.Abs(mass-1) > 1e-9 || rows > 1e-3 || cols > 1e-9 {
			t.Errorf("scale %g, reg %g: mass %v, row and column marginal errors %.3g %.3g", scale, reg, mass, rows, cols)
		}
		if _, err := s.Plan(p, c, n, SinkhornOptions{Reg: reg / 4}); err == nil || !strings.Contains(err.Error(), "too small") {
			t.Errorf("scale %g, reg %g: error %v, want one saying it is too small", scale, reg/4, err)
		}
	}
}

// Constants added to rows and columns (the -2G form of the cost) leave
// the plan unchanged.
func TestSinkhornShiftInvariant(t *testing.T) {
	r := rand.New(rand.NewPCG(27, 28))
	const n = 40
	c := make([]float64, n*n)
	for k := range c {
		c[k] = 4 * r.Float64()
	}
	shifted := make([]float64, n*n)
	for i := range n {
		for j := range n {
			shifted[i*n+j] = c[i*n+j] + float64(10*i) - float64(j*j)/7
		}
	}
	opt := SinkhornOptions{Reg: 0.2, Tol: 1e-12, MaxIter: 100000}
	p, q := make([]float64, n*n), make([]float64, n*n)
	var s Sinkhorn
	if _, err := s.Plan(p, to32(c), n, opt); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Plan(q, to32(shifted), n, opt); err != nil {
		t.Fatal(err)
	}
	// The float32 rounding of the shifted costs (values up to 400, ulp
	// 3e-5) moves ln P by up to ulp/eps.
	numtest.AllClose(t, "plan", q, p, 0, 1e-3)
}

func TestSinkhornErrors(t *testing.T) {
	var s Sinkhorn
	p := make([]float64, 4)
	c := []float32{0, 1, 1, 0}
	for _, tc := range []struct {
		name string
		cost []float32
		opt  SinkhornOptions
		want string
	}{
		{"zero reg", c, SinkhornOptions{}, "regularization 0"},
		{"negative reg", c, SinkhornOptions{Reg: -1}, "regularization -1"},
		{"nan reg", c, SinkhornOptions{Reg: math.NaN()}, "regularization NaN"},
		{"inf reg", c, SinkhornOptions{Reg: math.Inf(1)}, "regularization +Inf"},
		{"bad tol", c, SinkhornOptions{Reg: 1, Tol: -1}, "tolerance -1"},
		{"nan cost", []float32{0, float32(math.NaN()), 1, 0}, SinkhornOptions{Reg: 1}, "cost[0][1] = NaN"},
		{"short", []float32{0, 1, 1}, SinkhornOptions{Reg: 1}, "needs 4 costs"},
	} {
		_, err := s.Plan(p, tc.cost, 2, tc.opt)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.want)
		}
	}
	if _, err := s.Plan(make([]float64, 3), c, 2, SinkhornOptions{Reg: 1}); err == nil || !strings.Contains(err.Error(), "needs 4 values") {
		t.Errorf("short plan: %v", err)
	}
}

func TestSampleRows(t *testing.T) {
	// Row 0 puts mass 0.1, 0.2, 0.7 on the columns, row 1 only on column
	// 1, row 2 is scaled by 10 (sampling normalizes each row).
	plan := []float64{
		0.1, 0.2, 0.7,
		0, 1, 0,
		3, 0, 7,
	}
	idx := make([]int, 3)
	for _, c := range []struct {
		u    []float64
		want []int
	}{
		{[]float64{0, 0, 0}, []int{0, 1, 0}},
		{[]float64{0.05, 0.5, 0.29}, []int{0, 1, 0}},
		{[]float64{0.15, 0.99, 0.31}, []int{1, 1, 2}},
		{[]float64{0.31, 0.3, 0.9999999}, []int{2, 1, 2}},
	} {
		if err := SampleRows(idx, plan, 3, c.u); err != nil {
			t.Fatal(err)
		}
		for i := range idx {
			if idx[i] != c.want[i] {
				t.Errorf("u = %v: idx %v, want %v", c.u, idx, c.want)
				break
			}
		}
	}
	if err := SampleRows(idx, plan, 3, []float64{0, 1, 0}); err == nil || !strings.Contains(err.Error(), "uniform 1 is 1") {
		t.Errorf("u = 1: %v", err)
	}
	zero := []float64{0, 0, 0, 1, 0, 0, 0, 0, 1}
	if err := SampleRows(idx, zero, 3, []float64{0, 0, 0}); err == nil || !strings.Contains(err.Error(), "row 0 has no mass") {
		t.Errorf("empty row: %v", err)
	}
}

// The frequencies of many draws from one plan row match the row.
func TestSampleRowsFrequencies(t *testing.T) {
	r := rand.New(rand.NewPCG(29, 30))
	const n, d, draws = 16, 2, 200000
	cost := make([]float32, n*n)
	SqDist(cost, randNormal32(r, n*d), randNormal32(r, n*d), n, n, d)
	p := make([]float64, n*n)
	var s Sinkhorn
	if _, err := s.Plan(p, cost, n, SinkhornOptions{Reg: 0.5, Tol: 1e-10, MaxIter: 100000}); err != nil {
		t.Fatal(err)
	}
	counts := make([]int, n*n)
	idx := make([]int, n)
	u := make([]float64, n)
	for range draws {
		for i := range u {
			u[i] = r.Float64()
		}
		if err := SampleRows(idx, p, n, u); err != nil {
			t.Fatal(err)
		}
		for i, j := range idx {
			counts[i*n+j]++
		}
	}
	for i := range n {
		for j := range n {
			q := p[i*n+j] * float64(n) // conditional probability of j given i
			want := q * draws
			sd := math.Sqrt(draws * q * (1 - q))
			// 5 standard deviations over 256 cells: a false alarm has
			// probability below 1e-4.
			if math.Abs(float64(counts[i*n+j])-want) > 5*sd+1 {
				t.Errorf("row %d column %d: %d draws, expected %.1f +- %.1f", i, j, counts[i*n+j], want, sd)
			}
		}
	}
}
