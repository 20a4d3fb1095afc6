package gpu

import (
	"errors"
	"fmt"
	"math"

	"github.com/fmgpu/fmgpu/flow"
)

// DeviceBackend is the CUDA backend's logic: every Backend op as launches
// of the kernels in kernels/*.cu (grid shapes, argument order, views as a
// device pointer plus an offset, scratch space for two-pass reductions),
// written once over a launcher. The cuda build runs it on a GPU through
// the CUDA driver API (NewCUDA); the kernelsim build runs the same code,
// with the same kernels compiled for the host, on the CPU (NewKernelSim),
// which is how it is tested without a GPU.
//
// Reductions are deterministic: a first kernel writes one float64 partial
// sum per block over a fixed split of the input (the number of blocks
// depends on the length only, never on the device), and a second,
// single-block kernel adds the partials in a fixed tree. No float atomics:
// the same inputs give the same bits on every run and every GPU.
//
// Like the CPU backend, a DeviceBackend serves one goroutine at a time.
type DeviceBackend struct {
	l    launcher
	err  error
	live map[*devAlloc]struct{}
	// scratch holds reduction partials; every op is ordered in one stream,
	// so one buffer serves them all.
	scratch      devPtr
	scratchBytes int
	launches     int64
	closed       bool
	kc           kernelCall // the call being described (ops run one at a time)
}

// devAlloc is one device allocation; buffers and their views point to it.
type devAlloc struct {
	ptr   devPtr
	n     int
	freed bool
}

// devBuffer is a Buffer of a DeviceBackend: elements [off, off+n) of an
// allocation.
type devBuffer struct {
	d      *DeviceBackend
	a      *devAlloc
	off, n int
}

func (b *devBuffer) Len() int { return b.n }

func (b *devBuffer) Slice(off, n int) Buffer {
	if off < 0 || n < 0 || off+n > b.n {
		panic(fmt.Sprintf("gpu: slice [%d, %d) of a buffer of %d", off, off+n, b.n))
	}
	return &devBuffer{d: b.d, a: b.a, off: b.off + off, n: n}
}

func newDeviceBackend(l launcher) *DeviceBackend {
	return &DeviceBackend{l: l, live: map[*devAlloc]struct{}{}}
}

// Launches is the number of kernels launched so far (fmgpu bench divides
// it by the steps it ran).
func (d *DeviceBackend) Launches() int64 { return d.launches }

func (d *DeviceBackend) Info() DeviceInfo { return d.l.info() }

// fail records the first error; later ops are skipped until Sync.
func (d *DeviceBackend) fail(what string, err error) {
	if err != nil && d.err == nil {
		d.err = fmt.Errorf("gpu: %s: %w", what, err)
	}
}

// buf checks that b is a live buffer of this backend; nil stays nil.
func (d *DeviceBackend) buf(b Buffer) *devBuffer {
	if b == nil {
		return nil
	}
	db, ok := b.(*devBuffer)
	if !ok {
		panic(fmt.Sprintf("gpu: a %T passed to the device backend", b))
	}
	if db == nil {
		return nil
	}
	if db.d != d {
		panic("gpu: a buffer of another device backend")
	}
	if db.a.freed {
		panic("gpu: use of a freed buffer")
	}
	return db
}

// ptr is the device address of b's first element (0 for nil).
func (d *DeviceBackend) ptr(b Buffer) devPtr {
	db := d.buf(b)
	if db == nil {
		return 0
	}
	return db.a.ptr + devPtr(4*db.off)
}

// need checks that b (not nil) has at least n elements.
func (d *DeviceBackend) need(name string, b Buffer, n int) {
	db := d.buf(b)
	if db == nil {
		panic(fmt.Sprintf("gpu: %s is nil", name))
	}
	if db.n < n {
		panic(fmt.Sprintf("gpu: %s has %d elements, need %d", name, db.n, n))
	}
}

// checkCount panics on element counts the kernels' int cannot hold.
func checkCount(what string, n int) {
	if n < 0 || n > math.MaxInt32 {
		panic(fmt.Sprintf("gpu: %s: %d elements (the device backend takes at most 2^31-1)", what, n))
	}
}

func (d *DeviceBackend) launch(k *kernelCall) {
	if d.err != nil {
		return
	}
	if d.closed {
		panic("gpu: device backend used after Close")
	}
	d.launches++
	if err := d.l.launch(k); err != nil {
		d.fail(fmt.Sprintf("launch %s grid (%d,%d,%d) block (%d,%d,%d) args (%s)", k.name,
			k.grid.x, k.grid.y, k.grid.z, k.block.x, k.block.y, k.block.z, k.signature()), err)
	}
}

// call starts describing a kernel call in d's one call record (launchers
// copy what they keep, so describing calls allocates nothing).
func (d *DeviceBackend) call(name string, grid, block dim3) *kernelCall {
	d.kc.name, d.kc.grid, d.kc.block, d.kc.shared, d.kc.n = name, grid, block, 0, 0
	return &d.kc
}

// Launch shapes. Elementwise kernels use grid-stride loops over at most
// maxElemBlocks blocks of elemThreads threads.
const (
	elemThreads   = 256
	maxElemBlocks = 4096
	// redThreads and redPerBlock: the first pass of a reduction gives each
	// block of redThreads threads at least redPerBlock elements, over at
	// most maxRedBlocks blocks (the final pass sums those partials in one
	// block).
	redThreads   = 256
	redPerBlock  = 2048
	maxRedBlocks = 1024
)

func blocks1D(n int) dim3 {
	b := (n + elemThreads - 1) / elemThreads
	return dim3{uint32(min(max(b, 1), maxElemBlocks)), 1, 1}
}

var elemBlock = dim3{elemThreads, 1, 1}

func redBlocks(n int) int { return min(max((n+redPerBlock-1)/redPerBlock, 1), maxRedBlocks) }

// scratchPtr returns scratch space of at least bytes.
func (d *DeviceBackend) scratchPtr(bytes int) devPtr {
	if d.err != nil || bytes <= d.scratchBytes {
		return d.scratch
	}
	if d.scratch != 0 {
		// Earlier launches may still read it.
		d.fail("sync before growing the scratch buffer", d.l.sync())
		d.fail("free scratch", d.l.free(d.scratch))
		d.scratch, d.scratchBytes = 0, 0
	}
	if d.err != nil {
		return 0
	}
	bytes = max(bytes, 64<<10)
	p, err := d.l.alloc(bytes)
	if err != nil {
		d.fail(fmt.Sprintf("allocate %d bytes of scratch", bytes), err)
		return 0
	}
	d.scratch, d.scratchBytes = p, bytes
	return p
}

// finalSum launches the second pass of a reduction: out[0] = float32(scale
// * sum of count float64 partials at p).
func (d *DeviceBackend) finalSum(p devPtr, count int, scale float64, out Buffer) {
	d.need("reduction output", out, 1)
	d.launch(d.call("sum_final_reduce_kernel", dim3{1, 1, 1}, dim3{redThreads, 1, 1}).
		ptr(p).i32(count).f64(scale).ptr(d.ptr(out)))
}

func (d *DeviceBackend) Alloc(n int) Buffer {
	if n < 0 {
		panic("gpu: negative allocation")
	}
	checkCount("Alloc", n)
	a := &devAlloc{n: n}
	b := &devBuffer{d: d, a: a, n: n}
	if n == 0 || d.err != nil {
		return b
	}
	p, err := d.l.alloc(4 * n)
	if err != nil {
		d.fail(fmt.Sprintf("allocate %d floats", n), err)
		return b
	}
	a.ptr = p
	d.live[a] = struct{}{}
	d.fail("zero a new buffer", d.l.memset32(p, 0, n))
	return b
}

// Free releases a buffer made by Alloc; freeing a view, nil, or a buffer
// twice does nothing.
func (d *DeviceBackend) Free(b Buffer) {
	db := d.bufAny(b)
	if db == nil || db.a.freed || db.off != 0 || db.n != db.a.n {
		return
	}
	db.a.freed = true
	if db.a.ptr != 0 {
		delete(d.live, db.a)
		d.fail("free", d.l.free(db.a.ptr))
	}
}

// bufAny is buf without the freed check.
func (d *DeviceBackend) bufAny(b Buffer) *devBuffer {
	if b == nil {
		return nil
	}
	db, ok := b.(*devBuffer)
	if !ok {
		panic(fmt.Sprintf("gpu: a %T passed to the device backend", b))
	}
	return db
}

// usable reports whether an op on b may touch the device: not after an
// error, and not on an allocation that failed.
func (d *DeviceBackend) usable(bs ...Buffer) bool {
	if d.err != nil {
		return false
	}
	for _, b := range bs {
		if db := d.buf(b); db != nil && db.n > 0 && db.a.ptr == 0 {
			d.fail("use of a buffer whose allocation failed", errors.New("no device memory"))
			return false
		}
	}
	return true
}

func (d *DeviceBackend) Upload(dst Buffer, src []float32) {
	d.need("upload destination", dst, len(src))
	if len(src) == 0 || !d.usable(dst) {
		return
	}
	d.fail("upload", d.l.upload(d.ptr(dst), src))
}

func (d *DeviceBackend) Download(dst []float32, src Buffer) {
	d.need("download source", src, len(dst))
	if len(dst) == 0 || !d.usable(src) {
		return
	}
	d.fail("download", d.l.download(dst, d.ptr(src)))
}

func (d *DeviceBackend) Copy(dst, src Buffer) {
	n := d.buf(src).n
	d.need("copy destination", dst, n)
	if n == 0 || !d.usable(dst, src) {
		return
	}
	d.fail("copy", d.l.copyDtoD(d.ptr(dst), d.ptr(src), 4*n))
}

func (d *DeviceBackend) Fill(dst Buffer, v float32) {
	n := d.buf(dst).n
	if n == 0 || !d.usable(dst) {
		return
	}
	d.launch(d.call("fill_forward_kernel", blocks1D(n), elemBlock).ptr(d.ptr(dst)).f32(v).i32(n))
}

func (d *DeviceBackend) Sync() error {
	if !d.closed {
		d.fail("sync", d.l.sync())
	}
	err := d.err
	d.err = nil
	return err
}

// Close frees every buffer still allocated and releases the device.
func (d *DeviceBackend) Close() error {
	if d.closed {
		return nil
	}
	err := d.Sync()
	for a := range d.live {
		a.freed = true
		if e := d.l.free(a.ptr); err == nil && e != nil {
			err = fmt.Errorf("gpu: free: %w", e)
		}
	}
	d.live = nil
	if d.scratch != 0 {
		if e := d.l.free(d.scratch); err == nil && e != nil {
			err = fmt.Errorf("gpu: free scratch: %w", e)
		}
	}
	d.closed = true
	if e := d.l.close(); err == nil && e != nil {
		err = fmt.Errorf("gpu: close: %w", e)
	}
	return err
}

// matrixLen is the least length of a rows x cols matrix with row stride ld.
func matrixLen(rows, cols, ld int) int {
	if rows == 0 || cols == 0 {
		return 0
	}
	return (rows-1)*ld + cols
}

func checkLd(name string, ld, cols int) {
	if ld < max(1, cols) {
		panic(fmt.Sprintf("gpu: %s = %d < max(1, %d)", name, ld, cols))
	}
}

// Gemm tiles: gemm.cuh's GEMM_BM x GEMM_BN outputs per block of
// gemmThreads threads.
const (
	gemmTile    = 64
	gemmThreads = 16
)

func gemmGrid(m, n int) dim3 {
	gy := (m + gemmTile - 1) / gemmTile
	if gy > 65535 {
		panic(fmt.Sprintf("gpu: Gemm with %d rows (the device backend takes at most %d)", m, 65535*gemmTile))
	}
	return dim3{uint32((n + gemmTile - 1) / gemmTile), uint32(gy), 1}
}

func (d *DeviceBackend) Gemm(transA, transB bool, m, n, k int, alpha float32, a Buffer, lda int, b Buffer, ldb int, beta float32, c Buffer, ldc int) {
	if m < 0 || n < 0 || k < 0 {
		panic(fmt.Sprintf("gpu: Gemm with m, n, k = %d, %d, %d", m, n, k))
	}
	rowsA, colsA := m, k
	if transA {
		rowsA, colsA = k, m
	}
	rowsB, colsB := k, n
	if transB {
		rowsB, colsB = n, k
	}
	checkLd("lda", lda, colsA)
	checkLd("ldb", ldb, colsB)
	checkLd("ldc", ldc, n)
	if m == 0 || n == 0 {
		return
	}
	checkCount("Gemm C", matrixLen(m, n, ldc))
	d.need("Gemm C", c, matrixLen(m, n, ldc))
	if k > 0 {
		checkCount("Gemm A", matrixLen(rowsA, colsA, lda))
		checkCount("Gemm B", matrixLen(rowsB, colsB, ldb))
		d.need("Gemm A", a, matrixLen(rowsA, colsA, lda))
		d.need("Gemm B", b, matrixLen(rowsB, colsB, ldb))
	}
	if !d.usable(a, b, c) {
		return
	}
	name := "gemm_nn_forward_kernel"
	switch {
	case transA && transB:
		name = "gemm_tt_forward_kernel"
	case transA:
		name = "gemm_tn_forward_kernel"
	case transB:
		name = "gemm_nt_forward_kernel"
	}
	d.launch(d.call(name, gemmGrid(m, n), dim3{gemmThreads, gemmThreads, 1}).
		i32(m).i32(n).i32(k).f32(alpha).ptr(d.ptr(a)).i32(lda).ptr(d.ptr(b)).i32(ldb).
		f32(beta).ptr(d.ptr(c)).i32(ldc))
}

func (d *DeviceBackend) Linear(rows, in, out int, x Buffer, ldx int, w, bias Buffer, act Act, pre, y Buffer) {
	if rows < 0 || in < 0 || out < 0 {
		panic(fmt.Sprintf("gpu: Linear with rows, in, out = %d, %d, %d", rows, in, out))
	}
	checkLd("ldx", ldx, in)
	checkAct(act)
	if rows == 0 || out == 0 {
		return
	}
	checkCount("Linear output", rows*out)
	d.need("linear output", y, rows*out)
	if pre != nil {
		d.need("linear pre-activation", pre, rows*out)
	}
	if bias != nil {
		d.need("linear bias", bias, out)
	}
	if in > 0 {
		d.need("linear input", x, matrixLen(rows, in, ldx))
		d.need("linear weights", w, out*in)
	}
	if !d.usable(x, w, bias, pre, y) {
		return
	}
	d.launch(d.call("linear_forward_kernel", gemmGrid(rows, out), dim3{gemmThreads, gemmThreads, 1}).
		i32(rows).i32(in).i32(out).ptr(d.ptr(x)).i32(ldx).ptr(d.ptr(w)).ptr(d.ptr(bias)).
		i32(int(act)).ptr(d.ptr(pre)).ptr(d.ptr(y)))
}

func checkAct(act Act) {
	if act != ActNone && act != ActSiLU {
		panic(fmt.Sprintf("gpu: unknown activation %d", act))
	}
}

// bias_act_backward_kernel's blocks: 32 columns by biasRowThreads threads,
// each block covering a chunk of rows.
const (
	biasColThreads = 32
	biasRowThreads = 8
	maxBiasChunks  = 64
)

func (d *DeviceBackend) BiasActBackward(act Act, rows, cols int, dY, pre, dPre, dBias Buffer) {
	checkAct(act)
	if rows < 0 || cols < 0 {
		panic(fmt.Sprintf("gpu: BiasActBackward with rows, cols = %d, %d", rows, cols))
	}
	n := rows * cols
	checkCount("BiasActBackward", n)
	d.need("dY", dY, n)
	d.need("dPre", dPre, n)
	if act != ActNone {
		d.need("pre", pre, n)
	}
	if dBias != nil {
		d.need("dBias", dBias, cols)
	}
	if cols == 0 || !d.usable(dY, pre, dPre, dBias) {
		return
	}
	if rows == 0 {
		if dBias != nil {
			d.Fill(dBias.Slice(0, cols), 0)
		}
		return
	}
	chunk := max(biasRowThreads, (rows+maxBiasChunks-1)/maxBiasChunks)
	chunks := (rows + chunk - 1) / chunk
	var partial devPtr
	if dBias != nil {
		partial = d.scratchPtr(8 * chunks * cols)
	}
	colBlocks := (cols + biasColThreads - 1) / biasColThreads
	if chunks > 65535 {
		panic("gpu: BiasActBackward: too many row chunks")
	}
	d.launch(d.call("bias_act_backward_kernel", dim3{uint32(colBlocks), uint32(chunks), 1}, dim3{biasColThreads, biasRowThreads, 1}).
		i32(int(act)).i32(rows).i32(cols).ptr(d.ptr(dY)).ptr(d.ptr(pre)).ptr(d.ptr(dPre)).
		ptr(partial).i32(chunk))
	if dBias != nil {
		d.launch(d.call("bias_grad_reduce_kernel", blocks1D(cols), elemBlock).
			ptr(partial).i32(chunks).i32(cols).ptr(d.ptr(dBias)))
	}
}

func (d *DeviceBackend) EmbedInput(rows, d0 int, x, t Buffer, emb TimeEmbedding, out Buffer) {
	if rows < 0 || d0 < 0 || emb.Freqs < 0 {
		panic(fmt.Sprintf("gpu: EmbedInput with rows, d, freqs = %d, %d, %d", rows, d0, emb.Freqs))
	}
	w := d0 + emb.Width()
	n := rows * w
	checkCount("EmbedInput", n)
	if d0 == 0 && x == nil {
		x = t // embedding only (the U-Net's time input): x is never read
	}
	d.need("embed x", x, rows*d0)
	d.need("embed t", t, rows)
	d.need("embed output", out, n)
	if n == 0 || !d.usable(x, t, out) {
		return
	}
	d.launch(d.call("embed_input_forward_kernel", blocks1D(n), elemBlock).
		i32(rows).i32(d0).ptr(d.ptr(x)).ptr(d.ptr(t)).i32(emb.Freqs).f64(float64(emb.Scale)).
		f64(float64(emb.MaxPeriod)).ptr(d.ptr(out)))
}

func (d *DeviceBackend) MSELoss(pred, target Buffer, scale float32, grad, loss Buffer) {
	n := d.buf(pred).n
	d.need("target", target, n)
	d.need("grad", grad, n)
	d.need("loss", loss, 1)
	if !d.usable(pred, target, grad, loss) {
		return
	}
	nb := redBlocks(n)
	part := d.scratchPtr(8 * nb)
	if n > 0 {
		d.launch(d.call("mse_loss_backward_kernel", dim3{uint32(nb), 1, 1}, dim3{redThreads, 1, 1}).
			ptr(d.ptr(pred)).ptr(d.ptr(target)).f32(2 * scale).ptr(d.ptr(grad)).i32(n).ptr(part))
	}
	d.finalSum(part, min(n, nb), float64(scale), loss)
}

func (d *DeviceBackend) SumSquares(x, out Buffer) {
	n := d.buf(x).n
	d.need("sum of squares output", out, 1)
	if !d.usable(x, out) {
		return
	}
	nb := redBlocks(n)
	part := d.scratchPtr(8 * nb)
	if n > 0 {
		d.launch(d.call("sum_squares_reduce_kernel", dim3{uint32(nb), 1, 1}, dim3{redThreads, 1, 1}).
			ptr(d.ptr(x)).i32(n).ptr(part))
	}
	d.finalSum(part, min(n, nb), 1, out)
}

func (d *DeviceBackend) AdamEMA(s AdamStep, params, grads, m, v, ema, gradSumSq, status Buffer) {
	n := d.buf(params).n
	d.need("grads", grads, n)
	d.need("adam m", m, n)
	d.need("adam v", v, n)
	d.need("gradient sum of squares", gradSumSq, 1)
	d.need("status", status, 1)
	if s.EMADecay > 0 {
		d.need("ema", ema, n)
	} else {
		ema = nil
	}
	if !d.usable(params, grads, m, v, ema, gradSumSq, status) {
		return
	}
	decoupled := 0
	if s.Decoupled {
		decoupled = 1
	}
	// The kernel runs with at least one block even for n = 0, so that a
	// non-finite gradient norm is still recorded in status.
	d.launch(d.call("adam_ema_update_kernel", blocks1D(n), elemBlock).
		ptr(d.ptr(params)).ptr(d.ptr(grads)).ptr(d.ptr(m)).ptr(d.ptr(v)).ptr(d.ptr(ema)).
		ptr(d.ptr(gradSumSq)).ptr(d.ptr(status)).
		f32(s.LR).f32(s.Beta1).f32(s.Beta2).f32(s.Eps).f32(s.WeightDecay).i32(decoupled).
		f32(1 / s.BiasCorr1).f32(1 / s.BiasCorr2).f32(s.EMADecay).f32(s.MaxGradNorm).f32(float32(s.Step)).i32(n))
}

// pathArgs are a path's kernel scalars: its kind and two parameters
// (ot: sigma_min; vp: beta_min, beta_max; ve: sigma_min, sigma_max).
func pathArgs(k *kernelCall, p flow.Spec) *kernelCall {
	if _, err := flow.New(p); err != nil {
		panic("gpu: " + err.Error())
	}
	var p0, p1 float64
	switch p.Kind {
	case flow.KindOT:
		p0 = p.SigmaMin
	case flow.KindVP:
		p0, p1 = p.BetaMin, p.BetaMax
	case flow.KindVE:
		p0, p1 = p.SigmaMin, p.SigmaMax
	}
	return k.i32(int(p.Kind)).f64(p0).f64(p1)
}

// Row-tiled path kernels: a block of pathThreads threads covers
// pathRowsPerBlock(d) rows, first computing each row's coefficients once.
const pathThreads = 256

func pathRowsPerBlock(d int) int { return min(max(1024/max(d, 1), 1), pathThreads) }

func (d *DeviceBackend) PathTarget(p flow.Spec, rows, d0 int, x0, x1, t, xt, ut Buffer) {
	if rows < 0 || d0 < 0 {
		panic(fmt.Sprintf("gpu: PathTarget with rows, d = %d, %d", rows, d0))
	}
	n := rows * d0
	checkCount("PathTarget", n)
	for _, b := range []struct {
		name string
		b    Buffer
	}{{"x0", x0}, {"x1", x1}, {"xt", xt}, {"ut", ut}} {
		d.need("path operand "+b.name, b.b, n)
	}
	d.need("t", t, rows)
	k := pathArgs(d.call("path_target_forward_kernel", dim3{}, dim3{pathThreads, 1, 1}), p)
	if n == 0 || !d.usable(x0, x1, t, xt, ut) {
		return
	}
	rpb := pathRowsPerBlock(d0)
	k.grid = dim3{uint32((rows + rpb - 1) / rpb), 1, 1}
	d.launch(k.i32(rows).i32(d0).ptr(d.ptr(x0)).ptr(d.ptr(x1)).ptr(d.ptr(t)).ptr(d.ptr(xt)).ptr(d.ptr(ut)).i32(rpb))
}

func (d *DeviceBackend) DrawBatch(dr BatchDraw, data Buffer, nData, d0, rows int, x0, x1, t, xt, ut Buffer) {
	path, err := flow.New(dr.Path)
	if err != nil {
		panic("gpu: " + err.Error())
	}
	if nData <= 0 || nData > math.MaxInt32 {
		panic(fmt.Sprintf("gpu: DrawBatch over %d data rows", nData))
	}
	if rows < 0 || d0 < 0 {
		panic(fmt.Sprintf("gpu: DrawBatch with rows, d = %d, %d", rows, d0))
	}
	n := rows * d0
	checkCount("DrawBatch", n)
	checkCount("DrawBatch data", nData*d0)
	d.need("data", data, nData*d0)
	d.need("t", t, rows)
	d.need("xt", xt, n)
	d.need("ut", ut, n)
	if x0 != nil {
		d.need("x0", x0, n)
	}
	if x1 != nil {
		d.need("x1", x1, n)
	}
	if rows == 0 || !d.usable(data, x0, x1, t, xt, ut) {
		return
	}
	lo, hi := path.TimeRange()
	rpb := pathRowsPerBlock(d0)
	k := d.call("draw_batch_forward_kernel", dim3{uint32((rows + rpb - 1) / rpb), 1, 1}, dim3{pathThreads, 1, 1}).
		u64(dr.Seed).u64(dr.Step)
	pathArgs(k, dr.Path).f64(lo).f64(hi).f32(float32(path.PriorStd())).
		i32(int(dr.Time.Kind)).f64(dr.Time.Mean).f64(dr.Time.Std).f64(dr.Time.Shift).
		ptr(d.ptr(data)).i32(nData).i32(d0).i32(rows).
		ptr(d.ptr(x0)).ptr(d.ptr(x1)).ptr(d.ptr(t)).ptr(d.ptr(xt)).ptr(d.ptr(ut)).i32(rpb)
	d.launch(k)
}

// philoxGrid covers n elements with one thread per Philox block of four.
func philoxGrid(n int) dim3 { return blocks1D((n + 3) / 4) }

func (d *DeviceBackend) RandNormal(dst Buffer, seed, stream uint64, std float32) {
	n := d.buf(dst).n
	if n == 0 || !d.usable(dst) {
		return
	}
	d.launch(d.call("rand_normal_forward_kernel", philoxGrid(n), elemBlock).
		ptr(d.ptr(dst)).i32(n).u64(seed).u64(stream).f32(std))
}

func (d *DeviceBackend) RandRademacher(dst Buffer, seed, stream uint64) {
	n := d.buf(dst).n
	if n == 0 || !d.usable(dst) {
		return
	}
	d.launch(d.call("rand_rademacher_forward_kernel", philoxGrid(n), elemBlock).
		ptr(d.ptr(dst)).i32(n).u64(seed).u64(stream))
}

func (d *DeviceBackend) Axpy(alpha float32, x, y Buffer) {
	n := d.buf(x).n
	d.need("axpy y", y, n)
	if n == 0 || !d.usable(x, y) {
		return
	}
	d.launch(d.call("axpy_update_kernel", blocks1D(n), elemBlock).f32(alpha).ptr(d.ptr(x)).ptr(d.ptr(y)).i32(n))
}

// stageArgs appends MaxStages stage pointers (0 where the coefficient is 0
// or the stage absent) and MaxStages coefficients.
func (d *DeviceBackend) stageArgs(k *kernelCall, coef []float32, ks []Buffer, n int) *kernelCall {
	if len(ks) > MaxStages || len(coef) != len(ks) {
		panic(fmt.Sprintf("gpu: %d stage buffers with %d coefficients (at most %d)", len(ks), len(coef), MaxStages))
	}
	var c [MaxStages]float32
	for i := 0; i < MaxStages; i++ {
		var p devPtr
		if i < len(ks) && coef[i] != 0 {
			d.need("stage buffer", ks[i], n)
			p = d.ptr(ks[i])
			c[i] = coef[i]
		}
		k.ptr(p)
	}
	for _, v := range c {
		k.f32(v)
	}
	return k
}

func (d *DeviceBackend) LinComb(dst, x Buffer, h float32, coef []float32, ks []Buffer) {
	n := d.buf(x).n
	d.need("lincomb destination", dst, n)
	k := d.stageArgs(d.call("lin_comb_update_kernel", blocks1D(n), elemBlock).ptr(d.ptr(dst)).ptr(d.ptr(x)).f32(h), coef, ks, n)
	if n == 0 || !d.usable(append([]Buffer{dst, x}, ks...)...) {
		return
	}
	d.launch(k.i32(n))
}

func (d *DeviceBackend) ErrorNorm(x, xNew Buffer, h float32, coef []float32, ks []Buffer, rtol, atol float32, out Buffer) {
	n := d.buf(x).n
	d.need("error-norm new state", xNew, n)
	d.need("error-norm output", out, 1)
	nb := redBlocks(n)
	k := d.stageArgs(d.call("error_norm_reduce_kernel", dim3{uint32(nb), 1, 1}, dim3{redThreads, 1, 1}).
		ptr(d.ptr(x)).ptr(d.ptr(xNew)).f32(h), coef, ks, n)
	if !d.usable(append([]Buffer{x, xNew, out}, ks...)...) {
		return
	}
	part := d.scratchPtr(8 * nb)
	if n > 0 {
		d.launch(k.f32(rtol).f32(atol).i32(n).ptr(part))
	}
	d.finalSum(part, min(n, nb), 1, out)
}

// row_dot_forward_kernel: one warp per row, rowDotWarps warps per block.
const rowDotWarps = 8

func (d *DeviceBackend) RowDot(rows, cols int, alpha float32, a, b Buffer, beta float32, out Buffer) {
	if rows < 0 || cols < 0 {
		panic(fmt.Sprintf("gpu: RowDot with rows, cols = %d, %d", rows, cols))
	}
	checkCount("RowDot", rows*cols)
	d.need("rowdot a", a, rows*cols)
	d.need("rowdot b", b, rows*cols)
	d.need("rowdot out", out, rows)
	if rows == 0 || !d.usable(a, b, out) {
		return
	}
	d.launch(d.call("row_dot_forward_kernel", dim3{uint32((rows + rowDotWarps - 1) / rowDotWarps), 1, 1}, dim3{32 * rowDotWarps, 1, 1}).
		i32(rows).i32(cols).f32(alpha).ptr(d.ptr(a)).ptr(d.ptr(b)).f32(beta).ptr(d.ptr(out)))
}

func (d *DeviceBackend) UnitColumn(rows, cols, j int, e Buffer) {
	if rows < 0 || cols < 0 || (rows > 0 && (j < 0 || j >= cols)) {
		panic(fmt.Sprintf("gpu: UnitColumn(%d, %d, %d)", rows, cols, j))
	}
	n := rows * cols
	checkCount("UnitColumn", n)
	d.need("unit column", e, n)
	if n == 0 || !d.usable(e) {
		return
	}
	d.launch(d.call("unit_column_forward_kernel", blocks1D(n), elemBlock).ptr(d.ptr(e)).i32(n).i32(cols).i32(j))
}
