package gputest

import (
	"fmt"
	"math"
	"testing"

	"github.com/fmgpu/fmgpu/gpu"
)

// The Dense family (gpu/dense.go) against float64 references.

func silu64(z float64) float64 { return z / (1 + math.Exp(-z)) }

// logistic64 is 1 / (1 + e^-z).
func logistic64(z float64) float64 { return 1 / (1 + math.Exp(-z)) }

// Linear: pre = x W^T + bias, y = act(pre) with x a strided view (ldx >
// in, NaN in the padding), pre nil, separate, or the same buffer as y
// (ActNone only), and a case whose bias pushes pre to +-90 where a naive
// SiLU overflows.
func testLinear(e *env) {
	const (
		preNil = iota
		preSep
		preIsY
	)
	cases := []struct {
		rows, in, out int
		act           gpu.Act
		pre, padX     int
		biasStd       float64
		aligned       bool // x at a 16-byte aligned offset (padX a multiple of 4)
	}{
		{1, 1, 1, gpu.ActNone, preSep, 0, 1, false},
		{3, 3, 31, gpu.ActSiLU, preSep, 2, 1, false},
		{17, 64, 64, gpu.ActSiLU, preNil, 0, 0.1, false},
		{255, 31, 257, gpu.ActNone, preIsY, 5, 1, false},
		{257, 2, 3, gpu.ActSiLU, preSep, 1, 1, false},
		{1000, 64, 31, gpu.ActSiLU, preSep, 0, 0.1, false},
		{1000, 257, 17, gpu.ActNone, preNil, 3, 1, false},
		{17, 31, 64, gpu.ActSiLU, preSep, 0, 90, false},
		// operands a tensor-core product can copy (gpu/device_products.go)
		{130, 36, 260, gpu.ActSiLU, preSep, 0, 1, true},
		{257, 64, 33, gpu.ActNone, preIsY, 4, 1, true},
		{5, 4, 3, gpu.ActSiLU, preNil, 0, 1, true},
	}
	for ci, c := range cases {
		ldx := c.in + c.padX
		xv := strided(e.rng, c.rows, c.in, ldx)
		wv := normals(e.rng, c.out*c.in, 1/math.Sqrt(float64(c.in)))
		bv := normals(e.rng, c.out, c.biasStd)
		offX := ci % 4
		if c.aligned {
			offX = 4 * (ci % 2)
		}
		px := e.viewOf(xv, offX, 3)
		w, bias := e.upload(wv), e.upload(bv)
		py := e.viewOf(filled(c.rows*c.out, sentinel), 1+ci%3, 2)
		var pp padded
		var preBuf gpu.Buffer
		switch c.pre {
		case preSep:
			pp = e.viewOf(filled(c.rows*c.out, sentinel), 3, 1)
			preBuf = pp.view
		case preIsY:
			preBuf = py.view
		}
		e.be.Linear(c.rows, c.in, c.out, px.view, ldx, w, bias, c.act, preBuf, py.view)

		wantPre := make([]float64, c.rows*c.out)
		wantY := make([]float64, c.rows*c.out)
		tolPre := make([]float64, c.rows*c.out)
		tolY := make([]float64, c.rows*c.out)
		round, rtol := e.prodRef(c.aligned)
		xr, wr := round(xv), round(wv)
		for r := 0; r < c.rows; r++ {
			for j := 0; j < c.out; j++ {
				z, sc := float64(bv[j]), math.Abs(float64(bv[j]))
				for l := 0; l < c.in; l++ {
					p := float64(xr[r*ldx+l]) * float64(wr[j*c.in+l])
					z += p
					sc += math.Abs(p)
				}
				i := r*c.out + j
				wantPre[i] = z
				// a product plus the bias: 1e-4 (tf32: rtolTF32; bf16: rtolBF16,
				// or 1e-4 from the rounded operands' product) of sum |x||w| + |b|
				tolPre[i] = rtol*sc + tiny
				wantY[i], tolY[i] = z, tolPre[i]
				if c.act == gpu.ActSiLU {
					wantY[i] = silu64(z)
					// silu' lies in [-0.1, 1.1]: the error of pre passes on
					// at most 1.1 times, plus the float32 exp's own error.
					tolY[i] = 1.1*tolPre[i] + rtolTrans*math.Abs(wantY[i]) + atolTrans
				}
			}
		}
		name := fmt.Sprintf("Linear(rows=%d, in=%d, out=%d, ldx=%d, act=%d, pre=%v)", c.rows, c.in, c.out, ldx, c.act, []string{"nil", "separate", "y"}[c.pre])
		checkTol(e.t, name+": y", e.download(py.view), wantY, tolY, c.out)
		e.checkOutside(name+": y", py)
		if c.pre == preSep {
			gotPre := e.download(pp.view)
			checkTol(e.t, name+": pre", gotPre, wantPre, tolPre, c.out)
			e.checkOutside(name+": pre", pp)
			if c.act == gpu.ActSiLU {
				// y = silu(pre) of the backend's own pre, elementwise: the
				// activation alone, free of the product's tolerance.
				w, tl := make([]float64, len(gotPre)), make([]float64, len(gotPre))
				for i, z := range gotPre {
					w[i] = silu64(float64(z))
					tl[i] = atolTrans + rtolTrans*math.Abs(w[i])
				}
				checkTol(e.t, name+": y = silu(pre)", e.download(py.view), w, tl, c.out)
			}
		}
		checkBits(e.t, name+": x", e.download(px.parent), px.host, nil)
	}
}

// extremes overwrites every 97th element of v with values far into SiLU's
// tails (where exp overflows float32) and at 0.
func extremes(v []float32) {
	ext := []float32{20, -20, 90, -90, 1e4, -1e4, 0, -1.2785}
	for i := 0; i < len(v); i += 97 {
		v[i] = ext[(i/97)%len(ext)]
	}
}

// BiasActBackward: dPre = dY act'(pre) and dBias = column sums of dPre,
// with and without dBias (which starts as NaN: it is overwritten, not
// accumulated into), dPre aliasing dY or not, pre reaching SiLU's tails.
func testLinearBackward(e *env) {
	cases := []struct {
		rows, in, out, cols int
		act                 gpu.Act
		padX                int
		dW, dBias, dX       bool
		beta                float32
		aligned             bool // dPre and x at 16-byte aligned offsets
	}{
		{1, 1, 1, 1, gpu.ActSiLU, 0, true, true, true, 0, false},
		{3, 5, 2, 5, gpu.ActNone, 0, true, true, true, 1, false},
		{17, 34, 256, 34, gpu.ActSiLU, 0, true, true, true, 0, false},
		{300, 70, 65, 2, gpu.ActNone, 3, true, true, true, 0.5, false},
		{1000, 64, 3, 64, gpu.ActSiLU, 0, true, true, true, 0, false}, // k = 1000: a split weight gradient
		{4097, 130, 67, 130, gpu.ActSiLU, 1, true, false, true, 0, false},
		{33, 20, 7, 20, gpu.ActSiLU, 0, false, false, true, -1, false}, // no parameter gradient (InputVJP)
		{65, 9, 9, 0, gpu.ActNone, 0, true, true, false, 0, false},     // the first layer without an input gradient
		{0, 4, 3, 4, gpu.ActSiLU, 0, true, true, true, 0, false},       // an empty batch: zero gradients
		{70, 128, 40, 128, gpu.ActNone, 0, true, true, true, 1, false}, // a gradient added to (the U-Net's embedding)
		// operands a tensor-core product can copy (gpu/device_products.go)
		{300, 64, 32, 64, gpu.ActSiLU, 0, true, true, true, 0, true},
		{1100, 36, 20, 36, gpu.ActNone, 4, true, true, true, 0.5, true}, // a split weight gradient
		{130, 132, 260, 100, gpu.ActSiLU, 0, true, false, true, 0, true},
		{40, 8, 4, 0, gpu.ActNone, 0, true, true, false, 0, true},
		{33, 16, 12, 16, gpu.ActSiLU, 0, false, false, true, -1, true},
	}
	for ci, c := range cases {
		ldx := c.in + c.padX
		dp := normals(e.rng, c.rows*c.out, 1)
		xv := strided(e.rng, c.rows, c.in, ldx)
		wv := normals(e.rng, c.out*c.in, 1/math.Sqrt(float64(c.in)))
		pre := normals(e.rng, c.rows*c.cols, 3)
		extremes(pre)
		offP, offX := ci%3, 1
		if c.aligned {
			offP, offX = 4*(ci%2), 4*((ci+1)%2)
		}
		pdp := e.viewOf(dp, offP, 1)
		px := e.viewOf(xv, offX, ci%2)
		w, ppre := e.upload(wv), e.upload(pre)
		var pdw, pdb, pdx padded
		var dW, dBias, dX gpu.Buffer
		if c.dW {
			pdw = e.viewOf(filled(c.out*c.in, sentinel), 2, 1)
			dW = pdw.view
		}
		if c.dBias {
			pdb = e.viewOf(filled(c.out, sentinel), 1, 2)
			dBias = pdb.view
		}
		dx0 := filled(c.rows*c.cols, sentinel)
		if c.beta != 0 {
			dx0 = normals(e.rng, c.rows*c.cols, 1)
		}
		if c.dX {
			pdx = e.viewOf(dx0, 1, 1)
			dX = pdx.view
		}
		e.be.LinearBackward(c.rows, c.in, c.out, pdp.view, px.view, ldx, w, dW, dBias, c.cols, c.act, ppre, c.beta, dX)

		name := fmt.Sprintf("LinearBackward(rows=%d, in=%d, out=%d, cols=%d, ldx=%d, act=%d, dW=%v, dBias=%v, dX=%v, beta=%g)",
			c.rows, c.in, c.out, c.cols, ldx, c.act, c.dW, c.dBias, c.dX, c.beta)
		round, rtol := e.prodRef(c.aligned)
		dpr, xr, wr := round(dp), round(xv), round(wv)
		if c.dW {
			want, tol := make([]float64, c.out*c.in), make([]float64, c.out*c.in)
			for o := 0; o < c.out; o++ {
				for i := 0; i < c.in; i++ {
					z, sc := 0.0, 0.0
					for r := 0; r < c.rows; r++ {
						p := float64(dpr[r*c.out+o]) * float64(xr[r*ldx+i])
						z += p
						sc += math.Abs(p)
					}
					// a product: 1e-4 (tf32: rtolTF32; bf16: prodRef's) of sum |dPre||x|
					want[o*c.in+i], tol[o*c.in+i] = z, rtol*sc+tiny
				}
			}
			checkTol(e.t, name+": dW", e.download(pdw.view), want, tol, c.in)
			e.checkOutside(name+": dW", pdw)
		}
		if c.dBias {
			want, tol := make([]float64, c.out), make([]float64, c.out)
			for o := 0; o < c.out; o++ {
				for r := 0; r < c.rows; r++ {
					want[o] += float64(dp[r*c.out+o])
					tol[o] += math.Abs(float64(dp[r*c.out+o]))
				}
				// a sum: 1e-4 of sum |dPre|
				tol[o] = rtolRed*tol[o] + tiny
			}
			checkTol(e.t, name+": dBias", e.download(pdb.view), want, tol, 0)
			e.checkOutside(name+": dBias", pdb)
		}
		if c.dX {
			n := c.rows * c.cols
			want, tol := make([]float64, n), make([]float64, n)
			for r := 0; r < c.rows; r++ {
				for j := 0; j < c.cols; j++ {
					g, sc := 0.0, 0.0
					for o := 0; o < c.out; o++ {
						p := float64(dpr[r*c.out+o]) * float64(wr[o*c.in+j])
						g += p
						sc += math.Abs(p)
					}
					i := r*c.cols + j
					if c.beta != 0 {
						p := float64(c.beta) * float64(dx0[i])
						g += p
						sc += math.Abs(p)
					}
					// a product (plus beta dX): 1e-4 (tf32: rtolTF32) of sum |dPre||W| + |beta dX|
					want[i], tol[i] = g, rtol*sc+tiny
					if c.act == gpu.ActSiLU {
						z := float64(pre[i])
						s := logistic64(z)
						d := s * (1 + z*(1-s))
						want[i] = g * d
						// the product's error times |silu'|, plus silu' through
						// float32 exp relative to its terms (as BiasActBackward)
						tol[i] = tol[i]*math.Abs(d) + math.Abs(g)*(atolTrans+rtolTrans*(s+math.Abs(z*s*(1-s)))) + tiny
					}
				}
			}
			checkTol(e.t, name+": dX", e.download(pdx.view), want, tol, c.cols)
			e.checkOutside(name+": dX", pdx)
		}
		checkBits(e.t, name+": dPre", e.download(pdp.view), dp, nil)
	}
}

func testBiasActBackward(e *env) {
	cases := []struct {
		rows, cols   int
		act          gpu.Act
		dBias, alias bool
	}{
		{1, 1, gpu.ActSiLU, true, false},
		{3, 2, gpu.ActNone, true, true},
		{17, 31, gpu.ActSiLU, false, true},
		{255, 64, gpu.ActSiLU, true, false},
		{257, 257, gpu.ActSiLU, true, true},
		{1000, 3, gpu.ActNone, false, false},
		{1000, 64, gpu.ActSiLU, true, false},
		{3, 257, gpu.ActNone, true, false},
	}
	for ci, c := range cases {
		n := c.rows * c.cols
		dy := normals(e.rng, n, 1)
		pre := normals(e.rng, n, 3)
		extremes(pre)
		pdy := e.viewOf(dy, ci%3, 2)
		ppre := e.upload(pre)
		var pdp padded
		dPre := pdy.view
		if !c.alias {
			pdp = e.viewOf(filled(n, sentinel), 2, 3)
			dPre = pdp.view
		}
		var pdb padded
		var dBias gpu.Buffer
		if c.dBias {
			pdb = e.viewOf(filled(c.cols, sentinel), 1, 1)
			dBias = pdb.view
		}
		e.be.BiasActBackward(c.act, c.rows, c.cols, pdy.view, ppre, dPre, dBias)

		want := make([]float64, n)
		tol := make([]float64, n)
		for i := range want {
			g, z := float64(dy[i]), float64(pre[i])
			switch c.act {
			case gpu.ActNone:
				want[i] = g
				tol[i] = rtolElem * math.Abs(g)
			case gpu.ActSiLU:
				s := logistic64(z)
				want[i] = g * s * (1 + z*(1-s))
				// silu'(z) = s + z s (1 - s) may cancel (its zero is near
				// z = -1.28): relative to its terms' magnitudes.
				tol[i] = math.Abs(g) * (atolTrans + rtolTrans*(s+math.Abs(z*s*(1-s))))
			}
		}
		name := fmt.Sprintf("BiasActBackward(act=%d, rows=%d, cols=%d, dBias=%v, dPre aliases dY=%v)", c.act, c.rows, c.cols, c.dBias, c.alias)
		if c.alias {
			checkTol(e.t, name+": dPre", e.download(pdy.view), want, tol, c.cols)
			e.checkOutside(name+": dPre", pdy)
		} else {
			checkTol(e.t, name+": dPre", e.download(pdp.view), want, tol, c.cols)
			e.checkOutside(name+": dPre", pdp)
			checkBits(e.t, name+": dY", e.download(pdy.view), dy, nil)
		}
		if c.dBias {
			wantB := make([]float64, c.cols)
			tolB := make([]float64, c.cols)
			for i, v := range want {
				wantB[i%c.cols] += v
				// a sum: 1e-4 of sum |dPre|, plus the elements' own errors
				tolB[i%c.cols] += rtolRed*math.Abs(v) + tol[i]
			}
			for j := range tolB {
				tolB[j] += tiny
			}
			checkTol(e.t, name+": dBias", e.download(pdb.view), wantB, tolB, 0)
			e.checkOutside(name+": dBias", pdb)
		}
	}
}

// Activate: y = act(x) over x.Len() elements, y aliasing x or not, x
// reaching SiLU's tails; ActNone is a bit-exact copy.
func testActivate(e *env) {
	sizes := []int{1, 3, 17, 257, 4096*3 + 1, 20000}
	for ci, n := range sizes {
		for _, act := range []gpu.Act{gpu.ActNone, gpu.ActSiLU} {
			alias := (ci+int(act))%2 == 0
			x := normals(e.rng, n, 3)
			extremes(x)
			px := e.viewOf(x, ci%3, 2)
			py := px
			if !alias {
				py = e.viewOf(filled(n, sentinel), 1+ci%2, 1)
			}
			e.be.Activate(act, px.view, py.view)
			name := fmt.Sprintf("Activate(act=%d, n=%d, y aliases x=%v)", act, n, alias)
			got := e.download(py.view)
			if act == gpu.ActNone {
				checkBits(e.t, name, got, x, nil)
			} else {
				want, tol := make([]float64, n), make([]float64, n)
				for i, v := range x {
					want[i] = silu64(float64(v))
					// one float32 exp and a division
					tol[i] = atolTrans + rtolTrans*math.Abs(want[i])
				}
				checkTol(e.t, name, got, want, tol, 0)
			}
			e.checkOutside(name, py)
			if !alias {
				checkBits(e.t, name+": x", e.download(px.parent), px.host, nil)
			}
		}
	}
}

// EmbedInput: x copied exactly into the first d columns; t itself
// (Freqs = 0) or [sin(Scale t w_j)..., cos(Scale t w_j)...] with
// w_j = MaxPeriod^(-j/Freqs), Scale up to 1000 and MaxPeriod 1000 and
// 10000, t including 0 and 1.
func testEmbedInput(e *env) {
	cases := []struct {
		rows, d int
		emb     gpu.TimeEmbedding
	}{
		{1, 1, gpu.TimeEmbedding{}},
		{3, 2, gpu.TimeEmbedding{Freqs: 1, Scale: 1, MaxPeriod: 10000}},
		{17, 3, gpu.TimeEmbedding{Freqs: 3, Scale: 1000, MaxPeriod: 1000}},
		{257, 2, gpu.TimeEmbedding{Freqs: 16, Scale: 1000, MaxPeriod: 10000}},
		{1000, 31, gpu.TimeEmbedding{Freqs: 8, Scale: 1, MaxPeriod: 10000}},
		{255, 1, gpu.TimeEmbedding{Freqs: 64, Scale: 1000, MaxPeriod: 10000}},
		{1000, 2, gpu.TimeEmbedding{}},
		{17, 64, gpu.TimeEmbedding{Freqs: 2, Scale: 30, MaxPeriod: 1000}},
	}
	for ci, c := range cases {
		w := c.d + c.emb.Width()
		xv := normals(e.rng, c.rows*c.d, 1)
		tv := uniforms(e.rng, c.rows, 0, 1)
		tv[0] = 0
		if c.rows > 1 {
			tv[c.rows-1] = 1
		}
		px := e.viewOf(xv, ci%3, 1)
		pt := e.viewOf(tv, 1, ci%2)
		po := e.viewOf(filled(c.rows*w, sentinel), 2, 3)
		e.be.EmbedInput(c.rows, c.d, px.view, pt.view, c.emb, po.view)

		want := make([]float64, c.rows*w)
		tol := make([]float64, c.rows*w)
		freqs := make([]float64, c.emb.Freqs)
		for j := range freqs {
			freqs[j] = math.Pow(float64(c.emb.MaxPeriod), -float64(j)/float64(c.emb.Freqs))
		}
		for r := 0; r < c.rows; r++ {
			o := r * w
			for j := 0; j < c.d; j++ {
				want[o+j] = float64(xv[r*c.d+j]) // a copy: exact (tol 0)
			}
			t := float64(tv[r])
			if c.emb.Freqs == 0 {
				want[o+c.d] = t // exact
				continue
			}
			for j, f := range freqs {
				arg := float64(c.emb.Scale) * t * f
				s, cs := math.Sincos(arg)
				// A float32 kernel rounds the argument (w_j through
				// exp/pow, then two products): each rounding moves it by
				// up to 2^-24 |arg|, which sin and cos pass on absolutely;
				// allow 8 such, plus sinf/cosf's own few ulp.
				argErr := 8 * math.Abs(arg) / (1 << 24)
				want[o+c.d+j], tol[o+c.d+j] = s, atolTrans+rtolTrans*math.Abs(s)+argErr
				want[o+c.d+c.emb.Freqs+j], tol[o+c.d+c.emb.Freqs+j] = cs, atolTrans+rtolTrans*math.Abs(cs)+argErr
			}
		}
		name := fmt.Sprintf("EmbedInput(rows=%d, d=%d, %+v)", c.rows, c.d, c.emb)
		checkTol(e.t, name, e.download(po.view), want, tol, w)
		e.checkOutside(name, po)
	}
}

// OneHot: every element overwritten (out starts as NaN), labels -2 to
// classes + 1 (out of range: a zero row; classes is the null label of
// classifier-free guidance), and fractions and NaN (zero rows).
func testOneHot(e *env) {
	for ci, sh := range [][2]int{{1, 1}, {3, 3}, {17, 10}, {256, 11}, {5, 1}} {
		rows, classes := sh[0], sh[1]
		labels := make([]float32, rows)
		for r := range labels {
			labels[r] = float32(e.rng.IntN(classes+4) - 2)
		}
		labels[0] = float32(classes) // null
		if rows > 1 {
			labels[1] = 0
		}
		if rows > 4 {
			// not a class index exactly: zero rows
			labels[2], labels[3], labels[4] = 0.5, float32(classes)-0.5, float32(math.NaN())
		}
		pl := e.viewOf(labels, ci%2, 1)
		po := e.viewOf(filled(rows*classes, sentinel), 1+ci%3, 2)
		e.be.OneHot(rows, classes, pl.view, po.view)
		want := make([]float32, rows*classes)
		for r, l := range labels {
			if c := int(l); l >= 0 && c < classes && float32(c) == l {
				want[r*classes+c] = 1
			}
		}
		name := fmt.Sprintf("OneHot(rows=%d, classes=%d, labels=%v)", rows, classes, labels[:min(rows, 8)])
		checkBits(e.t, name, e.download(po.view), want, nil)
		e.checkOutside(name, po)
		checkBits(e.t, name+": labels", e.download(pl.parent), pl.host, nil)
	}
}

// MSELoss: grad = 2 scale (pred - target) elementwise and loss = scale
// sum (pred - target)^2, grad aliasing pred or not, some elements with
// pred = target exactly, loss written into a one-element view.
func testMSELoss(e *env) {
	sizes := []int{1, 3, 17, 255, 257, 1000, 31 * 257, 4097 * 3}
	scales := []float32{1, 0.5, 1.0 / 1000, 1.0 / 4097}
	for ci, n := range sizes {
		scale := scales[ci%len(scales)]
		alias := ci%2 == 1
		pred := normals(e.rng, n, 1)
		target := normals(e.rng, n, 1)
		for i := 0; i < n; i += 7 {
			target[i] = pred[i]
		}
		pp := e.viewOf(pred, ci%4, 1)
		pt := e.viewOf(target, 1, ci%3)
		pl := e.viewOf([]float32{sentinel}, 2, 2)
		var pg padded
		grad := pp.view
		if !alias {
			pg = e.viewOf(filled(n, sentinel), 3, 1)
			grad = pg.view
		}
		e.be.MSELoss(pp.view, pt.view, scale, grad, pl.view)

		wantG := make([]float64, n)
		tolG := make([]float64, n)
		sum := 0.0
		for i := range pred {
			d := float64(pred[i]) - float64(target[i])
			wantG[i] = 2 * float64(scale) * d
			// a rounded difference and a rounded product
			tolG[i] = rtolElem * math.Abs(wantG[i])
			sum += d * d
		}
		wantL := float64(scale) * sum
		name := fmt.Sprintf("MSELoss(n=%d, scale=%g, grad aliases pred=%v)", n, scale, alias)
		if alias {
			checkTol(e.t, name+": grad", e.download(pp.view), wantG, tolG, 0)
			e.checkOutside(name+": grad", pp)
		} else {
			checkTol(e.t, name+": grad", e.download(pg.view), wantG, tolG, 0)
			e.checkOutside(name+": grad", pg)
			checkBits(e.t, name+": pred", e.download(pp.view), pred, nil)
		}
		// a sum of positive terms: 1e-4 relative
		checkScalar(e.t, name+": loss", e.download(pl.view)[0], wantL, rtolRed*wantL+tiny)
		e.checkOutside(name+": loss", pl)

		// MSELossAccumulate: the same gradient, the loss added to a
		// running sum (one more float32 rounding of the sum).
		pp = e.viewOf(pred, 1, ci%2)
		pg = e.viewOf(filled(n, sentinel), 2, 1)
		run := float32(ci) - 2.5
		ps := e.viewOf([]float32{run}, 1, 3)
		e.be.MSELossAccumulate(pp.view, pt.view, scale, pg.view, ps.view)
		name = fmt.Sprintf("MSELossAccumulate(n=%d, scale=%g)", n, scale)
		checkTol(e.t, name+": grad", e.download(pg.view), wantG, tolG, 0)
		e.checkOutside(name+": grad", pg)
		wantS := float64(run) + wantL
		checkScalar(e.t, name+": lossSum", e.download(ps.view)[0], wantS, rtolRed*wantL+rtolElem*(math.Abs(wantS)+math.Abs(float64(run)))+tiny)
		e.checkOutside(name+": lossSum", ps)
	}
}

// benchDense times the dense layers at the MLP's and the U-Net's sizes.
func benchDense(b *testing.B, newBackend func(b *testing.B) gpu.Backend) {
	b.Run("Linear", func(b *testing.B) { benchLinear(b, newBackend) })
	b.Run("BiasActBackward", func(b *testing.B) {
		const rows, cols = 4096, 256
		bench(b, fmt.Sprintf("rows=%d,cols=%d,act=silu", rows, cols), newBackend, func(w *workload) (float64, float64, func()) {
			dy, pre, dp, db := w.normals(rows*cols), w.normals(rows*cols), w.alloc(rows*cols), w.alloc(cols)
			return 12 * rows * cols, 0, func() { w.be.BiasActBackward(gpu.ActSiLU, rows, cols, dy, pre, dp, db) }
		})
	})
	b.Run("Activate", func(b *testing.B) {
		// SiLU over the U-Net's 64 x 28 x 28 maps at batch 128
		const n = 128 * 64 * 784
		bench(b, fmt.Sprintf("act=silu,n=%d", n), newBackend, func(w *workload) (float64, float64, func()) {
			x, y := w.normals(n), w.alloc(n)
			return 8 * float64(n), 0, func() { w.be.Activate(gpu.ActSiLU, x, y) }
		})
	})
	b.Run("EmbedInput", func(b *testing.B) {
		const rows, d = 4096, 2
		emb := gpu.TimeEmbedding{Freqs: 16, Scale: 1000, MaxPeriod: 10000}
		bench(b, fmt.Sprintf("rows=%d,d=%d,freqs=%d", rows, d, emb.Freqs), newBackend, func(w *workload) (float64, float64, func()) {
			x, t, out := w.normals(rows*d), w.normals(rows), w.alloc(rows*(d+emb.Width()))
			return 4 * float64(rows*d+rows+rows*(d+emb.Width())), 0, func() { w.be.EmbedInput(rows, d, x, t, emb, out) }
		})
	})
	b.Run("MSELoss", func(b *testing.B) {
		for _, sh := range [][2]int{{4096, 2}, {4096, 784}} {
			n := sh[0] * sh[1]
			bench(b, fmt.Sprintf("rows=%d,d=%d", sh[0], sh[1]), newBackend, func(w *workload) (float64, float64, func()) {
				p, t, g, l := w.normals(n), w.normals(n), w.alloc(n), w.alloc(1)
				return 12 * float64(n), 0, func() { w.be.MSELoss(p, t, 1/float32(sh[0]), g, l) }
			})
		}
	})
}

// Linear at the MLP's shapes: the first layer (2-D data plus a 32-column
// time embedding) and a hidden layer.
func benchLinear(b *testing.B, newBackend func(b *testing.B) gpu.Backend) {
	for _, sh := range [][3]int{{4096, 34, 256}, {4096, 256, 256}, {256, 512, 512}} {
		rows, in, out := sh[0], sh[1], sh[2]
		bench(b, fmt.Sprintf("rows=%d,in=%d,out=%d,act=silu", rows, in, out), newBackend, func(w *workload) (float64, float64, func()) {
			x, wt, bias, pre, y := w.normals(rows*in), w.normals(out*in), w.normals(out), w.alloc(rows*out), w.alloc(rows*out)
			bytes := 4 * float64(rows*in+out*in+out+2*rows*out)
			return bytes, 2 * float64(rows) * float64(in) * float64(out), func() {
				w.be.Linear(rows, in, out, x, in, wt, bias, gpu.ActSiLU, pre, y)
			}
		})
	}
}
