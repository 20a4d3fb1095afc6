package train

import (
	"context"
	"errors"
	"io"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fmgpu/fmgpu/data"
	"github.com/fmgpu/fmgpu/flow"
	"github.com/fmgpu/fmgpu/gpu"
	"github.com/fmgpu/fmgpu/model"
)

// replaySource hands a streaming trainer, at each step, the rows (and
// labels) the in-memory trainer's DrawBatch picks for that step.
type replaySource struct {
	x      []float32
	labels []int32
	n, d   int
	seed   uint64
	step   uint64
}

func (s *replaySource) Dim() int { return s.d }

func (s *replaySource) Next(_ context.Context, x []float32, labels []int32) error {
	for r := range len(x) / s.d {
		w := gpu.PhiloxBlock(s.seed, gpu.PurposeIndex, s.step, uint32(r/4))
		i := int(gpu.IndexBelow(w[r%4], uint32(s.n)))
		copy(x[r*s.d:(r+1)*s.d], s.x[i*s.d:(i+1)*s.d])
		if labels != nil {
			labels[r] = s.labels[i]
		}
	}
	s.step++
	return nil
}

// replayNoise makes a streaming trainer's x0 DrawBatch's for the step.
func replayNoise(b gpu.Backend, cfg Config) func(int, gpu.Buffer) {
	p, _ := flow.New(cfg.Path)
	std := float32(p.PriorStd())
	return func(step int, x0 gpu.Buffer) {
		host := make([]float32, x0.Len())
		for e := range host {
			host[e] = std * gpu.NormalBlock(gpu.PhiloxBlock(cfg.Seed, gpu.PurposeNoise, uint64(step), uint32(e/4)))[e%4]
		}
		b.Upload(x0, host)
	}
}

func download(t *testing.T, b gpu.Backend, buf gpu.Buffer) []float32 {
	t.Helper()
	h := make([]float32, buf.Len())
	b.Download(h, buf)
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	return h
}

func sameValues(t *testing.T, what string, a, b []float32) {
	t.Helper()
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("%s[%d]: in memory %v, streamed %v", what, i, a[i], b[i])
		}
	}
}

// A streaming trainer given the rows, times and noise the in-memory
// trainer draws makes the same steps, bit for bit: its PathTarget on the
// uploaded rows, its host draws of t (and of the label dropout) and its
// update are Step's.
func TestStreamReplaysStep(t *testing.T) {
	b := gpu.NewCPU(1)
	defer b.Close()
	ds, _ := standardized(t, "moons")
	for _, ts := range []flow.TimeSampler{flow.DefaultTimeSampler(flow.TimeUniform), {Kind: flow.TimeLogitNormal, Mean: 0.3, Std: 1.2, Shift: 2}} {
		cfg := testConfig()
		cfg.Time, cfg.Steps, cfg.Batch = ts, 25, 37 // a batch that is not a multiple of the Philox block
		mem, err := New(b, cfg, ds.X, ds.N)
		if err != nil {
			t.Fatal(err)
		}
		st, err := NewStream(b, cfg, &replaySource{x: ds.X, n: ds.N, d: ds.D, seed: cfg.Seed})
		if err != nil {
			t.Fatal(err)
		}
		st.stream.noise = replayNoise(b, cfg)
		for range cfg.Steps {
			mem.Step()
			if err := st.StepStream(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		pm, err1 := mem.Read()
		ps, err2 := st.Read()
		if err1 != nil || err2 != nil || pm != ps {
			t.Fatalf("%v: progress %+v (%v) in memory, %+v (%v) streamed", ts, pm, err1, ps, err2)
		}
		sameValues(t, "params", download(t, b, mem.net.Params()), download(t, b, st.net.Params()))
		sameValues(t, "ema", download(t, b, mem.ema), download(t, b, st.ema))
		mem.Close()
		st.Close()
	}
}

// The same for a class-conditional U-Net: labels come from the source and
// are dropped to the null class by DrawLabels' draws.
func TestStreamReplaysConditionalStep(t *testing.T) {
	b := gpu.NewCPU(1)
	defer b.Close()
	const side, classes, n = 8, 3, 40
	cfg := Config{
		Model: model.Config{Kind: model.KindUNet, Dim: side * side, TimeEmbed: gpu.TimeEmbedding{Freqs: 4, Scale: 1000, MaxPeriod: 10000},
			Classes: classes, Image: &model.ImageShape{Channels: 1, Height: side, Width: side},
			UNet: &model.UNetConfig{Base: 4, Mults: []int{1, 2}, ResBlocks: 1, Groups: 2}},
		Path: flow.DefaultSpec(flow.KindOT), Time: flow.DefaultTimeSampler(flow.TimeUniform),
		Steps: 4, Batch: 6, Seed: 5, LR: 1e-3, EMADecay: 0.9, ClassDropout: 0.4,
	}
	cfg.Defaults()
	x := make([]float32, n*side*side)
	labels := make([]int32, n)
	for i := range x {
		x[i] = float32(math.Sin(float64(i) * 0.37))
	}
	for i := range labels {
		labels[i] = int32(i % classes)
	}
	mem, err := NewConditional(b, cfg, x, labels, n)
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	st, err := NewStream(b, cfg, &replaySource{x: x, labels: labels, n: n, d: side * side, seed: cfg.Seed})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	st.stream.noise = replayNoise(b, cfg)
	for range cfg.Steps {
		mem.Step()
		if err := st.StepStream(context.Background()); err != nil {
			t.Fatal(err)
		}
		sameValues(t, "labels", download(t, b, mem.y), download(t, b, st.y))
	}
	sameValues(t, "params", download(t, b, mem.net.Params()), download(t, b, st.net.Params()))
}

// seekSource is a deterministic stream: row r is a function of r, so a
// source told to seek to row r gives what an uninterrupted one would.
type seekSource struct {
	row, seeks int64
	failAt     int64 // Next fails (io.EOF) once row reaches failAt; 0: never
	cancel     func()
	nan        bool
}

func (s *seekSource) Dim() int { return 2 }

func (s *seekSource) Next(ctx context.Context, x []float32, _ []int32) error {
	if s.failAt > 0 && s.row >= s.failAt {
		if s.cancel != nil {
			s.cancel()
			<-ctx.Done()
			return ctx.Err()
		}
		return io.EOF
	}
	for i := 0; i < len(x); i += 2 {
		r := float64(s.row)
		x[i], x[i+1] = float32(math.Cos(r*0.61)+0.1*math.Sin(r*7.3)), float32(math.Sin(r*0.61))
		s.row++
	}
	if s.nan {
		x[3] = float32(math.NaN())
	}
	return nil
}

func (s *seekSource) SeekRow(_ context.Context, row int64) error {
	s.row = row
	s.seeks++
	return nil
}

// A streaming run resumed from its checkpoint, with a source that seeks,
// ends with the weights of the run done in one go: x0 and t depend on
// (seed, step) only.
func TestStreamResumeIsExact(t *testing.T) {
	b := gpu.NewCPU(1)
	defer b.Close()
	cfg := testConfig()
	cfg.Steps, cfg.Batch = 40, 32
	std := data.Identity(2)
	dir := t.TempDir()
	straight, err := NewStream(b, cfg, &seekSource{})
	if err != nil {
		t.Fatal(err)
	}
	defer straight.Close()
	if err := straight.Run(context.Background(), RunOptions{OutDir: dir, LogEvery: 10, Std: std}); err != nil {
		t.Fatal(err)
	}
	a, _ := Load(filepath.Join(dir, CheckpointName))

	dir2 := t.TempDir()
	first, _ := NewStream(b, cfg, &seekSource{})
	defer first.Close()
	if err := first.Run(context.Background(), RunOptions{OutDir: dir2, LogEvery: 10, Std: std, StopAt: 17}); err != nil {
		t.Fatal(err)
	}
	mid, err := Load(filepath.Join(dir2, CheckpointName))
	if err != nil || mid.Meta.Step != 17 {
		t.Fatalf("checkpoint %v at step %d", err, mid.Meta.Step)
	}
	src := &seekSource{row: 12345} // wherever a fresh cursor starts
	resumed, _ := NewStream(b, cfg, src)
	defer resumed.Close()
	if err := resumed.Resume(mid); err != nil {
		t.Fatal(err)
	}
	if err := resumed.Run(context.Background(), RunOptions{OutDir: dir2, LogEvery: 10, Std: std}); err != nil {
		t.Fatal(err)
	}
	if src.seeks != 1 || src.row != int64(cfg.Steps*cfg.Batch) {
		t.Errorf("source sought %d times, at row %d after the run, want once and %d", src.seeks, src.row, cfg.Steps*cfg.Batch)
	}
	c, _ := Load(filepath.Join(dir2, CheckpointName))
	for name, pair := range map[string][2][]float32{"params": {a.Params, c.Params}, "ema": {a.EMA, c.EMA}, "m": {a.AdamM, c.AdamM}, "v": {a.AdamV, c.AdamV}} {
		sameValues(t, name, pair[0], pair[1])
	}
}

// A source that runs out or is cancelled ends the run with a checkpoint
// of the steps done; bad rows and a source of another width are errors.
func TestStreamSourceErrors(t *testing.T) {
	b := gpu.NewCPU(1)
	defer b.Close()
	cfg := testConfig()
	cfg.Steps, cfg.Batch = 50, 16
	std := data.Identity(2)

	dir := t.TempDir()
	tr, _ := NewStream(b, cfg, &seekSource{failAt: 16 * 9})
	err := tr.Run(context.Background(), RunOptions{OutDir: dir, LogEvery: 5, Std: std})
	var se *SourceError
	if !errors.As(err, &se) || se.Step != 10 || !errors.Is(err, io.EOF) {
		t.Fatalf("run over a source that ends: %v", err)
	}
	if ck, err := Load(filepath.Join(dir, CheckpointName)); err != nil || ck.Meta.Step != 9 {
		t.Fatalf("checkpoint after the source ended: %v", err)
	}
	tr.Close()

	dir = t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tr, _ = NewStream(b, cfg, &seekSource{failAt: 16 * 4, cancel: cancel})
	if err := tr.Run(ctx, RunOptions{OutDir: dir, LogEvery: 5, Std: std}); !errors.Is(err, context.Canceled) {
		t.Fatalf("run cancelled inside the source: %v", err)
	}
	if ck, err := Load(filepath.Join(dir, CheckpointName)); err != nil || ck.Meta.Step != 4 {
		t.Fatalf("checkpoint after a cancel: %v", err)
	}
	tr.Close()

	tr, _ = NewStream(b, cfg, &seekSource{nan: true})
	if err := tr.StepStream(context.Background()); !errors.As(err, &se) || !strings.Contains(err.Error(), "row 1 of the batch holds NaN in column 1") {
		t.Errorf("a NaN row: %v", err)
	}
	if tr.StepsDone() != 0 {
		t.Errorf("a refused batch counted as step %d", tr.StepsDone())
	}
	tr.Close()

	if _, err := NewStream(b, cfg, &replaySource{d: 3}); err == nil || !strings.Contains(err.Error(), "rows of 3 values, the model's are 2") {
		t.Errorf("a source of another width: %v", err)
	}
	mem, _ := New(b, cfg, make([]float32, 2), 1)
	if err := mem.StepStream(context.Background()); err == nil {
		t.Error("StepStream on an in-memory trainer: no error")
	}
	mem.Close()
}

// BenchmarkStepStream is BenchmarkStep with each batch read from a Source
// (rows copied out of memory, the cheapest source there is) and uploaded:
// what streaming adds to a step on the CPU.
func BenchmarkStepStream(b *testing.B) {
	ds, _ := data.Builtin("8gaussians", 100000, 1)
	for _, w := range peerWorkloads {
		b.Run(w.name(), func(b *testing.B) {
			c := w.config()
			be := gpu.NewCPU(0)
			defer be.Close()
			tr, err := NewStream(be, c, &replaySource{x: ds.X, n: ds.N, d: ds.D, seed: c.Seed})
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			for i := 0; i < 3; i++ {
				if err := tr.StepStream(ctx); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := tr.StepStream(ctx); err != nil {
					b.Fatal(err)
				}
			}
			if _, err := tr.Read(); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "steps/s")
		})
	}
}

// On a device backend (a GPU, or the kernel simulator under -tags
// kernelsim), the streaming step given the in-memory trainer's rows and
// noise follows its steps: the same ops on the device, except that the
// replayed noise is drawn on the host in float64 where DrawBatch uses the
// device's float32 Box-Muller (agreeing to ~1e-6), so the weights agree to
// float32 rounding, not bit for bit.
func TestStreamOnDevice(t *testing.T) {
	b, err := gpu.NewCUDA()
	if err != nil {
		t.Skipf("no device backend: %v", err)
	}
	defer b.Close()
	ds, _ := standardized(t, "moons")
	cfg := testConfig()
	cfg.Steps, cfg.Batch, cfg.Model.Hidden = 6, 64, []int{32, 32}
	mem, err := New(b, cfg, ds.X, ds.N)
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	st, err := NewStream(b, cfg, &replaySource{x: ds.X, n: ds.N, d: ds.D, seed: cfg.Seed})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	st.stream.noise = replayNoise(b, cfg)
	for range cfg.Steps {
		mem.Step()
		if err := st.StepStream(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.Read(); err != nil {
		t.Fatal(err)
	}
	a, c := download(t, b, mem.net.Params()), download(t, b, st.net.Params())
	for i := range a {
		if d := math.Abs(float64(a[i] - c[i])); d > 1e-4*math.Max(1, math.Abs(float64(a[i]))) {
			t.Fatalf("param %d: in memory %v, streamed %v", i, a[i], c[i])
		}
	}
}
