package gputest

import (
	"fmt"
	"math"
	"testing"

	"github.com/fmgpu/fmgpu/flow"
	"github.com/fmgpu/fmgpu/gpu"
)

// The Draw family (gpu/draw.go): the paths' arithmetic and the time
// transform evaluated here in float64 from their documentation, the Philox
// words from gpu.PhiloxBlock (random.go).

// pathSpecs is every kind with its default parameters, plus an ot path
// with sigma_min > 0 (the default 0 hides a wrong (1 - sigma_min) factor).
func pathSpecs() []flow.Spec {
	var s []flow.Spec
	for _, k := range flow.Kinds() {
		s = append(s, flow.DefaultSpec(k))
	}
	return append(s, flow.Spec{Kind: flow.KindOT, SigmaMin: 0.05})
}

// pathTol is the bound on a float32 evaluation of x_t = sigma x0 + alpha x1
// (or u_t with sigma', alpha'): the coefficients come from float32 exp,
// sin, cos, sqrt, expm1 (rtol 2e-5), relative to the magnitudes of the two
// terms since they may cancel; dx0 is the allowed error of x0 itself where
// x0 is a float32 Box-Muller draw (0 where x0 is an input).
func pathTol(s, a, x0, x1, dx0 float64) float64 {
	return atolTrans + rtolTrans*(math.Abs(s*x0)+math.Abs(a*x1)) + math.Abs(s)*dx0
}

// shapes of (rows, d) for the path ops.
var pathShapes = [][2]int{{1, 1}, {3, 257}, {17, 31}, {255, 3}, {257, 64}, {1000, 2}}

// PathTarget: xt = flow.Phi and ut = flow.VelocityX0 of every kind at the
// float32 times given, which include both ends of the kind's time range
// (t = 1 - 1e-5 for linear-vp and vp, where sigma'_t is about -50 to -220
// and a float32 1 - exp(-T) in place of expm1 is 3% off).
func testPathTarget(e *env) {
	for si, spec := range pathSpecs() {
		path := flow.MustNew(spec)
		lo, hi := path.TimeRange()
		for shi, sh := range pathShapes {
			rows, d := sh[0], sh[1]
			x0 := normals(e.rng, rows*d, 1)
			x1 := normals(e.rng, rows*d, 1)
			t := uniforms(e.rng, rows, lo, hi)
			t[0] = float32(hi)
			if rows > 1 {
				t[1] = float32(lo)
			}
			if rows > 2 {
				t[2] = float32(hi - 1e-4)
			}
			off := (si + shi) % 3
			p0, p1, pt := e.viewOf(x0, off, 1), e.viewOf(x1, 1, off), e.viewOf(t, 2, 2)
			pxt := e.viewOf(filled(rows*d, sentinel), off+1, 2)
			put := e.viewOf(filled(rows*d, sentinel), 3, off)
			e.be.PathTarget(spec, rows, d, p0.view, p1.view, pt.view, pxt.view, put.view)

			n := rows * d
			wantX, tolX := make([]float64, n), make([]float64, n)
			wantU, tolU := make([]float64, n), make([]float64, n)
			for r := 0; r < rows; r++ {
				tr := float64(t[r])
				c := path.At(tr)
				for j := r * d; j < r*d+d; j++ {
					a, b := float64(x0[j]), float64(x1[j])
					wantX[j] = flow.Phi(path, tr, a, b)
					wantU[j] = flow.VelocityX0(path, tr, a, b)
					tolX[j] = pathTol(c.Sigma, c.Alpha, a, b, 0)
					tolU[j] = pathTol(c.DSigma, c.DAlpha, a, b, 0)
				}
			}
			name := fmt.Sprintf("PathTarget(%v, rows=%d, d=%d)", spec, rows, d)
			checkTol(e.t, name+": xt", e.download(pxt.view), wantX, tolX, d)
			checkTol(e.t, name+": ut", e.download(put.view), wantU, tolU, d)
			e.checkOutside(name+": xt", pxt)
			e.checkOutside(name+": ut", put)
			checkBits(e.t, name+": x0", e.download(p0.parent), p0.host, nil)
			checkBits(e.t, name+": x1", e.download(p1.parent), p1.host, nil)
			checkBits(e.t, name+": t", e.download(pt.parent), pt.host, nil)
		}
	}
}

// refTime is row r's training time as documented: u = Uniform01 of element
// r of the PurposeTimeU stream; for logit-normal, n = element r of the
// PurposeTimeN normal stream and t = sigmoid(Mean + Std n); then the shift
// t' = shift t / (1 + (shift - 1) t) (none for 0 or 1), then the clamp
// into the path's time range. tol bounds a float32 evaluation: 1e-7 + 1e-6
// t (the uniform is exact in float32; the sigmoid, the shift and their
// roundings cost a few ulp, 6e-8 each, of t), plus the error of a float32 n
// (normalTol) times dt/dn. It is tighter than rtolTrans on purpose: a
// missing clamp moves t by under 1e-5.
func refTime(dr gpu.BatchDraw, path flow.Path, r int) (t, tol float64) {
	ts := dr.Time
	t = float64(gpu.Uniform01(word(dr.Seed, gpu.PurposeTimeU, dr.Step, r)))
	dtdn := 0.0
	var n float64
	if ts.Kind == flow.TimeLogitNormal {
		n = normal64(dr.Seed, gpu.PurposeTimeN, dr.Step, r)
		t = 1 / (1 + math.Exp(-(ts.Mean + ts.Std*n)))
		dtdn = ts.Std * t * (1 - t)
	}
	if sh := ts.Shift; sh != 0 && sh != 1 {
		den := 1 + (sh-1)*t
		dtdn *= sh / (den * den)
		t = sh * t / den
	}
	lo, hi := path.TimeRange()
	t = math.Min(math.Max(t, lo), hi)
	return t, 1e-7 + 1e-6*t + dtdn*normalTol(n)
}

// drawShapes are (rows, d, nData) for DrawBatch: nData = 1 (every index
// 0), nData not a power of two, nData > 2^16.
var drawShapes = [][3]int{
	{1, 1, 1}, {3, 2, 7}, {17, 3, 1000}, {255, 31, 17}, {257, 64, 3},
	{1000, 2, 70001}, {5, 257, 9}, {1000, 3, 257},
}

// timeSamplers cover both kinds, shifts above and below 1, and draws that
// the clamp catches for linear-vp and vp (mean 12: sigmoid above
// 1 - 1e-5 for most draws; shift 1e6: t' about 1 - 1e-6).
var timeSamplers = []flow.TimeSampler{
	{Kind: flow.TimeUniform},
	{Kind: flow.TimeUniform, Shift: 3},
	{Kind: flow.TimeLogitNormal, Mean: 0, Std: 1},
	{Kind: flow.TimeLogitNormal, Mean: -0.5, Std: 1.5, Shift: 0.3},
	{Kind: flow.TimeLogitNormal, Mean: 12, Std: 1},
	{Kind: flow.TimeUniform, Shift: 1e6},
}

// DrawBatch against the documented streams, for every path kind and time
// sampler: index i_r = IndexBelow(element r of PurposeIndex, nData) (x1 =
// data row i_r exactly), t_r = refTime, x0[r, j] = element
// r d + j of the PurposeNoise normal stream, and xt, ut = the path target
// at the backend's t; x0 and x1 nil in every third case. Then statistical
// sanity and determinism.
// stepFromBuffer is dr, or for every other case ci dr with its step in
// device memory (BatchDraw.StepFrom) and a wrong Step field: the draw
// must be the same.
func stepFromBuffer(e *env, dr gpu.BatchDraw, ci int) gpu.BatchDraw {
	if ci%2 == 0 {
		return dr
	}
	w := gpu.StepWords(dr.Step)
	dr.StepFrom = e.upload(w[:])
	dr.Step ^= 0x5a5a
	return dr
}

func testDrawBatch(e *env) {
	seeds := [][2]uint64{{0, 0}, {42, 1}, {0xDEADBEEFCAFEF00D, 1<<32 + 5}, {7, 123456789}}
	ci := 0
	for _, spec := range pathSpecs() {
		path := flow.MustNew(spec)
		for _, ts := range timeSamplers {
			sh := drawShapes[ci%len(drawShapes)]
			rows, d, nData := sh[0], sh[1], sh[2]
			dr := gpu.BatchDraw{Path: spec, Time: ts, Seed: seeds[ci%len(seeds)][0], Step: seeds[ci%len(seeds)][1]}
			withX := ci%3 != 2
			ci++
			data := normals(e.rng, nData*d, 1)
			bdata := e.upload(data)
			n := rows * d
			var p0, p1 padded
			var x0, x1 gpu.Buffer
			if withX {
				p0 = e.viewOf(filled(n, sentinel), 1, 2)
				p1 = e.viewOf(filled(n, sentinel), 2, 1)
				x0, x1 = p0.view, p1.view
			}
			pt := e.viewOf(filled(rows, sentinel), 3, 1)
			pxt := e.viewOf(filled(n, sentinel), 1, 3)
			put := e.viewOf(filled(n, sentinel), 2, 2)
			e.be.DrawBatch(stepFromBuffer(e, dr, ci), bdata, nData, d, rows, x0, x1, pt.view, pxt.view, put.view)

			name := fmt.Sprintf("DrawBatch(%v, %+v, seed=%#x, step=%#x, rows=%d, d=%d, nData=%d, x0/x1=%v)", spec, ts, dr.Seed, dr.Step, rows, d, nData, withX)
			wantT, tolT := make([]float64, rows), make([]float64, rows)
			wantX0, tolX0 := make([]float64, n), make([]float64, n)
			wantX1 := make([]float32, n)
			for r := 0; r < rows; r++ {
				wantT[r], tolT[r] = refTime(dr, path, r)
				idx := int(gpu.IndexBelow(word(dr.Seed, gpu.PurposeIndex, dr.Step, r), uint32(nData)))
				copy(wantX1[r*d:r*d+d], data[idx*d:idx*d+d])
				for j := r * d; j < r*d+d; j++ {
					z := normal64(dr.Seed, gpu.PurposeNoise, dr.Step, j)
					wantX0[j], tolX0[j] = z, normalTol(z)
				}
			}
			gotT := e.download(pt.view)
			checkTol(e.t, name+": t", gotT, wantT, tolT, 0)
			e.checkOutside(name+": t", pt)
			if withX {
				checkTol(e.t, name+": x0", e.download(p0.view), wantX0, tolX0, d)
				checkBits(e.t, name+": x1 (data rows at the documented indices)", e.download(p1.view), wantX1, nil)
				e.checkOutside(name+": x0", p0)
				e.checkOutside(name+": x1", p1)
			}
			// xt, ut: the path target at the backend's own t (checked
			// above), from the reference x0 and x1.
			wantXt, tolXt := make([]float64, n), make([]float64, n)
			wantUt, tolUt := make([]float64, n), make([]float64, n)
			for r := 0; r < rows; r++ {
				tr := float64(gotT[r])
				c := path.At(tr)
				for j := r * d; j < r*d+d; j++ {
					a, b := wantX0[j], float64(wantX1[j])
					wantXt[j] = flow.Phi(path, tr, a, b)
					wantUt[j] = flow.VelocityX0(path, tr, a, b)
					tolXt[j] = pathTol(c.Sigma, c.Alpha, a, b, tolX0[j])
					tolUt[j] = pathTol(c.DSigma, c.DAlpha, a, b, tolX0[j])
				}
			}
			checkTol(e.t, name+": xt", e.download(pxt.view), wantXt, tolXt, d)
			checkTol(e.t, name+": ut", e.download(put.view), wantUt, tolUt, d)
			e.checkOutside(name+": xt", pxt)
			e.checkOutside(name+": ut", put)
			checkBits(e.t, name+": data", e.download(bdata), data, nil)
			if e.t.Failed() {
				return // one failing configuration says enough
			}
		}
	}
	drawStats(e)
}

// drawStats: over 8192 rows of the ve path with 16 data rows holding their
// own index, the index counts pass a chi-square test, t ~ U(0, 1) and
// x0 ~ N(0, 1) have their moments (unit noise although ve's PriorStd is
// sigma_max = 10: that is the spread of x_t = x1 + sigma_t x0 at t = 0),
// the same (Seed, Step) gives the same batch bit for bit, and the next
// Step a different one.
func drawStats(e *env) {
	const rows, nData = 8192, 16
	spec := flow.DefaultSpec(flow.KindVE)
	data := make([]float32, nData)
	for i := range data {
		data[i] = float32(i)
	}
	bdata := e.upload(data)
	bufs := func() [5]gpu.Buffer {
		return [5]gpu.Buffer{e.be.Alloc(rows), e.be.Alloc(rows), e.be.Alloc(rows), e.be.Alloc(rows), e.be.Alloc(rows)}
	}
	draw := func(step uint64) [5][]float32 {
		b := bufs()
		dr := gpu.BatchDraw{Path: spec, Time: flow.DefaultTimeSampler(flow.TimeUniform), Seed: 2024, Step: step}
		e.be.DrawBatch(dr, bdata, nData, 1, rows, b[0], b[1], b[2], b[3], b[4])
		var out [5][]float32
		for k := range b {
			out[k] = e.download(b[k])
		}
		return out
	}
	a := draw(3)
	x0, x1, t := a[0], a[1], a[2]

	// chi-square over 16 cells, 15 degrees of freedom: mean 15, sd 5.5;
	// 50 has p < 1e-5.
	var count [nData]int
	for _, v := range x1 {
		i := int(v)
		if float32(i) != v || i < 0 || i >= nData {
			e.t.Fatalf("DrawBatch x1 = %v is not a data row", v)
		}
		count[i]++
	}
	chi2 := 0.0
	for _, c := range count {
		dv := float64(c) - rows/nData
		chi2 += dv * dv / (rows / nData)
	}
	if chi2 > 50 {
		e.t.Errorf("DrawBatch index counts %v: chi-square %.1f over 15 degrees of freedom", count, chi2)
	}
	// t ~ U(0, 1): mean 1/2 with standard error sqrt(1/12/rows) = 0.0032,
	// variance 1/12 with standard error sqrt(1/180/rows) = 0.00082; 5 SE.
	var s1, s2 float64
	for _, v := range t {
		s1 += float64(v)
		s2 += float64(v) * float64(v)
	}
	if m, vr := s1/rows, s2/rows-(s1/rows)*(s1/rows); math.Abs(m-0.5) > 5*math.Sqrt(1.0/12/rows) || math.Abs(vr-1.0/12) > 5*math.Sqrt(1.0/180/rows) {
		e.t.Errorf("DrawBatch uniform times: mean %.4g (want 0.5), variance %.4g (want %.4g)", m, vr, 1.0/12)
	}
	// x0 ~ N(0, 1): mean within 5/sqrt(rows), variance within
	// 5 sqrt(2/rows).
	s1, s2 = 0, 0
	for _, v := range x0 {
		s1 += float64(v)
		s2 += float64(v) * float64(v)
	}
	if m, vr := s1/rows, s2/rows-(s1/rows)*(s1/rows); math.Abs(m) > 5/math.Sqrt(rows) || math.Abs(vr-1) > 5*math.Sqrt(2.0/rows) {
		e.t.Errorf("DrawBatch ve x0: mean %.4g (want 0), variance %.4g (want 1)", m, vr)
	}
	again := draw(3)
	for k, what := range []string{"x0", "x1", "t", "xt", "ut"} {
		checkBits(e.t, "DrawBatch repeated with the same (Seed, Step): "+what, again[k], a[k], nil)
	}
	next := draw(4)
	same := 0
	for i := range t {
		if next[2][i] == t[i] {
			same++
		}
	}
	if same > rows/100 {
		e.t.Errorf("DrawBatch Step 3 and Step 4 share %d of %d times", same, rows)
	}
}

// DrawLabels: y[r] = labels[i_r] with i_r = IndexBelow(word r of stream
// (seed, PurposeIndex, step), nData), or null when Uniform01(word r of
// (seed, PurposeLabelDrop, step)) < dropout; bit for bit. The indices are
// also the rows DrawBatch draws on the same backend (data whose row i is
// i), and the dropout rate over 2^16 rows is within 5 standard errors.
func testDrawLabels(e *env) {
	cases := []struct {
		nData, rows   int
		dropout, null float32
	}{
		{1, 1, 0, -1}, {3, 3, 0.1, 10}, {10, 17, 0.5, 10}, {60000, 256, 0.1, -1}, {7, 1000, 1, 3}, {70001, 1000, 0, -1}, {257, 5, 0.3, 0},
	}
	for ci, c := range cases {
		seed, step := streamCases[ci][0], streamCases[ci][1]
		dr := gpu.BatchDraw{Path: flow.DefaultSpec(flow.KindOT), Time: flow.TimeSampler{Kind: flow.TimeUniform}, Seed: seed, Step: step}
		labels := make([]float32, c.nData)
		for i := range labels {
			labels[i] = float32(i) + 0.5 // distinct: a wrong index shows
		}
		pl := e.viewOf(labels, ci%3, 1)
		py := e.viewOf(filled(c.rows, sentinel), 1+ci%2, 2)
		e.be.DrawLabels(stepFromBuffer(e, dr, ci), pl.view, c.nData, c.rows, c.dropout, c.null, py.view)
		want := make([]float32, c.rows)
		dropped := make([]bool, c.rows)
		for r := range want {
			if gpu.Uniform01(word(seed, gpu.PurposeLabelDrop, step, r)) < c.dropout {
				want[r], dropped[r] = c.null, true
			} else {
				want[r] = labels[gpu.IndexBelow(word(seed, gpu.PurposeIndex, step, r), uint32(c.nData))]
			}
		}
		name := fmt.Sprintf("DrawLabels(seed=%#x, step=%#x, nData=%d, rows=%d, dropout=%g, null=%g)", seed, step, c.nData, c.rows, c.dropout, c.null)
		got := e.download(py.view)
		checkBits(e.t, name, got, want, nil)
		e.checkOutside(name, py)
		checkBits(e.t, name+": labels", e.download(pl.parent), pl.host, nil)

		// The same rows as DrawBatch: x1 of data row i = i is i_r (the
		// dropped rows as above).
		data := make([]float32, c.nData)
		for i := range data {
			data[i] = float32(i)
		}
		bd := e.upload(data)
		x1, t, xt, ut := e.be.Alloc(c.rows), e.be.Alloc(c.rows), e.be.Alloc(c.rows), e.be.Alloc(c.rows)
		e.be.DrawBatch(dr, bd, c.nData, 1, c.rows, nil, x1, t, xt, ut)
		idx := e.download(x1)
		wantBatch := make([]float32, c.rows)
		for r, i := range idx {
			wantBatch[r] = labels[int(i)]
			if dropped[r] {
				wantBatch[r] = c.null
			}
		}
		checkBits(e.t, name+": the rows DrawBatch draws", got, wantBatch, nil)
		for _, b := range []gpu.Buffer{bd, x1, t, xt, ut} {
			e.be.Free(b)
		}
	}

	// Dropout rate: 2^16 rows at 0.1 (standard error sqrt(0.09 / 2^16) =
	// 1.2e-3; 5 of them allowed), and the kept rows' labels uniform over
	// 4 classes (each within 5 standard errors of 1/4).
	const rows = 1 << 16
	const classes = 4
	labels := e.upload([]float32{0, 1, 2, 3})
	y := e.be.Alloc(rows)
	dr := gpu.BatchDraw{Seed: 12345, Step: 678}
	e.be.DrawLabels(dr, labels, classes, rows, 0.1, classes, y)
	var counts [classes + 1]int
	for _, v := range e.download(y) {
		if v < 0 || v > classes || v != float32(int(v)) {
			e.t.Fatalf("DrawLabels: label %v not among the labels and the null %d", v, classes)
		}
		counts[int(v)]++
	}
	rate := float64(counts[classes]) / rows
	if se := math.Sqrt(0.1 * 0.9 / rows); math.Abs(rate-0.1) > 5*se {
		e.t.Errorf("DrawLabels dropout rate over %d rows %.4f, want 0.1 within %.4f", rows, rate, 5*se)
	}
	kept := float64(rows - counts[classes])
	for k := 0; k < classes; k++ {
		f := float64(counts[k]) / kept
		if se := math.Sqrt(0.25 * 0.75 / kept); math.Abs(f-0.25) > 5*se {
			e.t.Errorf("DrawLabels: class %d drawn with frequency %.4f, want 0.25 within %.4f", k, f, 5*se)
		}
	}
}

// benchDraw times the training batch's ops at batch 4096.
func benchDraw(b *testing.B, newBackend func(b *testing.B) gpu.Backend) {
	b.Run("PathTarget", func(b *testing.B) {
		for _, sh := range [][2]int{{4096, 2}, {4096, 784}} {
			rows, d := sh[0], sh[1]
			for _, k := range []flow.Kind{flow.KindOT, flow.KindVP} {
				spec := flow.DefaultSpec(k)
				bench(b, fmt.Sprintf("path=%v/B=%d,D=%d", k, rows, d), newBackend, func(w *workload) (float64, float64, func()) {
					x0, x1, t, xt, ut := w.normals(rows*d), w.normals(rows*d), w.uniforms(rows), w.alloc(rows*d), w.alloc(rows*d)
					return 4 * float64(4*rows*d+rows), 0, func() { w.be.PathTarget(spec, rows, d, x0, x1, t, xt, ut) }
				})
			}
		}
	})
	b.Run("DrawBatch", func(b *testing.B) {
		for _, sh := range [][3]int{{4096, 2, 100000}, {4096, 784, 60000}} {
			rows, d, nData := sh[0], sh[1], sh[2]
			for _, ts := range []flow.TimeSampler{flow.DefaultTimeSampler(flow.TimeUniform), flow.DefaultTimeSampler(flow.TimeLogitNormal)} {
				dr := gpu.BatchDraw{Path: flow.DefaultSpec(flow.KindOT), Time: ts, Seed: 1}
				bench(b, fmt.Sprintf("time=%v/B=%d,D=%d,nData=%d", ts.Kind, rows, d, nData), newBackend, func(w *workload) (float64, float64, func()) {
					data := w.normals(nData * d)
					x0, x1, t, xt, ut := w.alloc(rows*d), w.alloc(rows*d), w.alloc(rows), w.alloc(rows*d), w.alloc(rows*d)
					// reads the gathered rows; writes x0, x1, xt, ut, t
					return 4 * float64(5*rows*d+rows), 0, func() {
						dr.Step++
						w.be.DrawBatch(dr, data, nData, d, rows, x0, x1, t, xt, ut)
					}
				})
			}
		}
	})
}
