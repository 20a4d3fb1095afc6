package gpu

import (
	"math"

	"github.com/fmgpu/fmgpu/internal/sgemm"
)

// The CPU backend's Dense ops: the linear layer as one sgemm product with
// a fused epilogue, the activations through sgemm's vectorized SiLU.

type denseState struct {
	epilogue     sgemm.Epilogue // reused so that Linear allocates nothing
	biasAct      biasActTask
	biasPartials []float64 // the bias gradient's partial column sums, one row per row chunk
	act          activateTask
	embed        embedTask
	oneHot       oneHotTask
	mse          mseTask
}

// Linear runs as one product with the bias, the pre-activation copy and
// the activation fused into its epilogue, applied tile by tile while the
// tile is in cache.
func (c *CPU) Linear(rows, in, out int, x Buffer, ldx int, w, bias Buffer, act Act, pre, y Buffer) {
	checkLinear(rows, in, out, x, ldx, w, bias, act, pre, y)
	if rows == 0 || out == 0 {
		return
	}
	ep := &c.dense.epilogue
	*ep = sgemm.Epilogue{Bias: host(bias), Act: sgemm.Activation(act), Pre: host(pre), LdPre: out}
	sgemm.GemmEpilogue(false, true, rows, out, in, 1, host(x), ldx, host(w), in, 0, host(y), out, ep)
}

// biasActTask computes dPre = dY * act'(pre) and, when partials is set,
// the bias gradient's partial column sums in one pass: units are chunks of
// rowsPer rows (of biasBlock elements when there is no bias gradient),
// each swept in blocks that stay in L1, its column sums into a float64
// row of partials of its own; the partial rows are added in order after.
type biasActTask struct {
	act        Act
	dy, p, dp  []float32
	rows, cols int
	rowsPer    int
	partials   []float64 // chunks x cols; nil: no bias gradient
}

const (
	// biasBlock: elements per L1 block of BiasActBackward, and per unit
	// when there is no bias gradient.
	biasBlock = 4096
	// biasChunkElems, biasMaxChunks: the bias gradient's row chunks hold
	// about biasChunkElems elements, at most biasMaxChunks of them.
	biasChunkElems = 16384
	biasMaxChunks  = 32
)

func (t *biasActTask) run(lo, hi int) {
	if t.partials == nil {
		t.elems(lo*biasBlock, min(hi*biasBlock, len(t.dp)))
		return
	}
	cols := t.cols
	step := max(1, biasBlock/cols)
	for ch := lo; ch < hi; ch++ {
		acc := t.partials[ch*cols : (ch+1)*cols]
		clear(acc)
		r0, r1 := ch*t.rowsPer, min((ch+1)*t.rowsPer, t.rows)
		for a := r0; a < r1; a += step {
			b := min(a+step, r1)
			t.elems(a*cols, b*cols)
			sgemm.AddColSums(acc, t.dp[a*cols:b*cols], b-a, cols, cols)
		}
	}
}

// elems computes dPre over elements [a, b).
func (t *biasActTask) elems(a, b int) {
	if a >= b {
		return
	}
	dy, dp := t.dy[a:b], t.dp[a:b]
	switch {
	case t.act == ActSiLU:
		sgemm.SiLUGrad(dy, t.p[a:b], dp)
	case &dp[0] != &dy[0]:
		copy(dp, dy)
	}
}

func (c *CPU) BiasActBackward(act Act, rows, cols int, dY, pre, dPre, dBias Buffer) {
	n := checkBiasActBackward(act, rows, cols, dY, pre, dPre, dBias)
	dy, p, dp, db := host(dY), host(pre), host(dPre), host(dBias)
	t := &c.dense.biasAct
	*t = biasActTask{act: act, dy: dy[:n], p: p, dp: dp[:n], rows: rows, cols: cols}
	if db == nil || n == 0 {
		if n > 0 && (act != ActNone || &dp[0] != &dy[0]) {
			c.pool.do(t, (n+biasBlock-1)/biasBlock, 20*biasBlock)
		}
		if db != nil {
			clear(db[:cols])
		}
		return
	}
	chunks := min(biasMaxChunks, rows, (n+biasChunkElems-1)/biasChunkElems)
	t.rowsPer = (rows + chunks - 1) / chunks
	chunks = (rows + t.rowsPer - 1) / t.rowsPer
	if cap(c.dense.biasPartials) < chunks*cols {
		c.dense.biasPartials = make([]float64, chunks*cols)
	}
	t.partials = c.dense.biasPartials[:chunks*cols]
	c.pool.do(t, chunks, 20*t.rowsPer*cols)
	for j := 0; j < cols; j++ {
		s := 0.0
		for ch := 0; ch < chunks; ch++ {
			s += t.partials[ch*cols+j]
		}
		db[j] = float32(s)
	}
}

// LinearBackward is the sequence of ops it stands for, which keeps the
// CPU's arithmetic what it was before the device fused them.
func (c *CPU) LinearBackward(rows, in, out int, dPre, x Buffer, ldx int, w, dW, dBias Buffer, cols int, act Act, preX Buffer, beta float32, dX Buffer) {
	checkLinearBackward(rows, in, out, dPre, x, ldx, w, dW, dBias, cols, act, preX, beta, dX)
	if dW != nil {
		if dBias != nil {
			c.BiasActBackward(ActNone, rows, out, dPre, nil, dPre, dBias)
		}
		c.Gemm(true, false, out, in, rows, 1, dPre, out, x, ldx, 0, dW, in)
	}
	if dX != nil {
		c.Gemm(false, false, rows, cols, out, 1, dPre, out, w, in, beta, dX, cols)
		if act != ActNone {
			c.BiasActBackward(act, rows, cols, dX, preX, dX, nil)
		}
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
	n := checkActivate(act, x, y)
	xd, yd := host(x), host(y)
	if n == 0 || (act == ActNone && &xd[0] == &yd[0]) {
		return
	}
	t := &c.dense.act
	*t = activateTask{act: act, x: xd, y: yd}
	c.pool.do(t, (n+activateBlock-1)/activateBlock, 10*activateBlock)
}

type embedTask struct {
	x, t, out []float32
	d, w      int
	emb       TimeEmbedding
	freqs     []float64
}

func (t *embedTask) run(lo, hi int) {
	d, w, nf := t.d, t.w, t.emb.Freqs
	scale := float64(t.emb.Scale)
	for r := lo; r < hi; r++ {
		o := t.out[r*w : r*w+w]
		copy(o, t.x[r*d:r*d+d])
		tv := float64(t.t[r])
		if nf == 0 {
			o[d] = float32(tv)
			continue
		}
		for j, f := range t.freqs {
			s, cs := math.Sincos(scale * tv * f)
			o[d+j] = float32(s)
			o[d+nf+j] = float32(cs)
		}
	}
}

// embeddingFreqs is w_j = MaxPeriod^(-j/Freqs), into dst (reused).
func embeddingFreqs(dst []float64, e TimeEmbedding) []float64 {
	dst = dst[:0]
	for j := 0; j < e.Freqs; j++ {
		dst = append(dst, math.Exp(-math.Log(float64(e.MaxPeriod))*float64(j)/float64(e.Freqs)))
	}
	return dst
}

func (c *CPU) EmbedInput(rows, d int, x, t Buffer, emb TimeEmbedding, out Buffer) {
	w := checkEmbedInput(rows, d, x, t, emb, out)
	freqs := c.dense.embed.freqs
	if len(freqs) != emb.Freqs || c.dense.embed.emb != emb {
		freqs = embeddingFreqs(freqs, emb)
	}
	c.dense.embed = embedTask{x: host(x), t: host(t), out: host(out), d: d, w: w, emb: emb, freqs: freqs}
	c.pool.do(&c.dense.embed, rows, w*20)
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
		// only 0, 1, ..., classes-1 exactly: fractions and NaN fail the
		// round trip
		if l := t.labels[r]; l >= 0 && l < float32(t.classes) && float32(int(l)) == l {
			row[int(l)] = 1
		}
	}
}

func (c *CPU) OneHot(rows, classes int, labels, out Buffer) {
	if checkOneHot(rows, classes, labels, out) == 0 {
		return
	}
	t := &c.dense.oneHot
	*t = oneHotTask{labels: host(labels), out: host(out), classes: classes}
	c.pool.do(t, rows, 2*classes)
}

type mseTask struct {
	p, t, g  []float32
	g2       float32
	partials []float64
}

func (t *mseTask) setPartials(p []float64) { t.partials = p }

func (t *mseTask) run(lo, hi int) {
	for ch := lo; ch < hi; ch++ {
		a, b := ch*reduceChunk, min((ch+1)*reduceChunk, len(t.p))
		sum := 0.0
		for i := a; i < b; i++ {
			e := t.p[i] - t.t[i]
			sum += float64(e) * float64(e)
			t.g[i] = t.g2 * e
		}
		t.partials[ch] = sum
	}
}

func (c *CPU) MSELoss(pred, target Buffer, scale float32, grad, loss Buffer) {
	n := checkMSELoss(pred, target, grad, loss)
	c.dense.mse = mseTask{p: host(pred), t: host(target), g: host(grad), g2: 2 * scale}
	host(loss)[0] = float32(float64(scale) * c.reduce(&c.dense.mse, n, 4))
}

func (c *CPU) MSELossAccumulate(pred, target Buffer, scale float32, grad, lossSum Buffer) {
	n := checkMSELoss(pred, target, grad, lossSum)
	c.dense.mse = mseTask{p: host(pred), t: host(target), g: host(grad), g2: 2 * scale}
	l := float32(float64(scale) * c.reduce(&c.dense.mse, n, 4))
	ls := host(lossSum)
	ls[0] += l
}
