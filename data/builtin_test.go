package data

import (
	"math"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/fmgpu/fmgpu/internal/numtest"
)

// Statistical checks use one fixed seed and a tolerance of 5 standard
// errors: for a fresh seed a true distribution fails one such check with
// probability about 6e-7, so a failure means the sampler is wrong.
const (
	statSeed = 20240601
	statN    = 200000
	nSE      = 5
)

func TestBuiltinNames(t *testing.T) {
	names := BuiltinNames()
	if !sort.StringsAreSorted(names) {
		t.Errorf("BuiltinNames() = %v, not sorted", names)
	}
	want := []string{"8gaussians", "checkerboard", "circles", "gaussian", "moons", "spirals"}
	if !slices.Equal(names, want) {
		t.Errorf("BuiltinNames() = %v, want %v", names, want)
	}
	if len(builtins) != len(want) {
		t.Errorf("%d generators for %d names", len(builtins), len(want))
	}
	for _, n := range names {
		if !IsBuiltin(n) {
			t.Errorf("IsBuiltin(%q) = false", n)
		}
	}
	for _, n := range []string{"", "Moons", "8Gaussians", "moons.npy", "2spirals", " moons"} {
		if IsBuiltin(n) {
			t.Errorf("IsBuiltin(%q) = true", n)
		}
	}
	names[0] = "changed"
	if BuiltinNames()[0] != "8gaussians" {
		t.Error("BuiltinNames returns a shared slice")
	}
}

func TestBuiltinShapes(t *testing.T) {
	for _, name := range BuiltinNames() {
		for _, n := range []int{1, 7, 1000} {
			ds, err := Builtin(name, n, 1)
			if err != nil {
				t.Fatalf("Builtin(%q, %d): %v", name, n, err)
			}
			checkDataset(t, ds)
			if ds.Name != name || ds.N != n || ds.D != 2 || len(ds.X) != 2*n {
				t.Errorf("Builtin(%q, %d): Name %q N %d D %d len(X) %d", name, n, ds.Name, ds.N, ds.D, len(ds.X))
			}
			labelled := name != "checkerboard" && name != "gaussian"
			if labelled != (ds.Labels != nil) {
				t.Errorf("Builtin(%q): labels present = %v, want %v", name, ds.Labels != nil, labelled)
			}
			k := int32(2)
			if name == "8gaussians" {
				k = 8
			}
			for i, l := range ds.Labels {
				if l < 0 || l >= k {
					t.Fatalf("Builtin(%q): label[%d] = %d, want 0..%d", name, i, l, k-1)
				}
			}
		}
	}
}

func TestBuiltinDeterminism(t *testing.T) {
	for _, name := range BuiltinNames() {
		a, _ := Builtin(name, 500, 42)
		b, _ := Builtin(name, 500, 42)
		c, _ := Builtin(name, 500, 43)
		if !sameBits(a.X, b.X) || !slices.Equal(a.Labels, b.Labels) {
			t.Errorf("%s: same seed, different samples", name)
		}
		differ := 0
		for i := range a.X {
			if a.X[i] != c.X[i] {
				differ++
			}
		}
		// Continuous coordinates of independent draws coincide with
		// probability 0; demand nearly all differ.
		if differ < len(a.X)*99/100 {
			t.Errorf("%s: seeds 42 and 43 share %d of %d values", name, len(a.X)-differ, len(a.X))
		}
	}
}

func TestBuiltinErrors(t *testing.T) {
	cases := []struct {
		name string
		n    int
		want string
	}{
		{"moonz", 10, `"moonz": not a built-in data set (have 8gaussians, checkerboard`},
		{"", 10, `"": not a built-in`},
		{"moons", 0, "moons: n = 0 points, want 1 to 268435456"},
		{"moons", -3, "n = -3 points"},
		{"gaussian", MaxBuiltin + 1, "n = 268435457 points"},
	}
	for _, c := range cases {
		ds, err := Builtin(c.name, c.n, 0)
		if err == nil || ds != nil {
			t.Errorf("Builtin(%q, %d) = %v, %v; want an error", c.name, c.n, ds, err)
			continue
		}
		if !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("Builtin(%q, %d): error %q, want it to contain %q", c.name, c.n, err, c.want)
		}
	}
}

// checkMoments compares sample mean and covariance with the true ones, each
// within nSE standard errors. The standard error of a covariance entry is
// estimated from the sample of products (x_i - m_i)(x_j - m_j) around the
// true mean, which needs no fourth moments worked out by hand.
func checkMoments(t *testing.T, ds *Dataset, mean [2]float64, cov [2][2]float64) {
	t.Helper()
	n := float64(ds.N)
	for i := range 2 {
		var s float64
		for p := range ds.N {
			s += float64(ds.Row(p)[i])
		}
		se := math.Sqrt(cov[i][i] / n)
		if got := s / n; math.Abs(got-mean[i]) > nSE*se {
			t.Errorf("%s: mean[%d] = %.5f, want %.5f ± %.5f", ds.Name, i, got, mean[i], nSE*se)
		}
		for j := range 2 {
			var s1, s2 float64
			for p := range ds.N {
				r := ds.Row(p)
				y := (float64(r[i]) - mean[i]) * (float64(r[j]) - mean[j])
				s1 += y
				s2 += y * y
			}
			m := s1 / n
			se := math.Sqrt((s2/n - m*m) / n)
			if math.Abs(m-cov[i][j]) > nSE*se {
				t.Errorf("%s: cov[%d][%d] = %.5f, want %.5f ± %.5f", ds.Name, i, j, m, cov[i][j], nSE*se)
			}
		}
	}
}

func TestGaussianMoments(t *testing.T) {
	ds, err := Builtin("gaussian", statN, statSeed)
	if err != nil {
		t.Fatal(err)
	}
	checkMoments(t, ds, GaussianMean, GaussianCov)
}

func TestEightGaussians(t *testing.T) {
	ds, err := Builtin("8gaussians", statN, statSeed)
	if err != nil {
		t.Fatal(err)
	}
	// Centres 2(cos a, sin a) at 8 even angles: E[c cᵀ] = 4 · ½ I, plus 0.1² I.
	checkMoments(t, ds, [2]float64{}, [2][2]float64{{2.01, 0}, {0, 2.01}})
	checkLabelCounts(t, ds, 8)
	for p := range ds.N {
		k := float64(ds.Labels[p])
		a := 2 * math.Pi * k / 8
		r := ds.Row(p)
		// 8 standard deviations: a 2-D N(0, 0.1² I) point is that far out
		// with probability exp(-32) ≈ 1e-14.
		if d := math.Hypot(float64(r[0])-2*math.Cos(a), float64(r[1])-2*math.Sin(a)); d > 0.8 {
			t.Fatalf("point %d (%v, label %d) is %.3f from its centre", p, r, ds.Labels[p], d)
		}
	}
}

// checkLabelCounts tests that each of k components holds n/k points within
// nSE binomial standard errors.
func checkLabelCounts(t *testing.T, ds *Dataset, k int) {
	t.Helper()
	counts := make([]float64, k)
	for _, l := range ds.Labels {
		counts[l]++
	}
	n, p := float64(ds.N), 1/float64(k)
	se := math.Sqrt(n * p * (1 - p))
	for c, got := range counts {
		if math.Abs(got-n*p) > nSE*se {
			t.Errorf("%s: component %d has %v points, want %.0f ± %.0f", ds.Name, c, got, n*p, nSE*se)
		}
	}
}

func TestMoons(t *testing.T) {
	ds, _ := Builtin("moons", statN, statSeed)
	checkLabelCounts(t, ds, 2)
	for p := range ds.N {
		r := ds.Row(p)
		x, y := float64(r[0]), float64(r[1])
		var d float64
		if ds.Labels[p] == 0 {
			d = arcDist(x, y, 0, 0, true)
		} else {
			d = arcDist(x, y, 1, 0.5, false)
		}
		if d > 8*0.05 { // 8 noise standard deviations, as in TestEightGaussians
			t.Fatalf("point %d (%v, label %d) is %.3f from its moon", p, r, ds.Labels[p], d)
		}
	}
}

// arcDist is the distance from (x, y) to the unit half circle centred at
// (cx, cy), upper or lower half.
func arcDist(x, y, cx, cy float64, upper bool) float64 {
	dx, dy := x-cx, y-cy
	if (dy >= 0) == upper {
		return math.Abs(math.Hypot(dx, dy) - 1)
	}
	return math.Min(math.Hypot(dx-1, dy), math.Hypot(dx+1, dy))
}

func TestCircles(t *testing.T) {
	ds, _ := Builtin("circles", statN, statSeed)
	checkLabelCounts(t, ds, 2)
	for p := range ds.N {
		r := ds.Row(p)
		want := 3.0
		if ds.Labels[p] == 1 {
			want = 1.5
		}
		if d := math.Abs(math.Hypot(float64(r[0]), float64(r[1])) - want); d > 8*0.24 {
			t.Fatalf("point %d (%v, label %d) is %.3f from radius %v", p, r, ds.Labels[p], d, want)
		}
	}
}

func TestSpirals(t *testing.T) {
	ds, _ := Builtin("spirals", statN, statSeed)
	checkLabelCounts(t, ds, 2)
	// |t cos t| <= 3π, plus the jitter 0.5, over 3, plus 8 noise deviations.
	bound := (3*math.Pi+0.5)/3 + 8*0.1
	var sum [2][2]float64
	var cnt [2]float64
	for p := range ds.N {
		r := ds.Row(p)
		if math.Abs(float64(r[0])) > bound || math.Abs(float64(r[1])) > bound {
			t.Fatalf("point %d (%v) outside ±%.3f", p, r, bound)
		}
		l := ds.Labels[p]
		sum[l][0] += float64(r[0])
		sum[l][1] += float64(r[1])
		cnt[l]++
	}
	// The second spiral is the first reflected through the origin, so the
	// two component means cancel. Each coordinate is within the bound, so its
	// variance is at most bound²; that gives a conservative standard error.
	for i := range 2 {
		m0, m1 := sum[0][i]/cnt[0], sum[1][i]/cnt[1]
		se := bound * math.Sqrt(1/cnt[0]+1/cnt[1])
		if math.Abs(m0+m1) > nSE*se {
			t.Errorf("spiral means %.4f and %.4f (coordinate %d) do not cancel (± %.4f)", m0, m1, i, nSE*se)
		}
	}
}

func TestCheckerboard(t *testing.T) {
	ds, _ := Builtin("checkerboard", statN, statSeed)
	counts := map[[2]int]float64{}
	var off [2]float64
	for p := range ds.N {
		r := ds.Row(p)
		x, y := float64(r[0]), float64(r[1])
		if x < -4 || x >= 4 || y < -4 || y >= 4 {
			t.Fatalf("point %d (%v) outside [-4, 4)²", p, r)
		}
		cx, cy := math.Floor(x/2), math.Floor(y/2)
		if int(cx+cy)%2 != 0 {
			t.Fatalf("point %d (%v) on a white square", p, r)
		}
		counts[[2]int{int(cx), int(cy)}]++
		off[0] += x - 2*cx
		off[1] += y - 2*cy
	}
	if len(counts) != 8 {
		t.Errorf("%d squares used, want 8: %v", len(counts), counts)
	}
	n, q := float64(ds.N), 1.0/8
	se := math.Sqrt(n * q * (1 - q))
	for sq, c := range counts {
		if math.Abs(c-n*q) > nSE*se {
			t.Errorf("square %v holds %v points, want %.0f ± %.0f", sq, c, n*q, nSE*se)
		}
	}
	// Within its square a point is U(0, 2) in each coordinate: mean 1, variance 1/3.
	for i, s := range off {
		if se := math.Sqrt(1.0 / 3 / n); math.Abs(s/n-1) > nSE*se {
			t.Errorf("mean offset in square, coordinate %d: %.4f, want 1 ± %.4f", i, s/n, nSE*se)
		}
	}
}

func TestInCell(t *testing.T) {
	// The largest float64 below 4 rounds to 4 in float32: it must stay in [2, 4).
	v := math.Nextafter(4, 0)
	if f := inCell(v, 2); f >= 4 || f < 2 {
		t.Errorf("inCell(%v, 2) = %v, want in [2, 4)", v, f)
	}
	if f := inCell(-2, -2); f != -2 {
		t.Errorf("inCell(-2, -2) = %v", f)
	}
}

func TestGaussianDefinition(t *testing.T) {
	if GaussianMean != [2]float64{gaussM0, gaussM1} || GaussianCov != [2][2]float64{{gaussS00, gaussS01}, {gaussS01, gaussS11}} {
		t.Fatal("exported GaussianMean/GaussianCov differ from the sampler's constants")
	}
	if GaussianMean[0] == 0 || GaussianMean[1] == 0 || GaussianCov[0][1] == 0 {
		t.Error("the gaussian set must be off-centre and correlated")
	}
	det := GaussianCov[0][0]*GaussianCov[1][1] - GaussianCov[0][1]*GaussianCov[1][0]
	if GaussianCov[0][0] <= 0 || det <= 0 || GaussianCov[0][1] != GaussianCov[1][0] {
		t.Error("GaussianCov is not symmetric positive definite")
	}
}

func TestGaussianLogPdf(t *testing.T) {
	// Independent route: whiten with the Cholesky factor L, then
	// log p = -log 2π - log L00 - log L11 - ½|L⁻¹(x-m)|².
	l00 := math.Sqrt(GaussianCov[0][0])
	l10 := GaussianCov[1][0] / l00
	l11 := math.Sqrt(GaussianCov[1][1] - l10*l10)
	ref := func(x []float64) float64 {
		z0 := (x[0] - GaussianMean[0]) / l00
		z1 := (x[1] - GaussianMean[1] - l10*z0) / l11
		return -math.Log(2*math.Pi) - math.Log(l00) - math.Log(l11) - 0.5*(z0*z0+z1*z1)
	}
	for _, x := range [][]float64{{1, -0.5}, {0, 0}, {3, 1}, {-2, 2}, {1.5, -3}} {
		if got, want := GaussianLogPdf(x), ref(x); !numtest.Close(got, want, 1e-12, 1e-12) {
			t.Errorf("GaussianLogPdf(%v) = %.15g, want %.15g", x, got, want)
		}
	}
	// At the mean: -log 2π - ½ log det S, det S = 1·0.5 - 0.6² = 0.14.
	if got, want := GaussianLogPdf(GaussianMean[:]), -math.Log(2*math.Pi)-0.5*math.Log(0.14); !numtest.Close(got, want, 1e-14, 1e-14) {
		t.Errorf("log density at the mean %.15g, want %.15g", got, want)
	}

	// It integrates to 1: midpoint rule on a grid reaching 9 standard
	// deviations out in each direction (sd 1 and √0.5), step 0.01.
	const h = 0.01
	var total float64
	for x := -8.0 + h/2; x < 10; x += h {
		for y := -7.0 + h/2; y < 6; y += h {
			total += math.Exp(GaussianLogPdf([]float64{x, y}))
		}
	}
	if total *= h * h; !numtest.Close(total, 1, 1e-6, 0) {
		t.Errorf("density integrates to %.9f", total)
	}

	// The sample's mean of -log p is the entropy 1 + log 2π + ½ log det S.
	ds, _ := Builtin("gaussian", statN, statSeed)
	var s1, s2 float64
	for p := range ds.N {
		r := ds.Row(p)
		v := -GaussianLogPdf([]float64{float64(r[0]), float64(r[1])})
		s1 += v
		s2 += v * v
	}
	n := float64(ds.N)
	m, h2 := s1/n, 1+math.Log(2*math.Pi)+0.5*math.Log(0.14)
	if se := math.Sqrt((s2/n - m*m) / n); math.Abs(m-h2) > nSE*se {
		t.Errorf("mean -log p over samples %.5f, entropy %.5f ± %.5f", m, h2, nSE*se)
	}
}

func TestGaussianLogPdfPanics(t *testing.T) {
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "len(x) = 3") {
			t.Errorf("recovered %v", r)
		}
	}()
	GaussianLogPdf([]float64{1, 2, 3})
}

func TestRow(t *testing.T) {
	ds := &Dataset{X: []float32{1, 2, 3, 4, 5, 6}, N: 3, D: 2}
	r := ds.Row(1)
	if !slices.Equal(r, []float32{3, 4}) || cap(r) != 2 {
		t.Fatalf("Row(1) = %v cap %d", r, cap(r))
	}
	_ = append(r, 99)
	if ds.X[4] != 5 {
		t.Error("append to a row overwrote the next one")
	}
}
