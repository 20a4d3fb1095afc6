package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fmgpu/fmgpu/flow"
	"github.com/fmgpu/fmgpu/reflow"
	"github.com/fmgpu/fmgpu/train"
)

var reflowArgs = []string{"--pairs", "300", "--train-steps", "40", "--batch", "64", "--solver", "euler", "--steps", "8", "--log-every", "10", "--quiet"}

func loadCk(t *testing.T, path string) *train.Checkpoint {
	t.Helper()
	ck, err := train.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return ck
}

// reflow trains on the teacher's pairs from its weights; a reflowed
// checkpoint reflows again; distill records its K and sample uses
// K Euler steps for it by default.
func TestReflowAndDistill(t *testing.T) {
	dir := t.TempDir()
	teacher := tinyTrain(t, filepath.Join(dir, "a"), "--no-plot", "--coupling", "ot")
	tck := loadCk(t, teacher)
	r1 := filepath.Join(dir, "r1")
	if code, _, e := fmgpu(t, append([]string{"reflow", "--checkpoint", teacher, "--out", r1}, reflowArgs...)...); code != 0 {
		t.Fatalf("reflow: exit %d: %s", code, e)
	}
	ck := loadCk(t, filepath.Join(r1, train.CheckpointName))
	c := ck.Meta.Config
	if c.Coupling.Kind != train.CouplingPairs || c.Steps != 40 || c.DistillSteps != 0 || ck.Meta.Data.Rows != 300 {
		t.Fatalf("reflow checkpoint: coupling %+v, %d steps, distill %d, %d rows", c.Coupling, c.Steps, c.DistillSteps, ck.Meta.Data.Rows)
	}
	if !sameFloats(ck.Meta.Standardization.Mean, tck.Meta.Standardization.Mean) || c.Model.Hidden[0] != tck.Meta.Config.Model.Hidden[0] {
		t.Error("the reflowed model does not keep the teacher's network and standardization")
	}
	if s, ok, err := reflow.ReadSpec(r1); err != nil || !ok || s.Pairs != 300 || s.Solver != "euler" || s.Steps != 8 {
		t.Fatalf("pairs.json: %+v %v %v", s, ok, err)
	}
	// from the teacher's weights: at a negligible learning rate and no
	// EMA, the weights stay the teacher's EMA; from scratch they do not
	near := filepath.Join(dir, "near")
	if code, _, e := fmgpu(t, append([]string{"reflow", "--checkpoint", teacher, "--out", near, "--lr", "1e-12", "--ema", "0"}, reflowArgs...)...); code != 0 {
		t.Fatal(e)
	}
	if d := maxDiff(loadCk(t, filepath.Join(near, train.CheckpointName)).Params, tck.EMA); d > 1e-6 {
		t.Errorf("reflow at lr 1e-12 moved the teacher's weights by %g", d)
	}
	scratch := filepath.Join(dir, "scratch")
	if code, _, e := fmgpu(t, append([]string{"reflow", "--checkpoint", teacher, "--out", scratch, "--lr", "1e-12", "--ema", "0", "--from-scratch"}, reflowArgs...)...); code != 0 {
		t.Fatal(e)
	}
	if d := maxDiff(loadCk(t, filepath.Join(scratch, train.CheckpointName)).Params, tck.EMA); d < 1e-3 {
		t.Errorf("--from-scratch starts from the teacher's weights (difference %g)", d)
	}
	// reflow of a reflow (3-rectified flow)
	r2 := filepath.Join(dir, "r2")
	if code, _, e := fmgpu(t, append([]string{"reflow", "--checkpoint", filepath.Join(r1, train.CheckpointName), "--out", r2}, reflowArgs...)...); code != 0 {
		t.Fatalf("second reflow: exit %d: %s", code, e)
	}
	// distillation into a 2-step student
	st := filepath.Join(dir, "student")
	if code, _, e := fmgpu(t, append([]string{"distill", "--checkpoint", filepath.Join(r2, train.CheckpointName), "--out", st, "--steps-per-sample", "2"}, reflowArgs...)...); code != 0 {
		t.Fatalf("distill: exit %d: %s", code, e)
	}
	sck := filepath.Join(st, train.CheckpointName)
	if k := loadCk(t, sck).Meta.Config.DistillSteps; k != 2 {
		t.Fatalf("student records %d steps per sample", k)
	}
	code, out, e := fmgpu(t, "sample", "--checkpoint", sck, "--n", "50", "--out", filepath.Join(dir, "s.npy"))
	if code != 0 || !strings.Contains(out, "solver euler, NFE 2 per sample") {
		t.Errorf("sample of the student: exit %d, %q %q", code, out, e)
	}
	// eval without --data: the first teacher's data, three generations back
	code, out, e = fmgpu(t, "eval", "--checkpoint", sck, "--n", "100", "--floors", "1", "--steps", "2", "--path-n", "0")
	if code != 0 || !strings.Contains(out, "w2_floor=") {
		t.Errorf("eval of the student without --data: exit %d, %q %q", code, out, e)
	}
	// each flag given replaces its own default only
	for _, c := range []struct {
		flags []string
		want  string
	}{
		{[]string{"--steps", "3"}, "solver euler, NFE 3 per sample"},
		{[]string{"--solver", "rk4"}, "solver rk4, NFE 8 per sample"},
		{[]string{"--solver", "rk4", "--steps", "3"}, "solver rk4, NFE 12 per sample"},
	} {
		code, out, _ = fmgpu(t, append([]string{"sample", "--checkpoint", sck, "--n", "50", "--out", filepath.Join(dir, "s.npy")}, c.flags...)...)
		if code != 0 || !strings.Contains(out, c.want) {
			t.Errorf("sample of the student with %v: exit %d, %q, want %q", c.flags, code, out, c.want)
		}
	}
	// the same command again: the run is finished
	code, _, e = fmgpu(t, append([]string{"reflow", "--checkpoint", teacher, "--out", r1}, reflowArgs...)...)
	if code != ExitUsage || !strings.Contains(e, "already holds the finished run") {
		t.Errorf("rerun of a finished reflow: exit %d, %q", code, e)
	}
	// other pair settings into the same directory
	// another training setting names its flag
	code, _, e = fmgpu(t, append(append([]string{"reflow", "--checkpoint", teacher, "--out", r1}, reflowArgs...), "--train-steps", "50")...)
	if code != ExitUsage || !strings.Contains(e, "(--train-steps: 40 there, 50 here)") {
		t.Errorf("reflow into r1 with --train-steps 50: exit %d, %q", code, e)
	}
	for _, bad := range [][]string{{"--seed", "2"}, {"--pairs", "301"}, {"--solver", "rk4"}, {"--from-scratch"}} {
		code, _, e := fmgpu(t, append(append([]string{"reflow", "--checkpoint", teacher, "--out", r1}, reflowArgs...), bad...)...)
		if code != ExitUsage || !strings.Contains(e, bad[0]) {
			t.Errorf("reflow into r1 with %v: exit %d, %q", bad, code, e)
		}
	}
}

func sameFloats(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func maxDiff(a, b []float32) float64 {
	m := 0.0
	for i := range a {
		m = max(m, abs(float64(a[i]-b[i])))
	}
	return m
}

func TestReflowBadFlags(t *testing.T) {
	dir := t.TempDir()
	teacher := tinyTrain(t, filepath.Join(dir, "a"), "--no-plot")
	vp := tinyTrain(t, filepath.Join(dir, "vp"), "--no-plot", "--path", "vp")
	out := filepath.Join(dir, "out")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"reflow", "--out", out}, "--checkpoint is required"},
		{[]string{"reflow", "--checkpoint", teacher}, "--out is required"},
		{[]string{"distill", "--checkpoint", teacher, "--out", out}, "--steps-per-sample is required"},
		{[]string{"distill", "--checkpoint", teacher, "--out", out, "--steps-per-sample", "0"}, "--steps-per-sample 0: need"},
		{[]string{"distill", "--checkpoint", vp, "--out", out, "--steps-per-sample", "1"}, "ot path"},
		{[]string{"reflow", "--checkpoint", filepath.Join(dir, "none.safetensors"), "--out", out}, "--checkpoint"},
		{[]string{"reflow", "--checkpoint", teacher, "--out", out, "--pairs", "0"}, "--pairs 0: need"},
		{[]string{"reflow", "--checkpoint", teacher, "--out", out, "--train-steps", "0"}, "--train-steps 0"},
		{[]string{"reflow", "--checkpoint", teacher, "--out", out, "--lr", "-1"}, "--lr -1"},
		{[]string{"reflow", "--checkpoint", teacher, "--out", out, "--guidance", "2"}, "--guidance: the teacher is unconditional"},
		{[]string{"reflow", "--checkpoint", teacher, "--out", out, "--solver", "dopri5", "--steps", "4"}, "--steps applies to fixed-step solvers"},
		{[]string{"reflow", "--checkpoint", teacher, "--out", filepath.Join(dir, "a")}, "--out"},
		{[]string{"reflow", "--checkpoint", teacher, "--out", out, "--warmup", "100", "--train-steps", "50"}, "--warmup 100 exceeds"},
	} {
		code, _, e := fmgpu(t, c.args...)
		if code != ExitUsage || !strings.Contains(e, c.want) || strings.Count(strings.TrimSpace(e), "\n") != 0 {
			t.Errorf("%v: exit %d, %q (want %q)", c.args, code, e, c.want)
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("%v: left %s behind", c.args, out)
			os.RemoveAll(out)
		}
	}
}

// cancelWhen cancels ctx once path exists.
func cancelWhen(path string, cancel func()) (stop func()) {
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(2 * time.Millisecond):
			}
			if _, err := os.Stat(path); err == nil {
				cancel()
				return
			}
		}
	}()
	return func() { close(done) }
}

// An interrupted reflow (during the pairs, then during training) keeps
// what it made and exits 130; the same command continues, and ends with
// the pairs and the checkpoint of an uninterrupted run, bit for bit. On
// the CPU in every build (the kernelsim build's default device would take
// minutes over the 20,000 solves); reflow on the device is
// TestReflowAndDistill's.
func TestReflowInterruptedContinues(t *testing.T) {
	dir := t.TempDir()
	teacher := tinyTrain(t, filepath.Join(dir, "a"), "--no-plot", "--device", "cpu")
	args := []string{"--checkpoint", teacher, "--pairs", "20000", "--train-steps", "3000", "--batch", "64",
		"--solver", "euler", "--steps", "300", "--log-every", "10", "--quiet", "--device", "cpu"}
	straight, chunked := filepath.Join(dir, "straight"), filepath.Join(dir, "chunked")
	if code, _, e := fmgpu(t, append([]string{"reflow", "--out", straight}, args...)...); code != 0 {
		t.Fatal(e)
	}
	for i, when := range []string{reflow.ChunkPath(chunked, 0), filepath.Join(chunked, train.MetricsName), ""} {
		ctx, cancel := context.WithCancel(context.Background())
		stop := func() {}
		if when != "" {
			stop = cancelWhen(when, cancel)
		}
		var stderr bytes.Buffer
		code := run(ctx, append([]string{"fmgpu", "reflow", "--out", chunked}, args...), &bytes.Buffer{}, &stderr)
		stop()
		cancel()
		e := stderr.String()
		switch i {
		case 0:
			done := reflow.Done(chunked, mustSpec(t, chunked))
			if code != ExitInterrupted || done < 1 || done > 2 || !strings.Contains(e, fmt.Sprintf("kept %d of 20000 pairs", done*8192)) {
				t.Fatalf("interrupted during the pairs: exit %d, %d chunks, %q", code, done, e)
			}
			if _, err := os.Stat(filepath.Join(chunked, train.CheckpointName)); err == nil {
				t.Fatal("a checkpoint was written before the pairs were done")
			}
		case 1:
			if code != ExitInterrupted || !strings.Contains(e, "run the same command again to continue") {
				t.Fatalf("interrupted during training: exit %d, %q", code, e)
			}
			if s := loadCk(t, filepath.Join(chunked, train.CheckpointName)).Meta.Step; s < 10 || s >= 3000 {
				t.Fatalf("interrupted checkpoint at step %d", s)
			}
		case 2:
			if code != 0 {
				t.Fatalf("continued reflow: exit %d, %q", code, e)
			}
		}
	}
	s := mustSpec(t, straight)
	for k := range s.Chunks() {
		a, _ := os.ReadFile(reflow.ChunkPath(straight, k))
		b, _ := os.ReadFile(reflow.ChunkPath(chunked, k))
		if !bytes.Equal(a, b) {
			t.Fatalf("chunk %d differs", k)
		}
	}
	sameCheckpointTensors(t, filepath.Join(straight, train.CheckpointName), filepath.Join(chunked, train.CheckpointName))
}

func mustSpec(t *testing.T, dir string) reflow.Spec {
	t.Helper()
	s, ok, err := reflow.ReadSpec(dir)
	if err != nil || !ok {
		t.Fatalf("%s: no pairs.json (%v)", dir, err)
	}
	return s
}

// SIGTERM during the pairs: exit 130, only whole chunk files on disk.
func TestReflowSignal(t *testing.T) {
	dir := t.TempDir()
	teacher := tinyTrain(t, filepath.Join(dir, "a"), "--no-plot")
	out := filepath.Join(dir, "out")
	code, stderr, el := interruptAfterSleep(t, syscall.SIGTERM, 1500*time.Millisecond,
		"reflow", "--checkpoint", teacher, "--out", out, "--pairs", "1000000", "--solver", "euler", "--steps", "100")
	if code != ExitInterrupted || !strings.Contains(stderr, "run the same command again to continue") || el > 10 {
		t.Fatalf("exit %d %.1fs after SIGTERM: %q", code, el, stderr)
	}
	es, _ := os.ReadDir(out)
	for _, e := range es {
		if strings.HasPrefix(e.Name(), ".pairs") {
			t.Errorf("a half-written chunk is left: %s", e.Name())
		}
	}
	s := mustSpec(t, out)
	if n := reflow.Done(out, s); n == s.Chunks() {
		t.Errorf("%d of %d chunks on disk", n, s.Chunks())
	}
}

// A reflow run with relative paths is evaluated from another directory:
// its checkpoint records where its teacher is.
func TestReflowEvalFromAnotherDirectory(t *testing.T) {
	dir, elsewhere := t.TempDir(), t.TempDir()
	t.Chdir(dir)
	tinyTrain(t, "a", "--no-plot")
	if code, _, e := fmgpu(t, append([]string{"reflow", "--checkpoint", filepath.Join("a", train.CheckpointName), "--out", "r1"}, reflowArgs...)...); code != 0 {
		t.Fatalf("reflow: exit %d: %s", code, e)
	}
	t.Chdir(elsewhere)
	code, out, e := fmgpu(t, "eval", "--checkpoint", filepath.Join(dir, "r1", train.CheckpointName), "--n", "100", "--floors", "1", "--steps", "2", "--path-n", "0")
	if code != 0 || !strings.Contains(out, "w2_floor=") {
		t.Errorf("eval from another directory: exit %d, %q %q", code, out, e)
	}
}

// The student learns the straight line between each pair whatever the
// teacher's sigma_min (whose path ends at x1 + sigma_min x0, which would
// blur the teacher's samples again), and a distilled teacher's pairs are
// solved with its own K-step Euler schedule unless --solver or --steps
// say otherwise.
func TestReflowOfBlurredAndDistilledTeachers(t *testing.T) {
	dir := t.TempDir()
	teacher := tinyTrain(t, filepath.Join(dir, "a"), "--no-plot", "--sigma-min", "0.3")
	args := []string{"--pairs", "300", "--train-steps", "20", "--batch", "64", "--log-every", "10", "--quiet"}
	st := filepath.Join(dir, "student")
	if code, _, e := fmgpu(t, append([]string{"distill", "--checkpoint", teacher, "--out", st, "--steps-per-sample", "2", "--solver", "euler", "--steps", "8"}, args...)...); code != 0 {
		t.Fatalf("distill: exit %d: %s", code, e)
	}
	sck := filepath.Join(st, train.CheckpointName)
	if p := loadCk(t, sck).Meta.Config.Path; p.Kind != flow.KindOT || p.SigmaMin != 0 {
		t.Errorf("the student of a sigma_min 0.3 teacher trains on %+v", p)
	}
	r := filepath.Join(dir, "r")
	if code, _, e := fmgpu(t, append([]string{"reflow", "--checkpoint", sck, "--out", r}, args...)...); code != 0 {
		t.Fatalf("reflow of the student: exit %d: %s", code, e)
	}
	if s := mustSpec(t, r); s.Solver != "euler" || s.Steps != 2 {
		t.Errorf("the 2-step student's pairs were solved with %s, %d steps", s.Solver, s.Steps)
	}
	r4 := filepath.Join(dir, "r4")
	if code, _, e := fmgpu(t, append([]string{"reflow", "--checkpoint", sck, "--out", r4, "--steps", "4"}, args...)...); code != 0 {
		t.Fatalf("reflow of the student with --steps 4: exit %d: %s", code, e)
	}
	if s := mustSpec(t, r4); s.Solver != "euler" || s.Steps != 4 {
		t.Errorf("--steps 4: the pairs were solved with %s, %d steps", s.Solver, s.Steps)
	}
	// dopri5's flags without --solver: the solver in effect is not named
	code, _, e := fmgpu(t, "sample", "--checkpoint", sck, "--n", "5", "--out", filepath.Join(dir, "s.npy"), "--rtol", "1e-3")
	if code != ExitUsage || !strings.Contains(e, "--rtol applies to --solver dopri5; give --solver dopri5 with it") {
		t.Errorf("sample --rtol of the student: exit %d %q", code, e)
	}
}
