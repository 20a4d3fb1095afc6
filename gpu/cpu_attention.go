package gpu

import "math"

// The CPU backend's Attention ops: one row per task unit, its sums in
// float64.

type attentionState struct {
	softmax softmaxTask
}

// softmaxTask runs rows [lo, hi): Softmax (dy nil) or SoftmaxBackward.
type softmaxTask struct {
	cols     int
	x, y     []float32 // Softmax: x -> y; backward: y
	dy, dx   []float32
	backward bool
}

func (t *softmaxTask) run(lo, hi int) {
	n := t.cols
	for r := lo; r < hi; r++ {
		if t.backward {
			y, dy, dx := t.y[r*n:][:n], t.dy[r*n:][:n], t.dx[r*n:][:n]
			dot := 0.0
			for j, v := range y {
				dot += float64(v) * float64(dy[j])
			}
			d := float32(dot)
			for j, v := range y {
				dx[j] = v * (dy[j] - d)
			}
			continue
		}
		x, y := t.x[r*n:][:n], t.y[r*n:][:n]
		mx := x[0]
		for _, v := range x[1:] {
			mx = max(mx, v)
		}
		var s0, s1 float64
		j := 0
		for ; j+2 <= len(x); j += 2 {
			e0, e1 := expf(x[j]-mx), expf(x[j+1]-mx)
			y[j], y[j+1] = e0, e1
			s0 += float64(e0)
			s1 += float64(e1)
		}
		if j < len(x) {
			e := expf(x[j] - mx)
			y[j] = e
			s0 += float64(e)
		}
		inv := float32(1 / (s0 + s1))
		for j := range y {
			y[j] *= inv
		}
	}
}

func (c *CPU) Softmax(rows, cols int, x, y Buffer) {
	if checkSoftmax(rows, cols, x, y) == 0 {
		return
	}
	t := &c.attention.softmax
	*t = softmaxTask{cols: cols, x: host(x), y: host(y)}
	c.pool.do(t, rows, 30*cols)
}

func (c *CPU) SoftmaxBackward(rows, cols int, y, dy, dx Buffer) {
	if checkSoftmaxBackward(rows, cols, y, dy, dx) == 0 {
		return
	}
	t := &c.attention.softmax
	*t = softmaxTask{cols: cols, y: host(y), dy: host(dy), dx: host(dx), backward: true}
	c.pool.do(t, rows, 5*cols)
}

// expf is e^x in float32 to about 1 ulp (Cephes expf, the polynomial of
// sgemm's SiLU epilogue): x = n ln 2 + r with |r| <= ln 2 / 2, e^r =
// 1 + r + r^2 P(r), times 2^n by the exponent bits. Below -87.3 (where
// e^x leaves the normal range) it returns 0, above 88.7 +Inf; NaN stays
// NaN. About 3 times faster than math.Exp in float64.
func expf(x float32) float32 {
	const (
		log2e = 1.44269504088896341
		c1    = 0.693359375
		c2    = -2.12194440e-4
	)
	if !(x > -87.33654) { // also NaN
		if x != x {
			return x
		}
		return 0
	}
	if x > 88.72283 {
		return float32(math.Inf(1))
	}
	// round to nearest by the 1.5 2^23 shift (float32 arithmetic)
	n := (x*log2e + 12582912) - 12582912
	r := x - n*c1 - n*c2
	p := float32(1.9875691500e-4)
	p = p*r + 1.3981999507e-3
	p = p*r + 8.3334519073e-3
	p = p*r + 4.1665795894e-2
	p = p*r + 1.6666665459e-1
	p = p*r + 5.0000001201e-1
	e := p*r*r + r + 1
	// n in [-126, 128]: 2^n built in two halves so that n = 128 (x near
	// 88.7, e < 1) does not overflow the exponent field.
	ni := int32(n)
	h := ni / 2
	return e * math.Float32frombits(uint32(h+127)<<23) * math.Float32frombits(uint32(ni-h+127)<<23)
}
