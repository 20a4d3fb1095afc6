package gpu

// The CPU backend's Layout ops.

type layoutState struct {
	chanBias  chanBiasTask
	chanSum   chanSumTask
	up        upsampleTask
	copyCh    copyChannelsTask
	transpose transposeTask
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
	rows := checkAddChannelBias(batch, ch, hw, x, bias, y)
	t := &c.layout.chanBias
	*t = chanBiasTask{x: host(x), bias: host(bias), y: host(y), hw: hw}
	c.pool.do(t, rows, hw)
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
	rows := checkChannelSum(batch, ch, hw, x, out)
	t := &c.layout.chanSum
	*t = chanSumTask{x: host(x), out: host(out), hw: hw}
	c.pool.do(t, rows, hw)
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
	planes := checkUpsample("Upsample2x", batch, ch, h, w, x, y, "x", "y")
	t := &c.layout.up
	*t = upsampleTask{x: host(x), y: host(y), h: h, w: w}
	c.pool.do(t, planes, 5*h*w)
}

func (c *CPU) Upsample2xBackward(batch, ch, h, w int, dy, dx Buffer) {
	planes := checkUpsample("Upsample2xBackward", batch, ch, h, w, dx, dy, "dx", "dy")
	t := &c.layout.up
	*t = upsampleTask{x: host(dx), y: host(dy), h: h, w: w, backward: true}
	c.pool.do(t, planes, 5*h*w)
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
	checkCopyChannels(batch, hw, n, src, srcC, srcOff, dst, dstC, dstOff)
	if n == 0 || hw == 0 {
		return
	}
	t := &c.layout.copyCh
	*t = copyChannelsTask{src: host(src), dst: host(dst), hw: hw, n: n, srcC: srcC, srcOff: srcOff, dstC: dstC, dstOff: dstOff}
	c.pool.do(t, batch, 2*n*hw)
}

func (c *CPU) Transpose(batch, rows, cols int, x, y Buffer) {
	if checkTranspose(batch, rows, cols, x, y) == 0 {
		return
	}
	t := &c.layout.transpose
	*t = transposeTask{x: host(x), y: host(y), rows: rows, cols: cols, bRows: (rows + transposeBlock - 1) / transposeBlock}
	c.pool.do(t, batch*t.bRows, 2*transposeBlock*cols)
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
