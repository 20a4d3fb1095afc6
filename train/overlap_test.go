package train

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fmgpu/fmgpu/collective"
	"github.com/fmgpu/fmgpu/data"
	"github.com/fmgpu/fmgpu/flow"
	"github.com/fmgpu/fmgpu/gpu"
	"github.com/fmgpu/fmgpu/model"
)

// Whether an all-reduce overlapped with the backward pass pays on CPU
// ranks over MPI (docs/distributed.md, "Overlapping the all-reduce"): the
// best any bucketing can do is to hide the whole all-reduce behind the
// forward and backward pass, which this measures by running them at the
// same time (the all-reduce of a gradient-sized buffer from a goroutine,
// which the MPI engine's thread carries out, while the network computes)
// against one after the other, on every rank at once. Each mode is timed
// to a barrier after it, so that it lasts as long as its slowest rank's,
// as a step does.
//
//	FMGPU_COLLECTIVE_TIME=1 go test -run AllReduceOverlapTime -v ./train

const (
	overlapTimeEnv = "FMGPU_COLLECTIVE_TIME"
	overlapRankEnv = "FMGPU_TRAIN_OVERLAP_RANK"
)

func TestAllReduceOverlapTime(t *testing.T) {
	if os.Getenv(overlapTimeEnv) == "" {
		t.Skipf("a measurement: set %s=1 to run it", overlapTimeEnv)
	}
	mpirun, err := exec.LookPath("mpirun")
	if err != nil {
		t.Skipf("mpirun: %v", err)
	}
	for _, np := range []int{2} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
		cmd := exec.CommandContext(ctx, mpirun, "--allow-run-as-root", "--oversubscribe", "-np", fmt.Sprint(np),
			"-x", overlapRankEnv, os.Args[0], "-test.run", "^TestRankAllReduceOverlap$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), overlapRankEnv+"=1")
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("mpirun: %v\n%s", err, out)
		}
		for _, l := range strings.Split(string(out), "\n") {
			if i := strings.Index(l, "overlap:"); i >= 0 {
				t.Log(l[i:])
			}
		}
	}
}

// TestRankAllReduceOverlap is one rank of TestAllReduceOverlapTime.
func TestRankAllReduceOverlap(t *testing.T) {
	if os.Getenv(overlapRankEnv) == "" {
		t.Skip("a rank of TestAllReduceOverlapTime")
	}
	comm, err := collective.Open(collective.EngineMPI, collective.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer comm.Close()
	n := comm.Size()
	ds, _ := data.Builtin("8gaussians", 100000, 1)
	unet := Config{Model: model.Config{Kind: model.KindUNet, Dim: 28 * 28, TimeEmbed: model.DefaultTimeEmbedding, Classes: 10,
		Image: &model.ImageShape{Channels: 1, Height: 28, Width: 28},
		UNet:  &model.UNetConfig{Base: 32, Mults: []int{1, 2, 2}, ResBlocks: 1, Groups: 8}},
		Path: flow.DefaultSpec(flow.KindOT), Time: flow.DefaultTimeSampler(flow.TimeUniform),
		Steps: 1000, Batch: 64, Seed: 1, LR: 1e-3}
	unet.Defaults()
	for _, w := range []struct {
		name string
		cfg  Config
		reps int
	}{
		{"mlp256-b256", peerWorkloads[0].config(), 200},
		{"mlp256-b4096", peerWorkloads[1].config(), 20},
		{"unet-mnist-b64", unet, 4},
	} {
		b := gpu.NewCPU(1)
		x, nData := ds.X, ds.N
		var labels []int32
		if w.cfg.Model.Kind == model.KindUNet {
			nData = 256
			x = make([]float32, nData*w.cfg.Model.Dim)
			for i := range x {
				x[i] = float32(i%255)/127.5 - 1
			}
			labels = make([]int32, nData)
			for i := range labels {
				labels[i] = int32(i % 10)
			}
		}
		tr, err := NewConditional(b, w.cfg, x, labels, nData)
		if err != nil {
			t.Fatal(err)
		}
		if err := tr.Distribute(comm); err != nil {
			t.Fatal(err)
		}
		tr.Step() // sizes the scratch space, draws a batch
		if err := tr.collectiveErr(); err != nil {
			t.Fatal(err)
		}
		rows, tt, xt, ut, pred, dPred := tr.batchRows()
		compute := func() {
			tr.net.Forward(rows, tt, xt, pred)
			b.MSELossAccumulate(pred, ut, float32(1/float64(w.cfg.Batch)), dPred, tr.lossSum)
			tr.net.Backward(dPred, tr.grads)
			if err := b.Sync(); err != nil {
				t.Fatal(err)
			}
		}
		g := make([]float32, tr.net.NumParams())
		reduce := func() {
			if err := comm.AllReduceSum(collective.Host(g)); err != nil {
				t.Fatal(err)
			}
		}
		modes := []struct {
			name string
			f    func()
		}{
			{"compute", compute},
			{"allreduce", reduce},
			{"serial", func() { compute(); reduce() }},
			{"overlapped", func() {
				done := make(chan struct{})
				go func() { reduce(); close(done) }()
				compute()
				<-done
			}},
		}
		times := make([][]float64, len(modes))
		for rep := range w.reps + 1 {
			for i, m := range modes { // interleaved, so that the load of the machine falls on all
				if err := comm.Barrier(); err != nil {
					t.Fatal(err)
				}
				start := time.Now()
				m.f()
				// every mode ends when the slowest rank's does, as a step
				// does (its all-reduce waits for every rank)
				if err := comm.Barrier(); err != nil {
					t.Fatal(err)
				}
				if rep > 0 { // the first round warms up
					times[i] = append(times[i], time.Since(start).Seconds()*1e3)
				}
			}
		}
		med := func(x []float64) float64 { slices.Sort(x); return x[len(x)/2] }
		var fields []string
		for i, m := range modes {
			fields = append(fields, fmt.Sprintf("%s=%.3fms", m.name, med(times[i])))
		}
		if comm.Rank() == 0 { // the others' are the same, to the barrier's skew
			t.Logf("overlap: %d ranks, %s (%d rows a rank, %d floats): %s", n, w.name, rows, len(g), strings.Join(fields, " "))
		}
		tr.Close()
		b.Close()
	}
}
