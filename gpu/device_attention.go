package gpu

// The device backend's Attention ops: attention.cu's kernels, one warp per
// row (rowGrid, rowBlock: device_layout.go).

func (d *DeviceBackend) Softmax(rows, cols int, x, y Buffer) {
	n := checkSoftmax(rows, cols, x, y)
	if n == 0 || !d.usable(x, y) {
		return
	}
	d.launch(d.call("softmax_forward_kernel", rowGrid(rows), rowBlock).i32(rows).i32(cols).ptr(d.ptr(x)).ptr(d.ptr(y)))
}

func (d *DeviceBackend) SoftmaxBackward(rows, cols int, y, dy, dx Buffer) {
	n := checkSoftmaxBackward(rows, cols, y, dy, dx)
	if n == 0 || !d.usable(y, dy, dx) {
		return
	}
	d.launch(d.call("softmax_backward_kernel", rowGrid(rows), rowBlock).
		i32(rows).i32(cols).ptr(d.ptr(y)).ptr(d.ptr(dy)).ptr(d.ptr(dx)))
}
