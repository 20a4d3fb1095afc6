package gpu

// The CPU backend's Random ops.

type randomState struct {
	fill randomTask
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
