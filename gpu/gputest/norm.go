package gputest

import (
	"fmt"
	"math"
	"testing"

	"github.com/fmgpu/fmgpu/gpu"
)

// The Norm family (gpu/norm.go) against float64 references: the group
// statistics in two passes, the gradients against central differences.

// groupNormCases: one element; groups of one channel and of one element
// (variance 0: y = beta); 1 to 8 channels per group; MNIST feature-map
// sizes; eps from 1e-5 to 0.1; batch 0.
var groupNormCases = []gpu.GroupNormShape{
	{Batch: 1, C: 1, HW: 1, Groups: 1, Eps: 1e-5},
	{Batch: 3, C: 4, HW: 49, Groups: 2, Eps: 1e-5},
	{Batch: 2, C: 8, HW: 784, Groups: 4, Eps: 1e-5},
	{Batch: 1, C: 6, HW: 9, Groups: 3, Eps: 1e-3},
	{Batch: 3, C: 5, HW: 7, Groups: 1, Eps: 1e-5},
	{Batch: 2, C: 8, HW: 1, Groups: 8, Eps: 1e-5},
	{Batch: 1, C: 32, HW: 196, Groups: 8, Eps: 1e-5},
	{Batch: 2, C: 3, HW: 25, Groups: 3, Eps: 0.1},
	{Batch: 3, C: 8, HW: 2, Groups: 1, Eps: 1e-5},
	{Batch: 65, C: 4, HW: 9, Groups: 2, Eps: 1e-5},
	{Batch: 1, C: 96, HW: 49, Groups: 32, Eps: 1e-5},
	{Batch: 0, C: 4, HW: 9, Groups: 2, Eps: 1e-5},
}

// groupNormInputs draws x with a per-(image, channel) offset in [-2, 2]
// and scale in [0.5, 2] (a group mixes channels of different means: the
// variance is not the channels' own), gamma ~ N(1, 0.5^2), beta ~ N(0,
// 0.5^2).
func groupNormInputs(e *env, s gpu.GroupNormShape) (x, gamma, beta []float32) {
	x = make([]float32, s.Batch*s.C*s.HW)
	for r := 0; r < s.Batch*s.C; r++ {
		off, sc := 4*e.rng.Float64()-2, 0.5+1.5*e.rng.Float64()
		for p := 0; p < s.HW; p++ {
			x[r*s.HW+p] = float32(off + sc*e.rng.NormFloat64())
		}
	}
	gamma = normals(e.rng, s.C, 0.5)
	for i := range gamma {
		gamma[i]++
	}
	return x, gamma, normals(e.rng, s.C, 0.5)
}

// groupStats is the reference mean and variance of each (image, group),
// in float64 (two passes), with the error scales of a float32-accumulated
// evaluation: mean to 1e-4 of mean |x|, variance to 1e-4 of mean x^2 (the
// terms of E x^2 - mean^2).
type groupStats struct {
	mean, vr, meanTol, varTol []float64
}

func refGroupStats(s gpu.GroupNormShape, x []float64) groupStats {
	ng := s.Batch * s.Groups
	st := groupStats{make([]float64, ng), make([]float64, ng), make([]float64, ng), make([]float64, ng)}
	n := s.C / s.Groups * s.HW
	for u := 0; u < ng; u++ {
		g := x[u*n : (u+1)*n] // (b C + g C/G) HW = u n
		var sum, sa, sq float64
		for _, v := range g {
			sum += v
			sa += math.Abs(v)
			sq += v * v
		}
		m := sum / float64(n)
		var ss float64
		for _, v := range g {
			ss += (v - m) * (v - m)
		}
		st.mean[u], st.vr[u] = m, ss/float64(n)
		st.meanTol[u] = rtolRed*sa/float64(n) + tiny
		st.varTol[u] = rtolRed*sq/float64(n) + tiny
	}
	return st
}

// refGroupNorm is y in float64 from x (mean and variance recomputed).
func refGroupNorm(s gpu.GroupNormShape, x, gamma, beta []float64) []float64 {
	st := refGroupStats(s, x)
	y := make([]float64, len(x))
	n := s.C / s.Groups * s.HW
	for i, v := range x {
		u, c := i/n, i/s.HW%s.C
		y[i] = (v-st.mean[u])/math.Sqrt(st.vr[u]+float64(s.Eps))*gamma[c] + beta[c]
	}
	return y
}

// GroupNorm: mean and rstd against the float64 statistics, y against the
// float64 reference (tolerance carried from the statistics) and, tighter,
// against (x - mean) rstd gamma + beta from the backend's own mean and
// rstd (elementwise arithmetic only).
func testGroupNorm(e *env) {
	for ci, s := range groupNormCases {
		x, gamma, beta := groupNormInputs(e, s)
		n, ng := len(x), s.Batch*s.Groups
		px, pg, pb := e.viewOf(x, ci%3, 1), e.viewOf(gamma, 1, ci%2), e.viewOf(beta, 2, 1)
		py := e.viewOf(filled(n, sentinel), 1+ci%2, 2)
		pm, pr := e.viewOf(filled(ng, sentinel), 1, 1), e.viewOf(filled(ng, sentinel), 2, 3)
		e.be.GroupNorm(s, px.view, pg.view, pb.view, py.view, pm.view, pr.view)
		name := fmt.Sprintf("GroupNorm(%+v)", s)

		st := refGroupStats(s, f64(x))
		eps := float64(s.Eps)
		wantR, tolR := make([]float64, ng), make([]float64, ng)
		for u := range wantR {
			wantR[u] = 1 / math.Sqrt(st.vr[u]+eps)
			// d rstd / d var = -rstd^3 / 2, plus rsqrtf's few ulp
			tolR[u] = 0.5*wantR[u]*wantR[u]*wantR[u]*st.varTol[u] + rtolTrans*wantR[u]
		}
		gotM, gotR := e.download(pm.view), e.download(pr.view)
		checkTol(e.t, name+": mean", gotM, st.mean, st.meanTol, s.Groups)
		checkTol(e.t, name+": rstd", gotR, wantR, tolR, s.Groups)

		cpgHW := s.C / s.Groups * s.HW
		want, tol := make([]float64, n), make([]float64, n)
		own, tolOwn := make([]float64, n), make([]float64, n)
		for i, xv32 := range x {
			u, c := i/cpgHW, i/s.HW%s.C
			xv, g, bt := float64(xv32), float64(gamma[c]), float64(beta[c])
			d := xv - st.mean[u]
			want[i] = d*wantR[u]*g + bt
			// the statistics' errors carried through, and the elementwise
			// (x - mean) rstd gamma + beta (x - mean may cancel: relative
			// to |x| + |mean|)
			tol[i] = math.Abs(g)*(math.Abs(d)*tolR[u]+wantR[u]*st.meanTol[u]) +
				rtolElem*((math.Abs(xv)+math.Abs(st.mean[u]))*wantR[u]*math.Abs(g)+math.Abs(bt)) + tiny
			m, r := float64(gotM[u]), float64(gotR[u])
			own[i] = (xv-m)*r*g + bt
			tolOwn[i] = rtolElem*((math.Abs(xv)+math.Abs(m))*r*math.Abs(g)+math.Abs(bt)) + tiny
		}
		gotY := e.download(py.view)
		checkTol(e.t, name+": y", gotY, want, tol, s.HW)
		checkTol(e.t, name+": y from the backend's mean and rstd", gotY, own, tolOwn, s.HW)
		e.checkOutside(name+": y", py)
		e.checkOutside(name+": mean", pm)
		e.checkOutside(name+": rstd", pr)
		for _, p := range []padded{px, pg, pb} {
			checkBits(e.t, name+": input", e.download(p.parent), p.host, nil)
		}
	}
}

// GroupNormBackward from the forward's x, mean and rstd (the float64
// statistics rounded to float32): dx = rstd (g dy - mean(g dy) - xhat
// mean(g dy xhat)) over the group, dgamma[c] = sum dy xhat, dbeta[c] =
// sum dy (all start as NaN); then dx, dgamma and dbeta against central
// differences of sum(dy * GroupNorm) in float64, mean and variance
// recomputed from the perturbed x.
func testGroupNormBackward(e *env) {
	for ci, s := range groupNormCases {
		x, gamma, beta := groupNormInputs(e, s)
		n, ng := len(x), s.Batch*s.Groups
		dy := normals(e.rng, n, 1)
		st := refGroupStats(s, f64(x))
		mean32, rstd32 := make([]float32, ng), make([]float32, ng)
		for u := range mean32 {
			mean32[u] = float32(st.mean[u])
			rstd32[u] = float32(1 / math.Sqrt(st.vr[u]+float64(s.Eps)))
		}
		pdy, px, pg := e.viewOf(dy, 1, 2), e.viewOf(x, ci%3, 1), e.viewOf(gamma, 2, 1)
		pm, pr := e.viewOf(mean32, 1, 1), e.viewOf(rstd32, ci%2, 2)
		pdx := e.viewOf(filled(n, sentinel), 1+ci%3, 1)
		pdg, pdb := e.viewOf(filled(s.C, sentinel), 2, 2), e.viewOf(filled(s.C, sentinel), 1, 3)
		e.be.GroupNormBackward(s, pdy.view, px.view, pg.view, pm.view, pr.view, pdx.view, pdg.view, pdb.view)
		name := fmt.Sprintf("GroupNormBackward(%+v)", s)

		dy64 := f64(dy)
		wantDx, tolDx, wantG, tolG, wantB, tolB := refGroupNormBackward(s, x, gamma, mean32, rstd32, dy64, nil)
		gotDx, gotG, gotB := e.download(pdx.view), e.download(pdg.view), e.download(pdb.view)
		checkTol(e.t, name+": dx", gotDx, wantDx, tolDx, s.HW)
		checkTol(e.t, name+": dgamma", gotG, wantG, tolG, 0)
		checkTol(e.t, name+": dbeta", gotB, wantB, tolB, 0)
		e.checkOutside(name+": dx", pdx)
		e.checkOutside(name+": dgamma", pdg)
		e.checkOutside(name+": dbeta", pdb)
		for _, p := range []padded{pdy, px, pg, pm, pr} {
			checkBits(e.t, name+": input", e.download(p.parent), p.host, nil)
		}

		// Central differences: h = 1e-3 (inputs of scale 1) leaves a
		// truncation error h^2/6 L''' far below 1e-6, and float64 rounding
		// of L (terms of size 1) about n 1e-16 / h.
		const h = 1e-3
		x64, g64, b64 := f64(x), f64(gamma), f64(beta)
		loss := func(xv, gv, bv []float64) float64 {
			l := 0.0
			for i, v := range refGroupNorm(s, xv, gv, bv) {
				l += dy64[i] * v
			}
			return l
		}
		fdTol := func(tl []float64) func(int, float64) float64 {
			return func(i int, fd float64) float64 { return tl[i] + 1e-6*(1+math.Abs(fd)) }
		}
		if n > 0 {
			checkFD(e, name+": dx", gotDx, x64, fdIndices(e.rng, n, 12), h, func(v []float64) float64 { return loss(v, g64, b64) }, fdTol(tolDx))
		}
		checkFD(e, name+": dgamma", gotG, g64, fdIndices(e.rng, s.C, 8), h, func(v []float64) float64 { return loss(x64, v, b64) }, fdTol(tolG))
		checkFD(e, name+": dbeta", gotB, b64, fdIndices(e.rng, s.C, 8), h, func(v []float64) float64 { return loss(x64, g64, v) }, fdTol(tolB))
	}
}

// refGroupNormBackward is GroupNormBackward's float64 reference for the
// output gradient dy (with an elementwise error bound dyErr, or nil when dy
// is exact), from the float32 statistics: dx, dgamma, dbeta and their
// tolerances.
func refGroupNormBackward(s gpu.GroupNormShape, x, gamma, mean32, rstd32 []float32, dy, dyErr []float64) (wantDx, tolDx, wantG, tolG, wantB, tolB []float64) {
	n, ng := len(x), s.Batch*s.Groups
	cpgHW := s.C / s.Groups * s.HW
	// per group: sums of g dy, g dy xhat and their magnitudes (and of the
	// error of g dy)
	s1, s2, a1, a2, e1 := make([]float64, ng), make([]float64, ng), make([]float64, ng), make([]float64, ng), make([]float64, ng)
	xhat, xhErr := make([]float64, n), make([]float64, n)
	de := func(i int) float64 {
		if dyErr == nil {
			return 0
		}
		return dyErr[i]
	}
	for i := range x {
		u, c := i/cpgHW, i/s.HW%s.C
		m, r := float64(mean32[u]), float64(rstd32[u])
		xhat[i] = (float64(x[i]) - m) * r
		// float32 (x - mean) rstd: relative to |x| + |mean|
		xhErr[i] = rtolElem * (math.Abs(float64(x[i])) + math.Abs(m)) * r
		gd := float64(gamma[c]) * dy[i]
		s1[u] += gd
		s2[u] += gd * xhat[i]
		a1[u] += math.Abs(gd)
		a2[u] += math.Abs(gd) * (math.Abs(xhat[i]) + xhErr[i])
		e1[u] += math.Abs(float64(gamma[c])) * de(i) * (1 + math.Abs(xhat[i]) + xhErr[i])
	}
	wantDx, tolDx = make([]float64, n), make([]float64, n)
	wantG, tolG = make([]float64, s.C), make([]float64, s.C)
	wantB, tolB = make([]float64, s.C), make([]float64, s.C)
	inv := 1 / float64(cpgHW)
	for i := range x {
		u, c := i/cpgHW, i/s.HW%s.C
		r := float64(rstd32[u])
		gd := float64(gamma[c]) * dy[i]
		m1, m2 := s1[u]*inv, s2[u]*inv
		wantDx[i] = r * (gd - m1 - xhat[i]*m2)
		// the two group means as reductions (1e-4 of their terms),
		// xhat's own error, the elementwise combination, and dy's error
		// through g dy and the means
		tolDx[i] = r*(rtolRed*(a1[u]+math.Abs(xhat[i])*a2[u])*inv+xhErr[i]*math.Abs(m2)+
			rtolElem*(math.Abs(gd)+math.Abs(m1)+math.Abs(xhat[i]*m2))+
			math.Abs(float64(gamma[c]))*de(i)+e1[u]*inv*(1+math.Abs(xhat[i]))) + tiny
		d := dy[i]
		wantG[c] += d * xhat[i]
		tolG[c] += rtolRed*math.Abs(d*xhat[i]) + math.Abs(d)*xhErr[i] + de(i)*(math.Abs(xhat[i])+xhErr[i])
		wantB[c] += d
		tolB[c] += rtolRed*math.Abs(d) + de(i)
	}
	for c := range tolG {
		tolG[c] += tiny
		tolB[c] += tiny
	}
	return
}

// groupNormStats32 are the float32 statistics of x (as the forward pass
// leaves them).
func groupNormStats32(s gpu.GroupNormShape, x []float32) (mean32, rstd32 []float32) {
	st := refGroupStats(s, f64(x))
	ng := s.Batch * s.Groups
	mean32, rstd32 = make([]float32, ng), make([]float32, ng)
	for u := range mean32 {
		mean32[u] = float32(st.mean[u])
		rstd32[u] = float32(1 / math.Sqrt(st.vr[u]+float64(s.Eps)))
	}
	return
}

// GroupNormAct: x + xBias as AddChannelBias's and y as GroupNorm's of it
// (bits of the backend's own ops, which GroupNorm's and AddChannelBias's
// tests check against references), a = act(y) elementwise.
func testGroupNormAct(e *env) {
	for ci, s := range groupNormCases {
		x, gamma, beta := groupNormInputs(e, s)
		n, ng := len(x), s.Batch*s.Groups
		act := []gpu.Act{gpu.ActSiLU, gpu.ActNone}[ci%2]
		px, pg, pb := e.upload(x), e.upload(gamma), e.upload(beta)
		var xBias, pxb gpu.Buffer
		px2 := e.upload(x) // the reference: the backend's own unfused ops
		if ci%3 != 1 {
			xb := normals(e.rng, s.Batch*s.C, 1)
			xBias = e.upload(xb)
			pxb = e.upload(xb)
			e.be.AddChannelBias(s.Batch, s.C, s.HW, px2, pxb, px2)
		}
		py, pa := e.viewOf(filled(n, sentinel), 1, 2), e.viewOf(filled(n, sentinel), 2, 1)
		pm, pr := e.viewOf(filled(ng, sentinel), 1, 1), e.viewOf(filled(ng, sentinel), 1, 1)
		e.be.GroupNormAct(s, act, px, xBias, pg, pb, py.view, pa.view, pm.view, pr.view)
		y2, m2, r2 := e.upload(filled(n, sentinel)), e.upload(filled(ng, sentinel)), e.upload(filled(ng, sentinel))
		e.be.GroupNorm(s, px2, pg, pb, y2, m2, r2)
		name := fmt.Sprintf("GroupNormAct(%+v, act=%d, xBias=%v)", s, act, xBias != nil)
		checkBits(e.t, name+": x (+ xBias)", e.download(px), e.download(px2), nil)
		y := e.download(py.view)
		checkBits(e.t, name+": y (GroupNorm's)", y, e.download(y2), nil)
		checkBits(e.t, name+": mean", e.download(pm.view), e.download(m2), nil)
		checkBits(e.t, name+": rstd", e.download(pr.view), e.download(r2), nil)
		want, tol := make([]float64, n), make([]float64, n)
		for i, v := range y {
			z := float64(v)
			want[i], tol[i] = z, 0
			if act == gpu.ActSiLU {
				want[i] = silu64(z)
				tol[i] = rtolTrans*math.Abs(want[i]) + atolTrans
			}
		}
		checkTol(e.t, name+": a", e.download(pa.view), want, tol, s.HW)
		e.checkOutside(name+": y", py)
		e.checkOutside(name+": a", pa)

		// y nil: the same a, statistics and sum in x, and nothing else
		px3 := e.upload(x)
		var xb3 gpu.Buffer
		if xBias != nil {
			xb3 = e.upload(e.download(xBias))
		}
		pa3 := e.viewOf(filled(n, sentinel), 1, 1)
		pm3, pr3 := e.upload(filled(ng, sentinel)), e.upload(filled(ng, sentinel))
		e.be.GroupNormAct(s, act, px3, xb3, pg, pb, nil, pa3.view, pm3, pr3)
		checkBits(e.t, name+" without y: x", e.download(px3), e.download(px), nil)
		checkBits(e.t, name+" without y: a", e.download(pa3.view), e.download(pa.view), nil)
		checkBits(e.t, name+" without y: mean", e.download(pm3), e.download(pm.view), nil)
		checkBits(e.t, name+" without y: rstd", e.download(pr3), e.download(pr.view), nil)
		e.checkOutside(name+" without y: a", pa3)
	}
}

// GroupNormActBackward with y nil (recomputed from x and the statistics)
// against the same op given the y that GroupNorm wrote for them: the
// same bits (the reference values are testGroupNormActBackward's).
func testGroupNormActBackwardRecompute(e *env) {
	for ci, s := range groupNormCases {
		x, gamma, beta := groupNormInputs(e, s)
		n, ng := len(x), s.Batch*s.Groups
		px, pg, pb := e.upload(x), e.upload(gamma), e.upload(beta)
		py, pm, pr := e.upload(filled(n, sentinel)), e.upload(filled(ng, sentinel)), e.upload(filled(ng, sentinel))
		e.be.GroupNorm(s, px, pg, pb, py, pm, pr)
		dA := normals(e.rng, n, 1)
		var add []float32
		if ci%2 == 1 {
			add = normals(e.rng, n, 1)
		}
		run := func(y gpu.Buffer) (dx, dg, db, sum []float32) {
			var padd gpu.Buffer
			if add != nil {
				padd = e.upload(add)
			}
			pdx, pdg, pdb := e.upload(filled(n, sentinel)), e.upload(filled(s.C, sentinel)), e.upload(filled(s.C, sentinel))
			psum := e.upload(filled(s.Batch*s.C, sentinel))
			var b gpu.Buffer
			if y == nil {
				b = pb
			}
			e.be.GroupNormActBackward(s, gpu.ActSiLU, e.upload(dA), y, px, pg, b, pm, pr, padd, pdx, pdg, pdb, psum)
			return e.download(pdx), e.download(pdg), e.download(pdb), e.download(psum)
		}
		dx, dg, db, sum := run(py)
		dx2, dg2, db2, sum2 := run(nil)
		name := fmt.Sprintf("GroupNormActBackward(%+v, y recomputed, add=%v)", s, add != nil)
		checkBits(e.t, name+": dx", dx2, dx, nil)
		checkBits(e.t, name+": dgamma", dg2, dg, nil)
		checkBits(e.t, name+": dbeta", db2, db, nil)
		checkBits(e.t, name+": dxSum", sum2, sum, nil)
	}
}

// GroupNormActBackward against the float64 reference of GroupNormBackward
// for dy = dA act'(y), plus the added gradient.
func testGroupNormActBackward(e *env) {
	for ci, s := range groupNormCases {
		x, gamma, _ := groupNormInputs(e, s)
		n := len(x)
		mean32, rstd32 := groupNormStats32(s, x)
		act := []gpu.Act{gpu.ActSiLU, gpu.ActNone, gpu.ActSiLU}[ci%3]
		dA := normals(e.rng, n, 1)
		yv := normals(e.rng, n, 2)
		extremes(yv)
		var add []float32
		if ci%2 == 0 {
			add = normals(e.rng, n, 1)
		}
		dy, dyErr := make([]float64, n), make([]float64, n)
		for i := range dA {
			g, z := float64(dA[i]), float64(yv[i])
			dy[i] = g
			if act == gpu.ActSiLU {
				sg := logistic64(z)
				dy[i] = g * sg * (1 + z*(1-sg))
				// silu' through float32 exp, relative to its terms
				dyErr[i] = math.Abs(g) * (atolTrans + rtolTrans*(sg+math.Abs(z*sg*(1-sg))))
			}
		}
		wantDx, tolDx, wantG, tolG, wantB, tolB := refGroupNormBackward(s, x, gamma, mean32, rstd32, dy, dyErr)
		pdA, py, px, pg := e.upload(dA), e.upload(yv), e.upload(x), e.upload(gamma)
		pm, pr := e.upload(mean32), e.upload(rstd32)
		pdx := e.viewOf(filled(n, sentinel), 1, 2)
		var padd gpu.Buffer
		if add != nil {
			if ci%4 == 0 { // add in dx itself
				pdx = e.viewOf(add, 1, 2)
				padd = pdx.view
			} else {
				padd = e.upload(add)
			}
			for i := range wantDx {
				wantDx[i] += float64(add[i])
				tolDx[i] += rtolElem * math.Abs(wantDx[i])
			}
		}
		pdg, pdb := e.viewOf(filled(s.C, sentinel), 2, 1), e.viewOf(filled(s.C, sentinel), 1, 2)
		var pds padded
		var dxSum gpu.Buffer
		if ci%3 != 2 {
			pds = e.viewOf(filled(s.Batch*s.C, sentinel), 1, 1)
			dxSum = pds.view
		}
		e.be.GroupNormActBackward(s, act, pdA, py, px, pg, nil, pm, pr, padd, pdx.view, pdg.view, pdb.view, dxSum)
		name := fmt.Sprintf("GroupNormActBackward(%+v, act=%d, add=%v, dxSum=%v)", s, act, add != nil, dxSum != nil)
		if dxSum != nil {
			want, tol := make([]float64, s.Batch*s.C), make([]float64, s.Batch*s.C)
			for i := range wantDx {
				r := i / s.HW
				want[r] += wantDx[i]
				// dx's own error, and the sum's: 1e-4 of sum |dx|
				tol[r] += tolDx[i] + rtolRed*math.Abs(wantDx[i])
			}
			checkTol(e.t, name+": dxSum", e.download(pds.view), want, tol, 0)
			e.checkOutside(name+": dxSum", pds)
		}
		checkTol(e.t, name+": dx", e.download(pdx.view), wantDx, tolDx, s.HW)
		checkTol(e.t, name+": dgamma", e.download(pdg.view), wantG, tolG, 0)
		checkTol(e.t, name+": dbeta", e.download(pdb.view), wantB, tolB, 0)
		e.checkOutside(name+": dx", pdx)
		e.checkOutside(name+": dgamma", pdg)
		e.checkOutside(name+": dbeta", pdb)
	}
}

// benchNorm times group norm over the U-Net's 64 x 28 x 28 maps at batch 128.
func benchNorm(b *testing.B, newBackend func(b *testing.B) gpu.Backend) {
	gn := gpu.GroupNormShape{Batch: 128, C: 64, HW: 784, Groups: 8, Eps: 1e-5}
	name := fmt.Sprintf("b=%d,c=%d,hw=%d,groups=%d", gn.Batch, gn.C, gn.HW, gn.Groups)
	n := gn.Batch * gn.C * gn.HW
	b.Run("GroupNorm", func(b *testing.B) {
		bench(b, name, newBackend, func(w *workload) (float64, float64, func()) {
			x, g, bt, y, m, r := w.normals(n), w.normals(gn.C), w.normals(gn.C), w.alloc(n), w.alloc(gn.Batch*gn.Groups), w.alloc(gn.Batch*gn.Groups)
			return 8 * float64(n), 0, func() { w.be.GroupNorm(gn, x, g, bt, y, m, r) }
		})
	})
	b.Run("GroupNormBackward", func(b *testing.B) {
		bench(b, name, newBackend, func(w *workload) (float64, float64, func()) {
			x, g, dy, dx := w.normals(n), w.normals(gn.C), w.normals(n), w.alloc(n)
			m, r, dg, db := w.alloc(gn.Batch*gn.Groups), w.alloc(gn.Batch*gn.Groups), w.alloc(gn.C), w.alloc(gn.C)
			w.be.GroupNorm(gn, x, g, g, dx, m, r)
			return 12 * float64(n), 0, func() { w.be.GroupNormBackward(gn, dy, x, g, m, r, dx, dg, db) }
		})
	})
	// The U-Net's unit: SiLU after the norm, its widest level at batch 64.
	un := gpu.GroupNormShape{Batch: 64, C: 32, HW: 784, Groups: 8, Eps: 1e-5}
	uname := fmt.Sprintf("b=%d,c=%d,hw=%d,groups=%d", un.Batch, un.C, un.HW, un.Groups)
	un1 := un.Batch * un.C * un.HW
	b.Run("GroupNormAct", func(b *testing.B) {
		bench(b, uname, newBackend, func(w *workload) (float64, float64, func()) {
			x, g, bt, a := w.normals(un1), w.normals(un.C), w.normals(un.C), w.alloc(un1)
			m, r := w.alloc(un.Batch*un.Groups), w.alloc(un.Batch*un.Groups)
			// x read, a written (y not kept, as the U-Net runs it)
			return 8 * float64(un1), 0, func() { w.be.GroupNormAct(un, gpu.ActSiLU, x, nil, g, bt, nil, a, m, r) }
		})
	})
	b.Run("GroupNormActBackward", func(b *testing.B) {
		bench(b, uname, newBackend, func(w *workload) (float64, float64, func()) {
			x, g, dA, add, dx := w.normals(un1), w.normals(un.C), w.normals(un1), w.normals(un1), w.alloc(un1)
			y, m, r := w.alloc(un1), w.alloc(un.Batch*un.Groups), w.alloc(un.Batch*un.Groups)
			dg, db, sum := w.alloc(un.C), w.alloc(un.C), w.alloc(un.Batch*un.C)
			w.be.GroupNorm(un, x, g, g, y, m, r)
			// dA, x and add read (y recomputed, as the U-Net runs it), dx
			// written
			return 16 * float64(un1), 0, func() {
				w.be.GroupNormActBackward(un, gpu.ActSiLU, dA, nil, x, g, g, m, r, add, dx, dg, db, sum)
			}
		})
	})
}
