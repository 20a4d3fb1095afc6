package gpu

import "math"

// The CPU backend's Norm ops: one task unit per (image, group), its sums
// in float64 on one thread in a fixed order.

type normState struct {
	task groupNormTask
	part []float64 // GroupNormBackward: per (image, channel) sums of dy, dy xhat
}

// groupNormTask runs groups (image b, group g) u = b Groups + g in [lo, hi).
type groupNormTask struct {
	s                             GroupNormShape
	x, gamma, beta, y, mean, rstd []float32
	dy, dx                        []float32
	part                          []float64
	backward                      bool
}

func (t *groupNormTask) run(lo, hi int) {
	if t.backward {
		t.runBackward(lo, hi)
		return
	}
	s := t.s
	cpg := s.C / s.Groups
	n := cpg * s.HW
	for u := lo; u < hi; u++ {
		c0 := u % s.Groups * cpg
		off := u * n // (b C + g cpg) HW
		x := t.x[off : off+n]
		sum, sq := sumSq64(x)
		mean := sum / float64(n)
		// E x^2 - mean^2 in float64 loses nothing float32 data carries
		// unless |mean| / std exceeds about 1e4.
		vr := max(0, sq/float64(n)-mean*mean)
		m32 := float32(mean)
		r32 := float32(1 / math.Sqrt(vr+float64(s.Eps)))
		t.mean[u], t.rstd[u] = m32, r32
		for k := 0; k < cpg; k++ {
			a, b := r32*t.gamma[c0+k], t.beta[c0+k]
			xs := x[k*s.HW : (k+1)*s.HW]
			ys := t.y[off+k*s.HW:][:len(xs)]
			for i, v := range xs {
				ys[i] = (v-m32)*a + b
			}
		}
	}
}

// runBackward: with xhat = (x - mean) rstd and g = gamma[c],
// dx = rstd (g dy - mean(g dy) - xhat mean(g dy xhat)) over the group, and
// the per-(image, channel) sums of dy and dy xhat into part.
func (t *groupNormTask) runBackward(lo, hi int) {
	s := t.s
	cpg := s.C / s.Groups
	n := cpg * s.HW
	inv := 1 / float64(n)
	for u := lo; u < hi; u++ {
		c0 := u % s.Groups * cpg
		off := u * n
		m, r := t.mean[u], t.rstd[u]
		var s1, s2 float64 // sum g dy, sum g dy xhat
		for k := 0; k < cpg; k++ {
			g := float64(t.gamma[c0+k])
			sd, sdx := sumCentered64(t.dy[off+k*s.HW:][:s.HW], t.x[off+k*s.HW:][:s.HW], m, r)
			t.part[2*(u*cpg+k)] = sd
			t.part[2*(u*cpg+k)+1] = sdx
			s1 += g * sd
			s2 += g * sdx
		}
		m1, m2 := float32(s1*inv), float32(s2*inv)
		for k := 0; k < cpg; k++ {
			g := t.gamma[c0+k]
			xs := t.x[off+k*s.HW:][:s.HW]
			dys := t.dy[off+k*s.HW:][:len(xs)]
			dxs := t.dx[off+k*s.HW:][:len(xs)]
			for i, v := range xs {
				xh := (v - m) * r
				dxs[i] = r * (g*dys[i] - m1 - xh*m2)
			}
		}
	}
}

// sumSq64 is sum x and sum x^2.
func sumSq64(x []float32) (sum, sq float64) {
	var s0, s1, s2, s3, q0, q1, q2, q3 float64
	i := 0
	for ; i+4 <= len(x); i += 4 {
		v := x[i : i+4 : i+4]
		a, b, c, d := float64(v[0]), float64(v[1]), float64(v[2]), float64(v[3])
		s0 += a
		s1 += b
		s2 += c
		s3 += d
		q0 += a * a
		q1 += b * b
		q2 += c * c
		q3 += d * d
	}
	for ; i < len(x); i++ {
		a := float64(x[i])
		s0 += a
		q0 += a * a
	}
	return (s0 + s1) + (s2 + s3), (q0 + q1) + (q2 + q3)
}

// sumCentered64 is sum dy and sum dy xhat with xhat = (x - m) r in
// float32.
func sumCentered64(dy, x []float32, m, r float32) (sd, sdx float64) {
	var s0, s1, s2, s3, q0, q1, q2, q3 float64
	x = x[:len(dy)]
	i := 0
	for ; i+4 <= len(dy); i += 4 {
		d, v := dy[i:i+4:i+4], x[i:i+4:i+4]
		a, b, c, e := float64(d[0]), float64(d[1]), float64(d[2]), float64(d[3])
		s0 += a
		s1 += b
		s2 += c
		s3 += e
		q0 += a * float64((v[0]-m)*r)
		q1 += b * float64((v[1]-m)*r)
		q2 += c * float64((v[2]-m)*r)
		q3 += e * float64((v[3]-m)*r)
	}
	for ; i < len(dy); i++ {
		a := float64(dy[i])
		s0 += a
		q0 += a * float64((x[i]-m)*r)
	}
	return (s0 + s1) + (s2 + s3), (q0 + q1) + (q2 + q3)
}

func (c *CPU) GroupNorm(s GroupNormShape, x, gamma, beta, y, mean, rstd Buffer) {
	checkGroupNorm(s, x, gamma, beta, y, mean, rstd)
	t := &c.norm.task
	*t = groupNormTask{s: s, x: host(x), gamma: host(gamma), beta: host(beta), y: host(y), mean: host(mean), rstd: host(rstd)}
	c.pool.do(t, s.Batch*s.Groups, 8*s.C/s.Groups*s.HW)
}

func (c *CPU) GroupNormBackward(s GroupNormShape, dy, x, gamma, mean, rstd, dx, dgamma, dbeta Buffer) {
	checkGroupNormBackward(s, dy, x, gamma, mean, rstd, dx, dgamma, dbeta)
	t := &c.norm.task
	if need := 2 * s.Batch * s.C; cap(c.norm.part) < need {
		c.norm.part = make([]float64, need)
	}
	*t = groupNormTask{s: s, x: host(x), gamma: host(gamma), mean: host(mean), rstd: host(rstd),
		dy: host(dy), dx: host(dx), part: c.norm.part[:2*s.Batch*s.C], backward: true}
	dg, db := host(dgamma), host(dbeta)
	c.pool.do(t, s.Batch*s.Groups, 12*s.C/s.Groups*s.HW)
	// the channel sums over the batch, in image order
	for ch := 0; ch < s.C; ch++ {
		var sd, sdx float64
		for b := 0; b < s.Batch; b++ {
			sd += t.part[2*(b*s.C+ch)]
			sdx += t.part[2*(b*s.C+ch)+1]
		}
		db[ch], dg[ch] = float32(sd), float32(sdx)
	}
}

// GroupNormAct and GroupNormActBackward are the sequences of ops they
// stand for (on host slices: no views allocated), which keeps the CPU's
// arithmetic what it was before the device fused them.

func (c *CPU) GroupNormAct(s GroupNormShape, act Act, x, xBias, gamma, beta, y, a, mean, rstd Buffer) {
	checkGroupNormAct(s, act, x, xBias, gamma, beta, y, a, mean, rstd)
	if xBias != nil {
		c.AddChannelBias(s.Batch, s.C, s.HW, x, xBias, x)
	}
	c.GroupNorm(s, x, gamma, beta, y, mean, rstd)
	n := s.Batch * s.C * s.HW
	if a == nil || n == 0 {
		return
	}
	t := &c.dense.act
	*t = activateTask{act: act, x: host(y)[:n], y: host(a)[:n]}
	c.pool.do(t, (n+activateBlock-1)/activateBlock, 10*activateBlock)
}

func (c *CPU) GroupNormActBackward(s GroupNormShape, act Act, dA, y, x, gamma, mean, rstd, add, dx, dgamma, dbeta, dxSum Buffer) {
	checkGroupNormActBackward(s, act, dA, y, x, gamma, mean, rstd, add, dx, dgamma, dbeta, dxSum)
	if dxSum != nil {
		defer c.ChannelSum(s.Batch, s.C, s.HW, dx, dxSum)
	}
	n := s.Batch * s.C * s.HW
	if act != ActNone && n > 0 {
		c.BiasActBackward(act, 1, n, dA, y, dA, nil)
	}
	// The gradient in place in dA, then into dx as Copy or Axpy(1, ., add)
	// would.
	c.GroupNormBackward(s, dA, x, gamma, mean, rstd, dA, dgamma, dbeta)
	g, d := host(dA)[:n], host(dx)[:n]
	if add == nil {
		copy(d, g)
		return
	}
	if ad := host(add)[:n]; n > 0 && &ad[0] != &d[0] {
		copy(d, ad)
	}
	c.ode.axpy = axpyTask{alpha: 1, x: g, y: d}
	c.pool.do(&c.ode.axpy, n, 2)
}
