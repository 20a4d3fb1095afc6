package gpu

// The device backend's Layout ops: layout.cu's kernels.

func (d *DeviceBackend) AddChannelBias(batch, c, hw int, x, bias, y Buffer) {
	rows := checkAddChannelBias(batch, c, hw, x, bias, y)
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
	rows := checkChannelSum(batch, c, hw, x, out)
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
	pl := checkUpsample("Upsample2x", batch, c, h, w, x, y, "x", "y")
	if pl*h*w == 0 || !d.usable(x, y) {
		return
	}
	d.launch(d.call("upsample2x_forward_kernel", blocks1D(pl*4*h*w), elemBlock).
		i32(pl).i32(h).i32(w).ptr(d.ptr(x)).ptr(d.ptr(y)))
}

func (d *DeviceBackend) Upsample2xBackward(batch, c, h, w int, dy, dx Buffer) {
	pl := checkUpsample("Upsample2xBackward", batch, c, h, w, dx, dy, "dx", "dy")
	if pl*h*w == 0 || !d.usable(dy, dx) {
		return
	}
	d.launch(d.call("upsample2x_backward_kernel", blocks1D(pl*h*w), elemBlock).
		i32(pl).i32(h).i32(w).ptr(d.ptr(dy)).ptr(d.ptr(dx)))
}

func (d *DeviceBackend) CopyChannels(batch, hw, n int, src Buffer, srcC, srcOff int, dst Buffer, dstC, dstOff int) {
	checkCopyChannels(batch, hw, n, src, srcC, srcOff, dst, dstC, dstOff)
	if batch*n*hw == 0 || !d.usable(src, dst) {
		return
	}
	d.launch(d.call("copy_channels_forward_kernel", blocks1D(batch*n*hw), elemBlock).
		i32(batch).i32(n * hw).ptr(d.ptr(src)).i32(srcC * hw).i32(srcOff * hw).ptr(d.ptr(dst)).i32(dstC * hw).i32(dstOff * hw))
}

// transpose_forward_kernel's tiles: 32 x 32 per block of 32 x 8 threads.
const transposeTile = 32

func (d *DeviceBackend) Transpose(batch, rows, cols int, x, y Buffer) {
	n := checkTranspose(batch, rows, cols, x, y)
	if batch*n == 0 || !d.usable(x, y) {
		return
	}
	gx := (cols + transposeTile - 1) / transposeTile
	gy := min((rows+transposeTile-1)/transposeTile, 65535)
	d.launch(d.call("transpose_forward_kernel", dim3{uint32(gx), uint32(gy), uint32(min(batch, 65535))}, dim3{transposeTile, 8, 1}).
		i32(batch).i32(rows).i32(cols).ptr(d.ptr(x)).ptr(d.ptr(y)))
}
