package gpu

import (
	"fmt"
	"math"

	"github.com/fmgpu/fmgpu/internal/sgemm"
)

// The CPU backend's image ops (ImageOps). Like the ops of cpu_ops.go each
// fills a task kept in the backend and hands it to the pool; reductions
// run each sum on one thread in a fixed order (float64), so results do not
// depend on the thread count. Convolutions are in cpu_image_conv.go.

// imageState holds the image ops' tasks and scratch buffers.
type imageState struct {
	plan      convPlan
	col, tmp  []float32  // im2col matrix; grouped product or dY
	xpad      []float32  // padded planes of a group (im2col, col2im)
	dwt       []float32  // dW^T accumulated by Conv2DBackwardFilter
	wt        []float32  // flipped filter of Conv2DBackwardData
	stages    stagesTask // the tasks of one pool call
	build     buildTask
	flip      flipTask
	col2im    col2imTask
	move      convMoveTask
	biasFill  convBiasFillTask
	biasGrad  convBiasGradTask
	transpose transposeTask

	gn       groupNormTask
	gnPart   []float64 // GroupNormBackward: per (image, channel) sums of dy, dy xhat
	act      activateTask
	chanBias chanBiasTask
	chanSum  chanSumTask
	up       upsampleTask
	copyCh   copyChannelsTask
	gemm     gemmBatchTask
	softmax  softmaxTask
	oneHot   oneHotTask
	labels   drawLabelsTask
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

// The float64 sums below run four interleaved accumulators (one add chain
// would wait on the adder's latency) combined in a fixed order: the result
// depends on the data only.

// sum64 is sum x.
func sum64(x []float32) float64 {
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= len(x); i += 4 {
		v := x[i : i+4 : i+4]
		s0 += float64(v[0])
		s1 += float64(v[1])
		s2 += float64(v[2])
		s3 += float64(v[3])
	}
	for ; i < len(x); i++ {
		s0 += float64(x[i])
	}
	return (s0 + s1) + (s2 + s3)
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

func (s GroupNormShape) mustValidate() {
	if err := s.Validate(); err != nil {
		panic(err.Error())
	}
}

func (c *CPU) GroupNorm(s GroupNormShape, x, gamma, beta, y, mean, rstd Buffer) {
	s.mustValidate()
	t := &c.img.gn
	*t = groupNormTask{s: s, x: host(x), gamma: host(gamma), beta: host(beta), y: host(y), mean: host(mean), rstd: host(rstd)}
	n := s.Batch * s.C * s.HW
	checkLen("group norm x", t.x, n)
	checkLen("group norm y", t.y, n)
	checkLen("group norm gamma", t.gamma, s.C)
	checkLen("group norm beta", t.beta, s.C)
	checkLen("group norm mean", t.mean, s.Batch*s.Groups)
	checkLen("group norm rstd", t.rstd, s.Batch*s.Groups)
	c.pool.do(t, s.Batch*s.Groups, 8*s.C/s.Groups*s.HW)
}

func (c *CPU) GroupNormBackward(s GroupNormShape, dy, x, gamma, mean, rstd, dx, dgamma, dbeta Buffer) {
	s.mustValidate()
	t := &c.img.gn
	if need := 2 * s.Batch * s.C; cap(c.img.gnPart) < need {
		c.img.gnPart = make([]float64, need)
	}
	*t = groupNormTask{s: s, x: host(x), gamma: host(gamma), mean: host(mean), rstd: host(rstd),
		dy: host(dy), dx: host(dx), part: c.img.gnPart[:2*s.Batch*s.C], backward: true}
	n := s.Batch * s.C * s.HW
	checkLen("group norm x", t.x, n)
	checkLen("group norm dy", t.dy, n)
	checkLen("group norm dx", t.dx, n)
	checkLen("group norm gamma", t.gamma, s.C)
	checkLen("group norm mean", t.mean, s.Batch*s.Groups)
	checkLen("group norm rstd", t.rstd, s.Batch*s.Groups)
	dg, db := host(dgamma), host(dbeta)
	checkLen("group norm dgamma", dg, s.C)
	checkLen("group norm dbeta", db, s.C)
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

// activateTask applies act to blocks [lo, hi) of activateBlock elements.
type activateTask struct {
	act  Act
	x, y []float32
}

const activateBlock = 4096

func (t *activateTask) run(lo, hi int) {
	for blk := lo; blk < hi; blk++ {
		a, b := blk*activateBlock, min((blk+1)*activateBlock, len(t.x))
		y := t.y[a:b]
		if &y[0] != &t.x[a] {
			copy(y, t.x[a:b])
		}
		if t.act == ActSiLU {
			// sgemm's vectorized epilogue on a 1 x n matrix: C = silu(1 C)
			// with k = 0.
			ep := sgemm.Epilogue{Act: sgemm.ActSiLU}
			sgemm.GemmEpilogue(false, false, 1, len(y), 0, 1, nil, 1, nil, len(y), 1, y, len(y), &ep)
		}
	}
}

func (c *CPU) Activate(act Act, x, y Buffer) {
	xd, yd := host(x), host(y)
	checkLen("activate y", yd, len(xd))
	if act != ActNone && act != ActSiLU {
		panic(fmt.Sprintf("gpu: unknown activation %d", act))
	}
	if len(xd) == 0 || (act == ActNone && &xd[0] == &yd[0]) {
		return
	}
	t := &c.img.act
	*t = activateTask{act: act, x: xd, y: yd}
	c.pool.do(t, (len(xd)+activateBlock-1)/activateBlock, 10*activateBlock)
}

// chanBiasTask adds bias[r] to rows r in [lo, hi) of hw elements.
type chanBiasTask struct {
	x, bias, y []float32
	hw         int
}

func (t *chanBiasTask) run(lo, hi int) {
	for r := lo; r < hi; r++ {
		b := t.bias[r]
		x, y := t.x[r*t.hw:][:t.hw], t.y[r*t.hw:][:t.hw]
		for i, v := range x {
			y[i] = v + b
		}
	}
}

func (c *CPU) AddChannelBias(batch, ch, hw int, x, bias, y Buffer) {
	t := &c.img.chanBias
	*t = chanBiasTask{x: host(x), bias: host(bias), y: host(y), hw: hw}
	checkLen("channel bias x", t.x, batch*ch*hw)
	checkLen("channel bias y", t.y, batch*ch*hw)
	checkLen("channel bias", t.bias, batch*ch)
	c.pool.do(t, batch*ch, hw)
}

// chanSumTask overwrites out[r], r in [lo, hi), with the float64 sum of
// row r of hw elements.
type chanSumTask struct {
	x, out []float32
	hw     int
}

func (t *chanSumTask) run(lo, hi int) {
	for r := lo; r < hi; r++ {
		t.out[r] = float32(sum64(t.x[r*t.hw:][:t.hw]))
	}
}

func (c *CPU) ChannelSum(batch, ch, hw int, x, out Buffer) {
	t := &c.img.chanSum
	*t = chanSumTask{x: host(x), out: host(out), hw: hw}
	checkLen("channel sum x", t.x, batch*ch*hw)
	checkLen("channel sum out", t.out, batch*ch)
	c.pool.do(t, batch*ch, hw)
}

// upsampleTask runs planes [lo, hi) of h x w (x) and 2h x 2w (y).
type upsampleTask struct {
	x, y     []float32 // forward: x to y; backward: y (dy) to x (dx)
	h, w     int
	backward bool
}

func (t *upsampleTask) run(lo, hi int) {
	h, w := t.h, t.w
	for pl := lo; pl < hi; pl++ {
		x := t.x[pl*h*w:][:h*w]
		y := t.y[pl*4*h*w:][:4*h*w]
		for i := 0; i < h; i++ {
			xr := x[i*w : i*w+w]
			y0 := y[2*i*2*w : 2*i*2*w+2*w]
			y1 := y[(2*i+1)*2*w : (2*i+1)*2*w+2*w]
			if t.backward {
				for j := range xr {
					xr[j] = (y0[2*j] + y0[2*j+1]) + (y1[2*j] + y1[2*j+1])
				}
				continue
			}
			for j, v := range xr {
				y0[2*j], y0[2*j+1] = v, v
			}
			copy(y1, y0)
		}
	}
}

func (c *CPU) Upsample2x(batch, ch, h, w int, x, y Buffer) {
	t := &c.img.up
	*t = upsampleTask{x: host(x), y: host(y), h: h, w: w}
	checkLen("upsample x", t.x, batch*ch*h*w)
	checkLen("upsample y", t.y, 4*batch*ch*h*w)
	c.pool.do(t, batch*ch, 5*h*w)
}

func (c *CPU) Upsample2xBackward(batch, ch, h, w int, dy, dx Buffer) {
	t := &c.img.up
	*t = upsampleTask{x: host(dx), y: host(dy), h: h, w: w, backward: true}
	checkLen("upsample dx", t.x, batch*ch*h*w)
	checkLen("upsample dy", t.y, 4*batch*ch*h*w)
	c.pool.do(t, batch*ch, 5*h*w)
}

// copyChannelsTask copies the channel block of images [lo, hi).
type copyChannelsTask struct {
	src, dst                          []float32
	hw, n, srcC, srcOff, dstC, dstOff int
}

func (t *copyChannelsTask) run(lo, hi int) {
	m := t.n * t.hw
	for b := lo; b < hi; b++ {
		copy(t.dst[(b*t.dstC+t.dstOff)*t.hw:][:m], t.src[(b*t.srcC+t.srcOff)*t.hw:][:m])
	}
}

func (c *CPU) CopyChannels(batch, hw, n int, src Buffer, srcC, srcOff int, dst Buffer, dstC, dstOff int) {
	if n < 0 || srcOff < 0 || dstOff < 0 || srcOff+n > srcC || dstOff+n > dstC {
		panic(fmt.Sprintf("gpu: CopyChannels of %d channels from %d of %d to %d of %d", n, srcOff, srcC, dstOff, dstC))
	}
	t := &c.img.copyCh
	*t = copyChannelsTask{src: host(src), dst: host(dst), hw: hw, n: n, srcC: srcC, srcOff: srcOff, dstC: dstC, dstOff: dstOff}
	checkLen("copy channels source", t.src, batch*srcC*hw)
	checkLen("copy channels destination", t.dst, batch*dstC*hw)
	if n == 0 || hw == 0 {
		return
	}
	c.pool.do(t, batch, 2*n*hw)
}

// gemmBatchTask runs products [lo, hi) of a GemmBatched call.
type gemmBatchTask struct {
	transA, transB            bool
	m, n, k                   int
	alpha, beta               float32
	a, b, c                   []float32
	lda, ldb, ldc             int
	strideA, strideB, strideC int
}

func (t *gemmBatchTask) run(lo, hi int) {
	for i := lo; i < hi; i++ {
		var a, b []float32 // not read when k = 0
		if t.k > 0 {
			a, b = t.a[i*t.strideA:], t.b[i*t.strideB:]
		}
		sgemm.Gemm(t.transA, t.transB, t.m, t.n, t.k, t.alpha, a, t.lda, b, t.ldb, t.beta, t.c[i*t.strideC:], t.ldc)
	}
}

func (c *CPU) GemmBatched(transA, transB bool, batch, m, n, k int, alpha float32, a Buffer, lda, strideA int, b Buffer, ldb, strideB int, beta float32, cb Buffer, ldc, strideC int) {
	if batch <= 0 {
		return
	}
	if strideA < 0 || strideB < 0 || strideC < 0 {
		panic("gpu: GemmBatched with a negative stride")
	}
	t := &c.img.gemm
	*t = gemmBatchTask{transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, beta: beta,
		a: host(a), b: host(b), c: host(cb), lda: lda, ldb: ldb, ldc: ldc, strideA: strideA, strideB: strideB, strideC: strideC}
	ar, ac := m, k
	if transA {
		ar, ac = k, m
	}
	br, bc := k, n
	if transB {
		br, bc = n, k
	}
	if l := matrixLen(ar, ac, lda); l > 0 {
		checkLen("batched gemm a", t.a, (batch-1)*strideA+l)
	}
	if l := matrixLen(br, bc, ldb); l > 0 {
		checkLen("batched gemm b", t.b, (batch-1)*strideB+l)
	}
	cl := matrixLen(m, n, ldc)
	if cl == 0 {
		return
	}
	checkLen("batched gemm c", t.c, (batch-1)*strideC+cl)
	// Products sgemm keeps on one thread run side by side over the pool;
	// larger ones (and C matrices that overlap) one after another, each
	// split by sgemm.
	if m*n*k < 1<<20 && strideC >= cl {
		c.pool.do(t, batch, 2*m*n*max(k, 1))
		return
	}
	t.run(0, batch)
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
	t := &c.img.softmax
	*t = softmaxTask{cols: cols, x: host(x), y: host(y)}
	checkLen("softmax x", t.x, rows*cols)
	checkLen("softmax y", t.y, rows*cols)
	if cols == 0 {
		return
	}
	c.pool.do(t, rows, 30*cols)
}

func (c *CPU) SoftmaxBackward(rows, cols int, y, dy, dx Buffer) {
	t := &c.img.softmax
	*t = softmaxTask{cols: cols, y: host(y), dy: host(dy), dx: host(dx), backward: true}
	checkLen("softmax y", t.y, rows*cols)
	checkLen("softmax dy", t.dy, rows*cols)
	checkLen("softmax dx", t.dx, rows*cols)
	c.pool.do(t, rows, 5*cols)
}

func (c *CPU) Transpose(batch, rows, cols int, x, y Buffer) {
	t := &c.img.transpose
	*t = transposeTask{x: host(x), y: host(y), rows: rows, cols: cols, bRows: (rows + transposeBlock - 1) / transposeBlock}
	checkLen("transpose x", t.x, batch*rows*cols)
	checkLen("transpose y", t.y, batch*rows*cols)
	if rows == 0 || cols == 0 {
		return
	}
	c.pool.do(t, batch*t.bRows, 2*transposeBlock*cols)
}

// oneHotTask writes rows [lo, hi).
type oneHotTask struct {
	labels, out []float32
	classes     int
}

func (t *oneHotTask) run(lo, hi int) {
	for r := lo; r < hi; r++ {
		row := t.out[r*t.classes:][:t.classes]
		clear(row)
		if l := t.labels[r]; l >= 0 && l < float32(t.classes) {
			row[int(l)] = 1
		}
	}
}

func (c *CPU) OneHot(rows, classes int, labels, out Buffer) {
	t := &c.img.oneHot
	*t = oneHotTask{labels: host(labels), out: host(out), classes: classes}
	checkLen("one-hot labels", t.labels, rows)
	checkLen("one-hot out", t.out, rows*classes)
	if classes <= 0 {
		return
	}
	c.pool.do(t, rows, 2*classes)
}

// drawLabelsTask writes rows [lo, hi) of DrawLabels.
type drawLabelsTask struct {
	dr            BatchDraw
	labels, y     []float32
	nData         uint32
	dropout, null float32
}

func (t *drawLabelsTask) run(lo, hi int) {
	dr := t.dr
	for r := lo; r < hi; r++ {
		blk, lane := uint32(r/4), r%4
		if Uniform01(PhiloxBlock(dr.Seed, PurposeLabelDrop, dr.Step, blk)[lane]) < t.dropout {
			t.y[r] = t.null
			continue
		}
		t.y[r] = t.labels[IndexBelow(PhiloxBlock(dr.Seed, PurposeIndex, dr.Step, blk)[lane], t.nData)]
	}
}

func (c *CPU) DrawLabels(dr BatchDraw, labels Buffer, nData, rows int, dropout, null float32, y Buffer) {
	if nData <= 0 || nData > math.MaxUint32 {
		panic(fmt.Sprintf("gpu: DrawLabels over %d data rows", nData))
	}
	t := &c.img.labels
	*t = drawLabelsTask{dr: dr, labels: host(labels), y: host(y), nData: uint32(nData), dropout: dropout, null: null}
	checkLen("labels", t.labels, nData)
	checkLen("drawn labels", t.y, rows)
	c.pool.do(t, rows, 200)
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
