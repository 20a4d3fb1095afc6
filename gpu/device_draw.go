package gpu

import "github.com/fmgpu/fmgpu/flow"

// The device backend's Draw ops: draw.cu's kernels.

// pathArgs are a path's kernel scalars: its kind and two parameters
// (ot: sigma_min; vp: beta_min, beta_max; ve: sigma_min, sigma_max).
func pathArgs(k *kernelCall, p flow.Spec) *kernelCall {
	var p0, p1 float64
	switch p.Kind {
	case flow.KindOT:
		p0 = p.SigmaMin
	case flow.KindVP:
		p0, p1 = p.BetaMin, p.BetaMax
	case flow.KindVE:
		p0, p1 = p.SigmaMin, p.SigmaMax
	}
	return k.i32(int(p.Kind)).f64(p0).f64(p1)
}

// Row-tiled path kernels: a block of pathThreads threads covers
// pathRowsPerBlock(d) rows, first computing each row's coefficients once.
const pathThreads = 256

func pathRowsPerBlock(d int) int { return min(max(1024/max(d, 1), 1), pathThreads) }

func (d *DeviceBackend) PathTarget(p flow.Spec, rows, d0 int, x0, x1, t, xt, ut Buffer) {
	_, n := checkPathTarget(&d.paths, p, rows, d0, x0, x1, t, xt, ut)
	if n == 0 || !d.usable(x0, x1, t, xt, ut) {
		return
	}
	rpb := pathRowsPerBlock(d0)
	k := d.call("path_target_forward_kernel", dim3{uint32((rows + rpb - 1) / rpb), 1, 1}, dim3{pathThreads, 1, 1})
	d.launch(pathArgs(k, p).i32(rows).i32(d0).ptr(d.ptr(x0)).ptr(d.ptr(x1)).ptr(d.ptr(t)).ptr(d.ptr(xt)).ptr(d.ptr(ut)).i32(rpb))
}

func (d *DeviceBackend) DrawBatch(dr BatchDraw, data Buffer, nData, d0, rows int, x0, x1, t, xt, ut Buffer) {
	path, _ := checkDrawBatch(&d.paths, dr, data, nData, d0, rows, x0, x1, t, xt, ut)
	if rows == 0 || !d.usable(data, x0, x1, t, xt, ut, dr.StepFrom) {
		return
	}
	lo, hi := path.TimeRange()
	rpb := pathRowsPerBlock(d0)
	k := d.call("draw_batch_forward_kernel", dim3{uint32((rows + rpb - 1) / rpb), 1, 1}, dim3{pathThreads, 1, 1}).
		u64(dr.Seed).u64(dr.Step)
	// the kernel's noise std is 1 for every path (Draw.DrawBatch)
	pathArgs(k, dr.Path).f64(lo).f64(hi).f32(1).
		i32(int(dr.Time.Kind)).f64(dr.Time.Mean).f64(dr.Time.Std).f64(dr.Time.Shift).
		ptr(d.ptr(data)).u32(uint32(nData)).i32(d0).i32(rows).
		ptr(d.ptr(x0)).ptr(d.ptr(x1)).ptr(d.ptr(t)).ptr(d.ptr(xt)).ptr(d.ptr(ut)).i32(rpb).ptr(d.ptr(dr.StepFrom))
	d.launch(k)
}

func (d *DeviceBackend) DrawLabels(dr BatchDraw, labels Buffer, nData, rows int, dropout, null float32, y Buffer) {
	checkDrawLabels(dr, labels, nData, rows, y)
	if rows == 0 || !d.usable(labels, y, dr.StepFrom) {
		return
	}
	d.launch(d.call("draw_labels_forward_kernel", philoxGrid(rows), elemBlock).
		u64(dr.Seed).u64(dr.Step).ptr(d.ptr(labels)).u32(uint32(nData)).i32(rows).f32(dropout).f32(null).ptr(d.ptr(y)).
		ptr(d.ptr(dr.StepFrom)))
}
