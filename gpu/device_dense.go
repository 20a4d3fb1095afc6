package gpu

import (
	"fmt"
	"math"
)

// The device backend's Dense ops: dense.cu's kernels.

func (d *DeviceBackend) Linear(rows, in, out int, x Buffer, ldx int, w, bias Buffer, act Act, pre, y Buffer) {
	checkLinear(rows, in, out, x, ldx, w, bias, act, pre, y)
	if rows == 0 || out == 0 || !d.usable(x, w, bias, pre, y) {
		return
	}
	name, grid, block, smem := "linear_forward_kernel", gemmGrid, gemmBlock, 0
	if d.tensorCores(in) && d.tcOperand(x, ldx) && d.tcOperand(w, in) {
		name, grid, block, smem = d.tcKernel("linear", "", "forward"), tcGrid, tcBlock, tcSmemBytes
	}
	for r0 := 0; r0 < rows; r0 += maxGemmRows {
		n := min(maxGemmRows, rows-r0)
		var px, pp devPtr // x is not read when in = 0; pre may be nil
		if in > 0 {
			px = d.ptrAt(x, r0*ldx)
		}
		if pre != nil {
			pp = d.ptrAt(pre, r0*out)
		}
		d.launch(d.call(name, grid(n, out), block).smem(smem).
			i32(n).i32(in).i32(out).ptr(px).i32(ldx).ptr(d.ptr(w)).ptr(d.ptr(bias)).
			i32(int(act)).ptr(pp).ptr(d.ptrAt(y, r0*out)))
	}
}

func (d *DeviceBackend) LinearBackward(rows, in, out int, dPre, x Buffer, ldx int, w, dW, dBias Buffer, cols int, act Act, preX Buffer, beta float32, dX Buffer) {
	checkLinearBackward(rows, in, out, dPre, x, ldx, w, dW, dBias, cols, act, preX, beta, dX)
	if !d.usable(dPre, x, w, dW, dBias, preX, dX) {
		return
	}
	if rows == 0 || in == 0 || out == 0 {
		// Nothing to fuse: zeros, or empty outputs.
		if dW != nil {
			if dBias != nil {
				d.BiasActBackward(ActNone, rows, out, dPre, nil, dPre, dBias)
			}
			d.Gemm(true, false, out, in, rows, 1, dPre, out, x, ldx, 0, dW, in)
		}
		if dX != nil {
			d.Gemm(false, false, rows, cols, out, 1, dPre, out, w, in, beta, dX, cols)
			if act != ActNone {
				d.BiasActBackward(act, rows, cols, dX, preX, dX, nil)
			}
		}
		return
	}
	// The tensor-core kernels when every operand the launch reads suits
	// them, else the SIMT kernel, for the whole launch.
	name, block, tile, smem, split := "linear_backward_kernel", gemmBlock, gemmTile, 0, gemmSplit
	if d.tensorCores(out) && d.tcOperand(dPre, out) && (dW == nil || d.tcOperand(x, ldx)) &&
		(dX == nil || cols == 0 || d.tcOperand(w, in)) {
		name, block, tile, smem, split = d.tcKernel("linear", "", "backward"), tcBlock, tcTile, tcSmemBytes, tcSplit
	}
	splits, slice, wBlocks := 1, rows, 0
	var partial, biasPartial, counters devPtr
	if dW != nil {
		tiles := ((out + tile - 1) / tile) * ((in + tile - 1) / tile)
		splits, slice = split(out, in, rows)
		wBlocks = tiles * splits
		if splits > 1 {
			floats := (splits*out*in + 1) &^ 1 // the doubles after them 8-byte aligned
			p := d.scratchPtr(4*floats + 8*splits*out)
			partial, biasPartial = p, p+devPtr(4*floats)
			counters = d.countersPtr(tiles)
		}
	}
	xBlocks := 0
	if dX != nil && cols > 0 {
		xBlocks = ((rows + tile - 1) / tile) * ((cols + tile - 1) / tile)
	}
	if wBlocks+xBlocks == 0 {
		return
	}
	if wBlocks+xBlocks > math.MaxInt32 {
		panic(fmt.Sprintf("gpu: LinearBackward: %d blocks beyond the device's grid", wBlocks+xBlocks))
	}
	d.launch(d.call(name, dim3{uint32(wBlocks + xBlocks), 1, 1}, block).smem(smem).
		i32(rows).i32(in).i32(out).ptr(d.ptr(dPre)).ptr(d.ptr(x)).i32(ldx).ptr(d.ptr(w)).ptr(d.ptr(dW)).ptr(d.ptr(dBias)).
		i32(splits).i32(slice).ptr(partial).ptr(biasPartial).ptr(counters).i32(wBlocks).
		i32(cols).i32(int(act)).ptr(d.ptr(preX)).f32(beta).ptr(d.ptr(dX)))
}

// bias_act_backward_kernel's blocks: 32 columns by biasRowThreads threads,
// each block covering a chunk of rows, at most maxBiasChunks chunks.
const (
	biasColThreads = 32
	biasRowThreads = 8
	maxBiasChunks  = 64
)

func (d *DeviceBackend) BiasActBackward(act Act, rows, cols int, dY, pre, dPre, dBias Buffer) {
	checkBiasActBackward(act, rows, cols, dY, pre, dPre, dBias)
	if cols == 0 || !d.usable(dY, pre, dPre, dBias) {
		return
	}
	if rows == 0 {
		if dBias != nil {
			d.Fill(dBias.Slice(0, cols), 0)
		}
		return
	}
	if dBias == nil {
		n := rows * cols
		if act == ActNone && d.ptr(dY) == d.ptr(dPre) {
			return // the identity in place
		}
		d.launch(d.call("act_backward_kernel", blocksVec(n), elemBlock).
			i32(int(act)).i32(n).ptr(d.ptr(dY)).ptr(d.ptr(pre)).ptr(d.ptr(dPre)))
		return
	}
	chunk := max(biasRowThreads, (rows+maxBiasChunks-1)/maxBiasChunks)
	chunks := (rows + chunk - 1) / chunk
	var partial devPtr
	if dBias != nil {
		partial = d.scratchPtr(8 * chunks * cols)
	}
	colBlocks := (cols + biasColThreads - 1) / biasColThreads
	var counters, db devPtr
	if dBias != nil {
		counters, db = d.countersPtr(colBlocks), d.ptr(dBias)
	}
	d.launch(d.call("bias_act_backward_kernel", dim3{uint32(colBlocks), uint32(chunks), 1}, dim3{biasColThreads, biasRowThreads, 1}).
		i32(int(act)).i32(rows).i32(cols).ptr(d.ptr(dY)).ptr(d.ptr(pre)).ptr(d.ptr(dPre)).
		ptr(partial).i32(chunk).ptr(counters).ptr(db))
}

func (d *DeviceBackend) Activate(act Act, x, y Buffer) {
	n := checkActivate(act, x, y)
	if n == 0 || !d.usable(x, y) {
		return
	}
	d.launch(d.call("activate_forward_kernel", blocksVec(n), elemBlock).i32(int(act)).ptr(d.ptr(x)).ptr(d.ptr(y)).i32(n))
}

func (d *DeviceBackend) EmbedInput(rows, d0 int, x, t Buffer, emb TimeEmbedding, out Buffer) {
	w := checkEmbedInput(rows, d0, x, t, emb, out)
	n := rows * w
	if n == 0 || !d.usable(x, t, out) {
		return
	}
	d.launch(d.call("embed_input_forward_kernel", blocks1D(n), elemBlock).
		i32(rows).i32(d0).ptr(d.ptr(x)).ptr(d.ptr(t)).i32(emb.Freqs).f64(float64(emb.Scale)).
		f64(float64(emb.MaxPeriod)).ptr(d.ptr(out)))
}

func (d *DeviceBackend) OneHot(rows, classes int, labels, out Buffer) {
	n := checkOneHot(rows, classes, labels, out)
	if n == 0 || !d.usable(labels, out) {
		return
	}
	d.launch(d.call("one_hot_forward_kernel", blocks1D(n), elemBlock).i32(rows).i32(classes).ptr(d.ptr(labels)).ptr(d.ptr(out)))
}

func (d *DeviceBackend) MSELoss(pred, target Buffer, scale float32, grad, loss Buffer) {
	n := checkMSELoss(pred, target, grad, loss)
	if !d.usable(pred, target, grad, loss) {
		return
	}
	d.mseLoss(n, pred, target, scale, grad, loss, false)
}

func (d *DeviceBackend) MSELossAccumulate(pred, target Buffer, scale float32, grad, lossSum Buffer) {
	n := checkMSELoss(pred, target, grad, lossSum)
	if !d.usable(pred, target, grad, lossSum) {
		return
	}
	d.mseLoss(n, pred, target, scale, grad, lossSum, true)
}

// mseLoss launches mse_loss_backward_kernel (one block at least, so that n
// = 0 still writes the loss).
func (d *DeviceBackend) mseLoss(n int, pred, target Buffer, scale float32, grad, loss Buffer, accumulate bool) {
	nb := redBlocks(n)
	acc := 0
	if accumulate {
		acc = 1
	}
	d.launch(d.reduceArgs(d.call("mse_loss_backward_kernel", dim3{uint32(nb), 1, 1}, dim3{redThreads, 1, 1}).
		ptr(d.ptr(pred)).ptr(d.ptr(target)).f32(2*scale).ptr(d.ptr(grad)).i32(n), nb).
		f64(float64(scale)).ptr(d.ptr(loss)).i32(acc))
}
