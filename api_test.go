package fmgpu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fmgpu/fmgpu/data"
	"github.com/fmgpu/fmgpu/gpu"
	"github.com/fmgpu/fmgpu/internal/fakecuda"
	"github.com/fmgpu/fmgpu/train"
)

// countingBackend tracks the buffers alive on a backend.
type countingBackend struct {
	gpu.Backend
	mu   sync.Mutex
	live map[gpu.Buffer]bool
}

func newCounting() *countingBackend {
	return &countingBackend{Backend: gpu.NewCPU(1), live: map[gpu.Buffer]bool{}}
}

func (c *countingBackend) Alloc(n int) gpu.Buffer {
	buf := c.Backend.Alloc(n)
	c.mu.Lock()
	c.live[buf] = true
	c.mu.Unlock()
	return buf
}

func (c *countingBackend) Free(b gpu.Buffer) {
	c.mu.Lock()
	delete(c.live, b)
	c.mu.Unlock()
	c.Backend.Free(b)
}

func (c *countingBackend) alive() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.live)
}

func cpuDevice(t *testing.T) *Device {
	t.Helper()
	d, err := OpenDevice(DeviceCPU, 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// smallConfig is a quick run on 2-D data.
func smallConfig(steps int) train.Config {
	c := DefaultConfig(2)
	c.Model.Hidden = []int{16, 16}
	c.Steps, c.Warmup, c.Batch = steps, steps/5, 32
	return c
}

// ringRows is a deterministic stream: row r is a point of a ring off the
// origin, a function of r alone, so that a source sought to row r gives
// what an uninterrupted one would.
type ringRows struct {
	row, reads int64
	failAt     int64 // Next returns io.EOF from this row on (0: never)
}

func (s *ringRows) Dim() int { return 2 }

func ringPoint(r int64) (float32, float32) {
	a := float64(r) * 2.399963 // the golden angle
	rad := 3 + 0.2*math.Sin(float64(r)*0.7)
	return float32(5 + rad*math.Cos(a)), float32(-2 + 0.5*rad*math.Sin(a))
}

func (s *ringRows) Next(_ context.Context, x []float32, _ []int32) error {
	if s.failAt > 0 && s.row+int64(len(x)/2) > s.failAt {
		return io.EOF
	}
	for i := 0; i < len(x); i += 2 {
		x[i], x[i+1] = ringPoint(s.row)
		s.row++
	}
	s.reads++
	return nil
}

func (s *ringRows) SeekRow(_ context.Context, row int64) error { s.row = row; return nil }

func TestOpenDevice(t *testing.T) {
	if _, err := OpenDevice("tpu", 0); err == nil || !strings.Contains(err.Error(), `device "tpu": want auto, cpu or cuda`) {
		t.Errorf("an unknown device: %v", err)
	}
	if _, err := OpenDevice(DeviceCPU, -1); err == nil {
		t.Error("negative threads: no error")
	}
	d := cpuDevice(t)
	if d.Fallback() != "" || !strings.HasPrefix(d.String(), "cpu: ") || !strings.Contains(d.String(), "1 threads") {
		t.Errorf("cpu device: %q, fallback %q", d, d.Fallback())
	}
	if gpu.Flavor == "kernelsim" {
		return // NewCUDA is the simulator there
	}
	t.Setenv("FMGPU_LIBCUDA", filepath.Join(t.TempDir(), "libcuda.so.1"))
	auto, err := OpenDevice(DeviceAuto, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer auto.Close()
	if auto.Info().Backend != "cpu" || !strings.Contains(auto.Fallback(), "no NVIDIA driver") || !strings.Contains(auto.String(), "(no GPU: no NVIDIA driver") {
		t.Errorf("auto without a driver: %q, fallback %q", auto, auto.Fallback())
	}
	var u *gpu.CUDAUnavailable
	if _, err := OpenDevice(DeviceCUDA, 0); !errors.As(err, &u) {
		t.Errorf("cuda without a driver: %v", err)
	}
}

// A stream's standardization is fitted to the rows read ahead, which are
// then trained on first, standardized; a seek within them serves them
// again, one beyond them reaches the source.
func TestStreamStandardization(t *testing.T) {
	src := &ringRows{}
	s, std, err := newStdSource(context.Background(), src, nil, 100, false)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]float32, 200)
	for r := range int64(100) {
		want[2*r], want[2*r+1] = ringPoint(r)
	}
	fit := data.Fit(&data.Dataset{X: append([]float32(nil), want...), N: 100, D: 2})
	for j := range 2 {
		if std.Mean[j] != fit.Mean[j] || std.Std[j] != fit.Std[j] || math.Abs(std.Mean[j]) < 1 {
			t.Fatalf("fitted %+v, want %+v", std, fit)
		}
	}
	got := make([]float32, 2*70)
	for range 2 { // rows 0-69, then 70-99 read ahead and 100-139 from the source
		if err := s.Next(context.Background(), got, nil); err != nil {
			t.Fatal(err)
		}
	}
	all := make([]float32, 2*140)
	for r := range int64(140) {
		all[2*r], all[2*r+1] = ringPoint(r)
	}
	std.Apply(all)
	for i, v := range got {
		if v != all[140+i] {
			t.Fatalf("value %d of the second batch: %v, want %v", i, v, all[140+i])
		}
	}
	sk := s.(RowSeeker)
	if err := sk.SeekRow(context.Background(), 30); err != nil {
		t.Fatal(err)
	}
	s.Next(context.Background(), got[:20], nil)
	if got[0] != all[60] || src.row != 100 {
		t.Errorf("after a seek to row 30: %v, want %v (source at row %d)", got[0], all[60], src.row)
	}
	sk.SeekRow(context.Background(), 120)
	s.Next(context.Background(), got[:20], nil)
	if got[0] != all[240] || src.row != 130 {
		t.Errorf("after a seek to row 120: %v, want %v (source at row %d)", got[0], all[240], src.row)
	}
}

// A streaming run resumed through the API ends as the run done in one go.
func TestStreamResumeIsExact(t *testing.T) {
	ctx := context.Background()
	dev := cpuDevice(t)
	cfg := smallConfig(40)
	o := TrainOptions{Device: dev, FitRows: 100, LogEvery: 10}
	o.OutDir = t.TempDir()
	m, err := Train(ctx, cfg, &ringRows{}, o)
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	straight, _ := train.Load(filepath.Join(o.OutDir, train.CheckpointName))

	o.OutDir, o.StopAt = t.TempDir(), 13
	tr, err := NewTrainer(ctx, cfg, &ringRows{}, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Run(ctx); err != nil || tr.StepsDone() != 13 {
		t.Fatalf("%v at step %d", err, tr.StepsDone())
	}
	tr.Close()
	// LogEvery left zero: the checkpoint's 10
	var logged []int
	o.StopAt, o.Resume, o.LogEvery = 0, true, 0
	o.OnLog = func(m train.Metric) { logged = append(logged, m.Step) }
	src := &ringRows{row: 999}
	tr, err = NewTrainer(ctx, cfg, src, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Run(ctx); err != nil {
		t.Fatal(err)
	}
	tr.Close()
	if fmt.Sprint(logged) != "[20 30 40]" {
		t.Errorf("the resumed run logged at steps %v, want [20 30 40] (every 10, as the checkpoint's run)", logged)
	}
	if src.row != int64(cfg.Steps*cfg.Batch) {
		t.Errorf("the resumed source ended at row %d, want %d", src.row, cfg.Steps*cfg.Batch)
	}
	resumed, _ := train.Load(filepath.Join(o.OutDir, train.CheckpointName))
	for i := range straight.Params {
		if straight.Params[i] != resumed.Params[i] || straight.EMA[i] != resumed.EMA[i] {
			t.Fatalf("parameter %d: straight %v, resumed %v", i, straight.Params[i], resumed.Params[i])
		}
	}
	if straight.Meta.Data.Source != "go" || straight.Meta.Standardization.Std[0] == 1 {
		t.Errorf("data info %+v, standardization %+v", straight.Meta.Data, straight.Meta.Standardization)
	}
}

// What a resumed run may not change, and the other misuses of OutDir, are
// errors naming the cause.
func TestResumeRefusals(t *testing.T) {
	ctx := context.Background()
	dev := cpuDevice(t)
	rows := make([]float32, 400)
	for i := range rows {
		rows[i] = float32(math.Sin(float64(i)))
	}
	cfg := smallConfig(20)
	dir := t.TempDir()
	if _, err := NewTrainer(ctx, cfg, Rows(rows, 2), TrainOptions{Device: dev, OutDir: dir, Resume: true}); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("Resume without a checkpoint: %v", err)
	}
	m, err := Train(ctx, cfg, Rows(rows, 2), TrainOptions{Device: dev, OutDir: dir, StopAt: 10})
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	other := append([]float32(nil), rows...)
	other[7] = 3
	more := cfg
	more.Seed = 9
	lr := cfg
	lr.LR = 1e-4
	for name, c := range map[string]struct {
		cfg  train.Config
		rows []float32
		o    TrainOptions
		want string
	}{
		"no Resume":  {cfg, rows, TrainOptions{}, "already holds a checkpoint"},
		"seed":       {more, rows, TrainOptions{Resume: true}, "seed differs"},
		"other rows": {cfg, other, TrainOptions{Resume: true}, "rows differ"},
		"StopAt":     {cfg, rows, TrainOptions{Resume: true, StopAt: 5}, "at step 10 already"},
	} {
		c.o.Device, c.o.OutDir = dev, dir
		if _, err := NewTrainer(ctx, c.cfg, Rows(c.rows, 2), c.o); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
	}
	tr, err := NewTrainer(ctx, lr, Rows(rows, 2), TrainOptions{Device: dev, OutDir: dir, Resume: true})
	if err != nil {
		t.Fatal(err)
	}
	if ch := tr.Changes(); len(ch) != 1 || ch[0].Setting != "lr" {
		t.Errorf("changes %+v, want lr", ch)
	}
	if _, err := NewTrainer(ctx, lr, Rows(rows, 2), TrainOptions{Device: dev, OutDir: dir, Resume: true}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("a second trainer on a locked OutDir: %v", err)
	}
	tr.Close()
}

// Bad arguments are errors, not panics.
func TestBadArguments(t *testing.T) {
	ctx := context.Background()
	dev := cpuDevice(t)
	m, err := Load(ctx, "testdata/moons.safetensors", LoadOptions{Device: dev})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for name, o := range map[string]SampleOptions{
		"solver":   {Solver: "rk5"},
		"steps":    {Steps: -1},
		"tol":      {Solver: "dopri5", Rtol: math.NaN()},
		"labels":   {Labels: []int{0, 1}},
		"guidance": {Guidance: -1},
	} {
		if _, err := m.Sample(ctx, 2, o); err == nil {
			t.Errorf("Sample with a bad %s: no error", name)
		}
	}
	if _, err := m.Sample(ctx, 0, SampleOptions{}); err == nil {
		t.Error("Sample of 0 points: no error")
	}
	for name, c := range map[string]struct {
		x []float32
		o LogProbOptions
	}{
		"length":     {make([]float32, 3), LogProbOptions{}},
		"empty":      {nil, LogProbOptions{}},
		"NaN":        {[]float32{0, float32(math.NaN())}, LogProbOptions{}},
		"divergence": {make([]float32, 2), LogProbOptions{Divergence: "approximate"}},
		"probe":      {make([]float32, 2), LogProbOptions{Divergence: "hutchinson", Probe: "uniform"}},
		"probes":     {make([]float32, 2), LogProbOptions{Divergence: "hutchinson", Probes: -2}},
	} {
		if _, err := m.LogProb(ctx, c.x, c.o); err == nil {
			t.Errorf("LogProb with a bad %s: no error", name)
		}
	}
	if _, err := Load(ctx, "testdata/moons.safetensors", LoadOptions{Device: dev, RawWeights: true}); err != nil {
		t.Errorf("RawWeights: %v", err)
	}
	if _, err := Load(ctx, "testdata/none.safetensors", LoadOptions{Device: dev}); err == nil {
		t.Error("a missing checkpoint: no error")
	}

	cfg := smallConfig(10)
	bad := cfg
	bad.LR = -1
	img := DefaultImageConfig(1, 8, 8, 2)
	img.Model.UNet.Base, img.Model.UNet.Groups = 4, 2
	for name, c := range map[string]struct {
		cfg  train.Config
		src  Source
		o    TrainOptions
		want string
	}{
		"nil source":  {cfg, nil, TrainOptions{}, "without a source"},
		"width":       {cfg, Rows(make([]float32, 6), 3), TrainOptions{}, "have 3 values, the model's 2"},
		"rows":        {cfg, Rows(make([]float32, 5), 2), TrainOptions{}, "5 values are not rows of 2"},
		"lr":          {bad, Rows(make([]float32, 4), 2), TrainOptions{}, "lr -1"},
		"StopAt":      {cfg, Rows(make([]float32, 4), 2), TrainOptions{StopAt: 11}, "StopAt 11"},
		"labels":      {img, Rows(make([]float32, 64), 64), TrainOptions{}, "needs labelled rows"},
		"std":         {cfg, Rows(make([]float32, 4), 2), TrainOptions{Standardization: &data.Standardization{Mean: []float64{0}, Std: []float64{1}}}, "1 dimensions"},
		"Resume":      {cfg, Rows(make([]float32, 4), 2), TrainOptions{Resume: true}, "Resume needs the OutDir"},
		"label range": {img, LabeledRows(make([]float32, 64), []int32{5}, 64), TrainOptions{}, "label 5 of row 0 outside 0..1"},
		"not finite":  {cfg, Rows([]float32{0, 1, 2, float32(math.Inf(-1))}, 2), TrainOptions{}, "row 1 of the rows holds -Inf in column 1"},
		"class names": {img, LabeledRows(make([]float32, 64), []int32{1}, 64), TrainOptions{ClassNames: []string{"a", "b", "c"}}, "3 ClassNames for a model of 2 classes"},
	} {
		c.o.Device = dev
		tr, err := NewTrainer(ctx, c.cfg, c.src, c.o)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
		if tr != nil {
			t.Errorf("%s: a trainer as well as an error", name)
		}
	}
	img0 := DefaultImageConfig(1, 8, 8, 0)
	img0.Model.UNet.Base, img0.Model.UNet.Groups, img0.Batch = 4, 2, 2
	tr, err := NewTrainer(ctx, img0, Rows(make([]float32, 64), 64), TrainOptions{Device: dev})
	if err != nil {
		t.Fatal(err)
	}
	im, _ := tr.Model()
	if _, err := im.Sample(ctx, 1<<26, SampleOptions{}); err == nil || !strings.Contains(err.Error(), "in parts") {
		t.Errorf("Sample of 2^26 images of 64 values: %v", err)
	}
	tr.Close()
	var fe *train.FieldError
	if _, err := NewTrainer(ctx, bad, Rows(make([]float32, 4), 2), TrainOptions{Device: dev}); !errors.As(err, &fe) || fe.Field != "lr" {
		t.Errorf("a bad learning rate: %v, want a *train.FieldError", err)
	}
}

// Cancelled contexts stop every call with their error; a run cancelled
// part-way leaves its checkpoint, and a call waiting for the device's
// turn gives up when its context is done.
func TestCancellation(t *testing.T) {
	dev := cpuDevice(t)
	ctx, cancel := context.WithCancel(context.Background())
	dir := t.TempDir()
	rows := make([]float32, 200)
	for i := range rows {
		rows[i] = float32(i % 7)
	}
	o := TrainOptions{Device: dev, OutDir: dir, LogEvery: 5, OnLog: func(m train.Metric) {
		if m.Step == 15 {
			cancel()
		}
	}}
	tr, err := NewTrainer(ctx, smallConfig(100), Rows(rows, 2), o)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if err := tr.Run(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
	if ck, err := train.Load(filepath.Join(dir, train.CheckpointName)); err != nil || ck.Meta.Step != 16 {
		t.Errorf("checkpoint after the cancel: %v", err)
	}
	m, err := tr.Model()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Sample(ctx, 10, SampleOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("Sample: %v", err)
	}
	if _, err := m.LogProb(ctx, rows[:4], LogProbOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("LogProb: %v", err)
	}
	if _, err := Load(ctx, "testdata/moons.safetensors", LoadOptions{Device: dev}); !errors.Is(err, context.Canceled) {
		t.Errorf("Load: %v", err)
	}
	if _, err := NewTrainer(ctx, smallConfig(10), &ringRows{}, TrainOptions{Device: dev}); !errors.Is(err, context.Canceled) {
		t.Errorf("NewTrainer of a stream: %v", err)
	}
	dev.turn <- struct{}{} // another call holds the device
	short, cancel2 := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel2()
	if _, err := m.Sample(short, 10, SampleOptions{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Sample waiting for the device: %v", err)
	}
	dev.release()
	if _, err := m.Sample(context.Background(), 10, SampleOptions{Steps: 2}); err != nil {
		t.Errorf("Sample once the device is free: %v", err)
	}
}

// A stream that runs out ends the run with a *train.SourceError and a
// checkpoint of the steps done.
func TestStreamEnds(t *testing.T) {
	dev := cpuDevice(t)
	dir := t.TempDir()
	_, err := Train(context.Background(), smallConfig(50), &ringRows{failAt: 240}, TrainOptions{Device: dev, OutDir: dir, FitRows: 100})
	var se *train.SourceError
	if !errors.As(err, &se) || !errors.Is(err, io.EOF) || se.Step != 8 {
		t.Fatalf("a stream that ends: %v", err)
	}
	if ck, err := train.Load(filepath.Join(dir, train.CheckpointName)); err != nil || ck.Meta.Step != 7 {
		t.Errorf("checkpoint after the stream ended: %v", err)
	}
}

// Samples drawn from several goroutines at once are those drawn one after
// another: calls take turns on the device.
func TestConcurrentCalls(t *testing.T) {
	ctx := context.Background()
	m, err := Load(ctx, "testdata/moons.safetensors", LoadOptions{Device: cpuDevice(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	o := SampleOptions{Steps: 10, Seed: 3}
	want, _ := m.Sample(ctx, 300, o)
	var wg sync.WaitGroup
	got := make([][]float32, 4)
	errs := make([]error, 4)
	for i := range got {
		wg.Go(func() { got[i], errs[i] = m.Sample(ctx, 300, o) })
	}
	wg.Wait()
	for i := range got {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		for j := range want {
			if got[i][j] != want[j] {
				t.Fatalf("goroutine %d, value %d: %v, want %v", i, j, got[i][j], want[j])
			}
		}
	}
}

// Close gives back every buffer: of a loaded model, of a trainer, of the
// model Train returns.
func TestCloseReleasesMemory(t *testing.T) {
	ctx := context.Background()
	cb := newCounting()
	dev := NewDevice(cb)
	defer dev.Close()
	m, err := Load(ctx, "testdata/moons.safetensors", LoadOptions{Device: dev})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Sample(ctx, 50, SampleOptions{Steps: 3}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.LogProb(ctx, []float32{0, 1}, LogProbOptions{}); err != nil {
		t.Fatal(err)
	}
	m.Close()
	if n := cb.alive(); n != 0 {
		t.Errorf("%d buffers alive after a loaded model's Close", n)
	}
	for _, src := range []Source{Rows(make([]float32, 40), 2), &ringRows{}} {
		m, err := Train(ctx, smallConfig(5), src, TrainOptions{Device: dev, FitRows: 50})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.Sample(ctx, 50, SampleOptions{Steps: 3}); err != nil {
			t.Fatal(err)
		}
		m.Close()
		if n := cb.alive(); n != 0 {
			t.Errorf("%T: %d buffers alive after the trained model's Close", src, n)
		}
	}
}

// Nothing the package does writes to the standard output or error.
func TestWritesNothing(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, stderr := os.Stdout, os.Stderr
	os.Stdout, os.Stderr = w, w
	func() {
		defer func() { os.Stdout, os.Stderr = stdout, stderr }()
		ctx := context.Background()
		dev, _ := OpenDevice(DeviceAuto, 1)
		defer dev.Close()
		m, err := Train(ctx, smallConfig(20), &ringRows{}, TrainOptions{Device: dev, OutDir: t.TempDir(), FitRows: 64, LogEvery: 5})
		if err != nil {
			t.Error(err)
			return
		}
		defer m.Close()
		x, err := m.Sample(ctx, 20, SampleOptions{Steps: 4})
		if err == nil {
			_, err = m.LogProb(ctx, x, LogProbOptions{Solver: "euler", Steps: 4})
		}
		if err != nil {
			t.Error(err)
		}
	}()
	w.Close()
	out, _ := io.ReadAll(r)
	if len(out) > 0 {
		t.Errorf("wrote %q", out)
	}
}

// Misuse the review found: each is an error, not a panic nor a hang.
func TestMisuseIsAnError(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dev := cpuDevice(t)
	rows := make([]float32, 200)
	for i := range rows {
		rows[i] = float32(i % 7)
	}
	// from OnLog, where Run holds the trainer: saving, closing and
	// running would wait for the run that calls OnLog (its model samples:
	// TestOnLogUsesTheDevice)
	var tr *Trainer
	var fromLog []error
	o := TrainOptions{Device: dev, LogEvery: 5, OnLog: func(train.Metric) {
		fromLog = append(fromLog, tr.Save(ctx, filepath.Join(t.TempDir(), "ck.safetensors")), tr.Close(), tr.Run(ctx))
	}}
	tr, err := NewTrainer(ctx, smallConfig(5), Rows(rows, 2), o)
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if len(fromLog) != 3 {
		t.Fatalf("OnLog: %v", fromLog)
	}
	for i, err := range fromLog {
		if !errors.Is(err, errInOnLog) {
			t.Errorf("call %d from OnLog: %v", i, err)
		}
	}
	// after OnLog, between runs, the model samples
	m, err := tr.Model()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Sample(ctx, 2, SampleOptions{}); err != nil {
		t.Errorf("Sample after Run: %v", err)
	}
	if _, err := m.Sample(ctx, 2, SampleOptions{Solver: "dopri5", Rtol: 1e39}); err == nil {
		t.Error("Sample with Rtol 1e39: no error")
	}
	// after Close, also for the model Trainer.Model gave (its network is
	// freed)
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Sample(ctx, 2, SampleOptions{}); !errors.Is(err, errTrainerClosed) {
		t.Errorf("Sample of the trainer's model after the trainer's Close: %v", err)
	}
	if err := tr.Run(ctx); !errors.Is(err, errTrainerClosed) {
		t.Errorf("Run after Close: %v", err)
	}
	if err := tr.Save(ctx, filepath.Join(t.TempDir(), "ck.safetensors")); !errors.Is(err, errTrainerClosed) {
		t.Errorf("Save after Close: %v", err)
	}
	if _, err := tr.Model(); !errors.Is(err, errTrainerClosed) {
		t.Errorf("Model after Close: %v", err)
	}
	// bad sources and options
	for name, src := range map[string]Source{"DatasetRows(nil)": DatasetRows(nil), "SourceFunc(2, nil)": SourceFunc(2, nil)} {
		if tr, err := NewTrainer(ctx, smallConfig(5), src, TrainOptions{Device: dev}); err == nil {
			tr.Close()
			t.Errorf("%s: no error", name)
		}
	}
	if tr, err := NewTrainer(ctx, smallConfig(5), SourceFunc(2, nil), TrainOptions{Device: dev, FitRows: math.MaxInt/2 + 1}); err == nil || !strings.Contains(err.Error(), "FitRows") {
		if tr != nil {
			tr.Close()
		}
		t.Errorf("a huge FitRows: %v", err)
	}
	if err := Rows(rows, 2).(RowSeeker).SeekRow(ctx, -1); err == nil {
		t.Error("SeekRow(-1): no error")
	}
	// zero values hold nothing
	var zm Model
	if _, err := zm.Sample(ctx, 2, SampleOptions{}); err == nil {
		t.Error("the zero Model sampled")
	}
	if _, err := zm.LogProb(ctx, []float32{0, 0}, LogProbOptions{}); err == nil {
		t.Error("the zero Model scored")
	}
	if err := errors.Join(zm.Close(), (&Trainer{}).Close(), (&Device{}).Close()); err != nil {
		t.Error(err)
	}
	if err := (&Trainer{}).Run(ctx); !errors.Is(err, errTrainerClosed) {
		t.Errorf("the zero Trainer's Run: %v", err)
	}
}

// The zero Device is an error, not a hang or a panic; so is a nil
// Trainer's Close a no-op.
func TestZeroDevice(t *testing.T) {
	var zero Device
	_, err := NewTrainer(context.Background(), smallConfig(4), Rows(make([]float32, 8), 2), TrainOptions{Device: &zero})
	if err == nil || !strings.Contains(err.Error(), "not opened") {
		t.Errorf("NewTrainer on the zero Device: %v", err)
	}
	if _, err := Load(context.Background(), "testdata/moons.safetensors", LoadOptions{Device: &zero}); err == nil || !strings.Contains(err.Error(), "not opened") {
		t.Errorf("Load on the zero Device: %v", err)
	}
	if s := zero.String(); !strings.Contains(s, "no device") || zero.Info() != (gpu.DeviceInfo{}) {
		t.Errorf("the zero Device: %q, %+v", s, zero.Info())
	}
	var tr *Trainer
	if err := tr.Close(); err != nil {
		t.Errorf("nil Trainer's Close: %v", err)
	}
}

// OnLog may use the trainer's model and other models on its device (Run
// lends them the device between steps): no deadlock, and the trainer's
// samples there are those of its weights at that step.
func TestOnLogUsesTheDevice(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dev := cpuDevice(t)
	ref, err := Load(ctx, "testdata/moons.safetensors", LoadOptions{Device: dev})
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	var tr *Trainer
	var scored, own int
	o := TrainOptions{Device: dev, LogEvery: 10, OnLog: func(train.Metric) {
		if _, err := ref.LogProb(ctx, []float32{0, 1}, LogProbOptions{}); err != nil {
			t.Errorf("another model from OnLog: %v", err)
		}
		scored++
		m, err := tr.Model()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.Sample(ctx, 4, SampleOptions{Steps: 2}); err != nil {
			t.Errorf("the trainer's own model from OnLog: %v", err)
		}
		own++
		if err := m.Close(); err != nil {
			t.Errorf("closing the trainer's model in OnLog: %v", err)
		}
	}}
	tr, err = NewTrainer(ctx, smallConfig(30), Rows(ringPoints(64), 2), o)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if err := tr.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if scored != 3 || own != 3 {
		t.Errorf("OnLog scored %d times, tried its own model %d times, want 3", scored, own)
	}
}

// A Run stopped at StopAt is continued by the next Run, in memory and in
// OutDir, to the same weights as a run in one go.
func TestRunAfterStopAt(t *testing.T) {
	ctx := context.Background()
	dev := cpuDevice(t)
	cfg := smallConfig(40)
	straight, err := NewTrainer(ctx, cfg, Rows(ringPoints(64), 2), TrainOptions{Device: dev})
	if err != nil {
		t.Fatal(err)
	}
	defer straight.Close()
	if err := straight.Run(ctx); err != nil {
		t.Fatal(err)
	}
	want := trainerWeights(t, straight)
	for _, out := range []string{"", t.TempDir()} {
		tr, err := NewTrainer(ctx, cfg, Rows(ringPoints(64), 2), TrainOptions{Device: dev, StopAt: 15, OutDir: out})
		if err != nil {
			t.Fatal(err)
		}
		for i, wantSteps := range []int{15, 40, 40} {
			if err := tr.Run(ctx); err != nil || tr.StepsDone() != wantSteps {
				t.Fatalf("OutDir %q: Run %d ended at step %d (%v), want %d", out, i+1, tr.StepsDone(), err, wantSteps)
			}
		}
		if got := trainerWeights(t, tr); !slices.Equal(got, want) {
			t.Errorf("OutDir %q: the run stopped and continued differs from the run in one go", out)
		}
		tr.Close()
	}
}

// A resumed run keeps the checkpoint's account of its data (class names
// here), which `fmgpu train --resume` needs.
func TestResumeKeepsClassNames(t *testing.T) {
	ctx := context.Background()
	dev := cpuDevice(t)
	img := DefaultImageConfig(1, 8, 8, 2)
	img.Model.UNet.Base, img.Model.UNet.Groups, img.Batch, img.Steps, img.Warmup = 4, 2, 2, 4, 1
	x := make([]float32, 4*64)
	for i := range x {
		x[i] = float32(i%7) / 7
	}
	src := func() Source { return LabeledRows(x, []int32{0, 1, 0, 1}, 64) }
	out := t.TempDir()
	tr, err := NewTrainer(ctx, img, src(), TrainOptions{Device: dev, OutDir: out, StopAt: 2, ClassNames: []string{"left", "right"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Run(ctx); err != nil {
		t.Fatal(err)
	}
	tr.Close()
	tr, err = NewTrainer(ctx, img, src(), TrainOptions{Device: dev, OutDir: out, Resume: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Run(ctx); err != nil {
		t.Fatal(err)
	}
	tr.Close()
	ck, err := train.Load(filepath.Join(out, train.CheckpointName))
	if err != nil {
		t.Fatal(err)
	}
	if got := ck.Meta.Data.Classes; !slices.Equal(got, []string{"left", "right"}) || ck.Meta.Step != 4 {
		t.Errorf("resumed checkpoint at step %d has classes %q, want [left right]", ck.Meta.Step, got)
	}
}

// A trainer refused before it wrote anything removes the directories it
// made for OutDir.
func TestRefusedTrainerLeavesNoOutDir(t *testing.T) {
	tmp := t.TempDir()
	_, err := NewTrainer(context.Background(), smallConfig(4), Rows(nil, 2), TrainOptions{Device: cpuDevice(t), OutDir: filepath.Join(tmp, "new", "runs", "a")})
	if err == nil {
		t.Fatal("no rows: no error")
	}
	if _, err := os.Stat(filepath.Join(tmp, "new")); err == nil {
		t.Error("the refused trainer left the directories made for OutDir")
	}
}

// ringPoints is n points of a ring.
func ringPoints(n int) []float32 {
	x := make([]float32, 2*n)
	for i := range n {
		a := 2 * math.Pi * float64(i) / float64(n)
		x[2*i], x[2*i+1] = float32(3+math.Cos(a)), float32(math.Sin(a))
	}
	return x
}

// trainerWeights are the trainer's EMA weights, as its model samples them.
func trainerWeights(t *testing.T, tr *Trainer) []float32 {
	t.Helper()
	m, err := tr.Model()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	x, err := m.Sample(context.Background(), 16, SampleOptions{Steps: 3, Seed: 9})
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// Calls waiting for a running trainer while it is closed find it closed,
// or run before the Close: an error or a result, never a crash.
func TestCloseWhileCallsWait(t *testing.T) {
	ctx := context.Background()
	dev := cpuDevice(t)
	pts := ringPoints(64)
	for range 5 {
		gate, inRun := make(chan struct{}), make(chan struct{})
		calls := 0
		next := func(_ context.Context, x []float32, _ []int32) error {
			calls++ // from NewTrainer (the rows read ahead), then from Run
			if calls == 3 {
				close(inRun)
				<-gate // Run holds the trainer while the calls below queue
			}
			for i := range x {
				x[i] = pts[i%len(pts)]
			}
			return nil
		}
		tr, err := NewTrainer(ctx, smallConfig(50), SourceFunc(2, next), TrainOptions{Device: dev, FitRows: 64})
		if err != nil {
			t.Fatal(err)
		}
		m, err := tr.Model()
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Go(func() { tr.Run(ctx) })
		<-inRun
		wg.Go(func() { tr.Close() })
		wg.Go(func() { tr.Close() })
		var saveErr, sampleErr error
		wg.Go(func() { saveErr = tr.Save(ctx, filepath.Join(t.TempDir(), "ck.safetensors")) })
		wg.Go(func() { _, sampleErr = m.Sample(ctx, 4, SampleOptions{Steps: 2}) })
		time.Sleep(5 * time.Millisecond)
		close(gate)
		wg.Wait()
		for name, err := range map[string]error{"Save": saveErr, "Sample": sampleErr} {
			if err != nil && !errors.Is(err, errTrainerClosed) {
				t.Errorf("%s beside Close: %v, want a result or the trainer closed", name, err)
			}
		}
		if tr.Device() != nil {
			t.Error("a closed trainer's Device is not nil")
		}
		m.Close()
	}
}

// The products' precision is a device setting: each call sets its own
// (a trainer's, or fp32 for a loaded model, as `fmgpu sample`), whatever
// another trainer on the device set before.
func TestPrecisionPerCall(t *testing.T) {
	ctx := context.Background()
	dev := cpuDevice(t)
	cfg := smallConfig(10)
	cfg.Precision = gpu.PrecisionTF32x3
	tr, err := NewTrainer(ctx, cfg, Rows(ringPoints(64), 2), TrainOptions{Device: dev})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	loaded, err := Load(ctx, "testdata/moons.safetensors", LoadOptions{Device: dev})
	if err != nil {
		t.Fatal(err)
	}
	defer loaded.Close()
	own, err := tr.Model()
	if err != nil {
		t.Fatal(err)
	}
	defer own.Close()
	for _, c := range []struct {
		name string
		call func() error
		want gpu.Precision
	}{
		{"loaded model", func() error { _, err := loaded.Sample(ctx, 4, SampleOptions{Steps: 2}); return err }, gpu.PrecisionFP32},
		{"Run", func() error { return tr.Run(ctx) }, gpu.PrecisionTF32x3},
		{"loaded model again", func() error { _, err := loaded.Sample(ctx, 4, SampleOptions{Steps: 2}); return err }, gpu.PrecisionFP32},
		{"the trainer's model", func() error { _, err := own.Sample(ctx, 4, SampleOptions{Steps: 2}); return err }, gpu.PrecisionTF32x3},
	} {
		if err := c.call(); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if p := gpu.PrecisionOf(dev.Backend()); p != c.want {
			t.Errorf("after %s the device computes in %s, want %s", c.name, p, c.want)
		}
	}
}

// Sampling the trainer's model from OnLog gives the samples of its
// weights at that step (those of a run stopped there), and leaves the
// training as it was: the run ends with the weights of a run that did
// not sample.
func TestSamplingInOnLogChangesNothing(t *testing.T) {
	samplingInOnLogChangesNothing(t, cpuDevice(t))
}

// The same through the real launcher over the fake libcuda, where the
// training steps replay a recorded graph: the samples in OnLog resize the
// network's workspaces, and the graph is recorded again.
func TestSamplingInOnLogOnTheDevice(t *testing.T) {
	if testing.Short() {
		t.Skip("kernels on the CPU")
	}
	if raceDetector {
		t.Skip("the race detector's exit hangs once the fake libcuda is loaded")
	}
	b, err := gpu.NewCUDADriver(gpu.CUDAOptions{Library: fakecuda.Library(t)})
	if err != nil {
		t.Fatal(err)
	}
	dev := NewDevice(b)
	defer dev.Close()
	recorded := samplingInOnLogChangesNothing(t, dev)
	if !recorded {
		t.Error("the training steps ran without a recorded graph: the test did not cover its recording again")
	}
}

// samplingInOnLogChangesNothing runs the check on dev and reports whether
// the trainer that sampled in OnLog ended replaying a recorded graph.
func samplingInOnLogChangesNothing(t *testing.T, dev *Device) bool {
	ctx := context.Background()
	cfg := smallConfig(30)
	so := SampleOptions{Steps: 3, Seed: 3}
	var tr *Trainer
	atStep := map[int][]float32{}
	o := TrainOptions{Device: dev, LogEvery: 10, OnLog: func(m train.Metric) {
		mod, err := tr.Model()
		if err != nil {
			t.Fatal(err)
		}
		defer mod.Close()
		x, err := mod.Sample(ctx, 16, so)
		if err != nil {
			t.Fatal(err)
		}
		atStep[m.Step] = x
	}}
	tr, err := NewTrainer(ctx, cfg, Rows(ringPoints(64), 2), o)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if err := tr.Run(ctx); err != nil {
		t.Fatal(err)
	}
	plain, err := NewTrainer(ctx, cfg, Rows(ringPoints(64), 2), TrainOptions{Device: dev, StopAt: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if err := plain.Run(ctx); err != nil {
		t.Fatal(err)
	}
	m, err := plain.Model()
	if err != nil {
		t.Fatal(err)
	}
	x, err := m.Sample(ctx, 16, so)
	m.Close()
	if err != nil || !slices.Equal(x, atStep[10]) {
		t.Errorf("samples in OnLog at step 10 differ from those of a run stopped there (%v)", err)
	}
	if err := plain.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(trainerWeights(t, tr), trainerWeights(t, plain)) {
		t.Error("sampling in OnLog changed the training")
	}
	recorded, _ := tr.tr.Recorded()
	return recorded
}
