package train

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/fmgpu/fmgpu/collective"
	"github.com/fmgpu/fmgpu/data"
	"github.com/fmgpu/fmgpu/flow"
	"github.com/fmgpu/fmgpu/gpu"
	"github.com/fmgpu/fmgpu/model"
)

// The trainer's data-parallel logic (the shares of the batch, the labels
// of a conditional net, the summed gradient and loss, the stop flags), run
// by ranks as goroutines of one process over memComm, a test's stand-in
// for MPI; internal/cli's tests run the real engines.

// memGroup is the shared state of memComm's ranks.
type memGroup struct {
	n       int
	mu      sync.Mutex
	cond    *sync.Cond
	bufs    [][]float32
	arrived int
	gen     int
}

func newMemGroup(n int) *memGroup {
	g := &memGroup{n: n, bufs: make([][]float32, n)}
	g.cond = sync.NewCond(&g.mu)
	return g
}

func (g *memGroup) barrier() {
	g.mu.Lock()
	defer g.mu.Unlock()
	gen := g.gen
	if g.arrived++; g.arrived == g.n {
		g.arrived, g.gen = 0, g.gen+1
		g.cond.Broadcast()
		return
	}
	for gen == g.gen {
		g.cond.Wait()
	}
}

// memComm is rank r of a memGroup: host buffers only, sums in rank order
// (the same bits on every rank, as MPI's and NCCL's).
type memComm struct {
	g *memGroup
	r int
}

func (c memComm) Engine() collective.Engine { return "test" }
func (c memComm) Rank() int                 { return c.r }
func (c memComm) Size() int                 { return c.g.n }
func (c memComm) LocalRank() int            { return c.r }
func (c memComm) Abort(error)               {}
func (c memComm) Close() error              { return nil }
func (c memComm) Barrier() error            { c.g.barrier(); return nil }

func (c memComm) AllReduceSum(b collective.Buffer) error {
	x := b.HostData()
	c.g.bufs[c.r] = append([]float32(nil), x...)
	c.g.barrier()
	for i := range x {
		var s float32
		for r := range c.g.n {
			s += c.g.bufs[r][i]
		}
		x[i] = s
	}
	c.g.barrier()
	return nil
}

func (c memComm) Broadcast(b collective.Buffer) error {
	x := b.HostData()
	if c.r == 0 {
		c.g.bufs[0] = append([]float32(nil), x...)
	}
	c.g.barrier()
	copy(x, c.g.bufs[0])
	c.g.barrier()
	return nil
}

func TestBatchShare(t *testing.T) {
	for _, c := range []struct{ b, n int }{{70, 3}, {5, 3}, {64, 2}, {7, 7}, {9, 4}} {
		next := 0
		for r := range c.n {
			lo, rows := batchShare(c.b, c.n, r)
			if lo != next || rows < c.b/c.n || rows > c.b/c.n+1 {
				t.Fatalf("batch %d over %d: rank %d has rows [%d, %d), want from %d", c.b, c.n, r, lo, lo+rows, next)
			}
			next = lo + rows
		}
		if next != c.b {
			t.Fatalf("batch %d over %d: the shares cover %d rows", c.b, c.n, next)
		}
	}
}

// parallelConfigs: an MLP whose batch (70) splits unevenly over 3 ranks,
// and a class-conditional U-Net (labels drawn with the rows) of batch 5.
func parallelConfigs() []Config {
	mlp := Config{Model: model.Config{Kind: "mlp", Dim: 2, Hidden: []int{32, 48}, TimeEmbed: model.DefaultTimeEmbedding},
		Path: flow.DefaultSpec(flow.KindVP), Time: flow.DefaultTimeSampler(flow.TimeLogitNormal),
		Steps: 7, Batch: 70, Seed: 5, LR: 3e-3, Optimizer: "adamw", WeightDecay: 0.01, MaxGradNorm: 0.5,
		Warmup: 3, EMADecay: 0.99}
	unet := Config{Model: model.Config{Kind: "unet", Dim: 8 * 8, TimeEmbed: model.DefaultTimeEmbedding, Classes: 3,
		Image: &model.ImageShape{Channels: 1, Height: 8, Width: 8},
		UNet:  &model.UNetConfig{Base: 8, Mults: []int{1, 2}, ResBlocks: 1, Groups: 4}},
		Path: flow.DefaultSpec(flow.KindOT), Time: flow.DefaultTimeSampler(flow.TimeUniform),
		Steps: 4, Batch: 5, Seed: 9, LR: 1e-3, ClassDropout: 0.3, EMADecay: 0.9}
	mlp.Defaults()
	unet.Defaults()
	return []Config{mlp, unet}
}

func newParallelTestTrainer(t *testing.T, cfg Config) *Trainer {
	t.Helper()
	b := gpu.NewCPU(1)
	t.Cleanup(func() { b.Close() })
	n := 40
	x := make([]float32, n*cfg.Model.Dim)
	for i := range x {
		x[i] = float32(math.Sin(float64(i) * 0.7))
	}
	var labels []int32
	if cfg.Model.Classes > 0 {
		labels = make([]int32, n)
		for i := range labels {
			labels[i] = int32(i % cfg.Model.Classes)
		}
	}
	var tr *Trainer
	var err error
	if cfg.Coupling.Kind == CouplingPairs { // pairs of noise x0 with the data
		x0 := make([]float32, len(x))
		for i := range x0 {
			x0[i] = float32(math.Cos(float64(i) * 1.3))
		}
		tr, err = NewPairs(b, cfg, x0, x, labels, n)
	} else {
		tr, err = NewConditional(b, cfg, x, labels, n)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.Close)
	return tr
}

type parallelResult struct {
	loss   []float64
	params []float32
}

func (tr *Trainer) runSteps(t *testing.T) parallelResult {
	var r parallelResult
	for s := 0; s < tr.cfg.Steps; s++ {
		tr.Step()
		if err := tr.collectiveErr(); err != nil {
			t.Error(err)
			return r
		}
		p, err := tr.Read()
		if err != nil {
			t.Error(err)
			return r
		}
		r.loss = append(r.loss, p.Loss, p.GradNorm)
	}
	r.params = make([]float32, tr.net.NumParams())
	tr.b.Download(r.params, tr.net.Params())
	return r
}

// N ranks compute what one process computes: the same losses and
// gradient norms and weights, within the float32 rounding of the other
// order of the sums (tolerances as internal/cli's, which measures them).
func TestParallelMatchesOneProcess(t *testing.T) {
	for _, cfg := range parallelConfigs() {
		t.Run(string(cfg.Model.Kind), func(t *testing.T) { checkParallel(t, cfg, 3) })
	}
}

// A coupled batch is paired over the global batch, or in blocks that are
// the ranks' shares, or in blocks that are not: in each case N ranks
// train what one process does with the same configuration, and a rank
// pairs only the blocks that hold its rows.
func TestParallelCoupledMatchesOneProcess(t *testing.T) {
	const ranks = 3
	mlp, unet := parallelConfigs()[0], parallelConfigs()[1]
	unet.Batch = 12 // 4 rows a rank, of 3 classes: some pairing within classes on each
	for _, c := range []struct {
		name string
		cfg  Config
		cp   Coupling
		// the blocks (or classes) rank r pairs, against one process's
		ranksPair, onePair int
	}{
		{"ot-global", mlp, Coupling{Kind: "ot"}, 1, 1},
		{"ot-blocks-per-rank", mlp, Coupling{Kind: "ot", Blocks: ranks}, 1, ranks},
		{"sinkhorn-blocks-2", mlp, Coupling{Kind: "sinkhorn", Reg: 0.5, Blocks: 2}, 0, 2},
		{"ot-classes", unet, Coupling{Kind: "ot"}, 0, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := c.cfg
			cfg.Coupling = c.cp
			one, trs := checkParallel(t, cfg, ranks)
			if c.onePair == 0 {
				return
			}
			if last, _, _ := one.CouplingStats(); last.Classes != c.onePair {
				t.Errorf("one process paired %d blocks, want %d", last.Classes, c.onePair)
			}
			for r, tr := range trs {
				last, _, _ := tr.CouplingStats()
				if want := c.ranksPair; want > 0 && last.Classes != want {
					t.Errorf("rank %d paired %d blocks, want %d", r, last.Classes, want)
				}
				// blocks of 35 rows over shares of 24, 23, 23: rank 1 holds rows of both
				if c.name == "sinkhorn-blocks-2" && last.Classes != map[int]int{0: 1, 1: 2, 2: 1}[r] {
					t.Errorf("rank %d paired %d blocks of 2", r, last.Classes)
				}
			}
		})
	}
}

// Fixed pairs (reflow, distillation) are drawn by global row too.
func TestParallelPairsMatchOneProcess(t *testing.T) {
	cfg := parallelConfigs()[0]
	cfg.Path = flow.DefaultSpec(flow.KindOT)
	cfg.Coupling, cfg.DistillSteps = Coupling{Kind: CouplingPairs}, 2
	checkParallel(t, cfg, 2)
}

// checkParallel trains cfg in one process and over the given number of
// goroutine ranks, and checks that they agree; it returns the trainers.
func checkParallel(t *testing.T, cfg Config, ranks int) (*Trainer, []*Trainer) {
	t.Helper()
	one := newParallelTestTrainer(t, cfg)
	want := one.runSteps(t)
	g := newMemGroup(ranks)
	got := make([]parallelResult, ranks)
	trs := make([]*Trainer, ranks)
	for r := range trs {
		trs[r] = newParallelTestTrainer(t, cfg)
	}
	var wg sync.WaitGroup
	for r := range ranks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := trs[r].Distribute(memComm{g, r}); err != nil {
				t.Error(err)
				return
			}
			got[r] = trs[r].runSteps(t)
		}()
	}
	wg.Wait()
	if t.Failed() {
		return one, trs
	}
	for r := range ranks {
		for i, w := range want.loss {
			if d := math.Abs(got[r].loss[i]-w) / math.Abs(w); !(d <= 1e-5) {
				t.Errorf("rank %d, read %d: loss or gradient norm %v, want %v", r, i/2, got[r].loss[i], w)
			}
		}
		for i, w := range want.params {
			if d := math.Abs(float64(got[r].params[i] - w)); !(d <= 1e-5) {
				t.Fatalf("rank %d: weight %d is %v, want %v", r, i, got[r].params[i], w)
			}
			if got[r].params[i] != got[0].params[i] {
				t.Fatalf("rank %d: weight %d is %v, rank 0's %v: the ranks' weights must be the same bits", r, i, got[r].params[i], got[0].params[i])
			}
		}
	}
	return one, trs
}

// An interrupted rank stops every rank after the same step; rank 0 alone
// writes, the checkpoint of that step, and records the engine and
// world_size.
func TestParallelStopTogether(t *testing.T) {
	const ranks = 2
	cfg := parallelConfigs()[0]
	cfg.Steps = 1000
	dirs := []string{t.TempDir(), t.TempDir()}
	g := newMemGroup(ranks)
	errs := make([]error, ranks)
	steps := make([]int, ranks)
	trs := []*Trainer{newParallelTestTrainer(t, cfg), newParallelTestTrainer(t, cfg)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for r := range ranks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := trs[r].Distribute(memComm{g, r}); err != nil {
				errs[r] = err
				return
			}
			rctx := context.Background()
			o := RunOptions{OutDir: dirs[r], LogEvery: 10, Std: data.Identity(cfg.Model.Dim)}
			if r == 1 { // rank 1 alone is interrupted, at its step 25
				rctx = ctx
				o.OnStep = func(s int) {
					if s == 25 {
						cancel()
					}
				}
			}
			errs[r] = trs[r].Run(rctx, o)
			steps[r] = trs[r].StepsDone()
		}()
	}
	wg.Wait()
	if !errors.Is(errs[0], ErrPeerInterrupted) || !errors.Is(errs[1], context.Canceled) {
		t.Fatalf("rank 0: %v (want ErrPeerInterrupted), rank 1: %v (want context.Canceled)", errs[0], errs[1])
	}
	if steps[0] != steps[1] || steps[0] != 26 {
		t.Fatalf("the ranks stopped after steps %v, want both after 26 (the first step rank 1's flag was summed in)", steps)
	}
	ck, err := Load(filepath.Join(dirs[0], CheckpointName))
	if err != nil {
		t.Fatal(err)
	}
	if ck.Meta.Step != 26 || ck.Meta.Parallel == nil || *ck.Meta.Parallel != (ParallelInfo{Engine: "test", WorldSize: 2}) {
		t.Fatalf("rank 0's checkpoint: step %d, parallel %+v", ck.Meta.Step, ck.Meta.Parallel)
	}
	if entries, _ := os.ReadDir(dirs[1]); len(entries) != 0 {
		t.Fatalf("rank 1 wrote %d files", len(entries))
	}
}

// A batch smaller than the ranks is refused, naming the setting.
func TestParallelBatchTooSmall(t *testing.T) {
	cfg := parallelConfigs()[1] // batch 5
	tr := newParallelTestTrainer(t, cfg)
	var fe *FieldError
	if err := tr.Distribute(memComm{newMemGroup(6), 0}); !errors.As(err, &fe) || fe.Field != "batch" {
		t.Fatalf("batch 5 over 6 ranks: %v", err)
	}
}

// A data-parallel run stopped between two of its lines and resumed on the
// ranks logs what the run that did not stop logs: the carried loss, every
// rank's share summed, is put back once (on rank 0), not once a rank.
func TestParallelResumeKeepsLossTrace(t *testing.T) {
	const ranks = 2
	cfg := parallelConfigs()[0]
	cfg.Steps = 30
	run := func(dir string, ck *Checkpoint, stopAt int) {
		g := newMemGroup(ranks)
		errs := make([]error, ranks)
		var wg sync.WaitGroup
		for r := range ranks {
			wg.Add(1)
			go func() {
				defer wg.Done()
				tr := newParallelTestTrainer(t, cfg)
				if ck != nil {
					if errs[r] = tr.Resume(ck); errs[r] != nil {
						return
					}
				}
				if errs[r] = tr.Distribute(memComm{g, r}); errs[r] != nil {
					return
				}
				out := dir
				if r > 0 {
					out = t.TempDir()
				}
				errs[r] = tr.Run(context.Background(), RunOptions{OutDir: out, LogEvery: 10, Std: data.Identity(cfg.Model.Dim), StopAt: stopAt})
			}()
		}
		wg.Wait()
		for r, err := range errs {
			if err != nil {
				t.Fatalf("rank %d: %v", r, err)
			}
		}
	}
	lines := func(dir string) []Metric {
		ms, err := readMetrics(filepath.Join(dir, MetricsName), cfg.Steps, cfg.Model.Dim)
		if err != nil {
			t.Fatal(err)
		}
		return ms
	}
	straight, stopped := t.TempDir(), t.TempDir()
	run(straight, nil, 0)
	run(stopped, nil, 15)
	ck, err := Load(filepath.Join(stopped, CheckpointName))
	if err != nil {
		t.Fatal(err)
	}
	run(stopped, ck, 0)
	a, b := lines(straight), lines(stopped)
	if len(a) != 3 || len(b) != 3 {
		t.Fatalf("lines: straight %+v, resumed %+v", a, b)
	}
	for i := range a {
		if a[i].Step != b[i].Step || b[i].Partial || math.Abs(a[i].LossSum-b[i].LossSum) > 1e-5*math.Abs(a[i].LossSum) {
			t.Errorf("line %d: straight step %d loss_sum %v, resumed step %d loss_sum %v partial %v", i, a[i].Step, a[i].LossSum, b[i].Step, b[i].LossSum, b[i].Partial)
		}
	}
}
