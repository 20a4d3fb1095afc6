package gpu

import (
	"fmt"
	"math"

	"github.com/fmgpu/fmgpu/flow"
)

// Draw are the ops of a flow-matching training batch: the conditional
// path's x_t and u_t, and the fused draw of data rows, times, noise and
// class labels from the Philox streams (philox.go).
type Draw interface {
	// PathTarget is flow.Target on the device: xt = sigma_t x0 + alpha_t x1,
	// ut = sigma'_t x0 + alpha'_t x1 for rows x d inputs and t (rows).
	PathTarget(p flow.Spec, rows, d int, x0, x1, t, xt, ut Buffer)

	// DrawBatch is the fused training draw: for each of rows rows it draws a
	// data index i (uniform over nData rows of data, nData x d, 1 <= nData
	// < 2^32), a time t (dr.Time, clamped to the path's range) and
	// x0 ~ N(0, I) with Philox-4x32-10 (streams in philox.go), gathers
	// x1 = data[i] and writes x0, x1, t, xt, ut as PathTarget would. x0 and
	// x1 may be nil. The path's x0 is standard normal for every kind:
	// PriorStd is the spread of x_t at t = 0 (sigma_max x0 for ve), where
	// sampling starts, not of x0 (docs/math.md §2.5).
	DrawBatch(dr BatchDraw, data Buffer, nData, d, rows int, x0, x1, t, xt, ut Buffer)

	// DrawLabels writes the class labels of the rows DrawBatch draws for the
	// same dr, nData and rows: y[r] = labels[i_r] with i_r the row index of
	// Philox stream (dr.Seed, PurposeIndex, dr.Step), replaced by null when
	// the uniform of stream (dr.Seed, PurposeLabelDrop, dr.Step), element
	// r, is below dropout (classifier-free guidance's label dropout).
	DrawLabels(dr BatchDraw, labels Buffer, nData, rows int, dropout, null float32, y Buffer)
}

// BatchDraw describes one fused training-batch draw (Draw.DrawBatch).
type BatchDraw struct {
	Path flow.Spec
	Time flow.TimeSampler
	Seed uint64
	// Step selects the Philox stream: batch draws for different steps are
	// independent, and the same (Seed, Step) gives the same batch.
	Step uint64
	// StepFrom, when not nil, holds the step instead of Step, read when
	// the op runs: StepFrom[0] and [1] are the bits of its low and high
	// 32-bit halves (StepWords), so that a recorded graph (Capture) draws
	// a new batch at each replay.
	StepFrom Buffer
}

// StepWords are a step's halves as BatchDraw.StepFrom holds them: float32
// values whose bits are the step's low and high 32 bits.
func StepWords(step uint64) [2]float32 {
	return [2]float32{math.Float32frombits(uint32(step)), math.Float32frombits(uint32(step >> 32))}
}

// hostStep is dr's step on a backend whose buffers are host memory.
func (dr BatchDraw) hostStep() uint64 {
	if dr.StepFrom == nil {
		return dr.Step
	}
	w := host(dr.StepFrom)
	return uint64(math.Float32bits(w[0])) | uint64(math.Float32bits(w[1]))<<32
}

// pathCache keeps the last path built from a Spec, so that the draw ops do
// not rebuild (and allocate) it on every call.
type pathCache struct {
	spec flow.Spec
	path flow.Path
}

// get returns the path of s; an invalid Spec panics, naming op.
func (c *pathCache) get(op string, s flow.Spec) flow.Path {
	if c.path == nil || s != c.spec {
		p, err := flow.New(s)
		if err != nil {
			panic(fmt.Sprintf("gpu: %s: %v", op, err))
		}
		c.spec, c.path = s, p
	}
	return c.path
}

// checkPathTarget returns the path and rows x d.
func checkPathTarget(paths *pathCache, p flow.Spec, rows, d int, x0, x1, t, xt, ut Buffer) (flow.Path, int) {
	const op = "PathTarget"
	path := paths.get(op, p)
	n := count2(op, rows, d)
	need(op, "x0", x0, n)
	need(op, "x1", x1, n)
	need(op, "t", t, rows)
	need(op, "xt", xt, n)
	need(op, "ut", ut, n)
	return path, n
}

func checkDataRows(op string, nData int) {
	if nData <= 0 || nData > math.MaxUint32 {
		panic(fmt.Sprintf("gpu: %s over %d data rows", op, nData))
	}
}

// checkDrawBatch returns the path and rows x d.
func checkDrawBatch(paths *pathCache, dr BatchDraw, data Buffer, nData, d, rows int, x0, x1, t, xt, ut Buffer) (flow.Path, int) {
	const op = "DrawBatch"
	path := paths.get(op, dr.Path)
	checkDataRows(op, nData)
	checkStepFrom(op, dr)
	n := count2(op, rows, d)
	need(op, "data", data, count2(op, nData, d))
	need(op, "t", t, rows)
	need(op, "xt", xt, n)
	need(op, "ut", ut, n)
	if x0 != nil {
		need(op, "x0", x0, n)
	}
	if x1 != nil {
		need(op, "x1", x1, n)
	}
	return path, n
}

func checkStepFrom(op string, dr BatchDraw) {
	if dr.StepFrom != nil {
		need(op, "StepFrom", dr.StepFrom, 2)
	}
}

func checkDrawLabels(dr BatchDraw, labels Buffer, nData, rows int, y Buffer) {
	const op = "DrawLabels"
	checkDataRows(op, nData)
	checkStepFrom(op, dr)
	if rows < 0 {
		panic(fmt.Sprintf("gpu: %s of %d rows", op, rows))
	}
	need(op, "labels", labels, nData)
	need(op, "y", y, rows)
}
