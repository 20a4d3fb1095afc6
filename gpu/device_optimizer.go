package gpu

// The device backend's Optimizer ops: optimizer.cu's kernels.

func (d *DeviceBackend) SumSquares(x, out Buffer) {
	n := checkSumSquares(x, out)
	if !d.usable(x, out) {
		return
	}
	// One block at least, so that n = 0 writes 0.
	nb := redBlocks(n)
	d.launch(d.reduceArgs(d.call("sum_squares_reduce_kernel", dim3{uint32(nb), 1, 1}, dim3{redThreads, 1, 1}).
		ptr(d.ptr(x)).i32(n), nb).ptr(d.ptr(out)))
}

func (d *DeviceBackend) AdamEMA(s AdamStep, params, grads, m, v, ema, gradSumSq, status Buffer) {
	n := checkAdamEMA(s, params, grads, m, v, ema, gradSumSq, status)
	if s.EMADecay <= 0 {
		ema = nil
	}
	if !d.usable(params, grads, m, v, ema, gradSumSq, status, s.Scalars) {
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
		f32(1 / s.BiasCorr1).f32(1 / s.BiasCorr2).f32(s.EMADecay).f32(s.MaxGradNorm).f32(float32(s.Step)).i32(n).
		ptr(d.ptr(s.Scalars)))
}
