package gpu

import "github.com/fmgpu/fmgpu/internal/sgemm"

// Convolutions on the CPU backend: im2col, one matrix product, col2im.
//
// For a group of nb images, col is the (InC K K) x (nb OutH OutW) matrix
// whose row r = (c K + u) K + v holds, for every output position (image,
// i, j), the input x[c, i Stride + u - Pad, j Stride + v - Pad] (0 outside
// the image). Then
//
//	forward:         Y   (OutC x N)    = W (OutC x CKK) col
//	backward data:   col (CKK x N)     = W^T dY, added back into dx (col2im)
//	backward filter: dW^T (CKK x OutC) += col dY^T
//
// with N = nb OutH OutW. One image's columns are its OutH OutW positions
// in NCHW order, so with nb = 1 the products read and write the images in
// place; small images are grouped (nb > 1) so that N is wide enough for
// the product's tiles, at the cost of a gather of dY or a scatter of Y. A
// 1 x 1, stride-1, unpadded convolution needs no im2col: col is x itself.
// Every output element is computed by one thread in a fixed order, so the
// results do not depend on the thread count.

const (
	// convTargetN: images are grouped until the product has about this
	// many columns (sgemm's column block is 512).
	convTargetN = 512
	// convMaxCol bounds the im2col matrix of a group (floats, 32 MiB).
	convMaxCol = 8 << 20
)

// convPlan is a convolution's derived sizes.
type convPlan struct {
	s        ConvShape
	oh, ow   int
	hw, ohw  int
	kk, ckk  int
	nb       int  // images per group
	direct   bool // 1 x 1, stride 1, no padding: col is x
	xLen     int  // Batch InC H W
	yLen     int  // Batch OutC OutH OutW
	wLen     int  // OutC InC K K
	colWidth int  // nb OutH OutW
}

func newConvPlan(s ConvShape) convPlan {
	if err := s.Validate(); err != nil {
		panic(err.Error())
	}
	p := convPlan{s: s, oh: s.OutH(), ow: s.OutW(), hw: s.H * s.W, kk: s.K * s.K}
	p.ohw = p.oh * p.ow
	p.ckk = s.InC * p.kk
	p.direct = s.K == 1 && s.Stride == 1 && s.Pad == 0
	p.xLen = s.Batch * s.InC * p.hw
	p.yLen = s.Batch * s.OutC * p.ohw
	p.wLen = s.OutC * p.ckk
	p.nb = 1
	if !p.direct {
		p.nb = max(1, min(s.Batch, (convTargetN+p.ohw-1)/p.ohw, convMaxCol/max(1, p.ckk*p.ohw)))
	}
	p.colWidth = p.nb * p.ohw
	return p
}

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

// im2colTask fills rows [lo, hi) of col for images b0..b0+nb.
type im2colTask struct {
	p      *convPlan
	x, col []float32
	b0, nb int
}

func (t *im2colTask) run(lo, hi int) {
	p := t.p
	s := p.s
	K, S, P, W, H := s.K, s.Stride, s.Pad, s.W, s.H
	ld := p.colWidth
	for r := lo; r < hi; r++ {
		c, u, v := r/p.kk, r/K%K, r%K
		j0, j1 := colRange(v, S, P, W, p.ow)
		for img := 0; img < t.nb; img++ {
			src := t.x[((t.b0+img)*s.InC+c)*p.hw:][:p.hw]
			dst := t.col[r*ld+img*p.ohw:][:p.ohw]
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

// col2imTask overwrites the planes (img, c) in [lo, hi) of dx, img over
// the group b0..b0+nb, with the sums of the col entries that came from
// them.
type col2imTask struct {
	p       *convPlan
	col, dx []float32
	b0      int
}

func (t *col2imTask) run(lo, hi int) {
	p := t.p
	s := p.s
	K, S, P, W, H := s.K, s.Stride, s.Pad, s.W, s.H
	ld := p.colWidth
	for unit := lo; unit < hi; unit++ {
		img, c := unit/s.InC, unit%s.InC
		plane := t.dx[((t.b0+img)*s.InC+c)*p.hw:][:p.hw]
		clear(plane)
		for u := 0; u < K; u++ {
			for v := 0; v < K; v++ {
				r := (c*K+u)*K + v
				j0, j1 := colRange(v, S, P, W, p.ow)
				if j0 >= j1 {
					continue
				}
				src := t.col[r*ld+img*p.ohw:][:p.ohw]
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
// (OutC x nb OutH OutW, row stride colWidth) and NCHW: scatter writes
// y = grouped + bias[o], gather copies dy into the grouped layout.
type convMoveTask struct {
	p          *convPlan
	nchw, grp  []float32
	bias       []float32
	b0         int
	scatter    bool
	fillBiasTo []float32 // with bias != nil and nb = 1: y rows set to bias
}

func (t *convMoveTask) run(lo, hi int) {
	p := t.p
	s := p.s
	for unit := lo; unit < hi; unit++ {
		img, o := unit/s.OutC, unit%s.OutC
		n := t.nchw[((t.b0+img)*s.OutC+o)*p.ohw:][:p.ohw]
		g := t.grp[o*p.colWidth+img*p.ohw:][:p.ohw]
		if !t.scatter {
			copy(g, n)
			continue
		}
		if t.bias == nil {
			copy(n, g)
			continue
		}
		b := t.bias[o]
		for j, v := range g {
			n[j] = v + b
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
			for _, v := range t.dy[(b*p.s.OutC+o)*p.ohw:][:p.ohw] {
				sum += float64(v)
			}
		}
		t.db[o] = float32(sum)
	}
}

// transposeTask writes y_i = x_i^T for the matrices (and the blocks of 32
// rows of each) in [lo, hi): unit = i bRows + row block.
type transposeTask struct {
	x, y       []float32
	rows, cols int
	bRows      int // row blocks per matrix
}

const transposeBlock = 32

func (t *transposeTask) run(lo, hi int) {
	rows, cols := t.rows, t.cols
	for unit := lo; unit < hi; unit++ {
		i, rb := unit/t.bRows, unit%t.bRows
		x := t.x[i*rows*cols:][:rows*cols]
		y := t.y[i*rows*cols:][:rows*cols]
		r0, r1 := rb*transposeBlock, min(rows, (rb+1)*transposeBlock)
		for c0 := 0; c0 < cols; c0 += transposeBlock {
			c1 := min(cols, c0+transposeBlock)
			for r := r0; r < r1; r++ {
				xr := x[r*cols+c0 : r*cols+c1]
				for j, v := range xr {
					y[(c0+j)*rows+r] = v
				}
			}
		}
	}
}

// convScratch returns the im2col matrix of a plan.
func (c *CPU) convCol(p *convPlan) []float32 {
	n := p.ckk * p.colWidth
	if cap(c.img.col) < n {
		c.img.col = make([]float32, n)
	}
	return c.img.col[:n]
}

// convTmp returns a scratch matrix of n floats besides col.
func (c *CPU) convTmp(n int) []float32 {
	if cap(c.img.tmp) < n {
		c.img.tmp = make([]float32, n)
	}
	return c.img.tmp[:n]
}

func (c *CPU) im2col(p *convPlan, x, col []float32, b0, nb int) {
	t := &c.img.im2col
	*t = im2colTask{p: p, x: x, col: col, b0: b0, nb: nb}
	c.pool.do(t, p.ckk, nb*p.ohw)
}

func (c *CPU) Conv2D(s ConvShape, x, w, bias, y Buffer) {
	c.img.plan = newConvPlan(s)
	p := &c.img.plan
	xd, wd, bd, yd := host(x), host(w), host(bias), host(y)
	checkLen("conv x", xd, p.xLen)
	checkLen("conv w", wd, p.wLen)
	checkLen("conv y", yd, p.yLen)
	if bd != nil {
		checkLen("conv bias", bd, s.OutC)
	}
	var col, grp []float32
	if !p.direct {
		col = c.convCol(p)
	}
	if p.nb > 1 {
		grp = c.convTmp(s.OutC * p.colWidth)
	}
	for b0 := 0; b0 < s.Batch; b0 += p.nb {
		nb := min(p.nb, s.Batch-b0)
		n := nb * p.ohw
		src, ldb := col, p.colWidth
		if p.direct {
			src, ldb = xd[b0*s.InC*p.hw:], p.hw
		} else {
			c.im2col(p, xd, col, b0, nb)
		}
		if p.nb == 1 {
			yb := yd[b0*s.OutC*p.ohw:]
			beta := float32(0)
			if bd != nil {
				f := &c.img.biasFill
				*f = convBiasFillTask{p: p, y: yd, bias: bd, b0: b0}
				c.pool.do(f, s.OutC, p.ohw)
				beta = 1
			}
			sgemm.Gemm(false, false, s.OutC, n, p.ckk, 1, wd, p.ckk, src, ldb, beta, yb, p.ohw)
			continue
		}
		sgemm.Gemm(false, false, s.OutC, n, p.ckk, 1, wd, p.ckk, src, ldb, 0, grp, p.colWidth)
		m := &c.img.move
		*m = convMoveTask{p: p, nchw: yd, grp: grp, bias: bd, b0: b0, scatter: true}
		c.pool.do(m, nb*s.OutC, p.ohw)
	}
}

func (c *CPU) Conv2DBackwardData(s ConvShape, dy, w, dx Buffer) {
	c.img.plan = newConvPlan(s)
	p := &c.img.plan
	dyd, wd, dxd := host(dy), host(w), host(dx)
	checkLen("conv dy", dyd, p.yLen)
	checkLen("conv w", wd, p.wLen)
	checkLen("conv dx", dxd, p.xLen)
	if p.direct {
		// dx_b (InC x HW) = W^T dy_b
		for b := 0; b < s.Batch; b++ {
			sgemm.Gemm(true, false, s.InC, p.hw, s.OutC, 1, wd, s.InC, dyd[b*s.OutC*p.hw:], p.hw, 0, dxd[b*s.InC*p.hw:], p.hw)
		}
		return
	}
	col := c.convCol(p)
	var grp []float32
	if p.nb > 1 {
		grp = c.convTmp(s.OutC * p.colWidth)
	}
	for b0 := 0; b0 < s.Batch; b0 += p.nb {
		nb := min(p.nb, s.Batch-b0)
		n := nb * p.ohw
		src, ldb := dyd[b0*s.OutC*p.ohw:], p.ohw
		if p.nb > 1 {
			m := &c.img.move
			*m = convMoveTask{p: p, nchw: dyd, grp: grp, b0: b0}
			c.pool.do(m, nb*s.OutC, p.ohw)
			src, ldb = grp, p.colWidth
		}
		sgemm.Gemm(true, false, p.ckk, n, s.OutC, 1, wd, p.ckk, src, ldb, 0, col, p.colWidth)
		t := &c.img.col2im
		*t = col2imTask{p: p, col: col, dx: dxd, b0: b0}
		c.pool.do(t, nb*s.InC, p.kk*p.hw)
	}
}

func (c *CPU) Conv2DBackwardFilter(s ConvShape, x, dy, dw, dbias Buffer) {
	c.img.plan = newConvPlan(s)
	p := &c.img.plan
	xd, dyd, dwd, dbd := host(x), host(dy), host(dw), host(dbias)
	checkLen("conv x", xd, p.xLen)
	checkLen("conv dy", dyd, p.yLen)
	checkLen("conv dw", dwd, p.wLen)
	if dbd != nil {
		checkLen("conv dbias", dbd, s.OutC)
		t := &c.img.biasGrad
		*t = convBiasGradTask{p: p, dy: dyd, db: dbd}
		c.pool.do(t, s.OutC, s.Batch*p.ohw)
	}
	if s.Batch == 0 {
		clear(dwd[:p.wLen])
		return
	}
	// dW^T (CKK x OutC) accumulates col dY^T over the groups: col is read
	// in place by the product and only the small dY is packed.
	var col, grp []float32
	if !p.direct {
		col = c.convCol(p)
	}
	if p.nb > 1 {
		grp = c.convTmp(s.OutC * p.colWidth)
	}
	dwt := c.convDWT(p.wLen)
	for b0 := 0; b0 < s.Batch; b0 += p.nb {
		nb := min(p.nb, s.Batch-b0)
		n := nb * p.ohw
		a, lda := col, p.colWidth
		if p.direct {
			a, lda = xd[b0*s.InC*p.hw:], p.hw
		} else {
			c.im2col(p, xd, col, b0, nb)
		}
		g, ldg := dyd[b0*s.OutC*p.ohw:], p.ohw
		if p.nb > 1 {
			m := &c.img.move
			*m = convMoveTask{p: p, nchw: dyd, grp: grp, b0: b0}
			c.pool.do(m, nb*s.OutC, p.ohw)
			g, ldg = grp, p.colWidth
		}
		beta := float32(1)
		if b0 == 0 {
			beta = 0
		}
		sgemm.Gemm(false, true, p.ckk, s.OutC, n, 1, a, lda, g, ldg, beta, dwt, s.OutC)
	}
	t := &c.img.transpose
	*t = transposeTask{x: dwt, y: dwd, rows: p.ckk, cols: s.OutC, bRows: (p.ckk + transposeBlock - 1) / transposeBlock}
	c.pool.do(t, t.bRows, transposeBlock*s.OutC)
}

func (c *CPU) convDWT(n int) []float32 {
	if cap(c.img.dwt) < n {
		c.img.dwt = make([]float32, n)
	}
	return c.img.dwt[:n]
}
