package gpu

// The device backend's Products: products.cu's tiled products.

// Gemm tiles: gemm.cuh's GEMM_BM x GEMM_BN outputs per block of
// gemmThreads x gemmThreads threads.
const (
	gemmTile    = 64
	gemmThreads = 16
)

var gemmBlock = dim3{gemmThreads, gemmThreads, 1}

// maxGemmRows is the most rows of C one launch covers: a grid's y
// dimension holds 65535 tiles. Longer products (and Linear layers) run as
// one launch per block of rows.
const maxGemmRows = 65535 * gemmTile

// gemmGrid is the grid over an m x n output, m <= maxGemmRows.
func gemmGrid(m, n int) dim3 {
	return dim3{uint32((n + gemmTile - 1) / gemmTile), uint32((m + gemmTile - 1) / gemmTile), 1}
}

// gemmKernel names the product kernel of a transpose pair; batched picks
// the gemm_batched_* family.
func gemmKernel(transA, transB, batched bool) string {
	switch {
	case transA && transB:
		if batched {
			return "gemm_batched_tt_forward_kernel"
		}
		return "gemm_tt_forward_kernel"
	case transA:
		if batched {
			return "gemm_batched_tn_forward_kernel"
		}
		return "gemm_tn_forward_kernel"
	case transB:
		if batched {
			return "gemm_batched_nt_forward_kernel"
		}
		return "gemm_nt_forward_kernel"
	}
	if batched {
		return "gemm_batched_nn_forward_kernel"
	}
	return "gemm_nn_forward_kernel"
}

// rowOffsetA is the offset of row r of op(A) in A: a row of A, or a
// column when A is stored transposed.
func rowOffsetA(transA bool, r, lda int) int {
	if transA {
		return r
	}
	return r * lda
}

// Split-K: a product whose output has too few 64 x 64 tiles to fill the
// GPU but a long k (the weight gradients dW = dY^T X, k = batch) runs as
// gemmSplitTarget or so blocks, each over a slice of k, and a second pass
// adds the slices in order. The split is a function of (m, n, k) alone,
// never of the device, so results are the same on every GPU.
const (
	gemmSplitTarget = 264 // blocks: two waves of 132 SMs (an H100/H200)
	gemmMinSlice    = 256 // k per block below which a split costs more than it gains
	gemmSliceAlign  = 16  // GEMM_BK: slices start on a k-tile
)

// gemmSplit returns the number of k slices and their length for an m x n x
// k product (1, k: no split) of the SIMT kernels' tiles.
func gemmSplit(m, n, k int) (splits, slice int) { return splitK(m, n, k, gemmTile, gemmSliceAlign) }

// splitK is gemmSplit for tiles of tile x tile outputs and slices a
// multiple of align.
func splitK(m, n, k, tile, align int) (splits, slice int) {
	tiles := ((m + tile - 1) / tile) * ((n + tile - 1) / tile)
	if 2*tiles >= gemmSplitTarget || k < 2*gemmMinSlice {
		return 1, k
	}
	splits = min((gemmSplitTarget+tiles-1)/tiles, k/gemmMinSlice)
	slice = (k + splits - 1) / splits
	slice = (slice + align - 1) / align * align
	return (k + slice - 1) / slice, slice
}

// The tensor-core products (gemm_tc.cuh): TC_BM x TC_BN = 128 x 128
// outputs per block of 256 threads (one dimension), k slices of split-K a
// multiple of TC_BK, and the pipeline's TC_SMEM_BYTES of dynamic shared
// memory (3 stages of two 128 x 36-float tiles: 108 KiB).
const (
	tcTile       = 128
	tcThreads    = 256
	tcSliceAlign = 32
	tcSmemBytes  = 3 * 2 * 128 * 36 * 4
)

var tcBlock = dim3{tcThreads, 1, 1}

// tcGrid is the grid over an m x n output of tensor-core tiles.
func tcGrid(m, n int) dim3 {
	return dim3{uint32((n + tcTile - 1) / tcTile), uint32((m + tcTile - 1) / tcTile), 1}
}

// tcSplit is gemmSplit for the tensor-core tiles.
func tcSplit(m, n, k int) (splits, slice int) { return splitK(m, n, k, tcTile, tcSliceAlign) }

// tensorCores reports whether a product of inner dimension k runs on the
// tensor-core kernels: a precision other than fp32 (SetPrecision) and k >= 1 (k = 0,
// C = beta C, is the SIMT kernels' affair). The caller also checks its
// operands with tcOperand.
func (d *DeviceBackend) tensorCores(k int) bool { return d.prec != PrecisionFP32 && k > 0 }

// tcOperand reports whether a product may read b, a matrix of row stride
// ld, with the tensor-core kernels' 16-byte asynchronous copies: its first
// element 16-byte aligned and ld a multiple of 4 floats, so that every
// row's start is. A view at an offset that is not a multiple of 4, or a
// row stride such as the MLP's first layer's 2 + 32, falls back to the
// SIMT kernels (with the same result within the precision's bound).
func (d *DeviceBackend) tcOperand(b Buffer, ld int) bool { return d.ptr(b)%16 == 0 && ld%4 == 0 }

// tcKernel names the tensor-core kernel of op (gemm, linear) in the
// backend's precision, with the transpose letters of a gemm ("" for the
// others) and direction.
func (d *DeviceBackend) tcKernel(op, trans, direction string) string {
	name := op + "_" + d.prec.String() + "_"
	if trans != "" {
		name += trans + "_"
	}
	return name + direction + "_kernel"
}

// transLetters are a product's transpose letters (nn, nt, tn, tt).
func transLetters(transA, transB bool) string {
	l := [2]byte{'n', 'n'}
	if transA {
		l[0] = 't'
	}
	if transB {
		l[1] = 't'
	}
	return string(l[:])
}

func (d *DeviceBackend) Gemm(transA, transB bool, m, n, k int, alpha float32, a Buffer, lda int, b Buffer, ldb int, beta float32, c Buffer, ldc int) {
	checkGemm(transA, transB, m, n, k, a, lda, b, ldb, c, ldc)
	if m == 0 || n == 0 || !d.usable(a, b, c) {
		return
	}
	if d.tensorCores(k) && d.tcOperand(a, lda) && d.tcOperand(b, ldb) {
		d.gemmTC(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	if splits, slice := gemmSplit(m, n, k); splits > 1 && m <= maxGemmRows {
		d.gemmSplitK(transA, transB, m, n, k, splits, slice, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	name := gemmKernel(transA, transB, false)
	for r0 := 0; r0 < m; r0 += maxGemmRows {
		rows := min(maxGemmRows, m-r0)
		var pa devPtr // A is not read when k = 0
		if k > 0 {
			pa = d.ptrAt(a, rowOffsetA(transA, r0, lda))
		}
		d.launch(d.call(name, gemmGrid(rows, n), gemmBlock).
			i32(rows).i32(n).i32(k).f32(alpha).ptr(pa).i32(lda).ptr(d.ptr(b)).i32(ldb).
			f32(beta).ptr(d.ptrAt(c, r0*ldc)).i32(ldc))
	}
}

func (d *DeviceBackend) GemmBatched(transA, transB bool, batch, m, n, k int, alpha float32, a Buffer, lda, strideA int, b Buffer, ldb, strideB int, beta float32, c Buffer, ldc, strideC int) {
	checkGemmBatched(transA, transB, batch, m, n, k, a, lda, strideA, b, ldb, strideB, c, ldc, strideC)
	if batch == 0 || m == 0 || n == 0 || !d.usable(a, b, c) {
		return
	}
	name := gemmKernel(transA, transB, true)
	for r0 := 0; r0 < m; r0 += maxGemmRows {
		rows := min(maxGemmRows, m-r0)
		var pa devPtr // A is not read when k = 0
		if k > 0 {
			pa = d.ptrAt(a, rowOffsetA(transA, r0, lda))
		}
		grid := gemmGrid(rows, n)
		grid.z = uint32(min(batch, 65535))
		d.launch(d.call(name, grid, gemmBlock).
			i32(batch).i32(rows).i32(n).i32(k).f32(alpha).ptr(pa).i32(lda).i32(strideA).ptr(d.ptr(b)).i32(ldb).i32(strideB).
			f32(beta).ptr(d.ptrAt(c, r0*ldc)).i32(ldc).i32(strideC))
	}
}

// gemmSplitK runs C = alpha op(A) op(B) + beta C as splits partial
// products of slice k each, in the scratch buffer, and their ordered sum.
// The partials hold at most about (gemmSplitTarget + 132) 64 x 64 tiles
// (splits <= gemmSplitTarget / tiles + 1), a few MB.
func (d *DeviceBackend) gemmSplitK(transA, transB bool, m, n, k, splits, slice int, alpha float32, a Buffer, lda int, b Buffer, ldb int, beta float32, c Buffer, ldc int) {
	partial := d.scratchPtr(4 * splits * m * n)
	if partial == 0 {
		return
	}
	name := "gemm_nn_split_forward_kernel"
	switch {
	case transA && transB:
		name = "gemm_tt_split_forward_kernel"
	case transA:
		name = "gemm_tn_split_forward_kernel"
	case transB:
		name = "gemm_nt_split_forward_kernel"
	}
	grid := gemmGrid(m, n)
	grid.z = uint32(splits)
	d.launch(d.call(name, grid, gemmBlock).
		i32(m).i32(n).i32(k).i32(slice).ptr(d.ptr(a)).i32(lda).ptr(d.ptr(b)).i32(ldb).ptr(partial))
	d.launch(d.call("gemm_split_reduce_kernel", blocks1D(m*n), elemBlock).
		i32(m).i32(n).i32(splits).f32(alpha).ptr(partial).f32(beta).ptr(d.ptr(c)).i32(ldc))
}

// gemmTC runs Gemm on the tensor-core kernels (gemm_{tf32,tf32x3,bf16}_*):
// split-K as gemmSplitK does, over tcSplit's slices (the partials in the
// scratch buffer, then gemm_split_reduce_kernel), or one launch per block
// of rows. Preconditions: tensorCores(k), tcOperand(a, lda), tcOperand(b,
// ldb).
func (d *DeviceBackend) gemmTC(transA, transB bool, m, n, k int, alpha float32, a Buffer, lda int, b Buffer, ldb int, beta float32, c Buffer, ldc int) {
	name := d.tcKernel("gemm", transLetters(transA, transB), "forward")
	if splits, slice := tcSplit(m, n, k); splits > 1 && m <= maxGemmRows {
		partial := d.scratchPtr(4 * splits * m * n)
		if partial == 0 {
			return
		}
		grid := tcGrid(m, n)
		grid.z = uint32(splits)
		d.launch(d.call(name, grid, tcBlock).smem(tcSmemBytes).
			i32(m).i32(n).i32(k).i32(slice).f32(alpha).ptr(d.ptr(a)).i32(lda).ptr(d.ptr(b)).i32(ldb).
			f32(beta).ptr(d.ptr(c)).i32(ldc).ptr(partial))
		d.launch(d.call("gemm_split_reduce_kernel", blocks1D(m*n), elemBlock).
			i32(m).i32(n).i32(splits).f32(alpha).ptr(partial).f32(beta).ptr(d.ptr(c)).i32(ldc))
		return
	}
	for r0 := 0; r0 < m; r0 += maxGemmRows {
		rows := min(maxGemmRows, m-r0)
		d.launch(d.call(name, tcGrid(rows, n), tcBlock).smem(tcSmemBytes).
			i32(rows).i32(n).i32(k).i32(k).f32(alpha).ptr(d.ptrAt(a, rowOffsetA(transA, r0, lda))).i32(lda).
			ptr(d.ptr(b)).i32(ldb).f32(beta).ptr(d.ptrAt(c, r0*ldc)).i32(ldc).ptr(0))
	}
}
