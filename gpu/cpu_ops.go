package gpu

import (
	"fmt"
	"math"

	"github.com/fmgpu/fmgpu/flow"
	"github.com/fmgpu/fmgpu/internal/sgemm"
)

// The CPU backend's ops: each validates its arguments, fills its task in
// the backend and hands it to the pool. Reductions sum fixed chunks of
// reduceChunk elements into float64 partials added in order, so their
// result does not depend on the thread count.

const reduceChunk = 4096

func abs32(v float32) float32 { return math.Float32frombits(math.Float32bits(v) &^ (1 << 31)) }

func (c *CPU) path(s flow.Spec) flow.Path {
	if c.lastPath == nil || s != c.lastSpec {
		p, err := flow.New(s)
		if err != nil {
			panic("gpu: " + err.Error())
		}
		c.lastSpec, c.lastPath = s, p
	}
	return c.lastPath
}

// reduce runs a chunked reduction task over n elements and returns the
// ordered float64 sum of its partials.
func (c *CPU) reduce(t interface {
	task
	setPartials([]float64)
}, n, work int) float64 {
	chunks := (n + reduceChunk - 1) / reduceChunk
	if cap(c.partials) < chunks {
		c.partials = make([]float64, chunks)
	}
	parts := c.partials[:chunks]
	t.setPartials(parts)
	c.pool.do(t, chunks, work*reduceChunk)
	sum := 0.0
	for _, v := range parts {
		sum += v
	}
	return sum
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
	dy, p, dp, db := host(dY), host(pre), host(dPre), host(dBias)
	n := rows * cols
	checkLen("dY", dy, n)
	checkLen("dPre", dp, n)
	if act != ActNone {
		checkLen("pre", p, n)
	}
	if db != nil {
		checkLen("dBias", db, cols)
	}
	t := &c.biasAct
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
	if cap(c.biasPartials) < chunks*cols {
		c.biasPartials = make([]float64, chunks*cols)
	}
	t.partials = c.biasPartials[:chunks*cols]
	c.pool.do(t, chunks, 20*t.rowsPer*cols)
	for j := 0; j < cols; j++ {
		s := 0.0
		for ch := 0; ch < chunks; ch++ {
			s += t.partials[ch*cols+j]
		}
		db[j] = float32(s)
	}
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
	xd, td, od := host(x), host(t), host(out)
	w := d + emb.Width()
	checkLen("embed x", xd, rows*d)
	checkLen("embed t", td, rows)
	checkLen("embed output", od, rows*w)
	freqs := c.embed.freqs
	if len(freqs) != emb.Freqs || c.embed.emb != emb {
		freqs = embeddingFreqs(freqs, emb)
	}
	c.embed = embedTask{x: xd, t: td, out: od, d: d, w: w, emb: emb, freqs: freqs}
	c.pool.do(&c.embed, rows, w*20)
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
	p, t, g, l := host(pred), host(target), host(grad), host(loss)
	n := len(p)
	checkLen("target", t, n)
	checkLen("grad", g, n)
	c.mse = mseTask{p: p, t: t, g: g, g2: 2 * scale}
	l[0] = float32(float64(scale) * c.reduce(&c.mse, n, 4))
}

type sumSqTask struct {
	x        []float32
	partials []float64
}

func (t *sumSqTask) setPartials(p []float64) { t.partials = p }

func (t *sumSqTask) run(lo, hi int) {
	for ch := lo; ch < hi; ch++ {
		t.partials[ch] = sgemm.SumSquares(t.x[ch*reduceChunk : min((ch+1)*reduceChunk, len(t.x))])
	}
}

func (c *CPU) SumSquares(x, out Buffer) {
	c.sumSq = sumSqTask{x: host(x)}
	host(out)[0] = float32(c.reduce(&c.sumSq, len(c.sumSq.x), 1))
}

type adamTask struct {
	k               sgemm.AdamConsts
	p, g, m, v, ema []float32
}

func (t *adamTask) run(lo, hi int) {
	var ed []float32
	if t.ema != nil {
		ed = t.ema[lo:hi]
	}
	sgemm.Adam(&t.k, t.p[lo:hi], t.g[lo:hi], t.m[lo:hi], t.v[lo:hi], ed)
}

func (c *CPU) AdamEMA(s AdamStep, params, grads, m, v, ema, gradSumSq, status Buffer) {
	p, g, md, vd, ed := host(params), host(grads), host(m), host(v), host(ema)
	n := len(p)
	checkLen("grads", g, n)
	checkLen("adam m", md, n)
	checkLen("adam v", vd, n)
	gss := float64(host(gradSumSq)[0])
	if math.IsNaN(gss) || math.IsInf(gss, 0) {
		if st := host(status); st[0] == 0 {
			st[0] = float32(s.Step)
		}
		return
	}
	clip := float32(1)
	if s.MaxGradNorm > 0 {
		clip = float32(math.Min(1, float64(s.MaxGradNorm)/(math.Sqrt(gss)+1e-6)))
	}
	if s.EMADecay > 0 {
		checkLen("ema", ed, n)
	}
	if s.EMADecay <= 0 {
		ed = nil
	}
	c.adam = adamTask{k: sgemm.AdamConsts{Clip: clip, WeightDecay: s.WeightDecay, Decoupled: s.Decoupled,
		Beta1: s.Beta1, Beta2: s.Beta2, InvBiasCorr1: 1 / s.BiasCorr1, InvBiasCorr2: 1 / s.BiasCorr2,
		Eps: s.Eps, LR: s.LR, EMADecay: s.EMADecay}, p: p, g: g, m: md, v: vd, ema: ed}
	c.pool.do(&c.adam, n, 4)
}

type targetTask struct {
	path              flow.Path
	d                 int
	x0, x1, t, xt, ut []float32
}

func (t *targetTask) run(lo, hi int) {
	d := t.d
	for r := lo; r < hi; r++ {
		k := t.path.At(float64(t.t[r]))
		flow.TargetRow(k, t.x0[r*d:r*d+d], t.x1[r*d:r*d+d], t.xt[r*d:r*d+d], t.ut[r*d:r*d+d])
	}
}

func (c *CPU) PathTarget(ps flow.Spec, rows, d int, x0, x1, t, xt, ut Buffer) {
	c.target = targetTask{path: c.path(ps), d: d, x0: host(x0), x1: host(x1), t: host(t), xt: host(xt), ut: host(ut)}
	for _, s := range [][]float32{c.target.x0, c.target.x1, c.target.xt, c.target.ut} {
		checkLen("path operand", s, rows*d)
	}
	checkLen("t", c.target.t, rows)
	c.pool.do(&c.target, rows, 4*d+40)
}

type drawTask struct {
	dr                     BatchDraw
	path                   flow.Path
	src, x0, x1, t, xt, ut []float32
	nData, d               int
	std                    float32
}

// run draws rows [lo, hi) in groups of the four rows that share a Philox
// block of indices and times; a group's noise comes from one normalsAt
// call, so each normal block is computed once (the values are those of a
// row-by-row draw).
func (t *drawTask) run(lo, hi int) {
	dr, d := t.dr, t.d
	var noise [256]float32
	for g0 := lo; g0 < hi; {
		blk := uint32(g0 / 4)
		g1 := min(hi, (g0/4+1)*4)
		idxW := PhiloxBlock(dr.Seed, PurposeIndex, dr.Step, blk)
		uW := PhiloxBlock(dr.Seed, PurposeTimeU, dr.Step, blk)
		var nrm [4]float32
		if dr.Time.Kind == flow.TimeLogitNormal {
			nrm = NormalBlock(PhiloxBlock(dr.Seed, PurposeTimeN, dr.Step, blk))
		}
		grouped := (g1-g0)*d <= len(noise)
		if grouped {
			normalsAt(noise[:(g1-g0)*d], dr.Seed, PurposeNoise, dr.Step, g0*d, t.std)
		}
		for r := g0; r < g1; r++ {
			lane := r % 4
			idx := int(IndexBelow(idxW[lane], uint32(t.nData)))
			u := Uniform01(uW[lane])
			tv := float32(flow.Clamp(t.path, dr.Time.Transform(float64(u), float64(nrm[lane]))))
			t.t[r] = tv
			k := t.path.At(float64(tv))
			if grouped {
				t.row(k, noise[(r-g0)*d:(r-g0+1)*d], r, idx, 0, d)
				continue
			}
			for j0 := 0; j0 < d; j0 += len(noise) {
				w := min(len(noise), d-j0)
				z := noise[:w]
				normalsAt(z, dr.Seed, PurposeNoise, dr.Step, r*d+j0, t.std)
				t.row(k, z, r, idx, j0, w)
			}
		}
		g0 = g1
	}
}

// row writes columns [j0, j0+w) of row r from the noise z and data row idx.
func (t *drawTask) row(k flow.Coef, z []float32, r, idx, j0, w int) {
	d := t.d
	x1 := t.src[idx*d+j0 : idx*d+j0+w]
	flow.TargetRow(k, z, x1, t.xt[r*d+j0:r*d+j0+w], t.ut[r*d+j0:r*d+j0+w])
	if t.x1 != nil {
		copy(t.x1[r*d+j0:], x1)
	}
	if t.x0 != nil {
		copy(t.x0[r*d+j0:], z)
	}
}

func (c *CPU) DrawBatch(dr BatchDraw, data Buffer, nData, d, rows int, x0, x1, t, xt, ut Buffer) {
	path := c.path(dr.Path)
	c.draw = drawTask{dr: dr, path: path, src: host(data), x0: host(x0), x1: host(x1), t: host(t), xt: host(xt), ut: host(ut),
		nData: nData, d: d, std: float32(path.PriorStd())}
	checkLen("data", c.draw.src, nData*d)
	checkLen("t", c.draw.t, rows)
	checkLen("xt", c.draw.xt, rows*d)
	checkLen("ut", c.draw.ut, rows*d)
	if c.draw.x0 != nil {
		checkLen("x0", c.draw.x0, rows*d)
	}
	if c.draw.x1 != nil {
		checkLen("x1", c.draw.x1, rows*d)
	}
	if nData <= 0 || nData > math.MaxUint32 {
		panic(fmt.Sprintf("gpu: DrawBatch over %d data rows", nData))
	}
	c.pool.do(&c.draw, rows, 40*d+300)
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

// normalTask fills blocks [lo, hi) of four elements.
type normalTask struct {
	d            []float32
	seed, stream uint64
	std          float32
	rademacher   bool
}

func (t *normalTask) run(lo, hi int) {
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
	c.normal = normalTask{d: host(dst), seed: seed, stream: stream, std: std}
	c.pool.do(&c.normal, (len(c.normal.d)+3)/4, 80)
}

func (c *CPU) RandRademacher(dst Buffer, seed, stream uint64) {
	c.normal = normalTask{d: host(dst), seed: seed, stream: stream, rademacher: true}
	c.pool.do(&c.normal, (len(c.normal.d)+3)/4, 40)
}

type axpyTask struct {
	alpha float32
	x, y  []float32
}

func (t *axpyTask) run(lo, hi int) {
	x, y, a := t.x[lo:hi], t.y[lo:hi], t.alpha
	for i, v := range x {
		y[i] += a * v
	}
}

func (c *CPU) Axpy(alpha float32, x, y Buffer) {
	xd, yd := host(x), host(y)
	checkLen("axpy y", yd, len(xd))
	c.axpy = axpyTask{alpha: alpha, x: xd, y: yd}
	c.pool.do(&c.axpy, len(xd), 2)
}

// stages holds the non-zero stage terms of LinComb and ErrorNorm.
type stages struct {
	n    int
	coef [MaxStages]float32
	k    [MaxStages][]float32
}

func makeStages(scale float32, coef []float32, ks []Buffer, n int) stages {
	if len(ks) > MaxStages || len(coef) != len(ks) {
		panic(fmt.Sprintf("gpu: %d stage buffers with %d coefficients (at most %d)", len(ks), len(coef), MaxStages))
	}
	var s stages
	for i, k := range ks {
		if coef[i] != 0 {
			s.k[s.n] = host(k)
			checkLen("stage buffer", s.k[s.n], n)
			s.coef[s.n] = scale * coef[i]
			s.n++
		}
	}
	return s
}

// combine writes out = base + sum of the stage terms over [lo, hi) in
// blocks that stay in L1, one stage at a time.
func (s *stages) combine(out, base []float32, lo, hi int) {
	copy(out[lo:hi], base[lo:hi])
	for j := 0; j < s.n; j++ {
		c, k := s.coef[j], s.k[j][lo:hi]
		o := out[lo:hi]
		for i, v := range k {
			o[i] += c * v
		}
	}
}

type linCombTask struct {
	st     stages
	dst, x []float32
}

func (t *linCombTask) run(lo, hi int) {
	const block = 1024
	for a := lo; a < hi; a += block {
		t.st.combine(t.dst, t.x, a, min(a+block, hi))
	}
}

func (c *CPU) LinComb(dst, x Buffer, h float32, coef []float32, ks []Buffer) {
	xd, dd := host(x), host(dst)
	n := len(xd)
	checkLen("lincomb destination", dd, n)
	c.lincomb = linCombTask{st: makeStages(h, coef, ks, n), dst: dd, x: xd}
	c.pool.do(&c.lincomb, n, 2*len(ks)+1)
}

type errNormTask struct {
	st         stages
	x, xn      []float32
	rtol, atol float32
	partials   []float64
}

func (t *errNormTask) setPartials(p []float64) { t.partials = p }

func (t *errNormTask) run(lo, hi int) {
	var e [reduceChunk]float32
	var zero [reduceChunk]float32
	for ch := lo; ch < hi; ch++ {
		a, b := ch*reduceChunk, min((ch+1)*reduceChunk, len(t.x))
		// e = sum of the scaled stage terms (base zero)
		w := e[:b-a]
		copy(w, zero[:b-a])
		for j := 0; j < t.st.n; j++ {
			c, k := t.st.coef[j], t.st.k[j][a:b]
			for i, v := range k {
				w[i] += c * v
			}
		}
		sum := 0.0
		for i, ei := range w {
			sc := t.atol + t.rtol*max(abs32(t.x[a+i]), abs32(t.xn[a+i]))
			q := float64(ei) / float64(sc)
			sum += q * q
		}
		t.partials[ch] = sum
	}
}

func (c *CPU) ErrorNorm(x, xNew Buffer, h float32, coef []float32, ks []Buffer, rtol, atol float32, out Buffer) {
	xd, nd := host(x), host(xNew)
	n := len(xd)
	checkLen("error-norm new state", nd, n)
	c.errNorm = errNormTask{st: makeStages(h, coef, ks, n), x: xd, xn: nd, rtol: rtol, atol: atol}
	host(out)[0] = float32(c.reduce(&c.errNorm, n, 3*len(ks)))
}

type rowDotTask struct {
	a, b, out   []float32
	cols        int
	alpha, beta float32
}

func (t *rowDotTask) run(lo, hi int) {
	cols := t.cols
	for r := lo; r < hi; r++ {
		var s float64
		a, b := t.a[r*cols:r*cols+cols], t.b[r*cols:r*cols+cols]
		for j, v := range a {
			s += float64(v) * float64(b[j])
		}
		v := t.alpha * float32(s)
		if t.beta != 0 {
			v += t.beta * t.out[r]
		}
		t.out[r] = v
	}
}

func (c *CPU) RowDot(rows, cols int, alpha float32, a, b Buffer, beta float32, out Buffer) {
	ad, bd, od := host(a), host(b), host(out)
	checkLen("rowdot a", ad, rows*cols)
	checkLen("rowdot b", bd, rows*cols)
	checkLen("rowdot out", od, rows)
	c.rowDot = rowDotTask{a: ad, b: bd, out: od, cols: cols, alpha: alpha, beta: beta}
	c.pool.do(&c.rowDot, rows, 2*cols)
}

func (c *CPU) UnitColumn(rows, cols, j int, e Buffer) {
	ed := host(e)
	checkLen("unit column", ed, rows*cols)
	clear(ed[:rows*cols])
	for r := 0; r < rows; r++ {
		ed[r*cols+j] = 1
	}
}
