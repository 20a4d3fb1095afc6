package gpu

import (
	"math"
	"sync"

	"github.com/fmgpu/fmgpu/internal/sgemm"
)

// The CPU backend's Norm ops: one task unit per (image, group), its sums
// in float64 on one thread in a fixed order: through internal/sgemm's
// vector kernels where the kernel set has them (sgemm.NormKernels), else
// the loops below.

type normState struct {
	task groupNormTask
	part []float64 // GroupNormBackward: per (image, channel) sums of dy, dy xhat
	// free holds the recomputation buffers (normRecompute floats) of
	// the task's ranges, which run concurrently.
	mu   sync.Mutex
	free [][]float32
}

// buffer returns a recomputation buffer.
func (n *normState) buffer() []float32 {
	n.mu.Lock()
	defer n.mu.Unlock()
	if k := len(n.free); k > 0 {
		b := n.free[k-1]
		n.free = n.free[:k-1]
		return b
	}
	return make([]float32, normRecompute)
}

func (n *normState) release(b []float32) {
	n.mu.Lock()
	n.free = append(n.free, b)
	n.mu.Unlock()
}

// groupNormTask runs groups (image b, group g) u = b Groups + g in [lo, hi).
type groupNormTask struct {
	s                             GroupNormShape
	x, gamma, beta, y, mean, rstd []float32
	dy, dx                        []float32
	part                          []float64
	backward                      bool
	vec                           bool // sgemm's kernels
	// GroupNormAct on the vector path: xBias added to x channel by channel
	// before the group's sums, a = act(y) after each channel's apply, both
	// while the group is in cache (nil: not fused).
	xBias, a []float32
	act      Act
	// GroupNormActBackward: dy (dA) is first taken through act at yAct
	// (act'(yAct) dy in place, as SiLUGradPart of the whole pass; yAct
	// nil: recomputed from x, mean, rstd, gamma and beta), and
	// each channel's input gradient goes to out plus add (when add is
	// not nil; dx is then dA, the gradient's workspace), its sums into
	// dxSum (when not nil), while the group is in cache.
	yAct, add, out, dxSum []float32
	norm                  *normState // the recomputation buffers
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
		if t.xBias != nil {
			bc := t.xBias[u/s.Groups*s.C+c0:][:cpg]
			for k, bk := range bc {
				xs := x[k*s.HW : (k+1)*s.HW]
				for i, v := range xs {
					xs[i] = v + bk
				}
			}
		}
		var sum, sq float64
		if t.vec {
			sum, sq = sgemm.NormSums(x)
		} else {
			sum, sq = sumSq64(x)
		}
		mean := sum / float64(n)
		// E x^2 - mean^2 in float64 loses nothing float32 data carries
		// unless |mean| / std exceeds about 1e4.
		vr := max(0, sq/float64(n)-mean*mean)
		m32 := float32(mean)
		r32 := float32(1 / math.Sqrt(vr+float64(s.Eps)))
		t.mean[u], t.rstd[u] = m32, r32
		for k := 0; k < cpg; k++ {
			xs := x[k*s.HW : (k+1)*s.HW]
			ys := t.y[off+k*s.HW:][:len(xs)]
			normApply(xs, ys, m32, r32, t.gamma[c0+k], t.beta[c0+k], t.vec)
			if t.vec && t.a != nil {
				// element by element as activateTask: the vector SiLU
				// does not depend on where a slice starts or ends (and
				// runs in place when y is a)
				as := t.a[off+k*s.HW:][:len(ys)]
				if t.act == ActSiLU {
					sgemm.SiLU(ys, as)
				} else if &as[0] != &ys[0] {
					copy(as, ys)
				}
			}
		}
	}
}

// normApply writes y = (x - m) r gamma + beta, the normalization of one
// channel: GroupNorm's values, which GroupNormActBackward recomputes.
func normApply(x, y []float32, m, r, gamma, beta float32, vec bool) {
	a := r * gamma
	if vec {
		sgemm.NormApply(x, y, m, a, beta)
		return
	}
	for i, v := range x {
		y[i] = (v-m)*a + beta
	}
}

// normRecompute is the chunk of a channel in which GroupNormActBackward
// recomputes y (on the stack).
const normRecompute = 512

// siluGradRecomputed is SiLUGradPart(dy, y, dy, at, total) over group
// u (dy and x its elements, at its offset), with y = normApply(x)
// recomputed chunk by chunk into y (normRecompute floats), each chunk
// over as many channels as it spans: the gradient's partial vectors come
// only at the group's ends, as with a stored y.
func (t *groupNormTask) siluGradRecomputed(y, dy, x []float32, u int, m, r float32, at, total int) {
	s := t.s
	c0 := u % s.Groups * (s.C / s.Groups)
	for i := 0; i < len(x); i += normRecompute {
		j := min(len(x), i+normRecompute)
		for e := i; e < j; {
			k := e / s.HW // the channel in the group
			f := min(j, (k+1)*s.HW)
			normApply(x[e:f], y[e-i:f-i], m, r, t.gamma[c0+k], t.beta[c0+k], t.vec)
			e = f
		}
		sgemm.SiLUGradPart(dy[i:j], y[:j-i], dy[i:j], at+i, total)
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
	total := len(t.dy)
	var y []float32 // the recomputation buffer, when needed
	for u := lo; u < hi; u++ {
		c0 := u % s.Groups * cpg
		off := u * n
		m, r := t.mean[u], t.rstd[u]
		switch {
		case t.act != ActSiLU:
		case t.yAct != nil:
			dy := t.dy[off : off+n]
			sgemm.SiLUGradPart(dy, t.yAct[off:off+n], dy, off, total)
		default:
			if y == nil {
				y = t.norm.buffer()
			}
			t.siluGradRecomputed(y, t.dy[off:off+n], t.x[off:off+n], u, m, r, off, total)
		}
		var s1, s2 float64 // sum g dy, sum g dy xhat
		for k := 0; k < cpg; k++ {
			g := float64(t.gamma[c0+k])
			var sd, sdx float64
			if t.vec {
				// sum dy xhat = r (sum dy x - m sum dy), the sums exact
				// up to float64 rounding
				var sdyx float64
				sd, sdyx = sgemm.NormDotSums(t.dy[off+k*s.HW:][:s.HW], t.x[off+k*s.HW:][:s.HW])
				sdx = float64(r) * (sdyx - float64(m)*sd)
			} else {
				sd, sdx = sumCentered64(t.dy[off+k*s.HW:][:s.HW], t.x[off+k*s.HW:][:s.HW], m, r)
			}
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
			if t.vec {
				// r (g dy - m1 - (x - m) r m2), as A dy + B (x - m) + C
				r64, m2r := float64(r), float64(r)*float64(m2)
				sgemm.NormBackApply(dys, xs, dxs, float32(r64*float64(g)), m, float32(-r64*m2r), float32(-r64*float64(m1)))
			} else {
				for i, v := range xs {
					xh := (v - m) * r
					dxs[i] = r * (g*dys[i] - m1 - xh*m2)
				}
			}
			if t.out != nil {
				t.finish(off+k*s.HW, u/s.Groups*s.C+c0+k)
			}
		}
	}
	if y != nil {
		t.norm.release(y)
	}
}

// finish moves the gradient of the channel at off (in dx) to out, plus
// add, as GroupNormActBackward's copy or Axpy would, and its sum to
// dxSum[row].
func (t *groupNormTask) finish(off, row int) {
	hw := t.s.HW
	d := t.out[off : off+hw]
	if t.add != nil {
		g, ad := t.dx[off:off+hw], t.add[off:off+hw]
		switch {
		case &d[0] == &g[0]:
			// g + add rounds as add + g
			sgemm.Axpy(1, ad, d)
		default:
			if &ad[0] != &d[0] {
				copy(d, ad)
			}
			sgemm.Axpy(1, g, d)
		}
	}
	if t.dxSum != nil {
		t.dxSum[row] = float32(sum64(d))
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
	*t = groupNormTask{s: s, x: host(x), gamma: host(gamma), beta: host(beta), y: host(y), mean: host(mean), rstd: host(rstd),
		vec: sgemm.NormKernels()}
	c.pool.do(t, s.Batch*s.Groups, 8*s.C/s.Groups*s.HW)
}

func (c *CPU) GroupNormBackward(s GroupNormShape, dy, x, gamma, mean, rstd, dx, dgamma, dbeta Buffer) {
	checkGroupNormBackward(s, dy, x, gamma, mean, rstd, dx, dgamma, dbeta)
	t := &c.norm.task
	*t = groupNormTask{s: s, x: host(x), gamma: host(gamma), mean: host(mean), rstd: host(rstd),
		dy: host(dy), dx: host(dx)}
	c.groupNormBackward(t, host(dgamma), host(dbeta), 12)
}

// groupNormBackward runs t (its backward fields set but part) over the
// groups, work per element, and writes the parameter gradients.
func (c *CPU) groupNormBackward(t *groupNormTask, dg, db []float32, work int) {
	s := t.s
	if need := 2 * s.Batch * s.C; cap(c.norm.part) < need {
		c.norm.part = make([]float64, need)
	}
	t.part, t.backward, t.vec = c.norm.part[:2*s.Batch*s.C], true, sgemm.NormKernels()
	if n := s.Batch * s.C * s.HW; n > 0 {
		t.dy, t.x, t.dx = t.dy[:n], t.x[:n], t.dx[:n]
	}
	c.pool.do(t, s.Batch*s.Groups, work*s.C/s.Groups*s.HW)
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

// GroupNormAct and GroupNormActBackward compute what the sequences of ops
// they stand for do (on host slices: no views allocated), bit for bit: the
// CPU's arithmetic is what it was before the device fused them.
// GroupNormAct with sgemm's norm kernels adds the bias and applies the
// activation inside the group norm's pass (elementwise, so in any order);
// otherwise, and GroupNormActBackward always, run the ops one after the
// other. GroupNormActBackward runs as one pass over the groups, each
// taken through the activation's gradient, the norm's and the add while
// in cache: the SiLU gradient as SiLUGradPart of the whole buffer (a
// group's elements on the vector or the tail path as the whole pass
// would put them), the add and the sums as Axpy and ChannelSum.

func (c *CPU) GroupNormAct(s GroupNormShape, act Act, x, xBias, gamma, beta, y, a, mean, rstd Buffer) {
	checkGroupNormAct(s, act, x, xBias, gamma, beta, y, a, mean, rstd)
	if y == nil {
		// the normalization into a, then the activation in place
		y = a
	}
	if sgemm.NormKernels() && s.Batch*s.C*s.HW > 0 {
		t := &c.norm.task
		*t = groupNormTask{s: s, x: host(x), gamma: host(gamma), beta: host(beta), y: host(y), mean: host(mean), rstd: host(rstd),
			vec: true, xBias: host(xBias), a: host(a), act: act}
		c.pool.do(t, s.Batch*s.Groups, 18*s.C/s.Groups*s.HW)
		return
	}
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

func (c *CPU) GroupNormActBackward(s GroupNormShape, act Act, dA, y, x, gamma, beta, mean, rstd, add, dx, dgamma, dbeta, dxSum Buffer) {
	checkGroupNormActBackward(s, act, dA, y, x, gamma, beta, mean, rstd, add, dx, dgamma, dbeta, dxSum)
	n := s.Batch * s.C * s.HW
	t := &c.norm.task
	*t = groupNormTask{s: s, x: host(x), gamma: host(gamma), mean: host(mean), rstd: host(rstd),
		dy: host(dA), act: act, out: host(dx)[:n], dxSum: host(dxSum), norm: &c.norm}
	if act != ActNone && y != nil {
		t.yAct = host(y)[:n]
	} else if act != ActNone {
		t.beta = host(beta)
	}
	// The norm's gradient goes straight to dx, or, with add, to dA first.
	t.dx = t.out
	if add != nil {
		t.add, t.dx = host(add)[:n], t.dy[:n]
	}
	c.groupNormBackward(t, host(dgamma), host(dbeta), 24)
}
