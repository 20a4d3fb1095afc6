package gpu

import (
	"fmt"
	"math"
)

// The image ops (ImageOps) of the device backend: launches of
// kernels/conv.cu, norm.cu, image.cu, attn.cu and gemm.cu's batched
// products. Launches per op: one each, except Conv2DBackwardFilter (the
// split product, its reduction when split, the bias gradient when asked:
// 1 to 3) and GroupNormBackward (2).

// convSizes checks a convolution's shape and operand lengths and returns
// its output positions per image.
func (d *DeviceBackend) convSizes(s ConvShape) (p int) {
	if err := s.Validate(); err != nil {
		panic(err.Error())
	}
	p = s.OutH() * s.OutW()
	checkCount("convolution input", s.Batch*s.InC*s.H*s.W)
	checkCount("convolution output", s.Batch*s.OutC*p)
	checkCount("convolution filter", s.OutC*s.InC*s.K*s.K)
	return p
}

// convArgs appends the kernels' ten shape arguments (FM_CONV_PARAMS).
func convArgs(k *kernelCall, s ConvShape) *kernelCall {
	return k.i32(s.Batch).i32(s.InC).i32(s.H).i32(s.W).i32(s.OutC).i32(s.K).i32(s.Stride).i32(s.Pad).
		i32(s.OutH()).i32(s.OutW())
}

// tileGrid is the implicit GEMM's grid over an m x n output (64 x 64 tiles).
func tileGrid(what string, m, n, z int) dim3 {
	gy := (m + gemmTile - 1) / gemmTile
	gx := (n + gemmTile - 1) / gemmTile
	if gy > 65535 || gx > math.MaxInt32 || z > 65535 {
		panic(fmt.Sprintf("gpu: %s: grid (%d, %d, %d) beyond the device's limits", what, gx, gy, z))
	}
	return dim3{uint32(gx), uint32(gy), uint32(z)}
}

func (d *DeviceBackend) Conv2D(s ConvShape, x, w, bias, y Buffer) {
	p := d.convSizes(s)
	d.need("conv x", x, s.Batch*s.InC*s.H*s.W)
	d.need("conv w", w, s.OutC*s.InC*s.K*s.K)
	if bias != nil {
		d.need("conv bias", bias, s.OutC)
	}
	d.need("conv y", y, s.Batch*s.OutC*p)
	if s.Batch == 0 || !d.usable(x, w, bias, y) {
		return
	}
	k := d.call("conv2d_forward_kernel", tileGrid("Conv2D", s.OutC, s.Batch*p, 1), dim3{gemmThreads, gemmThreads, 1})
	d.launch(convArgs(k, s).ptr(d.ptr(x)).ptr(d.ptr(w)).ptr(d.ptr(bias)).ptr(d.ptr(y)))
}

func (d *DeviceBackend) Conv2DBackwardData(s ConvShape, dy, w, dx Buffer) {
	p := d.convSizes(s)
	d.need("conv dy", dy, s.Batch*s.OutC*p)
	d.need("conv w", w, s.OutC*s.InC*s.K*s.K)
	d.need("conv dx", dx, s.Batch*s.InC*s.H*s.W)
	if s.Batch == 0 || !d.usable(dy, w, dx) {
		return
	}
	k := d.call("conv2d_data_backward_kernel", tileGrid("Conv2DBackwardData", s.InC, s.Batch*s.H*s.W, 1),
		dim3{gemmThreads, gemmThreads, 1})
	d.launch(convArgs(k, s).ptr(d.ptr(dy)).ptr(d.ptr(w)).ptr(d.ptr(dx)))
}

// The filter gradient's sum over batch x positions is split into chunks
// (blockIdx.z) when its 64 x 64 output tiles alone would leave the GPU
// idle: enough chunks for about filterBlocks blocks (several waves on a
// GPU of 100+ SMs holding 3 of these blocks each), each of at least
// filterMinChunk and at most filterMaxChunk terms (float32 accumulation
// within a chunk, double across). The split depends on the shape only.
const (
	filterBlocks   = 1024
	filterMinChunk = 256
	filterMaxChunk = 4096
)

// filterSplit returns the chunk length (a multiple of the tile depth 16)
// and the number of chunks for a sum of kdim terms over tiles output tiles.
func filterSplit(kdim, tiles int) (chunk, splits int) {
	splits = min((filterBlocks+tiles-1)/tiles, (kdim+filterMinChunk-1)/filterMinChunk)
	splits = max(splits, (kdim+filterMaxChunk-1)/filterMaxChunk, 1)
	chunk = max((kdim+splits-1)/splits, (kdim+65534)/65535)
	chunk = (chunk + 15) / 16 * 16
	return chunk, (kdim + chunk - 1) / chunk
}

func (d *DeviceBackend) Conv2DBackwardFilter(s ConvShape, x, dy, dw, dbias Buffer) {
	p := d.convSizes(s)
	nw := s.OutC * s.InC * s.K * s.K
	d.need("conv x", x, s.Batch*s.InC*s.H*s.W)
	d.need("conv dy", dy, s.Batch*s.OutC*p)
	d.need("conv dw", dw, nw)
	if dbias != nil {
		d.need("conv dbias", dbias, s.OutC)
	}
	if !d.usable(x, dy, dw, dbias) {
		return
	}
	if s.Batch == 0 {
		d.Fill(dw.Slice(0, nw), 0)
		if dbias != nil {
			d.Fill(dbias.Slice(0, s.OutC), 0)
		}
		return
	}
	kdim, n := s.Batch*p, s.InC*s.K*s.K
	grid := tileGrid("Conv2DBackwardFilter", s.OutC, n, 1)
	chunk, splits := filterSplit(kdim, int(grid.x*grid.y))
	grid.z = uint32(splits)
	var partial devPtr
	if splits > 1 {
		checkCount("Conv2DBackwardFilter partial sums", splits*nw)
		partial = d.scratchPtr(8 * splits * nw)
	}
	k := d.call("conv2d_filter_backward_kernel", grid, dim3{gemmThreads, gemmThreads, 1})
	d.launch(convArgs(k, s).ptr(d.ptr(x)).ptr(d.ptr(dy)).i32(chunk).ptr(d.ptr(dw)).ptr(partial))
	if splits > 1 {
		d.launch(d.call("bias_grad_reduce_kernel", blocks1D(nw), elemBlock).
			ptr(partial).i32(splits).i32(nw).ptr(d.ptr(dw)))
	}
	if dbias != nil {
		d.launch(d.call("conv2d_bias_backward_kernel", dim3{uint32(s.OutC), 1, 1}, dim3{redThreads, 1, 1}).
			i32(s.Batch).i32(s.OutC).i32(p).ptr(d.ptr(dy)).ptr(d.ptr(dbias)))
	}
}

// groupNormSizes checks a group norm's shape and returns the images'
// element count.
func groupNormSizes(s GroupNormShape) int {
	if err := s.Validate(); err != nil {
		panic(err.Error())
	}
	n := s.Batch * s.C * s.HW
	checkCount("GroupNorm", n)
	checkCount("GroupNorm statistics", s.Batch*s.Groups)
	return n
}

func (d *DeviceBackend) GroupNorm(s GroupNormShape, x, gamma, beta, y, mean, rstd Buffer) {
	n := groupNormSizes(s)
	d.need("group norm x", x, n)
	d.need("group norm gamma", gamma, s.C)
	d.need("group norm beta", beta, s.C)
	d.need("group norm y", y, n)
	d.need("group norm mean", mean, s.Batch*s.Groups)
	d.need("group norm rstd", rstd, s.Batch*s.Groups)
	if s.Batch == 0 || !d.usable(x, gamma, beta, y, mean, rstd) {
		return
	}
	d.launch(d.call("group_norm_forward_kernel", dim3{uint32(s.Batch * s.Groups), 1, 1}, dim3{redThreads, 1, 1}).
		i32(s.C).i32(s.HW).i32(s.Groups).f32(s.Eps).ptr(d.ptr(x)).ptr(d.ptr(gamma)).ptr(d.ptr(beta)).
		ptr(d.ptr(y)).ptr(d.ptr(mean)).ptr(d.ptr(rstd)))
}

func (d *DeviceBackend) GroupNormBackward(s GroupNormShape, dy, x, gamma, mean, rstd, dx, dgamma, dbeta Buffer) {
	n := groupNormSizes(s)
	d.need("group norm dy", dy, n)
	d.need("group norm x", x, n)
	d.need("group norm gamma", gamma, s.C)
	d.need("group norm mean", mean, s.Batch*s.Groups)
	d.need("group norm rstd", rstd, s.Batch*s.Groups)
	d.need("group norm dx", dx, n)
	d.need("group norm dgamma", dgamma, s.C)
	d.need("group norm dbeta", dbeta, s.C)
	if !d.usable(dy, x, gamma, mean, rstd, dx, dgamma, dbeta) {
		return
	}
	checkCount("GroupNormBackward partial sums", 2*s.Batch*s.C)
	part := d.scratchPtr(8 * max(2*s.Batch*s.C, 1))
	if s.Batch > 0 {
		d.launch(d.call("group_norm_backward_kernel", dim3{uint32(s.Batch * s.Groups), 1, 1}, dim3{redThreads, 1, 1}).
			i32(s.Batch).i32(s.C).i32(s.HW).i32(s.Groups).ptr(d.ptr(dy)).ptr(d.ptr(x)).ptr(d.ptr(gamma)).
			ptr(d.ptr(mean)).ptr(d.ptr(rstd)).ptr(d.ptr(dx)).ptr(part))
	}
	d.launch(d.call("group_norm_param_backward_reduce_kernel", blocks1D(s.C), elemBlock).
		i32(s.Batch).i32(s.C).ptr(part).ptr(d.ptr(dgamma)).ptr(d.ptr(dbeta)))
}

func (d *DeviceBackend) Activate(act Act, x, y Buffer) {
	checkAct(act)
	n := d.buf(x).n
	d.need("activation output", y, n)
	if n == 0 || !d.usable(x, y) {
		return
	}
	d.launch(d.call("activate_forward_kernel", blocks1D(n), elemBlock).i32(int(act)).ptr(d.ptr(x)).ptr(d.ptr(y)).i32(n))
}

// planes checks batch x c planes of hw elements and returns their count.
func planes(what string, batch, c, hw int) int {
	if batch < 0 || c < 0 || hw < 0 {
		panic(fmt.Sprintf("gpu: %s with batch, channels, positions = %d, %d, %d", what, batch, c, hw))
	}
	checkCount(what, batch*c*hw)
	return batch * c
}

func (d *DeviceBackend) AddChannelBias(batch, c, hw int, x, bias, y Buffer) {
	rows := planes("AddChannelBias", batch, c, hw)
	d.need("channel bias x", x, rows*hw)
	d.need("channel bias", bias, rows)
	d.need("channel bias y", y, rows*hw)
	if rows*hw == 0 || !d.usable(x, bias, y) {
		return
	}
	d.launch(d.call("add_channel_bias_forward_kernel", blocks1D(rows*hw), elemBlock).
		i32(rows).i32(hw).ptr(d.ptr(x)).ptr(d.ptr(bias)).ptr(d.ptr(y)))
}

// channel_sum_reduce_kernel and the softmax kernels: one warp per row,
// rowWarps warps per block.
const rowWarps = 8

func rowGrid(rows int) dim3 { return dim3{uint32((rows + rowWarps - 1) / rowWarps), 1, 1} }

var rowBlock = dim3{32 * rowWarps, 1, 1}

func (d *DeviceBackend) ChannelSum(batch, c, hw int, x, out Buffer) {
	rows := planes("ChannelSum", batch, c, hw)
	d.need("channel sum x", x, rows*hw)
	d.need("channel sum output", out, rows)
	if rows == 0 || !d.usable(x, out) {
		return
	}
	if hw == 0 {
		d.Fill(out.Slice(0, rows), 0)
		return
	}
	d.launch(d.call("channel_sum_reduce_kernel", rowGrid(rows), rowBlock).i32(rows).i32(hw).ptr(d.ptr(x)).ptr(d.ptr(out)))
}

func (d *DeviceBackend) Upsample2x(batch, c, h, w int, x, y Buffer) {
	if h < 0 || w < 0 {
		panic(fmt.Sprintf("gpu: Upsample2x of %d x %d images", h, w))
	}
	pl := planes("Upsample2x", batch, c, 4*h*w)
	d.need("upsample x", x, pl*h*w)
	d.need("upsample y", y, pl*4*h*w)
	if pl*h*w == 0 || !d.usable(x, y) {
		return
	}
	d.launch(d.call("upsample2x_forward_kernel", blocks1D(pl*4*h*w), elemBlock).
		i32(pl).i32(h).i32(w).ptr(d.ptr(x)).ptr(d.ptr(y)))
}

func (d *DeviceBackend) Upsample2xBackward(batch, c, h, w int, dy, dx Buffer) {
	if h < 0 || w < 0 {
		panic(fmt.Sprintf("gpu: Upsample2xBackward of %d x %d images", h, w))
	}
	pl := planes("Upsample2xBackward", batch, c, 4*h*w)
	d.need("upsample dy", dy, pl*4*h*w)
	d.need("upsample dx", dx, pl*h*w)
	if pl*h*w == 0 || !d.usable(dy, dx) {
		return
	}
	d.launch(d.call("upsample2x_backward_kernel", blocks1D(pl*h*w), elemBlock).
		i32(pl).i32(h).i32(w).ptr(d.ptr(dy)).ptr(d.ptr(dx)))
}

func (d *DeviceBackend) CopyChannels(batch, hw, n int, src Buffer, srcC, srcOff int, dst Buffer, dstC, dstOff int) {
	if batch < 0 || hw < 0 || n < 0 || srcOff < 0 || dstOff < 0 || srcOff+n > srcC || dstOff+n > dstC {
		panic(fmt.Sprintf("gpu: CopyChannels of %d channels from %d of %d to %d of %d (batch %d, %d positions)",
			n, srcOff, srcC, dstOff, dstC, batch, hw))
	}
	checkCount("CopyChannels source", batch*srcC*hw)
	checkCount("CopyChannels destination", batch*dstC*hw)
	d.need("copy channels source", src, batch*srcC*hw)
	d.need("copy channels destination", dst, batch*dstC*hw)
	if batch*n*hw == 0 || !d.usable(src, dst) {
		return
	}
	d.launch(d.call("copy_channels_forward_kernel", blocks1D(batch*n*hw), elemBlock).
		i32(batch).i32(n * hw).ptr(d.ptr(src)).i32(srcC * hw).i32(srcOff * hw).ptr(d.ptr(dst)).i32(dstC * hw).i32(dstOff * hw))
}

// batchedLen is the least length of batch matrices of matrixLen l at
// stride st.
func batchedLen(batch, l, st int) int {
	if batch == 0 || l == 0 {
		return 0
	}
	return (batch-1)*st + l
}

func (d *DeviceBackend) GemmBatched(transA, transB bool, batch, m, n, k int, alpha float32, a Buffer, lda, strideA int, b Buffer, ldb, strideB int, beta float32, c Buffer, ldc, strideC int) {
	if batch < 0 || m < 0 || n < 0 || k < 0 || strideA < 0 || strideB < 0 || strideC < 0 {
		panic(fmt.Sprintf("gpu: GemmBatched with batch, m, n, k = %d, %d, %d, %d, strides %d, %d, %d",
			batch, m, n, k, strideA, strideB, strideC))
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
	if batch == 0 || m == 0 || n == 0 {
		return
	}
	lc := matrixLen(m, n, ldc)
	if batch > 1 && strideC < lc {
		panic(fmt.Sprintf("gpu: GemmBatched: C stride %d < %d overlaps the outputs", strideC, lc))
	}
	checkCount("GemmBatched C", batchedLen(batch, lc, strideC))
	d.need("GemmBatched C", c, batchedLen(batch, lc, strideC))
	if k > 0 {
		la, lb := batchedLen(batch, matrixLen(rowsA, colsA, lda), strideA), batchedLen(batch, matrixLen(rowsB, colsB, ldb), strideB)
		checkCount("GemmBatched A", la)
		checkCount("GemmBatched B", lb)
		d.need("GemmBatched A", a, la)
		d.need("GemmBatched B", b, lb)
	}
	if !d.usable(a, b, c) {
		return
	}
	name := "gemm_batched_nn_forward_kernel"
	switch {
	case transA && transB:
		name = "gemm_batched_tt_forward_kernel"
	case transA:
		name = "gemm_batched_tn_forward_kernel"
	case transB:
		name = "gemm_batched_nt_forward_kernel"
	}
	grid := gemmGrid(m, n)
	grid.z = uint32(min(batch, 65535))
	d.launch(d.call(name, grid, dim3{gemmThreads, gemmThreads, 1}).
		i32(batch).i32(m).i32(n).i32(k).f32(alpha).ptr(d.ptr(a)).i32(lda).i32(strideA).ptr(d.ptr(b)).i32(ldb).i32(strideB).
		f32(beta).ptr(d.ptr(c)).i32(ldc).i32(strideC))
}

func checkRows(what string, rows, cols int) int {
	if rows < 0 || cols < 0 {
		panic(fmt.Sprintf("gpu: %s with rows, cols = %d, %d", what, rows, cols))
	}
	checkCount(what, rows*cols)
	return rows * cols
}

func (d *DeviceBackend) Softmax(rows, cols int, x, y Buffer) {
	n := checkRows("Softmax", rows, cols)
	d.need("softmax x", x, n)
	d.need("softmax y", y, n)
	if n == 0 || !d.usable(x, y) {
		return
	}
	d.launch(d.call("softmax_forward_kernel", rowGrid(rows), rowBlock).i32(rows).i32(cols).ptr(d.ptr(x)).ptr(d.ptr(y)))
}

func (d *DeviceBackend) SoftmaxBackward(rows, cols int, y, dy, dx Buffer) {
	n := checkRows("SoftmaxBackward", rows, cols)
	d.need("softmax y", y, n)
	d.need("softmax dy", dy, n)
	d.need("softmax dx", dx, n)
	if n == 0 || !d.usable(y, dy, dx) {
		return
	}
	d.launch(d.call("softmax_backward_kernel", rowGrid(rows), rowBlock).
		i32(rows).i32(cols).ptr(d.ptr(y)).ptr(d.ptr(dy)).ptr(d.ptr(dx)))
}

// transpose_forward_kernel's tiles: 32 x 32 per block of 32 x 8 threads.
const transposeTile = 32

func (d *DeviceBackend) Transpose(batch, rows, cols int, x, y Buffer) {
	if batch < 0 {
		panic(fmt.Sprintf("gpu: Transpose of %d matrices", batch))
	}
	n := checkRows("Transpose", rows, cols)
	checkCount("Transpose", batch*n)
	d.need("transpose x", x, batch*n)
	d.need("transpose y", y, batch*n)
	if batch*n == 0 || !d.usable(x, y) {
		return
	}
	gx := (cols + transposeTile - 1) / transposeTile
	gy := min((rows+transposeTile-1)/transposeTile, 65535)
	d.launch(d.call("transpose_forward_kernel", dim3{uint32(gx), uint32(gy), uint32(min(batch, 65535))}, dim3{transposeTile, 8, 1}).
		i32(batch).i32(rows).i32(cols).ptr(d.ptr(x)).ptr(d.ptr(y)))
}

func (d *DeviceBackend) OneHot(rows, classes int, labels, out Buffer) {
	n := checkRows("OneHot", rows, classes)
	d.need("one-hot labels", labels, rows)
	d.need("one-hot output", out, n)
	if n == 0 || !d.usable(labels, out) {
		return
	}
	d.launch(d.call("one_hot_forward_kernel", blocks1D(n), elemBlock).i32(rows).i32(classes).ptr(d.ptr(labels)).ptr(d.ptr(out)))
}

func (d *DeviceBackend) DrawLabels(dr BatchDraw, labels Buffer, nData, rows int, dropout, null float32, y Buffer) {
	if nData <= 0 || nData > math.MaxInt32 {
		panic(fmt.Sprintf("gpu: DrawLabels over %d data rows", nData))
	}
	if rows < 0 {
		panic(fmt.Sprintf("gpu: DrawLabels of %d rows", rows))
	}
	checkCount("DrawLabels", rows)
	d.need("labels", labels, nData)
	d.need("drawn labels", y, rows)
	if rows == 0 || !d.usable(labels, y) {
		return
	}
	d.launch(d.call("draw_labels_forward_kernel", philoxGrid(rows), elemBlock).
		u64(dr.Seed).u64(dr.Step).ptr(d.ptr(labels)).i32(nData).i32(rows).f32(dropout).f32(null).ptr(d.ptr(y)))
}
