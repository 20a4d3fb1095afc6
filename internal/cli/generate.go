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

// loadedModel is a trained network on a backend with what sampling needs
// from its configuration.
type loadedModel struct {
	ck    *train.Checkpoint // nil for a network still in training
	net   model.Net
	path  flow.Path
	shift float64 // the SD3 time shift training used
	std   data.Standardization
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
	lm := &loadedModel{ck: ck, net: net, path: p, shift: ck.Meta.Config.Time.Shift, std: ck.Meta.Standardization}
	return lm, b.Sync()
}

// trainingModel is the EMA network of a run in progress, for the grids
// drawn at checkpoints.
func trainingModel(tr *train.Trainer, std data.Standardization) *loadedModel {
	c := tr.Config()
	return &loadedModel{net: tr.EMANet(), path: flow.MustNew(c.Path), shift: c.Time.Shift, std: std}
}

func (lm *loadedModel) classes() int { return lm.net.Config().Classes }

// sampleChunk bounds the rows integrated at once, so that the network's
// activations stay within a few hundred MB whatever --n is.
const sampleChunk = 1 << 15

// chunkRows is how many rows are integrated at once: all the chunk for
// vectors, 100 images for a U-Net, whose activations take megabytes per
// image.
func chunkRows(c model.Config) int {
	if c.Kind == "unet" {
		return 100
	}
	return sampleChunk
}

// genOptions are the sampling choices beyond the solver's.
type genOptions struct {
	seed     uint64
	labels   []int   // per sample, for class-conditional models (nil: null class)
	guidance float64 // classifier-free guidance weight
	onSave   func(step, first int, x []float32)
}

// generate draws n samples: x0 ~ p0 from Philox stream (seed, chunk), the
// ODE solved from the start of the path's time range to its end, mapped
// back to data units. onSave, when set, receives every saved state of
// every chunk in data units, with the chunk's first row.
func generate(b gpu.Backend, lm *loadedModel, n int, o sampler.Options, g genOptions) ([]float32, sampler.Stats, error) {
	d := lm.net.Dim()
	out := make([]float32, n*d)
	lo, hi := lm.path.TimeRange()
	o.T0, o.T1 = lo, hi
	if o.TimeShift == 0 {
		o.TimeShift = lm.shift
	}
	chunk := chunkRows(lm.net.Config())
	var total sampler.Stats
	x := b.Alloc(min(n, chunk) * d)
	defer b.Free(x)
	if g.onSave == nil && !o.Method.Adaptive() {
		// Chunks of the same rows and field replay one recorded solve.
		rec := sampler.NewRecorder(b)
		defer rec.Close()
		o.Recorder = rec
	}
	for first, stream := 0, uint64(0); first < n; first, stream = first+chunk, stream+1 {
		rows := min(chunk, n-first)
		xs := x.Slice(0, rows*d)
		b.RandNormal(xs, g.seed, stream, float32(lm.path.PriorStd()))
		var field sampler.Field = lm.net
		if lm.classes() > 0 {
			labels := make([]int, rows)
			for i := range labels {
				labels[i] = lm.classes() // null
				if g.labels != nil {
					labels[i] = g.labels[first+i]
				}
			}
			gf := model.NewGuided(b, lm.net, labels, g.guidance)
			defer gf.Release()
			field = gf
		}
		oc := o
		if g.onSave != nil {
			k := 0
			host := make([]float32, rows*d)
			oc.OnSave = func(_ float64, st gpu.Buffer) {
				b.Download(host, st)
				lm.std.Invert(host)
				g.onSave(k, first, host)
				k++
			}
		}
		st, err := sampler.Solve(b, field, xs, rows, oc)
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
	lm.std.Invert(out)
	if i := firstNonFinite(out); i >= 0 {
		return nil, total, fmt.Errorf("sample %d came out non-finite (a diverged model or solver: try --solver rk4 or another checkpoint)", i/d)
	}
	return out, total, nil
}

func firstNonFinite(x []float32) int {
	for i, v := range x {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return i
		}
	}
	return -1
}

// gridLabels are the labels of a 10 x 10 grid: one row per class for a
// conditional model (the first ten classes, or class k everywhere when k
// >= 0), nil for an unconditional one.
func gridLabels(classes, k int) []int {
	if classes == 0 {
		return nil
	}
	labels := make([]int, gridSide*gridSide)
	for i := range labels {
		switch {
		case k >= 0:
			labels[i] = k
		default:
			labels[i] = (i / gridSide) % classes
		}
	}
	return labels
}

const gridSide = 10
