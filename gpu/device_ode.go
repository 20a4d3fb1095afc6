package gpu

// The device backend's ODE ops: ode.cu's kernels.

func (d *DeviceBackend) Axpy(alpha float32, x, y Buffer) {
	n := checkAxpy(x, y)
	if n == 0 || !d.usable(x, y) {
		return
	}
	d.launch(d.call("axpy_update_kernel", blocksVec(n), elemBlock).f32(alpha).ptr(d.ptr(x)).ptr(d.ptr(y)).i32(n))
}

// stageArgs appends MaxStages stage pointers (0 where the coefficient is 0
// or the stage absent) and MaxStages coefficients.
func (d *DeviceBackend) stageArgs(k *kernelCall, coef []float32, ks []Buffer) *kernelCall {
	var c [MaxStages]float32
	for i := 0; i < MaxStages; i++ {
		var p devPtr
		if i < len(ks) && coef[i] != 0 {
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

// stagesUsable is usable over the stage buffers.
func (d *DeviceBackend) stagesUsable(ks []Buffer) bool {
	for _, k := range ks {
		if !d.usable(k) {
			return false
		}
	}
	return true
}

func (d *DeviceBackend) LinComb(dst, x Buffer, h float32, coef []float32, ks []Buffer) {
	n := checkLinComb(dst, x, coef, ks)
	if n == 0 || !d.usable(dst, x) || !d.stagesUsable(ks) {
		return
	}
	k := d.stageArgs(d.call("lin_comb_update_kernel", blocksVec(n), elemBlock).ptr(d.ptr(dst)).ptr(d.ptr(x)).f32(h), coef, ks)
	d.launch(k.i32(n))
}

func (d *DeviceBackend) ErrorNorm(x, xNew Buffer, h float32, coef []float32, ks []Buffer, rtol, atol float32, out Buffer) {
	n := checkErrorNorm(x, xNew, coef, ks, out)
	if !d.usable(x, xNew, out) || !d.stagesUsable(ks) {
		return
	}
	nb := redBlocks(n)
	k := d.stageArgs(d.call("error_norm_reduce_kernel", dim3{uint32(nb), 1, 1}, dim3{redThreads, 1, 1}).
		ptr(d.ptr(x)).ptr(d.ptr(xNew)).f32(h), coef, ks)
	d.launch(d.reduceArgs(k.f32(rtol).f32(atol).i32(n), nb).ptr(d.ptr(out)))
}

// row_dot_forward_kernel: one warp per row, rowDotWarps warps per block.
const rowDotWarps = 8

func (d *DeviceBackend) RowDot(rows, cols int, alpha float32, a, b Buffer, beta float32, out Buffer) {
	checkRowDot(rows, cols, a, b, out)
	if rows == 0 || !d.usable(a, b, out) {
		return
	}
	d.launch(d.call("row_dot_forward_kernel", dim3{uint32((rows + rowDotWarps - 1) / rowDotWarps), 1, 1}, dim3{32 * rowDotWarps, 1, 1}).
		i32(rows).i32(cols).f32(alpha).ptr(d.ptr(a)).ptr(d.ptr(b)).f32(beta).ptr(d.ptr(out)))
}

func (d *DeviceBackend) UnitColumn(rows, cols, j int, e Buffer) {
	n := checkUnitColumn(rows, cols, j, e)
	if n == 0 || !d.usable(e) {
		return
	}
	d.launch(d.call("unit_column_forward_kernel", blocks1D(n), elemBlock).ptr(d.ptr(e)).i32(n).i32(cols).i32(j))
}
