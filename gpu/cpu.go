package gpu

import (
	"fmt"
	"math"

	"github.com/fmgpu/fmgpu/flow"
	"github.com/fmgpu/fmgpu/internal/sgemm"
)

// CPU is the pure-Go backend: buffers are Go slices, ops run synchronously
// on the calling goroutine or split over a fixed pool of workers. It is the
// reference the CUDA backend is checked against.
type CPU struct {
	pool     *workPool
	threads  int
	epilogue sgemm.Epilogue // reused so that Linear allocates nothing
}

// NewCPU returns a CPU backend using threads workers (<= 0: GOMAXPROCS).
func NewCPU(threads int) *CPU {
	if threads <= 0 {
		threads = defaultThreads()
	}
	return &CPU{pool: newWorkPool(threads), threads: threads}
}

type cpuBuffer struct{ d []float32 }

func (b *cpuBuffer) Len() int { return len(b.d) }

func (b *cpuBuffer) Slice(off, n int) Buffer {
	if off < 0 || n < 0 || off+n > len(b.d) {
		panic(fmt.Sprintf("gpu: slice [%d, %d) of a buffer of %d", off, off+n, len(b.d)))
	}
	return &cpuBuffer{b.d[off : off+n : off+n]}
}

// host returns the slice behind a CPU buffer (nil for a nil Buffer).
func host(b Buffer) []float32 {
	if b == nil {
		return nil
	}
	cb, ok := b.(*cpuBuffer)
	if !ok {
		panic(fmt.Sprintf("gpu: a %T passed to the CPU backend", b))
	}
	return cb.d
}

// HostData exposes the storage of a CPU backend buffer, for host-side code
// (closed-form fields, tests) that would otherwise copy; ok is false for
// buffers of other backends.
func HostData(b Buffer) (data []float32, ok bool) {
	cb, ok := b.(*cpuBuffer)
	if !ok {
		return nil, false
	}
	return cb.d, true
}

func (c *CPU) Info() DeviceInfo {
	return DeviceInfo{Backend: "cpu", Name: cpuName(), Threads: c.threads}
}

func (c *CPU) Alloc(n int) Buffer {
	if n < 0 {
		panic("gpu: negative allocation")
	}
	return &cpuBuffer{make([]float32, n)}
}

func (c *CPU) Free(Buffer)  {}
func (c *CPU) Sync() error  { return nil }
func (c *CPU) Close() error { c.pool.close(); return nil }
func (c *CPU) Threads() int { return c.threads }
func checkLen(name string, b []float32, n int) {
	if len(b) < n {
		panic(fmt.Sprintf("gpu: %s has %d elements, need %d", name, len(b), n))
	}
}

func (c *CPU) Upload(dst Buffer, src []float32) {
	d := host(dst)
	checkLen("upload destination", d, len(src))
	copy(d, src)
}

func (c *CPU) Download(dst []float32, src Buffer) {
	s := host(src)
	checkLen("download source", s, len(dst))
	copy(dst, s)
}

func (c *CPU) Copy(dst, src Buffer) {
	d, s := host(dst), host(src)
	checkLen("copy destination", d, len(s))
	copy(d, s)
}

func (c *CPU) Fill(dst Buffer, v float32) {
	d := host(dst)
	for i := range d {
		d[i] = v
	}
}

func (c *CPU) Gemm(transA, transB bool, m, n, k int, alpha float32, a Buffer, lda int, b Buffer, ldb int, beta float32, cb Buffer, ldc int) {
	sgemm.Gemm(transA, transB, m, n, k, alpha, host(a), lda, host(b), ldb, beta, host(cb), ldc)
}

func silu(z float32) float32 { return z / (1 + float32(math.Exp(float64(-z)))) }

// siluGrad is d/dz silu(z) = s(z) (1 + z (1 - s(z))), s the logistic.
func siluGrad(z float32) float32 {
	s := 1 / (1 + float32(math.Exp(float64(-z))))
	return s * (1 + z*(1-s))
}

// Linear runs as one product with the bias, the pre-activation copy and
// the activation fused into its epilogue, applied tile by tile while the
// tile is in cache.
func (c *CPU) Linear(rows, in, out int, x Buffer, ldx int, w, bias Buffer, act Act, pre, y Buffer) {
	ep := &c.epilogue
	*ep = sgemm.Epilogue{Bias: host(bias), Act: sgemm.Activation(act), Pre: host(pre), LdPre: out}
	sgemm.GemmEpilogue(false, true, rows, out, in, 1, host(x), ldx, host(w), in, 0, host(y), out, ep)
}

func (c *CPU) BiasActBackward(act Act, rows, cols int, dY, pre, dPre, dBias Buffer) {
	dy, p, dp, db := host(dY), host(pre), host(dPre), host(dBias)
	n := rows * cols
	checkLen("dY", dy, n)
	checkLen("dPre", dp, n)
	if act != ActNone {
		checkLen("pre", p, n)
	}
	c.pool.parallelFor(n, 12, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			g := dy[i]
			if act == ActSiLU {
				g *= siluGrad(p[i])
			}
			dp[i] = g
		}
	})
	if db != nil {
		colSums(db, dp, rows, cols)
	}
}

// colSums accumulates in float64 so that long batches do not lose the
// small columns' contributions.
func colSums(out, x []float32, rows, cols int) {
	checkLen("column sums", out, cols)
	acc := make([]float64, cols)
	for r := 0; r < rows; r++ {
		row := x[r*cols : r*cols+cols]
		for j, v := range row {
			acc[j] += float64(v)
		}
	}
	for j := range acc {
		out[j] = float32(acc[j])
	}
}

func (c *CPU) EmbedInput(rows, d int, x, t Buffer, emb TimeEmbedding, out Buffer) {
	xd, td, od := host(x), host(t), host(out)
	w := d + emb.Width()
	checkLen("embed x", xd, rows*d)
	checkLen("embed t", td, rows)
	checkLen("embed output", od, rows*w)
	freqs := embeddingFreqs(emb)
	c.pool.parallelFor(rows, w*20, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			o := od[r*w : r*w+w]
			copy(o, xd[r*d:r*d+d])
			tv := float64(td[r])
			if emb.Freqs == 0 {
				o[d] = float32(tv)
				continue
			}
			for j, f := range freqs {
				s, cs := math.Sincos(float64(emb.Scale) * tv * f)
				o[d+j] = float32(s)
				o[d+emb.Freqs+j] = float32(cs)
			}
		}
	})
}

// embeddingFreqs is w_j = MaxPeriod^(-j/Freqs).
func embeddingFreqs(e TimeEmbedding) []float64 {
	f := make([]float64, e.Freqs)
	for j := range f {
		f[j] = math.Exp(-math.Log(float64(e.MaxPeriod)) * float64(j) / float64(e.Freqs))
	}
	return f
}

func (c *CPU) MSELoss(pred, target Buffer, scale float32, grad, loss Buffer) {
	p, t, g, l := host(pred), host(target), host(grad), host(loss)
	n := len(p)
	checkLen("target", t, n)
	checkLen("grad", g, n)
	sum := 0.0
	g2 := 2 * scale
	for i := 0; i < n; i++ {
		e := p[i] - t[i]
		sum += float64(e) * float64(e)
		g[i] = g2 * e
	}
	l[0] = float32(float64(scale) * sum)
}

func (c *CPU) SumSquares(x, out Buffer) {
	sum := 0.0
	for _, v := range host(x) {
		sum += float64(v) * float64(v)
	}
	host(out)[0] = float32(sum)
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
		if norm := math.Sqrt(gss); norm > float64(s.MaxGradNorm) {
			clip = float32(float64(s.MaxGradNorm) / (norm + 1e-6))
		}
	}
	if s.EMADecay > 0 {
		checkLen("ema", ed, n)
	}
	b1, b2 := s.Beta1, s.Beta2
	ib1, ib2 := 1/s.BiasCorr1, 1/s.BiasCorr2
	c.pool.parallelFor(n, 16, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			gi := clip * g[i]
			if s.WeightDecay != 0 && !s.Decoupled {
				gi += s.WeightDecay * p[i]
			}
			mi := b1*md[i] + (1-b1)*gi
			vi := b2*vd[i] + (1-b2)*gi*gi
			md[i], vd[i] = mi, vi
			step := mi * ib1 / (float32(math.Sqrt(float64(vi*ib2))) + s.Eps)
			if s.Decoupled {
				step += s.WeightDecay * p[i]
			}
			pi := p[i] - s.LR*step
			p[i] = pi
			if s.EMADecay > 0 {
				ed[i] = s.EMADecay*ed[i] + (1-s.EMADecay)*pi
			}
		}
	})
}

func mustPath(p flow.Spec) flow.Path {
	path, err := flow.New(p)
	if err != nil {
		panic("gpu: " + err.Error())
	}
	return path
}

func (c *CPU) PathTarget(ps flow.Spec, rows, d int, x0, x1, t, xt, ut Buffer) {
	path := mustPath(ps)
	a, b, td, xo, uo := host(x0), host(x1), host(t), host(xt), host(ut)
	for _, s := range [][]float32{a, b, xo, uo} {
		checkLen("path operand", s, rows*d)
	}
	checkLen("t", td, rows)
	c.pool.parallelFor(rows, 4*d+40, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			k := path.At(float64(td[r]))
			flow.TargetRow(k, a[r*d:r*d+d], b[r*d:r*d+d], xo[r*d:r*d+d], uo[r*d:r*d+d])
		}
	})
}

func (c *CPU) DrawBatch(dr BatchDraw, data Buffer, nData, d, rows int, x0, x1, t, xt, ut Buffer) {
	path := mustPath(dr.Path)
	src, td, xo, uo := host(data), host(t), host(xt), host(ut)
	checkLen("data", src, nData*d)
	checkLen("t", td, rows)
	checkLen("xt", xo, rows*d)
	checkLen("ut", uo, rows*d)
	if nData <= 0 || nData > math.MaxUint32 {
		panic(fmt.Sprintf("gpu: DrawBatch over %d data rows", nData))
	}
	x0d, x1d := host(x0), host(x1)
	std := float32(path.PriorStd())
	c.pool.parallelFor(rows, 4*d+60, func(lo, hi int) {
		var z0, z1 [64]float32
		for r := lo; r < hi; r++ {
			blk, lane := uint32(r/4), r%4
			iw := PhiloxBlock(dr.Seed, PurposeIndex, dr.Step, blk)[lane]
			idx := int(IndexBelow(iw, uint32(nData)))
			u := Uniform01(PhiloxBlock(dr.Seed, PurposeTimeU, dr.Step, blk)[lane])
			var nrm float32
			if dr.Time.Kind == flow.TimeLogitNormal {
				nrm = NormalBlock(PhiloxBlock(dr.Seed, PurposeTimeN, dr.Step, blk))[lane]
			}
			tv := float32(flow.Clamp(path, dr.Time.Transform(float64(u), float64(nrm))))
			td[r] = tv
			k := path.At(float64(tv))
			for j0 := 0; j0 < d; j0 += len(z0) {
				w := min(len(z0), d-j0)
				noise := z0[:w]
				normalsAt(noise, dr.Seed, PurposeNoise, dr.Step, r*d+j0, std)
				data1 := src[idx*d+j0 : idx*d+j0+w]
				if x1d != nil {
					copy(x1d[r*d+j0:], data1)
				}
				copy(z1[:w], data1)
				flow.TargetRow(k, noise, z1[:w], xo[r*d+j0:r*d+j0+w], uo[r*d+j0:r*d+j0+w])
				if x0d != nil {
					copy(x0d[r*d+j0:], noise)
				}
			}
		}
	})
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

func (c *CPU) RandNormal(dst Buffer, seed, stream uint64, std float32) {
	d := host(dst)
	c.pool.parallelFor(len(d)/4+1, 80, func(lo, hi int) {
		a, b := min(lo*4, len(d)), min(hi*4, len(d))
		normalsAt(d[a:b], seed, PurposeGeneric, stream, a, std)
	})
}

func (c *CPU) RandRademacher(dst Buffer, seed, stream uint64) {
	d := host(dst)
	for i := range d {
		w := PhiloxBlock(seed, PurposeGeneric, stream, uint32(i/4))[i%4]
		if w>>31 != 0 {
			d[i] = -1
		} else {
			d[i] = 1
		}
	}
}

func (c *CPU) Axpy(alpha float32, x, y Buffer) {
	xd, yd := host(x), host(y)
	checkLen("axpy y", yd, len(xd))
	c.pool.parallelFor(len(xd), 2, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			yd[i] += alpha * xd[i]
		}
	})
}

func stageSlices(coef []float32, ks []Buffer, n int) [][]float32 {
	if len(ks) > MaxStages || len(coef) != len(ks) {
		panic(fmt.Sprintf("gpu: %d stage buffers with %d coefficients (at most %d)", len(ks), len(coef), MaxStages))
	}
	out := make([][]float32, len(ks))
	for i, k := range ks {
		if coef[i] != 0 {
			out[i] = host(k)
			checkLen("stage buffer", out[i], n)
		}
	}
	return out
}

func (c *CPU) LinComb(dst, x Buffer, h float32, coef []float32, ks []Buffer) {
	xd, dd := host(x), host(dst)
	n := len(xd)
	checkLen("lincomb destination", dd, n)
	kd := stageSlices(coef, ks, n)
	c.pool.parallelFor(n, 2*len(ks)+1, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			var s float32
			for j, k := range kd {
				if k != nil {
					s += coef[j] * k[i]
				}
			}
			dd[i] = xd[i] + h*s
		}
	})
}

func (c *CPU) ErrorNorm(x, xNew Buffer, h float32, coef []float32, ks []Buffer, rtol, atol float32, out Buffer) {
	xd, nd := host(x), host(xNew)
	n := len(xd)
	checkLen("error-norm new state", nd, n)
	kd := stageSlices(coef, ks, n)
	sum := 0.0
	for i := 0; i < n; i++ {
		var e float32
		for j, k := range kd {
			if k != nil {
				e += coef[j] * k[i]
			}
		}
		e *= h
		sc := atol + rtol*max(abs32(xd[i]), abs32(nd[i]))
		q := float64(e) / float64(sc)
		sum += q * q
	}
	host(out)[0] = float32(sum)
}

func abs32(v float32) float32 { return math.Float32frombits(math.Float32bits(v) &^ (1 << 31)) }

func (c *CPU) RowDot(rows, cols int, alpha float32, a, b Buffer, beta float32, out Buffer) {
	ad, bd, od := host(a), host(b), host(out)
	checkLen("rowdot a", ad, rows*cols)
	checkLen("rowdot b", bd, rows*cols)
	checkLen("rowdot out", od, rows)
	for r := 0; r < rows; r++ {
		var s float64
		for j := r * cols; j < r*cols+cols; j++ {
			s += float64(ad[j]) * float64(bd[j])
		}
		v := alpha * float32(s)
		if beta != 0 {
			v += beta * od[r]
		}
		od[r] = v
	}
}

func (c *CPU) UnitColumn(rows, cols, j int, e Buffer) {
	ed := host(e)
	checkLen("unit column", ed, rows*cols)
	clear(ed[:rows*cols])
	for r := 0; r < rows; r++ {
		ed[r*cols+j] = 1
	}
}
