package gpu

// The device backend's Norm ops: norm.cu's kernels, one block per (image,
// group). GroupNormBackward launches twice: the input gradient with the
// per-image parameter sums, then their sum over the images.

func (d *DeviceBackend) GroupNorm(s GroupNormShape, x, gamma, beta, y, mean, rstd Buffer) {
	checkGroupNorm(s, x, gamma, beta, y, mean, rstd)
	if s.Batch == 0 || !d.usable(x, gamma, beta, y, mean, rstd) {
		return
	}
	d.launch(d.call("group_norm_forward_kernel", dim3{uint32(s.Batch * s.Groups), 1, 1}, dim3{redThreads, 1, 1}).
		i32(s.C).i32(s.HW).i32(s.Groups).f32(s.Eps).ptr(d.ptr(x)).ptr(d.ptr(gamma)).ptr(d.ptr(beta)).
		ptr(d.ptr(y)).ptr(d.ptr(mean)).ptr(d.ptr(rstd)))
}

func (d *DeviceBackend) GroupNormBackward(s GroupNormShape, dy, x, gamma, mean, rstd, dx, dgamma, dbeta Buffer) {
	checkGroupNormBackward(s, dy, x, gamma, mean, rstd, dx, dgamma, dbeta)
	if !d.usable(dy, x, gamma, mean, rstd, dx, dgamma, dbeta) {
		return
	}
	part := d.scratchPtr(8 * max(2*s.Batch*s.C, 1))
	if s.Batch > 0 {
		d.launch(d.call("group_norm_backward_kernel", dim3{uint32(s.Batch * s.Groups), 1, 1}, dim3{redThreads, 1, 1}).
			i32(s.Batch).i32(s.C).i32(s.HW).i32(s.Groups).ptr(d.ptr(dy)).ptr(d.ptr(x)).ptr(d.ptr(gamma)).
			ptr(d.ptr(mean)).ptr(d.ptr(rstd)).ptr(d.ptr(dx)).ptr(part))
	}
	d.launch(d.call("group_norm_param_backward_reduce_kernel", blocks1D(s.C), elemBlock).
		i32(s.Batch).i32(s.C).ptr(part).ptr(d.ptr(dgamma)).ptr(d.ptr(dbeta)))
}
