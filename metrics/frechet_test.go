package metrics

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/fmgpu/fmgpu/internal/numtest"
)

// randSPD returns a random symmetric positive definite d x d matrix with
// eigenvalues spread over about two decades.
func randSPD(r *rand.Rand, d int) []float64 {
	a := mat.NewDense(d, d, nil)
	for i := range d {
		for j := range d {
			a.Set(i, j, r.NormFloat64())
		}
	}
	var s mat.Dense
	s.Mul(a, a.T())
	out := make([]float64, d*d)
	for i := range d {
		for j := range d {
			out[i*d+j] = s.At(i, j) / float64(d)
			if i == j {
				out[i*d+j] += 0.01
			}
		}
	}
	return out
}

func randVec(r *rand.Rand, d int) []float64 {
	v := make([]float64, d)
	for i := range v {
		v[i] = r.NormFloat64()
	}
	return v
}

// traceSqrtDB is an independent reference for tr (A B)^{1/2}: the
// Denman-Beavers iteration Y <- (Y + Z^-1)/2, Z <- (Z + Y^-1)/2 from
// Y = A B, Z = I, which converges to (A B)^{1/2} when A B has positive
// eigenvalues (it is similar to A^{1/2} B A^{1/2}).
func traceSqrtDB(a, b []float64, d int) float64 {
	var y, z mat.Dense
	y.Mul(mat.NewDense(d, d, a), mat.NewDense(d, d, b))
	z.CloneFrom(eye(d))
	for range 100 {
		var yi, zi mat.Dense
		if err := yi.Inverse(&y); err != nil {
			panic(err)
		}
		if err := zi.Inverse(&z); err != nil {
			panic(err)
		}
		var yn, zn mat.Dense
		yn.Add(&y, &zi)
		yn.Scale(0.5, &yn)
		zn.Add(&z, &yi)
		zn.Scale(0.5, &zn)
		y, z = yn, zn
	}
	return mat.Trace(&y)
}

func eye(d int) *mat.Dense {
	e := mat.NewDense(d, d, nil)
	for i := range d {
		e.Set(i, i, 1)
	}
	return e
}

func TestFrechetOneDimension(t *testing.T) {
	// N(1, 4) and N(-2, 0.25): (1 + 2)^2 + (2 - 0.5)^2.
	got, err := FrechetDistance(Gaussian{Mean: []float64{1}, Cov: []float64{4}}, Gaussian{Mean: []float64{-2}, Cov: []float64{0.25}})
	if err != nil || !numtest.Close(got, 9+2.25, 0, 1e-15) {
		t.Errorf("got %v %v, want 11.25", got, err)
	}
}

// Diagonal covariances: sum_i (mu_ai - mu_bi)^2 + (sqrt(a_i) - sqrt(b_i))^2.
func TestFrechetDiagonal(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	const d = 6
	a, b := Gaussian{Mean: randVec(r, d), Cov: make([]float64, d*d)}, Gaussian{Mean: randVec(r, d), Cov: make([]float64, d*d)}
	want := 0.0
	for i := range d {
		va, vb := 0.1+r.Float64()*3, 0.1+r.Float64()*3
		a.Cov[i*d+i], b.Cov[i*d+i] = va, vb
		e := a.Mean[i] - b.Mean[i]
		s := math.Sqrt(va) - math.Sqrt(vb)
		want += e*e + s*s
	}
	got, err := FrechetDistance(a, b)
	if err != nil || !numtest.Close(got, want, 1e-12, 1e-12) {
		t.Errorf("got %v %v, want %v", got, err, want)
	}
}

func TestFrechetGeneral(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	for _, d := range []int{2, 5, 16} {
		a := Gaussian{Mean: randVec(r, d), Cov: randSPD(r, d)}
		b := Gaussian{Mean: randVec(r, d), Cov: randSPD(r, d)}
		want := 0.0
		for i := range d {
			e := a.Mean[i] - b.Mean[i]
			want += e*e + a.Cov[i*d+i] + b.Cov[i*d+i]
		}
		want -= 2 * traceSqrtDB(a.Cov, b.Cov, d)
		got, err := FrechetDistance(a, b)
		if err != nil {
			t.Fatal(err)
		}
		// Two eigendecompositions against an iteration with inverses, on
		// covariances with condition numbers up to about 1e4.
		if !numtest.Close(got, want, 1e-10, 1e-9) {
			t.Errorf("d=%d: %.15g, Denman-Beavers %.15g", d, got, want)
		}
		back, _ := FrechetDistance(b, a)
		self, _ := FrechetDistance(a, a)
		if !numtest.Close(back, got, 1e-10, 1e-10) || self > 1e-10 {
			t.Errorf("d=%d: FD(b, a) = %v, FD(a, b) = %v, FD(a, a) = %v", d, back, got, self)
		}
	}
}

// Features drawn from two Gaussians: the FD of the fitted Gaussians tends
// to the population value; its bias is O(d/n).
func TestFDFromSamples(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	const d, n = 3, 50000
	ma, mb := []float64{0, 1, -1}, []float64{0.5, 1, 0}
	ca, cb := randSPD(r, d), randSPD(r, d)
	draw := func(m, c []float64) []float32 {
		var chol mat.Cholesky
		if !chol.Factorize(mustSym(c, d)) {
			t.Fatal("not positive definite")
		}
		var l mat.TriDense
		chol.LTo(&l)
		x := make([]float32, n*d)
		z := make([]float64, d)
		for i := range n {
			for k := range z {
				z[k] = r.NormFloat64()
			}
			for k := range d {
				s := m[k]
				for j := 0; j <= k; j++ {
					s += l.At(k, j) * z[j]
				}
				x[i*d+k] = float32(s)
			}
		}
		return x
	}
	x, y := draw(ma, ca), draw(mb, cb)
	ga, err := FitGaussian(x, n, d)
	if err != nil {
		t.Fatal(err)
	}
	// The fit is the plain definition in float64.
	for j := range d {
		s := 0.0
		for i := range n {
			s += float64(x[i*d+j])
		}
		if !numtest.Close(ga.Mean[j], s/n, 1e-12, 1e-12) {
			t.Errorf("mean[%d] = %v, want %v", j, ga.Mean[j], s/n)
		}
	}
	c01 := 0.0
	for i := range n {
		c01 += (float64(x[i*d]) - ga.Mean[0]) * (float64(x[i*d+1]) - ga.Mean[1])
	}
	if !numtest.Close(ga.Cov[1], c01/(n-1), 1e-12, 1e-10) || ga.Cov[1] != ga.Cov[d] {
		t.Errorf("cov[0][1] = %v, cov[1][0] = %v, want %v", ga.Cov[1], ga.Cov[d], c01/(n-1))
	}
	got, err := FD(x, y, n, n, d)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := FrechetDistance(Gaussian{Mean: ma, Cov: ca}, Gaussian{Mean: mb, Cov: cb})
	// Sampling error of the means and covariances at n = 5e4: a few
	// times 1/sqrt(n) = 0.0045 of the scale of the entries.
	if !numtest.Close(got, want, 0.03, 0.02) {
		t.Errorf("FD from samples %.5f, population %.5f", got, want)
	}
}

func mustSym(c []float64, d int) *mat.SymDense {
	s, err := symmetric(c, d)
	if err != nil {
		panic(err)
	}
	return s
}

func TestFrechetErrors(t *testing.T) {
	g1 := Gaussian{Mean: []float64{0}, Cov: []float64{1}}
	g2 := Gaussian{Mean: []float64{0, 0}, Cov: []float64{1, 0, 0, 1}}
	for _, c := range []struct {
		a, b Gaussian
		want string
	}{
		{g1, g2, "dimensions 1 (covariance 1 values) and 2"},
		{Gaussian{}, Gaussian{}, "dimensions 0"},
		{g1, Gaussian{Mean: []float64{math.NaN()}, Cov: []float64{1}}, "value NaN"},
		{g2, Gaussian{Mean: []float64{0, 0}, Cov: []float64{1, 2, 0, 1}}, "second covariance: not symmetric"},
	} {
		if _, err := FrechetDistance(c.a, c.b); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c, err, c.want)
		}
	}
	if _, err := FD([]float32{1, 2}, []float32{1, 2, 3}, 2, 1, 1); err == nil || !strings.Contains(err.Error(), "second set: fit gaussian: 1 points") {
		t.Errorf("one point: %v", err)
	}
	if _, err := FitGaussian([]float32{1, float32(math.Inf(1))}, 2, 1); err == nil || !strings.Contains(err.Error(), "point 1 has the value +Inf") {
		t.Errorf("inf: %v", err)
	}
}
