package gpu

import "math"

// The CPU backend's ODE ops.

type odeState struct {
	axpy    axpyTask
	lincomb linCombTask
	errNorm errNormTask
	rowDot  rowDotTask
}

func abs32(v float32) float32 { return math.Float32frombits(math.Float32bits(v) &^ (1 << 31)) }

type axpyTask struct {
	alpha float32
	x, y  []float32
}

func (t *axpyTask) run(lo, hi int) {
	x, y, a := t.x[lo:hi], t.y[lo:hi], t.alpha
	for i, v := range x {
		y[i] += a * v
	}
}

func (c *CPU) Axpy(alpha float32, x, y Buffer) {
	n := checkAxpy(x, y)
	c.ode.axpy = axpyTask{alpha: alpha, x: host(x), y: host(y)}
	c.pool.do(&c.ode.axpy, n, 2)
}

// stages holds the non-zero stage terms of LinComb and ErrorNorm.
type stages struct {
	n    int
	coef [MaxStages]float32
	k    [MaxStages][]float32
}

// makeStages gathers the stage terms (checked by checkStages) with their
// coefficients scaled.
func makeStages(scale float32, coef []float32, ks []Buffer) stages {
	var s stages
	for i, k := range ks {
		if coef[i] != 0 {
			s.k[s.n] = host(k)
			s.coef[s.n] = scale * coef[i]
			s.n++
		}
	}
	return s
}

// combine writes out = base + sum of the stage terms over [lo, hi) in
// blocks that stay in L1, one stage at a time.
func (s *stages) combine(out, base []float32, lo, hi int) {
	copy(out[lo:hi], base[lo:hi])
	for j := 0; j < s.n; j++ {
		c, k := s.coef[j], s.k[j][lo:hi]
		o := out[lo:hi]
		for i, v := range k {
			o[i] += c * v
		}
	}
}

type linCombTask struct {
	st     stages
	dst, x []float32
}

func (t *linCombTask) run(lo, hi int) {
	const block = 1024
	for a := lo; a < hi; a += block {
		t.st.combine(t.dst, t.x, a, min(a+block, hi))
	}
}

func (c *CPU) LinComb(dst, x Buffer, h float32, coef []float32, ks []Buffer) {
	n := checkLinComb(dst, x, coef, ks)
	c.ode.lincomb = linCombTask{st: makeStages(h, coef, ks), dst: host(dst), x: host(x)}
	c.pool.do(&c.ode.lincomb, n, 2*len(ks)+1)
}

type errNormTask struct {
	st         stages
	x, xn      []float32
	rtol, atol float32
	partials   []float64
}

func (t *errNormTask) setPartials(p []float64) { t.partials = p }

func (t *errNormTask) run(lo, hi int) {
	var e [reduceChunk]float32
	var zero [reduceChunk]float32
	for ch := lo; ch < hi; ch++ {
		a, b := ch*reduceChunk, min((ch+1)*reduceChunk, len(t.x))
		// e = sum of the scaled stage terms (base zero)
		w := e[:b-a]
		copy(w, zero[:b-a])
		for j := 0; j < t.st.n; j++ {
			c, k := t.st.coef[j], t.st.k[j][a:b]
			for i, v := range k {
				w[i] += c * v
			}
		}
		sum := 0.0
		for i, ei := range w {
			sc := t.atol + t.rtol*max(abs32(t.x[a+i]), abs32(t.xn[a+i]))
			q := float64(ei) / float64(sc)
			sum += q * q
		}
		t.partials[ch] = sum
	}
}

func (c *CPU) ErrorNorm(x, xNew Buffer, h float32, coef []float32, ks []Buffer, rtol, atol float32, out Buffer) {
	n := checkErrorNorm(x, xNew, coef, ks, out)
	c.ode.errNorm = errNormTask{st: makeStages(h, coef, ks), x: host(x), xn: host(xNew), rtol: rtol, atol: atol}
	host(out)[0] = float32(c.reduce(&c.ode.errNorm, n, 3*len(ks)))
}

type rowDotTask struct {
	a, b, out   []float32
	cols        int
	alpha, beta float32
}

func (t *rowDotTask) run(lo, hi int) {
	cols := t.cols
	for r := lo; r < hi; r++ {
		var s float64
		a, b := t.a[r*cols:r*cols+cols], t.b[r*cols:r*cols+cols]
		for j, v := range a {
			s += float64(v) * float64(b[j])
		}
		v := t.alpha * float32(s)
		if t.beta != 0 {
			v += t.beta * t.out[r]
		}
		t.out[r] = v
	}
}

func (c *CPU) RowDot(rows, cols int, alpha float32, a, b Buffer, beta float32, out Buffer) {
	checkRowDot(rows, cols, a, b, out)
	c.ode.rowDot = rowDotTask{a: host(a), b: host(b), out: host(out), cols: cols, alpha: alpha, beta: beta}
	c.pool.do(&c.ode.rowDot, rows, 2*cols)
}

func (c *CPU) UnitColumn(rows, cols, j int, e Buffer) {
	n := checkUnitColumn(rows, cols, j, e)
	ed := host(e)
	clear(ed[:n])
	for r := 0; r < rows; r++ {
		ed[r*cols+j] = 1
	}
}
