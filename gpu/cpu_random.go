package gpu

// The CPU backend's Random ops.

type randomState struct {
	fill    randomTask
	dropout dropoutTask
}

// normalsAt fills dst with elements [first, first+len(dst)) of the normal
// stream (seed, purpose, stream), scaled by std.
func normalsAt(dst []float32, seed uint64, purpose uint32, stream uint64, first int, std float32) {
	i := 0
	for i < len(dst) {
		e := first + i
		blk := NormalBlock(PhiloxBlock(seed, purpose, stream, uint32(e/4)))
		for lane := e % 4; lane < 4 && i < len(dst); lane++ {
			dst[i] = std * blk[lane]
			i++
		}
	}
}

// randomTask fills blocks [lo, hi) of four elements.
type randomTask struct {
	d            []float32
	seed, stream uint64
	std          float32
	rademacher   bool
}

func (t *randomTask) run(lo, hi int) {
	a, b := min(lo*4, len(t.d)), min(hi*4, len(t.d))
	if !t.rademacher {
		normalsAt(t.d[a:b], t.seed, PurposeGeneric, t.stream, a, t.std)
		return
	}
	for i := a; i < b; i++ {
		if PhiloxBlock(t.seed, PurposeGeneric, t.stream, uint32(i/4))[i%4]>>31 != 0 {
			t.d[i] = -1
		} else {
			t.d[i] = 1
		}
	}
}

func (c *CPU) RandNormal(dst Buffer, seed, stream uint64, std float32) {
	c.random.fill = randomTask{d: host(dst), seed: seed, stream: stream, std: std}
	c.pool.do(&c.random.fill, (len(c.random.fill.d)+3)/4, 80)
}

func (c *CPU) RandRademacher(dst Buffer, seed, stream uint64) {
	c.random.fill = randomTask{d: host(dst), seed: seed, stream: stream, rademacher: true}
	c.pool.do(&c.random.fill, (len(c.random.fill.d)+3)/4, 40)
}

// dropoutTask masks blocks [lo, hi) of four elements.
type dropoutTask struct {
	x, y       []float32
	seed, step uint64
	purpose    uint32
	p, scale   float32
}

func (t *dropoutTask) run(lo, hi int) {
	for blk := lo; blk < hi; blk++ {
		w := PhiloxBlock(t.seed, t.purpose, t.step, uint32(blk))
		for lane := range 4 {
			i := 4*blk + lane
			if i >= len(t.x) {
				return
			}
			if Uniform01(w[lane]) < t.p {
				t.y[i] = 0
			} else {
				t.y[i] = t.x[i] * t.scale
			}
		}
	}
}

func (c *CPU) Dropout(dr DropoutDraw, p float32, x, y Buffer) {
	n := checkDropout(dr, p, x, y)
	c.random.dropout = dropoutTask{x: host(x)[:n], y: host(y)[:n], seed: dr.Seed, step: dr.hostStep(),
		purpose: dr.Purpose(), p: p, scale: DropoutScale(p)}
	c.pool.do(&c.random.dropout, (n+3)/4, 60)
}
