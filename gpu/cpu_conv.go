package gpu

import "github.com/fmgpu/fmgpu/internal/sgemm"

// The CPU backend's Conv ops. The 3x3 convolutions with padding 1 and
// stride 1 or 2 (all of the U-Net's but the 1x1 ones), and the forward
// and data gradient of 1x1 ones, run on internal/sgemm's direct kernels
// where it has them (the AVX-512 set; at stride 1, from 16 channels and
// 13 positions wide, as Winograd convolutions F(2x2, 3x3)); the others go
// through im2col and one matrix product:
//
// For a group of nb images, col is the (InC K K) x N matrix whose row
// r = (c K + u) K + v holds, for every output position (image, i, j),
// the input x[c, i Stride + u - Pad, j Stride + v - Pad] (0 outside the
// image). Then
//
//	forward:         Y    (OutC x N)   = W (OutC x CKK) col
//	backward filter: dW^T (CKK x OutC) += col dY^T
//	backward data:   col  (CKK x N)    = W^T dY, added back into dx (col2im)
//
// Each image owns npos consecutive columns of col, its output positions
// row by row with row stride ldo. In the compact layout ldo = OutW: with
// nb = 1 the products then read and write the NCHW images in place.
//
// With Pad < K, im2col reads padded planes: x copied into rows Wp = W +
// Pad wide with Pad zero rows above and below and Pad zero columns before
// each row (they double as the previous row's right padding), so that no
// tap needs a bounds test. At stride 1, output position (i, j) reads the
// plane at (i + u) Wp + j + v, and the padded layout ldo = Wp makes a row
// of col one contiguous copy of OutH Wp floats per image (instead of OutH
// short row copies and their zero fills, which cost more than the product
// itself at 32 channels). The price is Wp - OutW junk columns per output
// row, 4% of the product at 28 x 28, dropped when Y is copied into NCHW
// (and zeroed in the dY the filter gradient reads). Backward data at
// stride 1 is the forward convolution of dY with the flipped, transposed
// filter and Pad' = K - 1 - Pad (no col2im), except for few input
// channels (the product's rows); otherwise it goes through col2im.
//
// Small images are grouped (nb > 1) so that the product has about
// convTargetN columns. A 1 x 1, stride-1, unpadded convolution needs no
// im2col: col is x itself. Each group costs one hand-off to the pool (its
// im2col, together with the previous group's scatter into NCHW or col2im)
// and one product. Every output element is computed by one thread in a
// fixed order, so the results do not depend on the thread count.
//
// Measured speeds of these convolutions: docs/performance.md.

const (
	// convTargetN: images are grouped until the product has about this
	// many columns. Every group costs two hand-offs to the workers (its
	// im2col stage, its product), each waking them and waiting for the
	// slowest; larger groups amortize them over more work, at the price
	// of an im2col matrix that no longer stays in L2 (a few percent on one
	// core). The measurements behind the value: docs/performance.md.
	convTargetN = 2048
	// convMaxCol bounds the im2col matrix of a group (floats, 32 MiB).
	convMaxCol = 8 << 20
	// convMinFlipC: backward data at stride 1 with fewer input channels
	// (the product's rows) goes through col2im, whose product has InC K K.
	convMinFlipC = 8
)

// convState holds the convolutions' tasks and scratch buffers.
type convState struct {
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
	dwT       transposeTask // dW^T to dW
	direct    sgemm.ConvState
	pointwise pointwiseTask
	part      []float32 // 1x1 filter gradient: dW^T per image group
}

// pointwiseTask runs a 1 x 1 convolution (stride 1, no padding: the
// products read the NCHW images in place) image by image over the pool,
// each image's product on one thread: a product per image is too small
// to split (C OutC HW under sgemm's threshold for most of the U-Net's),
// and the images run side by side instead of one after the other. The
// filter gradient goes by fixed groups of pointwiseGroup images (each
// group's dW^T accumulated in image order, then the groups added in
// order), so that its result does not depend on the thread count.
type pointwiseTask struct {
	op         int // pointwiseForward, pointwiseData, pointwiseFilter
	s          ConvShape
	hw         int
	x, w, b, y []float32 // forward: y = w x + b; data: x = w^T y; filter: part += x y^T
	part       []float32
}

const (
	pointwiseForward = iota
	pointwiseData
	pointwiseFilter
)

const pointwiseGroup = 8

func (t *pointwiseTask) run(lo, hi int) {
	s, hw := t.s, t.hw
	for u := lo; u < hi; u++ {
		switch t.op {
		case pointwiseForward:
			y := t.y[u*s.OutC*hw : (u+1)*s.OutC*hw]
			beta := float32(0)
			if t.b != nil {
				for o := 0; o < s.OutC; o++ {
					row, b := y[o*hw:(o+1)*hw], t.b[o]
					for i := range row {
						row[i] = b
					}
				}
				beta = 1
			}
			sgemm.Gemm(false, false, s.OutC, hw, s.InC, 1, t.w, s.InC, t.x[u*s.InC*hw:], hw, beta, y, hw)
		case pointwiseData:
			sgemm.Gemm(true, false, s.InC, hw, s.OutC, 1, t.w, s.InC, t.y[u*s.OutC*hw:], hw, 0, t.x[u*s.InC*hw:], hw)
		default:
			part := t.part[u*s.InC*s.OutC : (u+1)*s.InC*s.OutC]
			for b := u * pointwiseGroup; b < min(s.Batch, (u+1)*pointwiseGroup); b++ {
				beta := float32(1)
				if b == u*pointwiseGroup {
					beta = 0
				}
				sgemm.Gemm(false, true, s.InC, s.OutC, hw, 1, t.x[b*s.InC*hw:], hw, t.y[b*s.OutC*hw:], hw, beta, part, s.OutC)
			}
		}
	}
}

// pointwise reports whether s is a 1 x 1 convolution the products read in
// place (stride 1, no padding).
func pointwise(s ConvShape) bool { return s.K == 1 && s.Stride == 1 && s.Pad == 0 }

// directConv returns s as sgemm's direct convolution, ok when it runs one.
func directConv(s ConvShape) (d sgemm.Conv3x3, ok bool) {
	d = sgemm.Conv3x3{Batch: s.Batch, C: s.InC, H: s.H, W: s.W, OutC: s.OutC, Stride: s.Stride}
	return d, s.K == 3 && s.Pad == 1 && sgemm.DirectConv(d)
}

// directPointwise returns a pointwise s as sgemm's direct convolution, ok
// when it runs one (the shapes where it computes what the products per
// image would, bit for bit: sgemm.DirectPointwise).
func directPointwise(s ConvShape) (d sgemm.Conv1x1, ok bool) {
	d = sgemm.Conv1x1{Batch: s.Batch, C: s.InC, H: s.H, W: s.W, OutC: s.OutC}
	return d, pointwise(s) && sgemm.DirectPointwise(d)
}

// convPlan is a convolution's derived sizes.
type convPlan struct {
	s       ConvShape
	oh, ow  int
	hw, ohw int
	kk, ckk int
	direct  bool // 1 x 1, stride 1, no padding: col is x
	padded  bool // Pad < K: im2col reads padded planes
	wp      int  // padded row stride W + Pad
	plane   int  // padded plane length
	ldo     int  // output row stride in col's columns: OutW or Wp
	npos    int  // col columns per image: OutH ldo
	nb      int  // images per group
	ld      int  // col's row stride nb npos
	wLen    int  // OutC InC K K
}

// newConvPlan plans s (checked by the op's check); compact keeps the
// compact output layout (col2im reads it) at stride 1.
func newConvPlan(s ConvShape, compact bool) convPlan {
	p := convPlan{s: s, oh: s.OutH(), ow: s.OutW(), hw: s.H * s.W, kk: s.K * s.K}
	p.ohw = p.oh * p.ow
	p.ckk = s.InC * p.kk
	p.direct = s.K == 1 && s.Stride == 1 && s.Pad == 0
	p.padded = !p.direct && s.Pad < s.K
	p.ldo = p.ow
	if p.padded {
		p.wp = s.W + s.Pad
		// rows -Pad..H+Pad-1, and the last read runs K-1 past them
		p.plane = (s.H+2*s.Pad)*p.wp + s.K - 1
		if s.Stride == 1 && !compact {
			p.ldo = p.wp
		}
	}
	p.npos = p.oh * p.ldo
	p.wLen = s.OutC * p.ckk
	p.nb = 1
	if !p.direct {
		p.nb = max(1, min(s.Batch, (convTargetN+p.npos-1)/p.npos, convMaxCol/max(1, p.ckk*p.npos)))
	}
	p.ld = p.nb * p.npos
	return p
}

// inPlace reports whether a group's output columns are the NCHW image
// itself (one image, compact layout).
func (p *convPlan) inPlace() bool { return p.direct || (p.nb == 1 && p.ldo == p.ow) }

// colRange is the range [j0, j1) of output columns j whose input column
// j Stride + v - Pad lies inside [0, w).
func colRange(v, stride, pad, w, ow int) (j0, j1 int) {
	if d := pad - v; d > 0 {
		j0 = (d + stride - 1) / stride
	}
	last := w - 1 + pad - v // j stride <= last
	if last < 0 {
		return 0, 0
	}
	j1 = min(ow, last/stride+1)
	return min(j0, j1), j1
}

// buildTask writes col for the units (img, c) in [lo, hi) of the group
// of images b0..: the K K rows (c, u, v) of image img's columns, through
// its padded plane of channel c in the padded layout.
type buildTask struct {
	p      *convPlan
	x, col []float32
	xpad   []float32
	b0     int
}

func (t *buildTask) run(lo, hi int) {
	p := t.p
	s := p.s
	K, S, P, W, H := s.K, s.Stride, s.Pad, s.W, s.H
	for unit := lo; unit < hi; unit++ {
		img, c := unit/s.InC, unit%s.InC
		src := t.x[((t.b0+img)*s.InC+c)*p.hw:][:p.hw]
		if p.padded {
			// P zero rows, then each row preceded by P zeros, then P zero
			// rows and the tail.
			pad := t.xpad[unit*p.plane:][:p.plane]
			clear(pad[:P*p.wp])
			for h := 0; h < H; h++ {
				row := pad[(P+h)*p.wp:][:p.wp]
				clear(row[:P])
				copy(row[P:], src[h*W:h*W+W])
			}
			clear(pad[(P+H)*p.wp:])
			for u := 0; u < K; u++ {
				for v := 0; v < K; v++ {
					from := pad[u*p.wp+v:]
					dst := t.col[((c*K+u)*K+v)*p.ld+img*p.npos:][:p.npos]
					if S == 1 {
						copy(dst, from[:p.npos])
						continue
					}
					for i := 0; i < p.oh; i++ {
						d, sr := dst[i*p.ow:i*p.ow+p.ow], from[i*S*p.wp:]
						for j := range d {
							d[j] = sr[j*S]
						}
					}
				}
			}
			continue
		}
		for u := 0; u < K; u++ {
			for v := 0; v < K; v++ {
				j0, j1 := colRange(v, S, P, W, p.ow)
				dst := t.col[((c*K+u)*K+v)*p.ld+img*p.npos:][:p.npos]
				for i := 0; i < p.oh; i++ {
					d := dst[i*p.ow : i*p.ow+p.ow]
					h := i*S + u - P
					if h < 0 || h >= H || j0 >= j1 {
						clear(d)
						continue
					}
					clear(d[:j0])
					clear(d[j1:])
					row := src[h*W : h*W+W]
					if S == 1 {
						copy(d[j0:j1], row[j0+v-P:])
						continue
					}
					for j := j0; j < j1; j++ {
						d[j] = row[j*S+v-P]
					}
				}
			}
		}
	}
}

// buildWork is the rough cost of one buildTask unit.
func (p *convPlan) buildWork() int { return p.plane + p.kk*p.npos }

// col2imTask overwrites the planes (img, c) in [lo, hi) of dx, img over
// the group b0..b0+nb, with the sums of the col entries (compact layout)
// that came from them: accumulated in a padded plane (no bounds to test)
// when the plan has them.
type col2imTask struct {
	p             *convPlan
	col, dx, xpad []float32
	b0            int
}

func (t *col2imTask) run(lo, hi int) {
	p := t.p
	s := p.s
	K, S, P, W, H := s.K, s.Stride, s.Pad, s.W, s.H
	for unit := lo; unit < hi; unit++ {
		img, c := unit/s.InC, unit%s.InC
		plane := t.dx[((t.b0+img)*s.InC+c)*p.hw:][:p.hw]
		if p.padded {
			acc := t.xpad[unit*p.plane:][:p.plane]
			clear(acc)
			for u := 0; u < K; u++ {
				for v := 0; v < K; v++ {
					src := t.col[((c*K+u)*K+v)*p.ld+img*p.npos:][:p.npos]
					for i := 0; i < p.oh; i++ {
						a := acc[(i*S+u)*p.wp+v:]
						for j, g := range src[i*p.ow : i*p.ow+p.ow] {
							a[j*S] += g
						}
					}
				}
			}
			for h := 0; h < H; h++ {
				copy(plane[h*W:h*W+W], acc[(P+h)*p.wp+P:])
			}
			continue
		}
		clear(plane)
		for u := 0; u < K; u++ {
			for v := 0; v < K; v++ {
				r := (c*K+u)*K + v
				j0, j1 := colRange(v, S, P, W, p.ow)
				if j0 >= j1 {
					continue
				}
				src := t.col[r*p.ld+img*p.npos:][:p.npos]
				for i := 0; i < p.oh; i++ {
					h := i*S + u - P
					if h < 0 || h >= H {
						continue
					}
					row := plane[h*W : h*W+W]
					sr := src[i*p.ow+j0 : i*p.ow+j1]
					if S == 1 {
						d := row[j0+v-P:][:len(sr)]
						for j, g := range sr {
							d[j] += g
						}
						continue
					}
					for j, g := range sr {
						row[(j0+j)*S+v-P] += g
					}
				}
			}
		}
	}
}

// convMoveTask moves rows (img, o) in [lo, hi) between the group layout
// (OutC x ld, image img at column img npos, output row i at i ldo) and
// NCHW: scatter writes y = grouped + bias[o] (bias may be nil), gather
// copies dy into the group layout with zeros in the junk columns.
type convMoveTask struct {
	p         *convPlan
	nchw, grp []float32
	bias      []float32
	b0        int
	scatter   bool
}

func (t *convMoveTask) run(lo, hi int) {
	p := t.p
	s := p.s
	ow := p.ow
	for unit := lo; unit < hi; unit++ {
		img, o := unit/s.OutC, unit%s.OutC
		n := t.nchw[((t.b0+img)*s.OutC+o)*p.ohw:][:p.ohw]
		g := t.grp[o*p.ld+img*p.npos:][:p.npos]
		for i := 0; i < p.oh; i++ {
			nr, gr := n[i*ow:i*ow+ow], g[i*p.ldo:i*p.ldo+p.ldo]
			switch {
			case !t.scatter:
				copy(gr, nr)
				clear(gr[ow:])
			case t.bias == nil:
				copy(nr, gr)
			default:
				b := t.bias[o]
				for j := range nr {
					nr[j] = gr[j] + b
				}
			}
		}
	}
}

// convBiasFillTask sets rows (img, o) in [lo, hi) of y to bias[o] (the
// product then adds into them).
type convBiasFillTask struct {
	p       *convPlan
	y, bias []float32
	b0      int
}

func (t *convBiasFillTask) run(lo, hi int) {
	p := t.p
	for unit := lo; unit < hi; unit++ {
		img, o := unit/p.s.OutC, unit%p.s.OutC
		row := t.y[((t.b0+img)*p.s.OutC+o)*p.ohw:][:p.ohw]
		b := t.bias[o]
		for j := range row {
			row[j] = b
		}
	}
}

// convBiasGradTask overwrites db[o], o in [lo, hi), with the float64 sum
// of dy over the batch and positions.
type convBiasGradTask struct {
	p      *convPlan
	dy, db []float32
}

func (t *convBiasGradTask) run(lo, hi int) {
	p := t.p
	for o := lo; o < hi; o++ {
		sum := 0.0
		for b := 0; b < p.s.Batch; b++ {
			sum += sum64(t.dy[(b*p.s.OutC+o)*p.ohw:][:p.ohw])
		}
		t.db[o] = float32(sum)
	}
}

// flipTask writes rows c in [lo, hi) of the backward-data filter: wt
// (InC x OutC K K) with wt[c, o, K-1-u, K-1-v] = w[o, c, u, v].
type flipTask struct {
	s     ConvShape
	w, wt []float32
}

func (t *flipTask) run(lo, hi int) {
	s := t.s
	K, kk := s.K, s.K*s.K
	for c := lo; c < hi; c++ {
		for o := 0; o < s.OutC; o++ {
			src := t.w[(o*s.InC+c)*kk:][:kk]
			dst := t.wt[(c*s.OutC+o)*kk:][:kk]
			for u := 0; u < K; u++ {
				for v := 0; v < K; v++ {
					dst[(K-1-u)*K+K-1-v] = src[u*K+v]
				}
			}
		}
	}
}

// stagesTask runs up to four independent tasks as one pool call (one
// hand-off to the workers instead of one per task): stage k has n_k units
// of rough cost w_k, and the call's index space is their total cost, so
// that an even split of it is an even split of the work.
type stagesTask struct {
	k     int
	t     [4]task
	n, w  [4]int
	total int
}

func (m *stagesTask) reset() { m.k, m.total = 0, 0 }

func (m *stagesTask) add(t task, n, w int) {
	if n <= 0 {
		return
	}
	w = max(1, w)
	m.t[m.k], m.n[m.k], m.w[m.k] = t, n, w
	m.k++
	m.total += n * w
}

// run runs the units whose first cost index lies in [lo, hi).
func (m *stagesTask) run(lo, hi int) {
	c0 := 0
	first := func(at, w, n int) int {
		if at <= 0 {
			return 0
		}
		return min(n, (at+w-1)/w)
	}
	for i := 0; i < m.k; i++ {
		n, w := m.n[i], m.w[i]
		if a, b := first(lo-c0, w, n), first(hi-c0, w, n); a < b {
			m.t[i].run(a, b)
		}
		c0 += n * w
	}
}

func (c *CPU) runStages() {
	st := &c.conv.stages
	if st.k > 0 {
		c.pool.do(st, st.total, 1)
	}
}

// addBuild adds to the stages the im2col of images b0..b0+nb and returns
// the product's B operand: col, or x itself for a direct plan.
func (c *CPU) addBuild(p *convPlan, x []float32, b0, nb int) (b []float32, ldb int) {
	s := p.s
	if p.direct {
		return x[b0*s.InC*p.hw:], p.hw
	}
	t := &c.conv.build
	*t = buildTask{p: p, x: x, col: scratch(&c.conv.col, p.ckk*p.ld), b0: b0}
	if p.padded {
		t.xpad = scratch(&c.conv.xpad, nb*s.InC*p.plane)
	}
	c.conv.stages.add(t, nb*s.InC, p.buildWork())
	return t.col, p.ld
}

// groups returns the number of image groups of a plan.
func (p *convPlan) groups() int { return (p.s.Batch + p.nb - 1) / p.nb }

// convForward runs y = conv(x, w) + bias for a plan. Each group costs one
// pool call (the previous group's output moved to NCHW, this group's
// im2col) and one product; first, when not nil, joins the first call.
func (c *CPU) convForward(p *convPlan, x, w, bias, y []float32, first task, firstN, firstW int) {
	s := p.s
	var grp []float32
	if !p.inPlace() {
		grp = scratch(&c.conv.tmp, s.OutC*p.ld)
	}
	st := &c.conv.stages
	ng := p.groups()
	for g := 0; g <= ng; g++ {
		st.reset()
		if g == 0 && first != nil {
			st.add(first, firstN, firstW)
		}
		if g > 0 && !p.inPlace() {
			b0 := (g - 1) * p.nb
			m := &c.conv.move
			*m = convMoveTask{p: p, nchw: y, grp: grp, bias: bias, b0: b0, scatter: true}
			st.add(m, min(p.nb, s.Batch-b0)*s.OutC, 2*p.ohw)
		}
		if g == ng {
			c.runStages()
			break
		}
		b0 := g * p.nb
		nb := min(p.nb, s.Batch-b0)
		src, ldb := c.addBuild(p, x, b0, nb)
		beta := float32(0)
		if p.inPlace() && bias != nil {
			f := &c.conv.biasFill
			*f = convBiasFillTask{p: p, y: y, bias: bias, b0: b0}
			st.add(f, s.OutC, p.ohw)
			beta = 1
		}
		c.runStages()
		if p.inPlace() {
			sgemm.Gemm(false, false, s.OutC, nb*p.npos, p.ckk, 1, w, p.ckk, src, ldb, beta, y[b0*s.OutC*p.ohw:], p.ohw)
		} else {
			sgemm.Gemm(false, false, s.OutC, nb*p.npos, p.ckk, 1, w, p.ckk, src, ldb, 0, grp, p.ld)
		}
	}
}

func (c *CPU) Conv2D(s ConvShape, x, w, bias, y Buffer) {
	checkConv2D(s, x, w, bias, y)
	if d, ok := directConv(s); ok {
		c.conv.direct.Forward(d, host(x), host(w), host(bias), host(y), c.pool.n)
		return
	}
	if d, ok := directPointwise(s); ok {
		c.conv.direct.ForwardPointwise(d, host(x), host(w), host(bias), host(y), c.pool.n)
		return
	}
	if pointwise(s) {
		t := &c.conv.pointwise
		*t = pointwiseTask{op: pointwiseForward, s: s, hw: s.H * s.W, x: host(x), w: host(w), b: host(bias), y: host(y)}
		c.pool.do(t, s.Batch, 2*s.InC*s.OutC*t.hw)
		return
	}
	c.conv.plan = newConvPlan(s, false)
	p := &c.conv.plan
	xd, wd, bd, yd := host(x), host(w), host(bias), host(y)
	c.convForward(p, xd, wd, bd, yd, nil, 0, 0)
}

func (c *CPU) Conv2DBackwardData(s ConvShape, dy, w, dx Buffer) {
	checkConv2DBackwardData(s, dy, w, dx)
	if d, ok := directConv(s); ok {
		c.conv.direct.BackwardData(d, host(dy), host(w), host(dx), c.pool.n)
		return
	}
	if d, ok := directPointwise(s); ok {
		c.conv.direct.BackwardDataPointwise(d, host(dy), host(w), host(dx), c.pool.n)
		return
	}
	c.conv.plan = newConvPlan(s, false)
	p := &c.conv.plan
	dyd, wd, dxd := host(dy), host(w), host(dx)
	if p.direct {
		// dx_b (InC x HW) = W^T dy_b
		t := &c.conv.pointwise
		*t = pointwiseTask{op: pointwiseData, s: s, hw: p.hw, x: dxd, w: wd, y: dyd}
		c.pool.do(t, s.Batch, 2*s.InC*s.OutC*t.hw)
		return
	}
	if s.Stride == 1 && s.Pad < s.K && s.InC >= convMinFlipC {
		// dx = conv(dy, flipped W^T) with Pad' = K - 1 - Pad: the same
		// output size H x W.
		f := &c.conv.flip
		*f = flipTask{s: s, w: wd, wt: scratch(&c.conv.wt, p.wLen)}
		c.conv.plan = newConvPlan(ConvShape{Batch: s.Batch, InC: s.OutC, H: p.oh, W: p.ow, OutC: s.InC, K: s.K, Stride: 1, Pad: s.K - 1 - s.Pad}, false)
		c.convForward(&c.conv.plan, dyd, f.wt, nil, dxd, f, s.InC, s.OutC*p.kk)
		return
	}
	// col (CKK x N) = W^T dY, then col2im; a group's col2im joins the
	// next group's gather of dY.
	c.conv.plan = newConvPlan(s, true)
	col := scratch(&c.conv.col, p.ckk*p.ld)
	var grp []float32
	if p.nb > 1 {
		grp = scratch(&c.conv.tmp, s.OutC*p.ld)
	}
	var xpad []float32
	if p.padded {
		xpad = scratch(&c.conv.xpad, p.nb*s.InC*p.plane)
	}
	st := &c.conv.stages
	ng := p.groups()
	for g := 0; g <= ng; g++ {
		st.reset()
		if g > 0 {
			b0 := (g - 1) * p.nb
			t := &c.conv.col2im
			*t = col2imTask{p: p, col: col, dx: dxd, xpad: xpad, b0: b0}
			st.add(t, min(p.nb, s.Batch-b0)*s.InC, 2*p.kk*p.hw)
		}
		if g == ng {
			c.runStages()
			break
		}
		b0 := g * p.nb
		nb := min(p.nb, s.Batch-b0)
		src, ldb := dyd[b0*s.OutC*p.ohw:], p.ohw
		if p.nb > 1 {
			m := &c.conv.move
			*m = convMoveTask{p: p, nchw: dyd, grp: grp, b0: b0}
			st.add(m, nb*s.OutC, p.ohw)
			src, ldb = grp, p.ld
		}
		c.runStages()
		sgemm.Gemm(true, false, p.ckk, nb*p.npos, s.OutC, 1, wd, p.ckk, src, ldb, 0, col, p.ld)
	}
}

func (c *CPU) Conv2DBackwardFilter(s ConvShape, x, dy, dw, dbias Buffer) {
	checkConv2DBackwardFilter(s, x, dy, dw, dbias)
	if d, ok := directConv(s); ok {
		c.conv.direct.BackwardFilter(d, host(x), host(dy), host(dw), host(dbias), c.pool.n)
		return
	}
	c.conv.plan = newConvPlan(s, false)
	p := &c.conv.plan
	xd, dyd, dwd, dbd := host(x), host(dy), host(dw), host(dbias)
	st := &c.conv.stages
	st.reset()
	if dbd != nil {
		t := &c.conv.biasGrad
		*t = convBiasGradTask{p: p, dy: dyd, db: dbd}
		st.add(t, s.OutC, s.Batch*p.ohw)
	}
	if s.Batch == 0 {
		c.runStages()
		clear(dwd[:p.wLen])
		return
	}
	if p.direct && sgemm.ImageKernels() {
		c.runStages()
		groups := (s.Batch + pointwiseGroup - 1) / pointwiseGroup
		t := &c.conv.pointwise
		*t = pointwiseTask{op: pointwiseFilter, s: s, hw: p.hw, x: xd, y: dyd, part: scratch(&c.conv.part, groups*p.wLen)}
		c.pool.do(t, groups, 2*pointwiseGroup*p.wLen*p.hw)
		dwt := t.part[:p.wLen]
		for g := 1; g < groups; g++ {
			sgemm.Axpy(1, t.part[g*p.wLen:(g+1)*p.wLen], dwt)
		}
		tr := &c.conv.dwT
		*tr = transposeTask{x: dwt, y: dwd, rows: p.ckk, cols: s.OutC, bRows: (p.ckk + transposeBlock - 1) / transposeBlock}
		c.pool.do(tr, tr.bRows, transposeBlock*s.OutC)
		return
	}
	// dW^T (CKK x OutC) accumulates col dY^T over the groups: col is read
	// in place by the product and only the small dY is packed.
	var grp []float32
	if !p.inPlace() {
		grp = scratch(&c.conv.tmp, s.OutC*p.ld)
	}
	dwt := scratch(&c.conv.dwt, p.wLen)
	for g := 0; g < p.groups(); g++ {
		if g > 0 {
			st.reset()
		}
		b0 := g * p.nb
		nb := min(p.nb, s.Batch-b0)
		a, lda := c.addBuild(p, xd, b0, nb)
		gy, ldg := dyd[b0*s.OutC*p.ohw:], p.ohw
		if !p.inPlace() {
			m := &c.conv.move
			*m = convMoveTask{p: p, nchw: dyd, grp: grp, b0: b0}
			st.add(m, nb*s.OutC, p.ohw)
			gy, ldg = grp, p.ld
		}
		c.runStages()
		beta := float32(1)
		if g == 0 {
			beta = 0
		}
		sgemm.Gemm(false, true, p.ckk, s.OutC, nb*p.npos, 1, a, lda, gy, ldg, beta, dwt, s.OutC)
	}
	t := &c.conv.dwT
	*t = transposeTask{x: dwt, y: dwd, rows: p.ckk, cols: s.OutC, bRows: (p.ckk + transposeBlock - 1) / transposeBlock}
	c.pool.do(t, t.bRows, transposeBlock*s.OutC)
}
