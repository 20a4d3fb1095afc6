package gpu

// The device backend's Norm ops: norm.cu's kernels, one block per (image,
// group), one launch per op (the backward's sums over the images added by
// its last block).

func (d *DeviceBackend) GroupNorm(s GroupNormShape, x, gamma, beta, y, mean, rstd Buffer) {
	checkGroupNorm(s, x, gamma, beta, y, mean, rstd)
	d.groupNorm(s, ActNone, x, nil, gamma, beta, y, nil, mean, rstd)
}

func (d *DeviceBackend) GroupNormAct(s GroupNormShape, act Act, x, xBias, gamma, beta, y, a, mean, rstd Buffer) {
	checkGroupNormAct(s, act, x, xBias, gamma, beta, y, a, mean, rstd)
	d.groupNorm(s, act, x, xBias, gamma, beta, y, a, mean, rstd)
}

func (d *DeviceBackend) groupNorm(s GroupNormShape, act Act, x, xBias, gamma, beta, y, a, mean, rstd Buffer) {
	if s.Batch == 0 || !d.usable(x, xBias, gamma, beta, y, a, mean, rstd) {
		return
	}
	d.launch(d.call("group_norm_forward_kernel", dim3{uint32(s.Batch * s.Groups), 1, 1}, dim3{redThreads, 1, 1}).
		i32(s.C).i32(s.HW).i32(s.Groups).f32(s.Eps).ptr(d.ptr(x)).ptr(d.ptr(gamma)).ptr(d.ptr(beta)).
		ptr(d.ptr(y)).ptr(d.ptr(mean)).ptr(d.ptr(rstd)).i32(int(act)).ptr(d.ptr(a)).ptr(d.ptr(xBias)))
}

func (d *DeviceBackend) GroupNormBackward(s GroupNormShape, dy, x, gamma, mean, rstd, dx, dgamma, dbeta Buffer) {
	checkGroupNormBackward(s, dy, x, gamma, mean, rstd, dx, dgamma, dbeta)
	d.groupNormBackward(s, ActNone, dy, nil, x, gamma, nil, mean, rstd, nil, dx, dgamma, dbeta, nil)
}

func (d *DeviceBackend) GroupNormActBackward(s GroupNormShape, act Act, dA, y, x, gamma, beta, mean, rstd, add, dx, dgamma, dbeta, dxSum Buffer) {
	checkGroupNormActBackward(s, act, dA, y, x, gamma, beta, mean, rstd, add, dx, dgamma, dbeta, dxSum)
	d.groupNormBackward(s, act, dA, y, x, gamma, beta, mean, rstd, add, dx, dgamma, dbeta, dxSum)
}

func (d *DeviceBackend) groupNormBackward(s GroupNormShape, act Act, dA, y, x, gamma, beta, mean, rstd, add, dx, dgamma, dbeta, dxSum Buffer) {
	if act == ActNone || y != nil {
		beta = nil // read only to recompute y
	}
	if !d.usable(dA, y, x, gamma, beta, mean, rstd, add, dx, dgamma, dbeta, dxSum) {
		return
	}
	if s.Batch == 0 {
		d.Fill(dgamma.Slice(0, s.C), 0)
		d.Fill(dbeta.Slice(0, s.C), 0)
		return
	}
	if act == ActNone {
		y = nil
	}
	part := d.scratchPtr(8 * 2 * s.Batch * s.C)
	d.launch(d.call("group_norm_backward_kernel", dim3{uint32(s.Batch * s.Groups), 1, 1}, dim3{redThreads, 1, 1}).
		i32(s.Batch).i32(s.C).i32(s.HW).i32(s.Groups).i32(int(act)).ptr(d.ptr(dA)).ptr(d.ptr(y)).ptr(d.ptr(x)).
		ptr(d.ptr(gamma)).ptr(d.ptr(beta)).ptr(d.ptr(mean)).ptr(d.ptr(rstd)).ptr(d.ptr(add)).ptr(d.ptr(dx)).ptr(part).
		ptr(d.countersPtr(1)).ptr(d.ptr(dgamma)).ptr(d.ptr(dbeta)).ptr(d.ptr(dxSum)))
}
