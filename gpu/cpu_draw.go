package gpu

import "github.com/fmgpu/fmgpu/flow"

// The CPU backend's Draw ops: flow's rows (flow.TargetRow) over the
// Philox streams of philox.go.

type drawState struct {
	target targetTask
	batch  drawTask
	labels drawLabelsTask
}

type targetTask struct {
	path              flow.Path
	d                 int
	x0, x1, t, xt, ut []float32
}

func (t *targetTask) run(lo, hi int) {
	d := t.d
	for r := lo; r < hi; r++ {
		k := t.path.At(float64(t.t[r]))
		flow.TargetRow(k, t.x0[r*d:r*d+d], t.x1[r*d:r*d+d], t.xt[r*d:r*d+d], t.ut[r*d:r*d+d])
	}
}

func (c *CPU) PathTarget(ps flow.Spec, rows, d int, x0, x1, t, xt, ut Buffer) {
	path, _ := checkPathTarget(&c.paths, ps, rows, d, x0, x1, t, xt, ut)
	c.draw.target = targetTask{path: path, d: d, x0: host(x0), x1: host(x1), t: host(t), xt: host(xt), ut: host(ut)}
	c.pool.do(&c.draw.target, rows, 4*d+40)
}

type drawTask struct {
	dr                     BatchDraw
	path                   flow.Path
	src, x0, x1, t, xt, ut []float32
	nData, d               int
}

// run draws rows [lo, hi) in groups of the four rows that share a Philox
// block of indices and times; a group's noise comes from one normalsAt
// call, so each normal block is computed once (the values are those of a
// row-by-row draw).
func (t *drawTask) run(lo, hi int) {
	dr, d := t.dr, t.d
	var noise [256]float32
	for g0 := lo; g0 < hi; {
		blk := uint32(g0 / 4)
		g1 := min(hi, (g0/4+1)*4)
		idxW := PhiloxBlock(dr.Seed, PurposeIndex, dr.Step, blk)
		uW := PhiloxBlock(dr.Seed, PurposeTimeU, dr.Step, blk)
		var nrm [4]float32
		if dr.Time.Kind == flow.TimeLogitNormal {
			nrm = NormalBlock(PhiloxBlock(dr.Seed, PurposeTimeN, dr.Step, blk))
		}
		grouped := (g1-g0)*d <= len(noise)
		if grouped {
			normalsAt(noise[:(g1-g0)*d], dr.Seed, PurposeNoise, dr.Step, g0*d, 1)
		}
		for r := g0; r < g1; r++ {
			lane := r % 4
			idx := int(IndexBelow(idxW[lane], uint32(t.nData)))
			u := Uniform01(uW[lane])
			tv := float32(flow.Clamp(t.path, dr.Time.Transform(float64(u), float64(nrm[lane]))))
			t.t[r] = tv
			k := t.path.At(float64(tv))
			if grouped {
				t.row(k, noise[(r-g0)*d:(r-g0+1)*d], r, idx, 0, d)
				continue
			}
			for j0 := 0; j0 < d; j0 += len(noise) {
				w := min(len(noise), d-j0)
				z := noise[:w]
				normalsAt(z, dr.Seed, PurposeNoise, dr.Step, r*d+j0, 1)
				t.row(k, z, r, idx, j0, w)
			}
		}
		g0 = g1
	}
}

// row writes columns [j0, j0+w) of row r from the noise z and data row idx.
func (t *drawTask) row(k flow.Coef, z []float32, r, idx, j0, w int) {
	d := t.d
	x1 := t.src[idx*d+j0 : idx*d+j0+w]
	flow.TargetRow(k, z, x1, t.xt[r*d+j0:r*d+j0+w], t.ut[r*d+j0:r*d+j0+w])
	if t.x1 != nil {
		copy(t.x1[r*d+j0:], x1)
	}
	if t.x0 != nil {
		copy(t.x0[r*d+j0:], z)
	}
}

func (c *CPU) DrawBatch(dr BatchDraw, data Buffer, nData, d, rows int, x0, x1, t, xt, ut Buffer) {
	path, _ := checkDrawBatch(&c.paths, dr, data, nData, d, rows, x0, x1, t, xt, ut)
	dr.Step, dr.StepFrom = dr.hostStep(), nil
	c.draw.batch = drawTask{dr: dr, path: path, src: host(data), x0: host(x0), x1: host(x1), t: host(t), xt: host(xt), ut: host(ut),
		nData: nData, d: d}
	c.pool.do(&c.draw.batch, rows, 40*d+300)
}

// drawLabelsTask writes rows [lo, hi) of DrawLabels.
type drawLabelsTask struct {
	dr            BatchDraw
	labels, y     []float32
	nData         uint32
	dropout, null float32
}

func (t *drawLabelsTask) run(lo, hi int) {
	dr := t.dr
	for r := lo; r < hi; r++ {
		blk, lane := uint32(r/4), r%4
		if Uniform01(PhiloxBlock(dr.Seed, PurposeLabelDrop, dr.Step, blk)[lane]) < t.dropout {
			t.y[r] = t.null
			continue
		}
		t.y[r] = t.labels[IndexBelow(PhiloxBlock(dr.Seed, PurposeIndex, dr.Step, blk)[lane], t.nData)]
	}
}

func (c *CPU) DrawLabels(dr BatchDraw, labels Buffer, nData, rows int, dropout, null float32, y Buffer) {
	checkDrawLabels(dr, labels, nData, rows, y)
	dr.Step, dr.StepFrom = dr.hostStep(), nil
	t := &c.draw.labels
	*t = drawLabelsTask{dr: dr, labels: host(labels), y: host(y), nData: uint32(nData), dropout: dropout, null: null}
	c.pool.do(t, rows, 200)
}
