package train

import (
	"context"
	"encoding/json"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fmgpu/fmgpu/coupling"
	"github.com/fmgpu/fmgpu/data"
	"github.com/fmgpu/fmgpu/flow"
	"github.com/fmgpu/fmgpu/gpu"
	"github.com/fmgpu/fmgpu/model"
)

// The empty coupling of old checkpoints and "independent" train the same
// weights as each other, bit for bit: the default path is unchanged.
func TestIndependentCouplingUnchanged(t *testing.T) {
	b := gpu.NewCPU(0)
	ds, _ := standardized(t, "moons")
	cfg := testConfig()
	cfg.Steps = 20
	var params [2][]float32
	for i, kind := range []string{"", "independent"} {
		c := cfg
		c.Coupling = Coupling{Kind: kind}
		tr, err := New(b, c, ds.X, ds.N)
		if err != nil {
			t.Fatal(err)
		}
		for range c.Steps {
			tr.Step()
		}
		params[i] = download(t, b, tr.Net().Params())
		tr.Close()
	}
	if !slices.Equal(params[0], params[1]) {
		t.Fatal("coupling independent trains other weights than the empty coupling")
	}
	js, _ := json.Marshal(cfg)
	if strings.Contains(string(js), "coupling") {
		t.Errorf("the empty coupling is written: %s", js)
	}
}

// With --coupling ot the path is built from the batch's noise and a
// permutation of its data rows whose total squared distance is the
// optimal assignment's: the rows the draw gathered, re-ordered.
func TestOTCouplingPairsOptimally(t *testing.T) {
	b := gpu.NewCPU(0)
	ds, _ := standardized(t, "8gaussians")
	cfg := testConfig()
	cfg.Batch, cfg.Steps = 64, 5
	cfg.Coupling = Coupling{Kind: "ot"}
	tr, err := New(b, cfg, ds.X, ds.N)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	tr.Step()
	if _, err := tr.Read(); err != nil {
		t.Fatal(err)
	}
	x0, x1 := download(t, b, tr.cpl.x0), download(t, b, tr.cpl.x1)
	// the rows DrawBatch gathers for step 1
	n, d := cfg.Batch, cfg.Model.Dim
	drawn := b.Alloc(n * d)
	scratch := [3]gpu.Buffer{b.Alloc(n), b.Alloc(n * d), b.Alloc(n * d)}
	b.DrawBatch(gpu.BatchDraw{Path: cfg.Path, Time: cfg.Time, Seed: cfg.Seed, Step: 0}, tr.data, tr.nData, d, n, nil, drawn, scratch[0], scratch[1], scratch[2])
	rows := download(t, b, drawn)
	key := func(x []float32, i int) [2]float32 { return [2]float32{x[i*d], x[i*d+1]} }
	var a, c [][2]float32
	for i := range n {
		a, c = append(a, key(rows, i)), append(c, key(x1, i))
	}
	cmp := func(p, q [2]float32) int {
		if p[0] != q[0] {
			return map[bool]int{true: -1, false: 1}[p[0] < q[0]]
		}
		return map[bool]int{true: -1, false: 1, p[1] == q[1]: 0}[p[1] < q[1]]
	}
	slices.SortFunc(a, cmp)
	slices.SortFunc(c, cmp)
	if !slices.Equal(a, c) {
		t.Fatal("the paired data rows are not a permutation of the drawn rows")
	}
	cost := make([]float32, n*n)
	coupling.SqDist(cost, x0, rows, n, n, d)
	perm := make([]int, n)
	var as coupling.Assigner
	if err := as.Assign(perm, cost, n); err != nil {
		t.Fatal(err)
	}
	best := coupling.MeanCost(cost, n, perm)
	got := 0.0
	for i := range n {
		for j := range d {
			e := float64(x0[i*d+j] - x1[i*d+j])
			got += e * e
		}
	}
	got /= float64(n)
	if math.Abs(got-best) > 1e-4*best {
		t.Fatalf("mean squared path length %.6f, the optimal assignment's %.6f", got, best)
	}
	identity := make([]int, n)
	for i := range identity {
		identity[i] = i
	}
	if drawnCost := coupling.MeanCost(cost, n, identity); !(got < 0.5*drawnCost) {
		t.Fatalf("paired cost %.4f is not well below the drawn pairs' %.4f", got, drawnCost)
	}
	last, _, steps := tr.CouplingStats()
	if steps != 1 || !(last.After < last.Before) {
		t.Errorf("coupling stats after one step: %+v over %d steps", last, steps)
	}
}

// In blocks, each block of rows is paired among its own rows only, each
// optimally: its data rows are a permutation of the block's drawn rows,
// with the optimal assignment's cost; one block is the whole batch, bit
// for bit.
func TestOTCouplingInBlocks(t *testing.T) {
	b := gpu.NewCPU(0)
	ds, _ := standardized(t, "8gaussians")
	cfg := testConfig()
	cfg.Batch, cfg.Steps = 64, 3
	params := map[int][]float32{}
	for _, blocks := range []int{0, 1, 3} {
		cfg.Coupling = Coupling{Kind: "ot", Blocks: blocks}
		tr, err := New(b, cfg, ds.X, ds.N)
		if err != nil {
			t.Fatal(err)
		}
		tr.Step()
		if _, err := tr.Read(); err != nil {
			t.Fatal(err)
		}
		n, d := cfg.Batch, cfg.Model.Dim
		x0, x1 := download(t, b, tr.cpl.x0), download(t, b, tr.cpl.x1)
		drawn := b.Alloc(n * d)
		scratch := [3]gpu.Buffer{b.Alloc(n), b.Alloc(n * d), b.Alloc(n * d)}
		b.DrawBatch(gpu.BatchDraw{Path: cfg.Path, Time: cfg.Time, Seed: cfg.Seed, Step: 0}, tr.data, tr.nData, d, n, nil, drawn, scratch[0], scratch[1], scratch[2])
		rows := download(t, b, drawn)
		k := max(blocks, 1)
		for i := range k {
			lo, m := batchShare(n, k, i)
			cost := make([]float32, m*m)
			coupling.SqDist(cost, x0[lo*d:], rows[lo*d:], m, m, d)
			perm := make([]int, m)
			var as coupling.Assigner
			if err := as.Assign(perm, cost, m); err != nil {
				t.Fatal(err)
			}
			for r := range m { // the pairs are the optimal permutation's
				got, want := x1[(lo+r)*d:(lo+r+1)*d], rows[(lo+perm[r])*d:(lo+perm[r]+1)*d]
				if !slices.Equal(got, want) {
					t.Fatalf("%d blocks: row %d has data %v, the optimal assignment within its block %v", k, lo+r, got, want)
				}
			}
		}
		if last, _, _ := tr.CouplingStats(); last.Classes != k {
			t.Errorf("%d blocks: stats of %d blocks", k, last.Classes)
		}
		for range cfg.Steps - 1 {
			tr.Step()
		}
		params[blocks] = download(t, b, tr.Net().Params())
		tr.Close()
	}
	if !slices.Equal(params[0], params[1]) {
		t.Error("one block trains other weights than the whole batch")
	}
	if slices.Equal(params[0], params[3]) {
		t.Error("three blocks train the weights of the whole batch")
	}
}

// The exact-resume guarantee holds for every coupling: N steps straight
// and N/2, save, load, N/2 more give bit-identical state.
func TestCoupledResumeIsExact(t *testing.T) {
	b := gpu.NewCPU(0)
	ds, std := standardized(t, "moons")
	x0 := make([]float32, len(ds.X))
	b2 := gpu.NewCPU(0)
	buf := b2.Alloc(len(x0))
	b2.RandNormal(buf, 7, 0, 1)
	b2.Download(x0, buf)
	for _, c := range []struct {
		name string
		cp   Coupling
		k    int
	}{{"ot", Coupling{Kind: "ot"}, 0}, {"sinkhorn", Coupling{Kind: "sinkhorn", Reg: 0.5}, 0}, {"ot-blocks", Coupling{Kind: "ot", Blocks: 3}, 0}, {"pairs", Coupling{Kind: CouplingPairs}, 0}, {"distill", Coupling{Kind: CouplingPairs}, 2}} {
		t.Run(c.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.Steps, cfg.Batch = 16, 32
			cfg.Coupling, cfg.DistillSteps = c.cp, c.k
			mk := func() *Trainer {
				var tr *Trainer
				var err error
				if c.cp.Kind == CouplingPairs {
					tr, err = NewPairs(b, cfg, x0, ds.X, nil, ds.N)
				} else {
					tr, err = New(b, cfg, ds.X, ds.N)
				}
				if err != nil {
					t.Fatal(err)
				}
				return tr
			}
			dir := t.TempDir()
			straight := mk()
			if err := straight.Run(context.Background(), RunOptions{OutDir: dir, LogEvery: 4, Std: std}); err != nil {
				t.Fatal(err)
			}
			a, err := Load(filepath.Join(dir, CheckpointName))
			if err != nil {
				t.Fatal(err)
			}
			if a.Meta.Config.Coupling != c.cp || a.Meta.Config.DistillSteps != c.k {
				t.Fatalf("checkpoint records coupling %+v, distill %d", a.Meta.Config.Coupling, a.Meta.Config.DistillSteps)
			}
			dir2 := t.TempDir()
			half := mk()
			if err := half.Run(context.Background(), RunOptions{OutDir: dir2, LogEvery: 4, Std: std, StopAt: 8}); err != nil {
				t.Fatal(err)
			}
			mid, err := Load(filepath.Join(dir2, CheckpointName))
			if err != nil {
				t.Fatal(err)
			}
			resumed := mk()
			if err := resumed.Resume(mid); err != nil {
				t.Fatal(err)
			}
			if err := resumed.Run(context.Background(), RunOptions{OutDir: dir2, LogEvery: 4, Std: std}); err != nil {
				t.Fatal(err)
			}
			z, _ := Load(filepath.Join(dir2, CheckpointName))
			for name, pair := range map[string][2][]float32{"params": {a.Params, z.Params}, "ema": {a.EMA, z.EMA}, "m": {a.AdamM, z.AdamM}, "v": {a.AdamV, z.AdamV}} {
				if !slices.Equal(pair[0], pair[1]) {
					t.Fatalf("%s differs between the straight and the resumed run", name)
				}
			}
			other := cfg
			other.Coupling = Coupling{Kind: "independent"}
			other.DistillSteps = 0
			tr, _ := New(b, other, ds.X, ds.N)
			if err := tr.Resume(mid); err == nil || !strings.Contains(err.Error(), "coupling") {
				t.Errorf("resuming with the independent coupling: %v", err)
			}
		})
	}
}

// A paired trainer builds its path from a pair's two ends: with pairs
// x1 = 2 x0 + 1, every row of the batch satisfies it; a distilling one
// trains at its Euler grid's points only.
func TestPairsAndDistillTimes(t *testing.T) {
	b := gpu.NewCPU(0)
	n, d := 500, 2
	x0, x1 := make([]float32, n*d), make([]float32, n*d)
	for i := range x0 {
		x0[i] = float32(i%97)/50 - 1 + float32(i)/1e4
		x1[i] = 2*x0[i] + 1
	}
	for _, k := range []int{0, 4} {
		cfg := testConfig()
		cfg.Batch = 64
		cfg.Coupling = Coupling{Kind: CouplingPairs}
		cfg.DistillSteps = k
		cfg.Time.Shift = 3
		tr, err := NewPairs(b, cfg, x0, x1, nil, n)
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			tr.Step()
		}
		if _, err := tr.Read(); err != nil {
			t.Fatal(err)
		}
		bx0, bx1, ts := download(t, b, tr.cpl.x0), download(t, b, tr.cpl.x1), download(t, b, tr.t)
		xt, ut := download(t, b, tr.xt), download(t, b, tr.ut)
		for i := range bx0 {
			if bx1[i] != 2*bx0[i]+1 {
				t.Fatalf("k=%d: row %d of the batch is not a pair: x0 %v, x1 %v", k, i/d, bx0[i], bx1[i])
			}
			tt := float64(ts[i/d])
			if e := math.Abs(float64(xt[i]) - ((1-tt)*float64(bx0[i]) + tt*float64(bx1[i]))); e > 1e-5 {
				t.Fatalf("k=%d: x_t of row %d off by %g", k, i/d, e)
			}
			if e := math.Abs(float64(ut[i] - (bx1[i] - bx0[i]))); e > 1e-5 {
				t.Fatalf("k=%d: u_t of row %d off by %g", k, i/d, e)
			}
		}
		grid := DistillGrid(cfg)
		seen := map[float32]bool{}
		for _, v := range ts {
			seen[v] = true
		}
		if k == 0 {
			if len(seen) < cfg.Batch/2 {
				t.Errorf("reflow times take %d values", len(seen))
			}
		} else {
			if len(grid) != k+1 || grid[0] != 0 || grid[k] != 1 || grid[1] != flow.ShiftTime(0.25, 3) {
				t.Fatalf("grid %v", grid)
			}
			for v := range seen {
				if !slices.Contains(grid[:k], float64(v)) && !slices.ContainsFunc(grid[:k], func(g float64) bool { return float32(g) == v }) {
					t.Fatalf("training time %v is not on the student's grid %v", v, grid)
				}
			}
			if len(seen) != k {
				t.Errorf("training times take %d of the grid's %d points", len(seen), k)
			}
		}
		tr.Close()
	}
}

// Pairs hold the noise their ODE started from, N(0, PriorStd^2 I): on the
// ve path (PriorStd sigma_max) the trainer's x0 is that noise divided by
// sigma_max, the standard normal DrawBatch draws.
func TestPairsNoiseOfTheVEPrior(t *testing.T) {
	b := gpu.NewCPU(0)
	n, d := 200, 2
	cfg := testConfig()
	cfg.Batch = 32
	cfg.Path = flow.DefaultSpec(flow.KindVE)
	cfg.Coupling = Coupling{Kind: CouplingPairs}
	sigmaMax := flow.MustNew(cfg.Path).PriorStd()
	x0, x1 := make([]float32, n*d), make([]float32, n*d)
	for i := range x0 {
		x0[i] = float32(sigmaMax) * (float32(i%89)/45 - 1)
		x1[i] = float32(i % 89)
	}
	tr, err := NewPairs(b, cfg, x0, x1, nil, n)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	tr.Step()
	if _, err := tr.Read(); err != nil {
		t.Fatal(err)
	}
	bx0, bx1 := download(t, b, tr.cpl.x0), download(t, b, tr.cpl.x1)
	for i := range bx0 {
		if want := bx1[i]/45 - 1; math.Abs(float64(bx0[i]-want)) > 1e-6 {
			t.Fatalf("row %d: the path's noise %v, want the pair's %v / sigma_max = %v", i/d, bx0[i], float32(sigmaMax)*want, want)
		}
	}
}

func TestCouplingValidate(t *testing.T) {
	base := testConfig()
	for _, c := range []struct {
		cp    Coupling
		k     int
		path  flow.Kind
		field string
	}{
		{Coupling{Kind: "hungarian"}, 0, flow.KindOT, "coupling"},
		{Coupling{Kind: "ot", Reg: 1}, 0, flow.KindOT, "ot_reg"},
		{Coupling{Kind: "sinkhorn"}, 0, flow.KindOT, "ot_reg"},
		{Coupling{Kind: "ot"}, 2, flow.KindOT, "distill_steps"},
		{Coupling{Kind: CouplingPairs}, 2, flow.KindVP, "distill_steps"},
		{Coupling{Kind: CouplingPairs}, -1, flow.KindOT, "distill_steps"},
		{Coupling{Kind: "ot", Blocks: -1}, 0, flow.KindOT, "coupling_blocks"},
		{Coupling{Kind: "ot", Blocks: base.Batch + 1}, 0, flow.KindOT, "coupling_blocks"},
		{Coupling{Kind: "independent", Blocks: 2}, 0, flow.KindOT, "coupling_blocks"},
		{Coupling{Blocks: 2}, 0, flow.KindOT, "coupling_blocks"},
		{Coupling{Kind: CouplingPairs, Blocks: 2}, 0, flow.KindOT, "coupling_blocks"},
	} {
		cfg := base
		cfg.Coupling, cfg.DistillSteps, cfg.Path = c.cp, c.k, flow.DefaultSpec(c.path)
		var fe *FieldError
		err := cfg.Validate()
		if err == nil || !asFieldError(err, &fe) || fe.Field != c.field {
			t.Errorf("%+v k=%d path %s: %v, want a %s error", c.cp, c.k, c.path, err, c.field)
		}
	}
	for _, cp := range []Coupling{{Kind: "sinkhorn", Reg: 0.1}, {Kind: "ot", Blocks: base.Batch}, {Kind: "sinkhorn", Reg: 1, Blocks: 3}, {Kind: "independent", Blocks: 1}} {
		ok := base
		ok.Coupling = cp
		if err := ok.Validate(); err != nil {
			t.Errorf("%+v: %v", cp, err)
		}
	}
	ds, _ := data.Builtin("moons", 10, 1)
	pairs := base
	pairs.Coupling = Coupling{Kind: CouplingPairs}
	if _, err := New(gpu.NewCPU(1), pairs, ds.X, ds.N); err == nil {
		t.Error("New with coupling pairs and no noise succeeded")
	}
}

func asFieldError(err error, fe **FieldError) bool {
	f, ok := err.(*FieldError)
	*fe = f
	return ok
}

// With class labels the pairs are made within each class: every row's
// paired data row has the row's own label (the one the network is shown,
// before dropout), and the classes' pairs are each optimal.
func TestOTCouplingWithinClasses(t *testing.T) {
	b := gpu.NewCPU(1)
	defer b.Close()
	const side, classes, n = 4, 3, 60
	cfg := Config{
		Model: model.Config{Kind: model.KindUNet, Dim: side * side, TimeEmbed: gpu.TimeEmbedding{Freqs: 4, Scale: 1000, MaxPeriod: 10000},
			Classes: classes, Image: &model.ImageShape{Channels: 1, Height: side, Width: side},
			UNet: &model.UNetConfig{Base: 4, Mults: []int{1}, ResBlocks: 1, Groups: 2}},
		Path: flow.DefaultSpec(flow.KindOT), Time: flow.DefaultTimeSampler(flow.TimeUniform),
		Steps: 4, Batch: 24, Seed: 5, LR: 1e-3, Coupling: Coupling{Kind: "ot"},
	}
	cfg.Defaults()
	x := make([]float32, n*side*side)
	labels := make([]int32, n)
	for i := range n {
		labels[i] = int32(i % classes)
		for j := range side * side {
			// a class's images sit apart from the others': unconstrained OT
			// would pair across classes
			x[i*side*side+j] = float32(math.Sin(float64(i*side*side+j)*0.37)) + float32(labels[i]-1)*0.8
		}
	}
	tr, err := NewConditional(b, cfg, x, labels, n)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	tr.Step()
	if _, err := tr.Read(); err != nil {
		t.Fatal(err)
	}
	d := side * side
	x1, y := download(t, b, tr.cpl.x1), download(t, b, tr.y)
	for r := range cfg.Batch {
		row := x1[r*d : (r+1)*d]
		found := -1
		for i := range n {
			if slices.Equal(row, x[i*d:(i+1)*d]) {
				found = i
				break
			}
		}
		if found < 0 {
			t.Fatalf("row %d of the batch is no data row", r)
		}
		if float32(labels[found]) != y[r] {
			t.Fatalf("row %d: the network sees class %v, its data row %d is class %d", r, y[r], found, labels[found])
		}
	}
	if last, _, _ := tr.CouplingStats(); last.Classes < 2 {
		t.Errorf("paired %d classes separately", last.Classes)
	}
}

// On a device backend (a GPU, or the kernel simulator under -tags
// kernelsim) the coupled and paired steps follow the CPU backend's: the
// same draws, pairs and updates, to float32 rounding (as the plain step,
// gpu's TestKernelSimTrainingMatchesCPU: 1e-3 relative over a few steps).
func TestCouplingOnDevice(t *testing.T) {
	dev, err := gpu.NewCUDA()
	if err != nil {
		t.Skipf("no device backend: %v", err)
	}
	defer dev.Close()
	ds, _ := standardized(t, "8gaussians")
	x0 := make([]float32, len(ds.X))
	for i := range x0 {
		x0[i] = float32(math.Sin(float64(i)*1.7)) * 1.5
	}
	for _, c := range []struct {
		name string
		cp   Coupling
		k    int
	}{{"ot", Coupling{Kind: "ot"}, 0}, {"ot-blocks", Coupling{Kind: "ot", Blocks: 3}, 0}, {"pairs", Coupling{Kind: CouplingPairs}, 0}, {"distill", Coupling{Kind: CouplingPairs}, 2}} {
		cfg := testConfig()
		cfg.Steps, cfg.Batch, cfg.Model.Hidden = 12, 64, []int{32, 32}
		cfg.Coupling, cfg.DistillSteps = c.cp, c.k
		run := func(b gpu.Backend) []Progress {
			var tr *Trainer
			var err error
			if c.cp.Kind == CouplingPairs {
				tr, err = NewPairs(b, cfg, x0, ds.X, nil, ds.N)
			} else {
				tr, err = New(b, cfg, ds.X, ds.N)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			var ps []Progress
			for s := range cfg.Steps {
				tr.Step()
				if (s+1)%4 == 0 {
					p, err := tr.Read()
					if err != nil {
						t.Fatal(err)
					}
					ps = append(ps, p)
				}
			}
			return ps
		}
		cpu, d := run(gpu.NewCPU(0)), run(dev)
		for i := range cpu {
			for _, v := range [][2]float64{{cpu[i].Loss, d[i].Loss}, {cpu[i].GradNorm, d[i].GradNorm}} {
				if rel := math.Abs(v[0]-v[1]) / math.Abs(v[0]); !(rel <= 1e-3) {
					t.Errorf("%s step %d: cpu %.7g, device %.7g", c.name, cpu[i].Step, v[0], v[1])
				}
			}
		}
	}
}
