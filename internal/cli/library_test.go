package cli

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fmgpu/fmgpu/gpu"

	lib "github.com/fmgpu/fmgpu"
	"github.com/fmgpu/fmgpu/data"
	"github.com/fmgpu/fmgpu/train"
)

// The package fmgpu and the command line are one program: its defaults
// are the train command's, a run through it writes the checkpoint `fmgpu
// train` writes (bit for bit, on the CPU), and its samples and
// log-likelihoods are those of `fmgpu sample` and `fmgpu likelihood`.
func TestLibraryIsTheCommandLine(t *testing.T) {
	const steps = 30
	cliDir, libDir := t.TempDir(), t.TempDir()
	code, _, stderr := fmgpu(t, "train", "--data", "moons", "--n-data", "500", "--steps", "30", "--hidden", "16,16",
		"--device", "cpu", "--threads", "1", "--no-plot", "--quiet", "--out", cliDir)
	if code != 0 {
		t.Fatalf("train exit %d: %s", code, stderr)
	}
	ctx := context.Background()
	dev, err := lib.OpenDevice(lib.DeviceCPU, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	ds, err := data.LoadWith("moons", data.LoadOptions{N: 500, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	cfg := lib.DefaultConfig(2)
	cfg.Model.Hidden = []int{16, 16}
	cfg.Steps, cfg.Warmup = steps, defaultWarmup(steps)
	tr, err := lib.NewTrainer(ctx, cfg, lib.DatasetRows(ds), lib.TrainOptions{Device: dev, OutDir: libDir, DataName: "moons"})
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Run(ctx); err != nil {
		t.Fatal(err)
	}
	tr.Close()

	a, err := train.Load(filepath.Join(cliDir, train.CheckpointName))
	if err != nil {
		t.Fatal(err)
	}
	b, err := train.Load(filepath.Join(libDir, train.CheckpointName))
	if err != nil {
		t.Fatal(err)
	}
	ma, _ := json.Marshal(a.Meta)
	mb, _ := json.Marshal(b.Meta)
	if string(ma) != string(mb) {
		t.Fatalf("checkpoint metadata:\ncommand line %s\nlibrary      %s", ma, mb)
	}
	for name, pair := range map[string][2][]float32{"params": {a.Params, b.Params}, "ema": {a.EMA, b.EMA}, "m": {a.AdamM, b.AdamM}, "v": {a.AdamV, b.AdamV}} {
		for i := range pair[0] {
			if pair[0][i] != pair[1][i] {
				t.Fatalf("%s[%d]: command line %v, library %v", name, i, pair[0][i], pair[1][i])
			}
		}
	}

	ck := filepath.Join(libDir, train.CheckpointName)
	samples, logp := filepath.Join(t.TempDir(), "s.npy"), filepath.Join(t.TempDir(), "lp.npy")
	if code, _, stderr := fmgpu(t, "sample", "--checkpoint", ck, "--n", "300", "--seed", "4", "--out", samples, "--device", "cpu", "--threads", "1", "--quiet"); code != 0 {
		t.Fatalf("sample exit %d: %s", code, stderr)
	}
	if code, _, stderr := fmgpu(t, "likelihood", "--checkpoint", ck, "--data", "moons", "--n-data", "100", "--out", logp, "--device", "cpu", "--threads", "1", "--quiet"); code != 0 {
		t.Fatalf("likelihood exit %d: %s", code, stderr)
	}
	m, err := lib.Load(ctx, ck, lib.LoadOptions{Device: dev})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	x, err := m.Sample(ctx, 300, lib.SampleOptions{Seed: 4})
	if err != nil {
		t.Fatal(err)
	}
	want, err := data.LoadNPY(samples)
	if err != nil {
		t.Fatal(err)
	}
	for i := range x {
		if x[i] != want.X[i] {
			t.Fatalf("sample value %d: library %v, command line %v", i, x[i], want.X[i])
		}
	}
	pts, _ := data.LoadWith("moons", data.LoadOptions{N: 100, Seed: 2})
	lp, err := m.LogProb(ctx, pts.X, lib.LogProbOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wantLP, err := data.LoadNPY(logp)
	if err != nil {
		t.Fatal(err)
	}
	for i := range lp {
		if float32(lp[i]) != wantLP.X[i] {
			t.Fatalf("log-likelihood %d: library %v, command line %v", i, lp[i], wantLP.X[i])
		}
	}
}

// The library describes a device as the command line's run header does,
// with the reason --device auto fell back to the CPU.
func TestLibraryDescribesDevicesAsTheCommandLine(t *testing.T) {
	if gpu.Flavor == "kernelsim" {
		t.Skip("auto is the simulator")
	}
	t.Setenv("FMGPU_LIBCUDA", filepath.Join(t.TempDir(), "libcuda.so.1"))
	for _, name := range []string{"cpu", "auto"} {
		b, err := openBackend(name, 1)
		if err != nil {
			t.Fatal(err)
		}
		d, err := lib.OpenDevice(name, 1)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := d.String(), describeBackend(b); got != want {
			t.Errorf("%s: library %q, command line %q", name, got, want)
		}
		b.Close()
		d.Close()
	}
}

// `fmgpu train --resume` of a run a Go program trained on its own rows
// says what it needs: the same rows as --data for rows held in memory,
// the library itself for a stream.
func TestResumeOfRowsFromGo(t *testing.T) {
	ctx := context.Background()
	dev, err := lib.OpenDevice(lib.DeviceCPU, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	ds, err := data.LoadWith("moons", data.LoadOptions{N: 300, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	cfg := lib.DefaultConfig(2)
	cfg.Model.Hidden = []int{8}
	cfg.Steps, cfg.Warmup = 20, 2
	inMemory, streamed := t.TempDir(), t.TempDir()
	row := 0
	next := func(_ context.Context, x []float32, _ []int32) error {
		for i := 0; i < len(x); i += 2 {
			copy(x[i:i+2], ds.X[2*(row%ds.N):])
			row++
		}
		return nil
	}
	for dir, src := range map[string]lib.Source{inMemory: lib.Rows(ds.X, 2), streamed: lib.SourceFunc(2, next)} {
		tr, err := lib.NewTrainer(ctx, cfg, src, lib.TrainOptions{Device: dev, OutDir: dir, StopAt: 10, FitRows: 100})
		if err != nil {
			t.Fatal(err)
		}
		if err := tr.Run(ctx); err != nil {
			t.Fatal(err)
		}
		tr.Close()
	}
	args := []string{"train", "--resume", "--quiet", "--no-plot", "--device", "cpu"}
	for _, c := range []struct {
		dir  string
		more []string
		want string
	}{
		{inMemory, nil, "give the same rows with --data FILE"},
		{streamed, nil, "resume it there, with TrainOptions.Resume"},
	} {
		code, _, e := fmgpu(t, append(args, append([]string{"--out", c.dir}, c.more...)...)...)
		if code != ExitUsage || !strings.Contains(e, c.want) {
			t.Errorf("resume of %s: exit %d %q, want %q", c.dir, code, e, c.want)
		}
	}
	file := filepath.Join(t.TempDir(), "rows.npy")
	if err := writeMatrix(file, ds.X, ds.N, 2); err != nil {
		t.Fatal(err)
	}
	if code, _, e := fmgpu(t, append(args, "--out", inMemory, "--data", file)...); code != 0 {
		t.Errorf("resume with the same rows as --data: exit %d %q", code, e)
	}
}
