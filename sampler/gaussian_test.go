package sampler

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/fmgpu/fmgpu/gpu"
	"github.com/fmgpu/fmgpu/internal/closedform"
	"github.com/fmgpu/fmgpu/internal/numtest"
)

// Gaussian data with non-diagonal covariances and nonzero means
// (docs/math.md §8): the marginal `ot` field of N(m, S) carries N(0, I) to N(m, S).
func testGaussians() []*closedform.Gaussian {
	return []*closedform.Gaussian{
		closedform.MustGaussian([]float64{1, -0.5}, []float64{2, 0.8, 0.8, 0.7}),
		closedform.MustGaussian([]float64{0.5, -1, 2}, []float64{
			1.5, 0.4, -0.3,
			0.4, 0.8, 0.2,
			-0.3, 0.2, 0.6,
		}),
	}
}

// Sampling n = 40000 points from N(0, I) with RK4 (100 steps) and Dopri5
// reproduces m and S within 5 standard errors of the sample moments:
// SE(mean_i) = sqrt(S_ii / n), SE(cov_ij) = sqrt((S_ii S_jj + S_ij^2) / n)
// (Gaussian data; the estimated mean's effect on the covariance is O(1/n)).
// The draws are fixed (Philox seed), so the test is deterministic. Each
// sample is also checked against the exact flow x(1) = m + S^{1/2} z
// (closedform.Transport): max abs error 2e-5 for RK4 (truncation ~1e-9,
// float32 rounding ~1e-6) and 1e-3 for Dopri5 at rtol = atol = 1e-5.
func TestGaussianSampling(t *testing.T) {
	b := newCPU(t)
	const n = 40000
	for _, g := range testGaussians() {
		d := g.Dim()
		for _, o := range []Options{
			{Method: RK4, Steps: 100},
			{Method: Dopri5, Rtol: 1e-5, Atol: 1e-5},
		} {
			name := fmt.Sprintf("D=%d %v", d, o.Method)
			x := b.Alloc(n * d)
			b.RandNormal(x, 2024, uint64(d), 1)
			z := download(b, x)
			f := g.Field(b)
			st, err := Solve(b, f, x, n, o)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			xs := hostOf(x)

			// Pointwise against the exact transport map.
			worst := 0.0
			zr, want := make([]float64, d), make([]float64, d)
			for r := 0; r < n; r++ {
				for j := range zr {
					zr[j] = float64(z[r*d+j])
				}
				g.Transport(1, zr, want)
				for j := range want {
					worst = max(worst, math.Abs(float64(xs[r*d+j])-want[j]))
				}
			}
			tol := 2e-5
			if o.Method == Dopri5 {
				tol = 1e-3
			}
			t.Logf("%s: NFE %d; %s", name, st.NFE, numtest.Describe("x(1) vs m + S^1/2 z", worst, tol))
			if worst > tol {
				t.Errorf("%s: pointwise error %.3g > %.3g", name, worst, tol)
			}

			// Sample moments.
			m, s := g.Mean(), g.Cov()
			mean := make([]float64, d)
			for r := 0; r < n; r++ {
				for j := 0; j < d; j++ {
					mean[j] += float64(xs[r*d+j])
				}
			}
			for j := range mean {
				mean[j] /= n
			}
			cov := make([]float64, d*d)
			for r := 0; r < n; r++ {
				for i := 0; i < d; i++ {
					di := float64(xs[r*d+i]) - mean[i]
					for j := 0; j < d; j++ {
						cov[i*d+j] += di * (float64(xs[r*d+j]) - mean[j])
					}
				}
			}
			worstSE := 0.0
			for i := 0; i < d; i++ {
				se := math.Sqrt(s[i*d+i] / n)
				dev := math.Abs(mean[i]-m[i]) / se
				worstSE = max(worstSE, dev)
				if dev > 5 {
					t.Errorf("%s: mean[%d] = %.5f, want %.5f (%.1f SE)", name, i, mean[i], m[i], dev)
				}
				for j := 0; j < d; j++ {
					c := cov[i*d+j] / (n - 1)
					se := math.Sqrt((s[i*d+i]*s[j*d+j] + s[i*d+j]*s[i*d+j]) / n)
					dev := math.Abs(c-s[i*d+j]) / se
					worstSE = max(worstSE, dev)
					if dev > 5 {
						t.Errorf("%s: cov[%d,%d] = %.5f, want %.5f (%.1f SE)", name, i, j, c, s[i*d+j], dev)
					}
				}
			}
			t.Logf("%s: sample moments within %.2f SE of m, S (tolerance 5 SE)", name, worstSE)
		}
	}
}

// testPoints draws rows points of N(m, S) (exactly, through Transport), in
// float32, and returns them with log N(x; m, S) of the float32 values.
func testPoints(g *closedform.Gaussian, rows int, seed uint64) ([]float32, []float64) {
	r := rand.New(rand.NewPCG(seed, 99))
	d := g.Dim()
	xs := make([]float32, rows*d)
	want := make([]float64, rows)
	z, x := make([]float64, d), make([]float64, d)
	for i := 0; i < rows; i++ {
		for j := range z {
			z[j] = r.NormFloat64()
		}
		g.Transport(1, z, x)
		for j := range x {
			xs[i*d+j] = float32(x[j])
			x[j] = float64(xs[i*d+j])
		}
		want[i] = g.LogPdf(x)
	}
	return xs, want
}

// The likelihood ODE with the exact divergence returns log N(x; m, S) to
// 1e-4 nats (absolute) for every test point: with the closed-form
// divergence (Dopri5 at rtol = atol = 1e-6, and RK4 with 100 steps) and with
// the divergence from D unit-probe VJPs (RK4, 100 steps). The float32 state
// and the float32 accumulated divergence leave errors of a few 1e-6 nats.
func TestGaussianLikelihoodExact(t *testing.T) {
	b := newCPU(t)
	const rows = 500
	for _, g := range testGaussians() {
		d := g.Dim()
		xs, want := testPoints(g, rows, uint64(d))
		x := upload(b, xs)
		for _, c := range []struct {
			name   string
			field  Field
			solve  Options
			fcalls int // field calls per NFE
		}{
			{"closed-form divergence, dopri5", g.Field(b), Options{Method: Dopri5, Rtol: 1e-6, Atol: 1e-6}, 1},
			{"closed-form divergence, rk4", g.Field(b), Options{Method: RK4, Steps: 100}, 1},
			{"unit-probe VJPs, rk4", vjpOnly{g.Field(b)}, Options{Method: RK4, Steps: 100}, d},
		} {
			logp, st, err := LogLikelihood(b, c.field, x, rows, LikelihoodOptions{Solve: c.solve})
			if err != nil {
				t.Fatalf("D=%d %s: %v", d, c.name, err)
			}
			worst := 0.0
			for i := range logp {
				worst = max(worst, math.Abs(logp[i]-want[i]))
			}
			t.Logf("D=%d %s: NFE %d; %s", d, c.name, st.NFE, numtest.Describe("log p - log N(x; m, S)", worst, 1e-4))
			numtest.AllClose(t, fmt.Sprintf("D=%d %s log p", d, c.name), logp, want, 1e-4, 0)
			if st.FieldCalls != c.fcalls*st.NFE {
				t.Errorf("D=%d %s: FieldCalls %d, want %d x NFE %d", d, c.name, st.FieldCalls, c.fcalls, st.NFE)
			}
		}
		if got := download(b, x); numtest.MaxRelErr(got, xs, 1) != 0 {
			t.Errorf("D=%d: LogLikelihood modified its input", d)
		}
	}
}

// Hutchinson's estimator is unbiased: with the x trajectory identical to the
// exact run's (RK4, same grid: the x part of the state never depends on the
// divergence), the difference between the Hutchinson and exact
// log-likelihoods is a zero-mean random variable per point (independent
// probes per row). Its mean over 4000 points must be within 5 standard
// errors of 0 (SE from the measured spread), and the Hutchinson mean of
// log p - log N(x; m, S) within 5 SE + 1e-4 (the exact run's error bound).
// The spread is checked against theory too: A_t does not depend on x, so
// with fixed probes the Hutchinson run's divergence integral is
// (1/K) sum_k e_k^T B e_k with B = the RK4 (Simpson) quadrature of A_t over
// the grid, whose variance is 2 (||B||_F^2 - sum B_ii^2) / K for Rademacher
// probes and 2 ||B||_F^2 / K for Gaussian ones; the measured variance must
// be within 5 standard errors (sqrt((m4 - s^4) / n), from the sample's
// fourth moment) of it.
func TestGaussianLikelihoodHutchinson(t *testing.T) {
	b := newCPU(t)
	const rows, k = 4000, 2
	for _, g := range testGaussians() {
		d := g.Dim()
		xs, want := testPoints(g, rows, 7+uint64(d))
		x := upload(b, xs)
		solve := Options{Method: RK4, Steps: 40}
		exact, _, err := LogLikelihood(b, g.Field(b), x, rows, LikelihoodOptions{Solve: solve})
		if err != nil {
			t.Fatal(err)
		}
		bq := simpsonA(g, solve.Steps)
		fro2, diag2 := 0.0, 0.0
		for i, v := range bq {
			fro2 += v * v
			if i%(d+1) == 0 {
				diag2 += v * v
			}
		}
		theory := map[ProbeKind]float64{Rademacher: 2 * (fro2 - diag2) / k, Gaussian: 2 * fro2 / k}
		spread := map[ProbeKind]float64{}
		for _, kind := range []ProbeKind{Rademacher, Gaussian} {
			name := fmt.Sprintf("D=%d %v K=%d", d, kind, k)
			f := g.Field(b)
			logp, st, err := LogLikelihood(b, f, x, rows, LikelihoodOptions{
				Solve: solve, Divergence: Hutchinson, Probes: k, ProbeKind: kind, Seed: 5,
			})
			if err != nil {
				t.Fatal(err)
			}
			if st.FieldCalls != k*st.NFE {
				t.Errorf("%s: FieldCalls %d, want K x NFE = %d", name, st.FieldCalls, k*st.NFE)
			}
			diffMean, diffSE := meanSE(logp, exact)
			resMean, resSE := meanSE(logp, want)
			spread[kind] = diffSE * math.Sqrt(rows)
			t.Logf("%s: mean(hutch - exact) = %.3g (SE %.3g, %.2f SE; per-point std %.3g); mean(hutch - log N) = %.3g (SE %.3g)",
				name, diffMean, diffSE, math.Abs(diffMean)/diffSE, spread[kind], resMean, resSE)
			v, vSE := varianceSE(logp, exact)
			t.Logf("%s: variance %.4g, theory %.4g (%.2f SE of the variance)", name, v, theory[kind], math.Abs(v-theory[kind])/vSE)
			if !(math.Abs(v-theory[kind]) <= 5*vSE) {
				t.Errorf("%s: variance %.4g, theory %.4g: beyond 5 SE = %.3g", name, v, theory[kind], 5*vSE)
			}
			if !(math.Abs(diffMean) <= 5*diffSE) {
				t.Errorf("%s: mean difference from exact %.3g is beyond 5 SE = %.3g", name, diffMean, 5*diffSE)
			}
			if !(math.Abs(resMean) <= 5*resSE+1e-4) {
				t.Errorf("%s: mean error %.3g is beyond 5 SE + 1e-4 = %.3g", name, resMean, 5*resSE+1e-4)
			}
		}
		if !(spread[Rademacher] > 0 && spread[Gaussian] > spread[Rademacher]) {
			t.Errorf("D=%d: per-point spread Rademacher %.3g, Gaussian %.3g: want 0 < Rademacher < Gaussian", d, spread[Rademacher], spread[Gaussian])
		}
	}
}

// simpsonA is the quadrature of A_t over [0, 1] that RK4 with n steps
// applies: sum_i h/6 (A(t_i) + 4 A(t_i + h/2) + A(t_i + h)).
func simpsonA(g *closedform.Gaussian, n int) []float64 {
	d := g.Dim()
	out := make([]float64, d*d)
	h := 1 / float64(n)
	for i := 0; i < n; i++ {
		t0 := float64(i) * h
		for _, q := range []struct{ t, w float64 }{{t0, 1}, {t0 + h/2, 4}, {t0 + h, 1}} {
			for j, v := range g.A(q.t, nil) {
				out[j] += h / 6 * q.w * v
			}
		}
	}
	return out
}

// varianceSE is the sample variance of a - b and its standard error
// sqrt((m4 - s^4) / n), m4 the fourth central moment.
func varianceSE(a, b []float64) (v, se float64) {
	mean, _ := meanSE(a, b)
	n := float64(len(a))
	m4 := 0.0
	for i := range a {
		e := a[i] - b[i] - mean
		v += e * e
		m4 += e * e * e * e
	}
	v /= n - 1
	m4 /= n
	return v, math.Sqrt((m4 - v*v) / n)
}

// meanSE is the mean of a - b and its standard error.
func meanSE(a, b []float64) (mean, se float64) {
	n := float64(len(a))
	for i := range a {
		mean += a[i] - b[i]
	}
	mean /= n
	ss := 0.0
	for i := range a {
		e := a[i] - b[i] - mean
		ss += e * e
	}
	return mean, math.Sqrt(ss / (n - 1) / n)
}

// LogDetCorrection is added exactly: two otherwise identical runs differ by
// it to float64 rounding of one addition (1e-12 relative).
func TestLogDetCorrection(t *testing.T) {
	b := newCPU(t)
	g := testGaussians()[0]
	xs, _ := testPoints(g, 50, 3)
	x := upload(b, xs)
	o := LikelihoodOptions{Solve: Options{Method: RK4, Steps: 20}}
	base, _, err := LogLikelihood(b, g.Field(b), x, 50, o)
	if err != nil {
		t.Fatal(err)
	}
	// Standardizing with scales s = (2, 3): correction -sum log s.
	o.LogDetCorrection = -(math.Log(2) + math.Log(3))
	corr, _, err := LogLikelihood(b, g.Field(b), x, 50, o)
	if err != nil {
		t.Fatal(err)
	}
	for i := range base {
		if d := corr[i] - base[i]; !numtest.Close(d, o.LogDetCorrection, 1e-12*math.Abs(base[i]), 0) {
			t.Errorf("row %d: corrected - plain = %.17g, want %.17g", i, d, o.LogDetCorrection)
		}
	}
}

// Likelihood under v = a x with prior N(0, s^2 I): x(0) = x e^{-a}, the
// divergence is a D, so log p(x) = log N(x e^{-a}; 0, s^2 I) - a D exactly
// (the pushforward N(0, s^2 e^{2a} I)). Rademacher probes give e^T (aI) e =
// a D exactly, so Hutchinson is exact here too; tolerance 1e-5 nats (Dopri5
// at 1e-7 on a float32 state of size ~1).
func TestLikelihoodLinearPrior(t *testing.T) {
	b := newCPU(t)
	const d, rows, a, s = 3, 4, 0.7, 2.0
	xs := []float32{1, -2, 0.5, 0, 0, 0, 3, 1, -1, -0.25, 2, 4}
	want := make([]float64, rows)
	ea := math.Exp(-float64(float32(a)))
	for r := range want {
		sq := 0.0
		for _, v := range xs[r*d : r*d+d] {
			z := float64(v) * ea
			sq += z * z
		}
		want[r] = -0.5*d*math.Log(2*math.Pi*s*s) - sq/(2*s*s) - float64(float32(a))*d
	}
	x := upload(b, xs)
	for _, c := range []struct {
		name string
		f    Field
		o    LikelihoodOptions
	}{
		{"divergence", &linearField{b: b, d: d, a: a}, LikelihoodOptions{}},
		{"unit VJPs", vjpOnly{&linearField{b: b, d: d, a: a}}, LikelihoodOptions{}},
		{"hutchinson rademacher K=3", &linearField{b: b, d: d, a: a}, LikelihoodOptions{Divergence: Hutchinson, Probes: 3, Seed: 1}},
	} {
		c.o.Solve = Options{Method: Dopri5, Rtol: 1e-7, Atol: 1e-7}
		c.o.PriorStd = s
		var saved []int
		c.o.Solve.SaveAt = []float64{0.5}
		c.o.Solve.OnSave = func(_ float64, x gpu.Buffer) { saved = append(saved, x.Len()) }
		logp, _, err := LogLikelihood(b, c.f, x, rows, c.o)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		numtest.AllClose(t, c.name, logp, want, 1e-5, 0)
		if len(saved) != 1 || saved[0] != rows*d {
			t.Errorf("%s: OnSave saw buffers of %v elements, want one of rows x D = %d", c.name, saved, rows*d)
		}
	}
}

func TestLikelihoodErrors(t *testing.T) {
	b := newCPU(t)
	lf := &linearField{b: b, d: 2, a: 1}
	x := b.Alloc(4)
	cases := []struct {
		name string
		f    Field
		o    LikelihoodOptions
	}{
		{"exact without divergence or VJP", velocityOnly{lf}, LikelihoodOptions{Solve: Options{Method: Euler, Steps: 1}}},
		{"hutchinson without VJP", velocityOnly{lf}, LikelihoodOptions{Solve: Options{Method: Euler, Steps: 1}, Divergence: Hutchinson}},
		{"negative probes", lf, LikelihoodOptions{Solve: Options{Method: Euler, Steps: 1}, Divergence: Hutchinson, Probes: -1}},
		{"probe kind", lf, LikelihoodOptions{Solve: Options{Method: Euler, Steps: 1}, Divergence: Hutchinson, ProbeKind: 5}},
		{"divergence kind", lf, LikelihoodOptions{Solve: Options{Method: Euler, Steps: 1}, Divergence: 3}},
		{"prior", lf, LikelihoodOptions{Solve: Options{Method: Euler, Steps: 1}, PriorStd: -1}},
		{"correction", lf, LikelihoodOptions{Solve: Options{Method: Euler, Steps: 1}, LogDetCorrection: math.NaN()}},
		{"solve options", lf, LikelihoodOptions{Solve: Options{Method: RK4}}},
	}
	for _, c := range cases {
		if _, _, err := LogLikelihood(b, c.f, x, 2, c.o); err == nil {
			t.Errorf("%s: no error", c.name)
		}
	}
	if _, _, err := LogLikelihood(b, lf, x, 3, LikelihoodOptions{Solve: Options{Method: Euler, Steps: 1}}); err == nil {
		t.Error("short data buffer: no error")
	}
}

func TestNames(t *testing.T) {
	for _, d := range []Divergence{Exact, Hutchinson} {
		if got, err := ParseDivergence(d.String()); err != nil || got != d {
			t.Errorf("ParseDivergence(%q) = %v, %v", d, got, err)
		}
	}
	for _, p := range []ProbeKind{Rademacher, Gaussian} {
		if got, err := ParseProbeKind(p.String()); err != nil || got != p {
			t.Errorf("ParseProbeKind(%q) = %v, %v", p, got, err)
		}
	}
	if _, err := ParseDivergence("trace"); err == nil {
		t.Error("ParseDivergence(trace): no error")
	}
	if _, err := ParseProbeKind("uniform"); err == nil {
		t.Error("ParseProbeKind(uniform): no error")
	}
}

func TestMeanNLLAndBitsPerDim(t *testing.T) {
	mean, se := MeanNLL([]float64{-1, -2, -3, -4})
	// mean 2.5, sample std sqrt(5/3), SE sqrt(5/3)/2.
	if !numtest.Close(mean, 2.5, 0, 1e-15) || !numtest.Close(se, math.Sqrt(5.0/3)/2, 0, 1e-15) {
		t.Errorf("MeanNLL = %g, %g; want 2.5, %g", mean, se, math.Sqrt(5.0/3)/2)
	}
	// 784 dimensions at 1 bit each: 784 ln 2 nats.
	if got := BitsPerDim(784*math.Ln2, 784); !numtest.Close(got, 1, 0, 1e-15) {
		t.Errorf("BitsPerDim = %g, want 1", got)
	}
	if m, _ := MeanNLL(nil); !math.IsNaN(m) {
		t.Errorf("MeanNLL(nil) = %g, want NaN", m)
	}
}
