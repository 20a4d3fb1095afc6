package train

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fmgpu/fmgpu/data"
	"github.com/fmgpu/fmgpu/flow"
	"github.com/fmgpu/fmgpu/gpu"
	"github.com/fmgpu/fmgpu/model"
)

func testConfig() Config {
	c := Config{
		Model: model.Config{Kind: "mlp", Dim: 2, Hidden: []int{64, 64}, TimeEmbed: model.DefaultTimeEmbedding},
		Path:  flow.DefaultSpec(flow.KindOT), Time: flow.DefaultTimeSampler(flow.TimeUniform),
		Steps: 400, Batch: 128, Seed: 3, LR: 3e-3, Warmup: 20, EMADecay: 0.99, MaxGradNorm: 1,
	}
	c.Defaults()
	return c
}

func standardized(t *testing.T, name string) (*data.Dataset, data.Standardization) {
	ds, err := data.Builtin(name, 4000, 1)
	if err != nil {
		t.Fatal(err)
	}
	std := data.Fit(ds)
	std.Apply(ds.X)
	return ds, std
}

// gaussianLossFloor is the minimum of the CFM loss (ot path, sigma_min 0)
// for data N(m, S) in 2-D: E||x1 - x0 - u(t, x_t)||^2 with docs/math.md's exact
// marginal field u(t, x) = m + (t S - (1-t) I) C_t^{-1} (x - t m), estimated
// by Monte Carlo in float64 over n draws.
func gaussianLossFloor(m [2]float64, S [2][2]float64, n int) float64 {
	r := rand.New(rand.NewPCG(9, 9))
	// Cholesky of S for drawing x1
	l00 := math.Sqrt(S[0][0])
	l10 := S[1][0] / l00
	l11 := math.Sqrt(S[1][1] - l10*l10)
	sum := 0.0
	for i := 0; i < n; i++ {
		t := r.Float64()
		z0, z1 := r.NormFloat64(), r.NormFloat64()
		x1 := [2]float64{m[0] + l00*z0, m[1] + l10*z0 + l11*z1}
		x0 := [2]float64{r.NormFloat64(), r.NormFloat64()}
		var xt [2]float64
		for j := range xt {
			xt[j] = (1-t)*x0[j] + t*x1[j]
		}
		var C, A [2][2]float64
		for a := 0; a < 2; a++ {
			for b := 0; b < 2; b++ {
				id := 0.0
				if a == b {
					id = 1
				}
				C[a][b] = (1-t)*(1-t)*id + t*t*S[a][b]
				A[a][b] = t*S[a][b] - (1-t)*id
			}
		}
		det := C[0][0]*C[1][1] - C[0][1]*C[1][0]
		Ci := [2][2]float64{{C[1][1] / det, -C[0][1] / det}, {-C[1][0] / det, C[0][0] / det}}
		y := [2]float64{xt[0] - t*m[0], xt[1] - t*m[1]}
		w := [2]float64{Ci[0][0]*y[0] + Ci[0][1]*y[1], Ci[1][0]*y[0] + Ci[1][1]*y[1]}
		for j := 0; j < 2; j++ {
			u := m[j] + A[j][0]*w[0] + A[j][1]*w[1]
			e := x1[j] - x0[j] - u
			sum += e * e
		}
	}
	return sum / float64(n)
}

// Trained on the gaussian set, the loss must come down to the exact floor
// of the CFM loss for that distribution (within 5%: the floor's Monte
// Carlo error is about 0.3% at 400k draws, and the network's residual
// error after 1500 steps a few percent), and not below it by more than the
// minibatch noise of the averaged loss.
func TestTrainingReachesGaussianLossFloor(t *testing.T) {
	b := gpu.NewCPU(0)
	ds, err := data.Builtin("gaussian", 20000, 1)
	if err != nil {
		t.Fatal(err)
	}
	std := data.Fit(ds)
	std.Apply(ds.X)
	var mz [2]float64
	var sz [2][2]float64
	for i := 0; i < 2; i++ {
		mz[i] = (data.GaussianMean[i] - std.Mean[i]) / std.Std[i]
		for j := 0; j < 2; j++ {
			sz[i][j] = data.GaussianCov[i][j] / (std.Std[i] * std.Std[j])
		}
	}
	floor := gaussianLossFloor(mz, sz, 400000)
	cfg := testConfig()
	cfg.Steps, cfg.Batch = 1500, 256
	tr, err := New(b, cfg, ds.X, ds.N)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 1200; i++ {
		tr.Step()
	}
	if _, err := tr.Read(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 300; i++ {
		tr.Step()
	}
	p, err := tr.Read()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("loss over the last 300 steps %.4f, exact floor %.4f (ratio %.3f)", p.Loss, floor, p.Loss/floor)
	if p.Loss > 1.05*floor || p.Loss < 0.97*floor {
		t.Errorf("trained loss %.4f, floor %.4f", p.Loss, floor)
	}
	dir := t.TempDir()
	if err := tr.Save(filepath.Join(dir, CheckpointName), std, DataInfo{Source: "8gaussians", Rows: ds.N, Dim: 2}); err != nil {
		t.Fatal(err)
	}
	ck, err := Load(filepath.Join(dir, CheckpointName))
	if err != nil {
		t.Fatal(err)
	}
	if ck.Meta.Step != cfg.Steps || len(ck.Params) != tr.Net().NumParams() {
		t.Errorf("checkpoint step %d params %d", ck.Meta.Step, len(ck.Params))
	}
	got := make([]float32, len(ck.Params))
	b.Download(got, tr.Net().Params())
	for i := range got {
		if got[i] != ck.Params[i] {
			t.Fatalf("param %d: %v in memory, %v in checkpoint", i, got[i], ck.Params[i])
		}
	}
}

// Exact resume: N steps straight and N/2 steps, save, load into a fresh
// trainer, N/2 more give bit-identical weights, EMA and moments.
func TestResumeIsExact(t *testing.T) {
	b := gpu.NewCPU(0)
	ds, std := standardized(t, "moons")
	cfg := testConfig()
	cfg.Steps = 60
	dir := t.TempDir()
	straight, _ := New(b, cfg, ds.X, ds.N)
	if err := straight.Run(context.Background(), RunOptions{OutDir: dir, LogEvery: 10, Std: std}); err != nil {
		t.Fatal(err)
	}
	a, _ := Load(filepath.Join(dir, CheckpointName))

	dir2 := t.TempDir()
	half, _ := New(b, cfg, ds.X, ds.N)
	for i := 0; i < 30; i++ {
		half.Step()
	}
	if err := half.Save(filepath.Join(dir2, CheckpointName), std, DataInfo{}); err != nil {
		t.Fatal(err)
	}
	mid, err := Load(filepath.Join(dir2, CheckpointName))
	if err != nil {
		t.Fatal(err)
	}
	resumed, _ := New(b, cfg, ds.X, ds.N)
	if err := resumed.Resume(mid); err != nil {
		t.Fatal(err)
	}
	if err := resumed.Run(context.Background(), RunOptions{OutDir: dir2, LogEvery: 10, Std: std}); err != nil {
		t.Fatal(err)
	}
	c, _ := Load(filepath.Join(dir2, CheckpointName))
	for name, pair := range map[string][2][]float32{"params": {a.Params, c.Params}, "ema": {a.EMA, c.EMA}, "m": {a.AdamM, c.AdamM}, "v": {a.AdamV, c.AdamV}} {
		for i := range pair[0] {
			if pair[0][i] != pair[1][i] {
				t.Fatalf("%s[%d]: straight %v, resumed %v", name, i, pair[0][i], pair[1][i])
			}
		}
	}
	other := cfg
	other.Model.Hidden = []int{32, 32}
	tr3, _ := New(b, other, ds.X, ds.N)
	if err := tr3.Resume(mid); err == nil {
		t.Error("resuming with another network shape succeeded")
	}
}

// Without an EMA (decay 0) the network sampled during training and the
// checkpoint's EMA weights are the trained weights, not the initial ones
// the optimizer leaves in its EMA buffer; resumed with an EMA, the
// average starts from the weights, also from a checkpoint written before
// that (whose EMA tensors held the initial weights).
func TestNoEMA(t *testing.T) {
	b := gpu.NewCPU(0)
	ds, std := standardized(t, "moons")
	cfg := testConfig()
	cfg.EMADecay = 0
	tr, err := New(b, cfg, ds.X, ds.N)
	if err != nil {
		t.Fatal(err)
	}
	init := make([]float32, tr.Net().NumParams())
	b.Download(init, tr.Net().Params())
	for i := 0; i < 20; i++ {
		tr.Step()
	}
	w, sampled := make([]float32, len(init)), make([]float32, len(init))
	b.Download(w, tr.Net().Params())
	b.Download(sampled, tr.EMANet().Params())
	if w[0] == init[0] && w[1] == init[1] {
		t.Fatal("20 steps did not change the weights")
	}
	for i := range w {
		if w[i] != sampled[i] {
			t.Fatalf("EMANet()[%d] = %v, the trained weight is %v (initial %v)", i, sampled[i], w[i], init[i])
		}
	}
	path := filepath.Join(t.TempDir(), CheckpointName)
	if err := tr.Save(path, std, DataInfo{}); err != nil {
		t.Fatal(err)
	}
	ck, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := range w {
		if ck.EMA[i] != w[i] {
			t.Fatalf("checkpoint ema[%d] = %v, weight %v", i, ck.EMA[i], w[i])
		}
	}
	with := cfg
	with.EMADecay = 0.99
	for _, old := range []bool{false, true} {
		if old {
			copy(ck.EMA, init)
		}
		r, err := New(b, with, ds.X, ds.N)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Resume(ck); err != nil {
			t.Fatal(err)
		}
		b.Download(sampled, r.EMANet().Params())
		for i := range w {
			if sampled[i] != w[i] {
				t.Fatalf("old checkpoint %v: resumed with an EMA, ema[%d] = %v, the weight %v", old, i, sampled[i], w[i])
			}
		}
		r.Close()
	}
}

// A run stopped between two of its lines (StopAt 25 with a line every 10
// steps) and resumed writes the same loss lines as the run that did not
// stop, to the bit: the stop's partial line is replaced by the next one,
// whose mean covers steps 21 to 30 as the unbroken run's does.
func TestResumeKeepsLossTrace(t *testing.T) {
	b := gpu.NewCPU(0)
	ds, std := standardized(t, "moons")
	cfg := testConfig()
	cfg.Steps = 60
	losses := func(dir string) []string {
		ms, err := readMetrics(filepath.Join(dir, MetricsName), cfg.Steps, ds.D)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, m := range ms {
			out = append(out, fmt.Sprintf("%d %v %v", m.Step, m.LossSum, m.Partial))
		}
		return out
	}
	straight := t.TempDir()
	tr, _ := New(b, cfg, ds.X, ds.N)
	if err := tr.Run(context.Background(), RunOptions{OutDir: straight, LogEvery: 10, Std: std}); err != nil {
		t.Fatal(err)
	}
	stopped := t.TempDir()
	tr, _ = New(b, cfg, ds.X, ds.N)
	if err := tr.Run(context.Background(), RunOptions{OutDir: stopped, LogEvery: 10, Std: std, StopAt: 25}); err != nil {
		t.Fatal(err)
	}
	if l := losses(stopped); len(l) != 3 || !strings.HasSuffix(l[2], " true") || !strings.HasPrefix(l[2], "25 ") {
		t.Fatalf("the stopped run's lines: %q", l)
	}
	for _, stop := range []int{37, 0} { // stopped again off its lines, then to the end
		ck, err := Load(filepath.Join(stopped, CheckpointName))
		if err != nil {
			t.Fatal(err)
		}
		tr, _ = New(b, cfg, ds.X, ds.N)
		if err := tr.Resume(ck); err != nil {
			t.Fatal(err)
		}
		if err := tr.Run(context.Background(), RunOptions{OutDir: stopped, LogEvery: 10, Std: std, StopAt: stop}); err != nil {
			t.Fatal(err)
		}
	}
	if a, b := losses(straight), losses(stopped); !slices.Equal(a, b) {
		t.Errorf("loss lines\nstraight %q\nresumed  %q", a, b)
	}
	// the same trainer run on after its stop, and a checkpoint saved
	// outside Run right after a resume, carry the loss the same way
	again := t.TempDir()
	tr, _ = New(b, cfg, ds.X, ds.N)
	if err := tr.Run(context.Background(), RunOptions{OutDir: again, LogEvery: 10, Std: std, StopAt: 25}); err != nil {
		t.Fatal(err)
	}
	if err := tr.Run(context.Background(), RunOptions{OutDir: again, LogEvery: 10, Std: std, StopAt: 33}); err != nil {
		t.Fatal(err)
	}
	ck, err := Load(filepath.Join(again, CheckpointName))
	if err != nil {
		t.Fatal(err)
	}
	tr, _ = New(b, cfg, ds.X, ds.N)
	if err := tr.Resume(ck); err != nil {
		t.Fatal(err)
	}
	if err := tr.Save(filepath.Join(again, CheckpointName), std, DataInfo{}); err != nil {
		t.Fatal(err)
	}
	if ck, err = Load(filepath.Join(again, CheckpointName)); err != nil || ck.Meta.LossCarry == nil || ck.Meta.LossCarry.Steps != 3 {
		t.Fatalf("saved right after the resume: carry %+v (%v)", ck.Meta.LossCarry, err)
	}
	tr, _ = New(b, cfg, ds.X, ds.N)
	if err := tr.Resume(ck); err != nil {
		t.Fatal(err)
	}
	if err := tr.Run(context.Background(), RunOptions{OutDir: again, LogEvery: 10, Std: std}); err != nil {
		t.Fatal(err)
	}
	if a, b := losses(straight), losses(again); !slices.Equal(a, b) {
		t.Errorf("loss lines\nstraight  %q\nrun again %q", a, b)
	}
	// steps after a stop's read, saved without a read: no carry (the
	// steps' loss would be missing from it)
	later := t.TempDir()
	tr, _ = New(b, cfg, ds.X, ds.N)
	if err := tr.Run(context.Background(), RunOptions{OutDir: later, LogEvery: 10, Std: std, StopAt: 25}); err != nil {
		t.Fatal(err)
	}
	tr.Step()
	if err := tr.Save(filepath.Join(later, CheckpointName), std, DataInfo{}); err != nil {
		t.Fatal(err)
	}
	if ck, err = Load(filepath.Join(later, CheckpointName)); err != nil {
		t.Fatal(err)
	}
	if ck.Meta.Step != 26 || ck.Meta.LossCarry != nil {
		t.Errorf("a save at step %d after unread steps: carry %+v", ck.Meta.Step, ck.Meta.LossCarry)
	}
}
