package gpu

// The device backend's Random ops: random.cu's kernels.

// philoxGrid covers n elements with one thread per Philox block of four.
func philoxGrid(n int) dim3 { return blocks1D((n + 3) / 4) }

func (d *DeviceBackend) RandNormal(dst Buffer, seed, stream uint64, std float32) {
	n := lenOf(dst)
	if n == 0 || !d.usable(dst) {
		return
	}
	d.launch(d.call("rand_normal_forward_kernel", philoxGrid(n), elemBlock).
		ptr(d.ptr(dst)).i32(n).u64(seed).u64(stream).f32(std))
}

func (d *DeviceBackend) RandRademacher(dst Buffer, seed, stream uint64) {
	n := lenOf(dst)
	if n == 0 || !d.usable(dst) {
		return
	}
	d.launch(d.call("rand_rademacher_forward_kernel", philoxGrid(n), elemBlock).
		ptr(d.ptr(dst)).i32(n).u64(seed).u64(stream))
}

func (d *DeviceBackend) Dropout(dr DropoutDraw, p float32, x, y Buffer) {
	n := checkDropout(dr, p, x, y)
	if n == 0 || !d.usable(x, y, dr.StepFrom) {
		return
	}
	d.launch(d.call("dropout_forward_kernel", philoxGrid(n), elemBlock).
		ptr(d.ptr(x)).ptr(d.ptr(y)).i32(n).f32(p).f32(DropoutScale(p)).
		u64(dr.Seed).u32(dr.Purpose()).u64(dr.Step).ptr(d.ptr(dr.StepFrom)))
}
