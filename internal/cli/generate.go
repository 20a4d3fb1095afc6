package cli

import (
	"fmt"
	"math"

	"github.com/fmgpu/fmgpu/data"
	"github.com/fmgpu/fmgpu/flow"
	"github.com/fmgpu/fmgpu/gpu"
	"github.com/fmgpu/fmgpu/model"
	"github.com/fmgpu/fmgpu/sampler"
	"github.com/fmgpu/fmgpu/train"
)

// loadedModel is a checkpoint turned back into a network on a backend.
type loadedModel struct {
	ck   *train.Checkpoint
	net  model.Net
	path flow.Path
}

// loadModel rebuilds the network a checkpoint describes, with its EMA
// weights (the default for sampling) or its raw weights.
func loadModel(b gpu.Backend, ckPath string, ema bool) (*loadedModel, error) {
	ck, err := train.Load(ckPath)
	if err != nil {
		return nil, err
	}
	net, err := model.New(b, ck.Meta.Config.Model)
	if err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", ckPath, err)
	}
	w := ck.Params
	if ema && ck.Meta.Config.EMADecay > 0 {
		w = ck.EMA
	}
	b.Upload(net.Params(), w)
	p, err := flow.New(ck.Meta.Config.Path)
	if err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", ckPath, err)
	}
	return &loadedModel{ck: ck, net: net, path: p}, b.Sync()
}

// sampleChunk bounds the rows integrated at once, so that the network's
// activations stay within a few hundred MB whatever --n is.
const sampleChunk = 1 << 15

// generate draws n samples: x0 ~ p0 from Philox stream (seed, chunk), the
// ODE solved from the start of the path's time range to its end, mapped
// back to data units. onSave, when set, receives every saved state of
// every chunk in data units, with the chunk's first row.
func generate(b gpu.Backend, lm *loadedModel, n int, seed uint64, o sampler.Options,
	onSave func(step int, first int, x []float32)) ([]float32, sampler.Stats, error) {
	d := lm.net.Dim()
	out := make([]float32, n*d)
	lo, hi := lm.path.TimeRange()
	o.T0, o.T1 = lo, hi
	if o.TimeShift == 0 {
		o.TimeShift = lm.ck.Meta.Config.Time.Shift
	}
	std := lm.ck.Meta.Standardization
	var total sampler.Stats
	x := b.Alloc(min(n, sampleChunk) * d)
	defer b.Free(x)
	for first, chunk := 0, uint64(0); first < n; first, chunk = first+sampleChunk, chunk+1 {
		rows := min(sampleChunk, n-first)
		xs := x.Slice(0, rows*d)
		b.RandNormal(xs, seed, chunk, float32(lm.path.PriorStd()))
		oc := o
		if onSave != nil {
			k := 0
			host := make([]float32, rows*d)
			oc.OnSave = func(_ float64, st gpu.Buffer) {
				b.Download(host, st)
				toDataUnits(std, host)
				onSave(k, first, host)
				k++
			}
		}
		st, err := sampler.Solve(b, lm.net, xs, rows, oc)
		if err != nil {
			return nil, total, err
		}
		total.NFE += st.NFE
		total.Steps += st.Steps
		total.Rejected += st.Rejected
		total.FieldCalls += st.FieldCalls
		b.Download(out[first*d:(first+rows)*d], xs)
	}
	if err := b.Sync(); err != nil {
		return nil, total, err
	}
	toDataUnits(std, out)
	if i := firstNonFinite(out); i >= 0 {
		return nil, total, fmt.Errorf("sample %d came out non-finite (a diverged model or solver: try --solver rk4 or another checkpoint)", i/d)
	}
	return out, total, nil
}

func toDataUnits(std data.Standardization, x []float32) { std.Invert(x) }

func firstNonFinite(x []float32) int {
	for i, v := range x {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return i
		}
	}
	return -1
}
