package coupling

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/fmgpu/fmgpu/internal/numtest"
)

func TestKindNames(t *testing.T) {
	for _, name := range KindNames() {
		k, err := ParseKind(name)
		if err != nil || k.String() != name {
			t.Errorf("%s: %v %v", name, k, err)
		}
	}
	if _, err := ParseKind("exact"); err == nil || err.Error() != `unknown coupling "exact": want independent, ot, sinkhorn` {
		t.Errorf("unknown name: %v", err)
	}
}

func TestNewCouplerErrors(t *testing.T) {
	for _, c := range []struct {
		opt  Options
		want string
	}{
		{Options{Kind: KindSinkhorn}, "regularization 0"},
		{Options{Kind: KindSinkhorn, Sinkhorn: SinkhornOptions{Reg: 1, Tol: -1}}, "tolerance -1"},
		{Options{Kind: 9}, "unknown kind Kind(9)"},
	} {
		if _, err := NewCoupler(c.opt); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.opt, err, c.want)
		}
	}
}

func mustCoupler(t *testing.T, opt Options) *Coupler {
	t.Helper()
	c, err := NewCoupler(opt)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestPairIndependentAndOT(t *testing.T) {
	const n, d = 128, 2
	x0, x1 := benchBatch(n, d, 31)
	cost := make([]float32, n*n)
	SqDist(cost, x0, x1, n, n, d)
	idx := make([]int, n)
	st, err := mustCoupler(t, Options{}).Pair(idx, cost, n, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, j := range idx {
		if i != j {
			t.Fatalf("independent: idx[%d] = %d", i, j)
		}
	}
	if st.Before != st.After || st.Classes != 1 {
		t.Errorf("independent: %+v", st)
	}
	st, err = mustCoupler(t, Options{Kind: KindOT}).PairPoints(idx, x0, x1, n, d, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]int, n)
	var a Assigner
	if err := a.Assign(want, cost, n); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(idx, want) {
		t.Errorf("ot: pairs differ from the assignment")
	}
	// Noise against 8 Gaussians at radius 4: independent pairs travel
	// about 16 + 1 + 2 on average, optimal ones far less.
	if !(st.After < st.Before/2) || !numtest.Close(st.After, MeanCost(cost, n, want), 0, 1e-12) {
		t.Errorf("ot: %+v", st)
	}
}

// classBatch draws noise and data from three classes placed so that
// unconstrained transport pairs some noise across classes: class k is a
// blob at angle 2 pi k / 3 with class sizes 70, 40 and 18.
func classBatch(seed uint64) (x0, x1 []float32, labels []int32) {
	r := rand.New(rand.NewPCG(seed, 3))
	sizes := []int{70, 40, 18}
	dirs := [][2]float32{{3, 0}, {-1.5, 2.6}, {-1.5, -2.6}}
	n := 128
	x0 = randNormal32(r, 2*n)
	x1 = make([]float32, 2*n)
	labels = make([]int32, n)
	perm := r.Perm(n) // classes interleaved in the batch
	k := 0
	for c, s := range sizes {
		for range s {
			i := perm[k]
			labels[i] = int32(c)
			x1[2*i] = dirs[c][0] + float32(0.3*r.NormFloat64())
			x1[2*i+1] = dirs[c][1] + float32(0.3*r.NormFloat64())
			k++
		}
	}
	return x0, x1, labels
}

func TestPairWithinClasses(t *testing.T) {
	x0, x1, labels := classBatch(32)
	const n, d = 128, 2
	cost := make([]float32, n*n)
	SqDist(cost, x0, x1, n, n, d)
	idx := make([]int, n)
	c := mustCoupler(t, Options{Kind: KindOT})
	free, err := c.Pair(idx, cost, n, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	crossed := 0
	for i, j := range idx {
		if labels[j] != labels[i] {
			crossed++
		}
	}
	if crossed == 0 {
		t.Fatalf("unconstrained OT kept every class: the test batch does not exercise the constraint")
	}
	st, err := c.Pair(idx, cost, n, labels, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkPerm(t, idx, n)
	if st.Classes != 3 {
		t.Errorf("%d classes, want 3", st.Classes)
	}
	for i, j := range idx {
		if labels[j] != labels[i] {
			t.Fatalf("pair (%d, %d) crosses from class %d to %d", i, j, labels[i], labels[j])
		}
	}
	// Within each class the pairs are the optimal assignment of the
	// class's noise rows to its data rows.
	for class := int32(0); class < 3; class++ {
		var rows []int
		for i, l := range labels {
			if l == class {
				rows = append(rows, i)
			}
		}
		m := len(rows)
		sub := make([]float32, m*m)
		for a, i := range rows {
			for b, j := range rows {
				sub[a*m+b] = cost[i*n+j]
			}
		}
		p := make([]int, m)
		var as Assigner
		if err := as.Assign(p, sub, m); err != nil {
			t.Fatal(err)
		}
		want, got := 0.0, 0.0
		for a, i := range rows {
			want += float64(sub[a*m+p[a]])
			got += float64(cost[i*n+idx[i]])
		}
		if !numtest.Close(got, want, 0, 1e-12) {
			t.Errorf("class %d: cost %.9g, optimum %.9g", class, got, want)
		}
	}
	if !(st.After >= free.After) {
		t.Errorf("constrained cost %.6g below the unconstrained optimum %.6g", st.After, free.After)
	}
}

func TestPairSinkhorn(t *testing.T) {
	x0, x1, labels := classBatch(33)
	const n, d = 128, 2
	cost := make([]float32, n*n)
	SqDist(cost, x0, x1, n, n, d)
	r := rand.New(rand.NewPCG(34, 35))
	u := make([]float64, n)
	for i := range u {
		u[i] = r.Float64()
	}
	c := mustCoupler(t, Options{Kind: KindSinkhorn, Sinkhorn: SinkhornOptions{Reg: 0.1}})
	idx, again := make([]int, n), make([]int, n)
	st, err := c.Pair(idx, cost, n, labels, u)
	if err != nil {
		t.Fatal(err)
	}
	if st.Classes != 3 || !st.Sinkhorn.Converged || st.Sinkhorn.Levels < 3 {
		t.Errorf("stats %+v", st)
	}
	for i, j := range idx {
		if labels[j] != labels[i] {
			t.Fatalf("pair (%d, %d) crosses classes", i, j)
		}
	}
	// The same inputs give the same pairs, also from a fresh Coupler.
	if _, err := mustCoupler(t, c.Options()).Pair(again, cost, n, labels, u); err != nil || !slices.Equal(idx, again) {
		t.Errorf("not reproducible: %v", err)
	}
	// With a small epsilon the pairs are close to the exact ones: their
	// mean cost lies between the optimum and the independent pairs'.
	ot, err := mustCoupler(t, Options{Kind: KindOT}).Pair(again, cost, n, labels, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !(st.After < st.Before && st.After >= ot.After*0.9) {
		t.Errorf("sinkhorn mean cost %.4g, exact %.4g, independent %.4g", st.After, ot.After, st.Before)
	}
}

func TestPairErrors(t *testing.T) {
	c := mustCoupler(t, Options{Kind: KindSinkhorn, Sinkhorn: SinkhornOptions{Reg: 1}})
	cost := make([]float32, 9)
	idx := make([]int, 3)
	if _, err := c.Pair(idx, cost, 3, []int32{0, 1}, []float64{0, 0, 0}); err == nil || !strings.Contains(err.Error(), "2 labels for a batch of 3") {
		t.Errorf("short labels: %v", err)
	}
	if _, err := c.Pair(idx, cost, 3, nil, []float64{0}); err == nil || !strings.Contains(err.Error(), "1 uniforms for a batch of 3") {
		t.Errorf("short uniforms: %v", err)
	}
	if _, err := c.PairPoints(idx, make([]float32, 5), make([]float32, 6), 3, 2, nil, []float64{0, 0, 0}); err == nil || !strings.Contains(err.Error(), "got 5 and 6") {
		t.Errorf("short points: %v", err)
	}
}

func TestStepUniforms(t *testing.T) {
	a, b, c := make([]float64, 300), make([]float64, 300), make([]float64, 300)
	StepUniforms(a, 7, 100)
	StepUniforms(b, 7, 100)
	StepUniforms(c, 7, 101)
	if !slices.Equal(a, b) || slices.Equal(a, c) {
		t.Errorf("not a function of (seed, step) alone")
	}
	mean := 0.0
	for _, u := range a {
		if !(u >= 0 && u < 1) {
			t.Fatalf("uniform %v out of [0, 1)", u)
		}
		mean += u / 300
	}
	// The mean of 300 uniforms has standard deviation 0.017.
	if mean < 0.4 || mean > 0.6 {
		t.Errorf("mean %v", mean)
	}
}
