package cli

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fmgpu/fmgpu/data"
	"github.com/fmgpu/fmgpu/gpu"
	"github.com/fmgpu/fmgpu/train"
)

// TestMain lets a test run the command line as a separate process (for
// signals and kills): the test binary re-executes itself with
// FMGPU_CLI_MAIN=1 and behaves as fmgpu.
func TestMain(m *testing.M) {
	if os.Getenv("FMGPU_CLI_MAIN") == "1" {
		os.Exit(Main(append([]string{"fmgpu"}, os.Args[1:]...)))
	}
	os.Exit(m.Run())
}

func fmgpuProcess(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "FMGPU_CLI_MAIN=1")
	return cmd
}

// metricTrace reads metrics.jsonl without the timing columns.
func metricTrace(t *testing.T, dir string) []string {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, train.MetricsName))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("metrics line %q: %v", sc.Text(), err)
		}
		delete(m, "steps_per_s")
		delete(m, "elapsed_s")
		js, _ := json.Marshal(m)
		out = append(out, string(js))
	}
	return out
}

func sameCheckpointTensors(t *testing.T, a, b string) {
	t.Helper()
	ca, err := train.Load(a)
	if err != nil {
		t.Fatal(err)
	}
	cb, err := train.Load(b)
	if err != nil {
		t.Fatal(err)
	}
	if ca.Meta.Step != cb.Meta.Step {
		t.Fatalf("steps %d and %d", ca.Meta.Step, cb.Meta.Step)
	}
	for name, p := range map[string][2][]float32{"weights": {ca.Params, cb.Params}, "ema": {ca.EMA, cb.EMA},
		"adam m": {ca.AdamM, cb.AdamM}, "adam v": {ca.AdamV, cb.AdamV}} {
		for i := range p[0] {
			if p[0][i] != p[1][i] {
				t.Fatalf("%s[%d]: %v straight, %v resumed", name, i, p[0][i], p[1][i])
			}
		}
	}
}

var resumeArgs = []string{"--data", "8gaussians", "--steps", "300", "--batch", "64", "--hidden", "32,32",
	"--n-data", "3000", "--warmup", "20", "--log-every", "25", "--quiet", "--no-plot"}

// N steps straight, and N/2 steps then --resume to N, give bit-identical
// checkpoint tensors and the same loss trace.
func TestExactResume(t *testing.T) {
	straight, chunked := t.TempDir(), t.TempDir()
	if code, _, e := fmgpu(t, append([]string{"train", "--out", straight}, resumeArgs...)...); code != 0 {
		t.Fatal(e)
	}
	if code, _, e := fmgpu(t, append([]string{"train", "--out", chunked, "--stop-after", "150"}, resumeArgs...)...); code != 0 {
		t.Fatal(e)
	}
	if ck, err := train.Load(filepath.Join(chunked, train.CheckpointName)); err != nil || ck.Meta.Step != 150 {
		t.Fatalf("after --stop-after 150: %v", err)
	}
	if code, _, e := fmgpu(t, append([]string{"train", "--out", chunked, "--resume"}, resumeArgs...)...); code != 0 {
		t.Fatal(e)
	}
	sameCheckpointTensors(t, filepath.Join(straight, train.CheckpointName), filepath.Join(chunked, train.CheckpointName))
	a, b := metricTrace(t, straight), metricTrace(t, chunked)
	if strings.Join(a, "\n") != strings.Join(b, "\n") {
		t.Errorf("loss traces differ:\n%s\nvs\n%s", strings.Join(a, "\n"), strings.Join(b, "\n"))
	}
	// flags that contradict the checkpoint
	for _, bad := range [][]string{{"--path", "vp"}, {"--hidden", "16,16"}, {"--data", "gaussian", "--time-sampling", "logit-normal"}} {
		// a flag given twice takes its last value
		args := append(append([]string{"train", "--out", chunked, "--resume"}, resumeArgs...), bad...)
		code, _, e := fmgpu(t, append(args, "--steps", "400")...)
		if code != 2 || !strings.Contains(e, "differ") || strings.Contains(e, `"kind":`) {
			t.Errorf("resume with %v: exit %d, %q", bad, code, e)
		}
		if bad[1] == "vp" && !strings.Contains(e, "--path differs from the checkpoint's (checkpoint ot, flags vp)") {
			t.Errorf("resume with %v: %q names the paths otherwise", bad, e)
		}
	}
}

// Ctrl-C (SIGINT) or SIGTERM during training saves a checkpoint at the
// current step and exits with 130; resuming from it ends bit-identical to
// a straight run.
func TestInterruptSavesAndResumes(t *testing.T) {
	straight := t.TempDir()
	args := []string{"--data", "8gaussians", "--steps", "1500", "--batch", "256", "--hidden", "64,64",
		"--n-data", "3000", "--warmup", "20", "--log-every", "10", "--quiet", "--no-plot"}
	if code, _, e := fmgpu(t, append([]string{"train", "--out", straight}, args...)...); code != 0 {
		t.Fatal(e)
	}
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		dir := t.TempDir()
		cmd := fmgpuProcess(append([]string{"train", "--out", dir}, args...)...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitForFile(t, filepath.Join(dir, train.MetricsName))
		cmd.Process.Signal(sig)
		err := cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != ExitInterrupted {
			t.Fatalf("%v: exit %v, stderr %q", sig, err, stderr.String())
		}
		ck, err := train.Load(filepath.Join(dir, train.CheckpointName))
		if err != nil {
			t.Fatalf("%v: no usable checkpoint after the interrupt: %v", sig, err)
		}
		if ck.Meta.Step == 0 || ck.Meta.Step >= 1500 {
			t.Fatalf("%v: checkpoint at step %d", sig, ck.Meta.Step)
		}
		t.Logf("%v at step %d", sig, ck.Meta.Step)
		if code, _, e := fmgpu(t, append([]string{"train", "--out", dir, "--resume"}, args...)...); code != 0 {
			t.Fatal(e)
		}
		sameCheckpointTensors(t, filepath.Join(straight, train.CheckpointName), filepath.Join(dir, train.CheckpointName))
	}
}

func waitForFile(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(path); err == nil {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("%s did not appear", path)
}

// A process killed with SIGKILL at random moments, while it writes a
// checkpoint and the metrics at every step, leaves files that are each
// either the previous version or the new one, whole: every checkpoint
// loads, every metrics line parses, and no temporary file is left but the
// one being written at the instant of the kill.
func TestKillDuringWritesLeavesWholeFiles(t *testing.T) {
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(5, 6))
	args := []string{"train", "--out", dir, "--data", "moons", "--steps", "100000", "--batch", "32",
		"--hidden", "256,256", "--n-data", "1000", "--warmup", "1", "--checkpoint-every", "1", "--log-every", "1", "--quiet", "--no-plot"}
	for i := 0; i < 12; i++ {
		a := args
		if i > 0 {
			a = append(append([]string{}, args...), "--resume")
		}
		cmd := fmgpuProcess(a...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			waitForFile(t, filepath.Join(dir, train.CheckpointName))
		}
		time.Sleep(time.Duration(20+r.IntN(300)) * time.Millisecond)
		cmd.Process.Kill()
		cmd.Wait()
		ck, err := train.Load(filepath.Join(dir, train.CheckpointName))
		if err != nil {
			t.Fatalf("kill %d: the checkpoint does not load: %v", i, err)
		}
		metricTrace(t, dir) // fails the test on a torn line
		if tmp, _ := filepath.Glob(filepath.Join(dir, ".*")); len(tmp) > 2 {
			t.Errorf("kill %d: temporary files pile up: %v", i, tmp)
		}
		t.Logf("kill %d: checkpoint whole at step %d", i, ck.Meta.Step)
	}
}

// A non-finite loss stops training with an error naming the step and what
// to lower, keeps the last good checkpoint, and exits 1.
func TestNonFiniteLossStops(t *testing.T) {
	dir := t.TempDir()
	code, _, stderr := fmgpu(t, "train", "--out", dir, "--data", "moons", "--steps", "400", "--batch", "64",
		"--hidden", "32,32", "--n-data", "1000", "--warmup", "0", "--lr", "1e30", "--clip-grad", "0",
		"--checkpoint-every", "1", "--log-every", "1", "--quiet", "--no-plot")
	if code != ExitFailure || !strings.Contains(stderr, "non-finite") || !strings.Contains(stderr, "step ") || !strings.Contains(stderr, "--lr") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	ck, err := train.Load(filepath.Join(dir, train.CheckpointName))
	if err != nil {
		t.Fatalf("last good checkpoint: %v", err)
	}
	t.Logf("stopped: %s; kept checkpoint at step %d", strings.TrimSpace(stderr), ck.Meta.Step)
}

// An output directory that cannot be created is a clear error before any
// training, naming --out.
func TestUnwritableOutput(t *testing.T) {
	f := filepath.Join(t.TempDir(), "file")
	os.WriteFile(f, []byte("x"), 0o644)
	code, _, stderr := fmgpu(t, "train", "--out", filepath.Join(f, "sub"), "--data", "moons", "--steps", "10", "--warmup", "1", "--quiet")
	if code != ExitFailure || !strings.Contains(stderr, "--out") {
		t.Errorf("exit %d, %q", code, stderr)
	}
}

// Samples and likelihoods that come out non-finite are reported, and no
// file is written as if they were valid.
func TestNonFiniteOutputsNotWritten(t *testing.T) {
	dir := t.TempDir()
	ckPath := tinyTrain(t, dir, "--no-plot")
	ck, err := train.Load(ckPath)
	if err != nil {
		t.Fatal(err)
	}
	// weights of 1e30 overflow float32 activations to infinity
	for i := range ck.Params {
		ck.Params[i], ck.EMA[i] = 1e30, 1e30
	}
	tr, err := train.New(gpu.NewCPU(1), ck.Meta.Config, make([]float32, 2), 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Resume(ck); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.safetensors")
	if err := tr.Save(bad, ck.Meta.Standardization, ck.Meta.Data); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "s.npy")
	code, _, stderr := fmgpu(t, "sample", "--checkpoint", bad, "--n", "20", "--out", out, "--solver", "euler", "--steps", "4")
	if code != ExitFailure || !strings.Contains(stderr, "non-finite") {
		t.Errorf("sample: exit %d %q", code, stderr)
	}
	pts := filepath.Join(dir, "pts.csv")
	os.WriteFile(pts, []byte("0.5,0.25\n1,0\n"), 0o644)
	lout := filepath.Join(dir, "ll.npy")
	code, _, stderr = fmgpu(t, "likelihood", "--checkpoint", bad, "--data", pts, "--solver", "euler", "--steps", "4", "--out", lout)
	if code != ExitFailure || !strings.Contains(stderr, "non-finite") {
		t.Errorf("likelihood: exit %d %q", code, stderr)
	}
	for _, f := range []string{out, lout} {
		if _, err := os.Stat(f); err == nil {
			t.Errorf("%s written from non-finite results", f)
		}
	}
}

// A second Ctrl-C quits at once, and the last checkpoint on disk stays
// whole (every write is atomic, so whatever was interrupted is a temporary
// file).
func TestSecondInterruptQuitsAtOnce(t *testing.T) {
	for trial := 0; trial < 3; trial++ {
		dir := t.TempDir()
		cmd := fmgpuProcess("train", "--out", dir, "--data", "moons", "--steps", "100000", "--batch", "64",
			"--hidden", "256,256", "--n-data", "1000", "--warmup", "1", "--checkpoint-every", "1", "--log-every", "1", "--quiet", "--no-plot")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitForFile(t, filepath.Join(dir, train.CheckpointName))
		time.Sleep(time.Duration(10*trial) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGINT)
		cmd.Process.Signal(syscall.SIGINT)
		err := cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != ExitInterrupted {
			t.Fatalf("exit %v", err)
		}
		if _, err := train.Load(filepath.Join(dir, train.CheckpointName)); err != nil {
			t.Fatalf("checkpoint after a double interrupt: %v", err)
		}
	}
}

// A resumed run given some of its own network, path or time-sampling
// flags takes the rest of each from the checkpoint, not from the flags'
// defaults: it continues bit-identically, and a flag that differs is
// refused by name with both values.
func TestResumeWithSomeOfItsFlags(t *testing.T) {
	args := []string{"--data", "moons", "--n-data", "500", "--hidden", "8", "--batch", "32", "--path", "ve", "--sigma-max", "50",
		"--time-sampling", "logit-normal", "--logit-std", "0.5", "--time-freqs", "8", "--steps", "60", "--warmup", "5", "--quiet", "--no-plot"}
	straight, chunked := t.TempDir(), t.TempDir()
	if code, _, e := fmgpu(t, append([]string{"train", "--out", straight}, args...)...); code != 0 {
		t.Fatal(e)
	}
	if code, _, e := fmgpu(t, append([]string{"train", "--out", chunked, "--stop-after", "20"}, args...)...); code != 0 {
		t.Fatal(e)
	}
	for i, given := range [][]string{{"--sigma-max", "50"}, {"--logit-std", "0.5"}, {"--time-freqs", "8"}, {"--path", "ve"}, {"--hidden", "8"}, {"--time-sampling", "logit-normal"}} {
		resume := append([]string{"train", "--out", chunked, "--resume", "--quiet", "--no-plot", "--stop-after", strconv.Itoa(21 + i)}, given...)
		if code, _, e := fmgpu(t, resume...); code != 0 {
			t.Errorf("resume with %v: exit %d %q", given, code, e)
		}
	}
	for _, c := range []struct {
		given []string
		want  string
	}{
		{[]string{"--sigma-max", "40"}, "--sigma-max differs from the checkpoint's (checkpoint 50, flags 40)"},
		{[]string{"--time-freqs", "16"}, "the network differs from the checkpoint's (--time-freqs: checkpoint 8, flags 16)"},
		{[]string{"--logit-mean", "1"}, "--logit-mean differs from the checkpoint's (checkpoint 0, flags 1)"},
		{[]string{"--path", "ot"}, "--path differs from the checkpoint's (checkpoint ve, flags ot)"},
	} {
		code, _, e := fmgpu(t, append([]string{"train", "--out", chunked, "--resume", "--quiet", "--no-plot"}, c.given...)...)
		if code != ExitUsage || !strings.Contains(e, c.want) {
			t.Errorf("resume with %v: exit %d %q, want %q", c.given, code, e, c.want)
		}
	}
	if code, _, e := fmgpu(t, "train", "--out", chunked, "--resume", "--quiet", "--no-plot"); code != 0 {
		t.Fatal(e)
	}
	sameCheckpointTensors(t, filepath.Join(straight, train.CheckpointName), filepath.Join(chunked, train.CheckpointName))
	// elapsed_s goes on over the resumed runs
	ms, err := os.ReadFile(filepath.Join(chunked, train.MetricsName))
	if err != nil {
		t.Fatal(err)
	}
	last := -1.0
	for _, l := range strings.Split(strings.TrimSpace(string(ms)), "\n") {
		var m train.Metric
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		if m.Event != "" {
			continue
		}
		if m.ElapsedSec < last {
			t.Errorf("elapsed_s fell from %g to %g at step %d", last, m.ElapsedSec, m.Step)
		}
		last = m.ElapsedSec
	}
}

// samples.png and loss.png never show an earlier step than the checkpoint
// beside them: a resumed run that draws none (--no-plot) removes them, and
// says so; one that draws them writes them again.
func TestResumeRemovesOlderPlots(t *testing.T) {
	dir := t.TempDir()
	args := []string{"--data", "moons", "--batch", "64", "--hidden", "16,16", "--n-data", "500", "--warmup", "2", "--quiet"}
	plots := func() (n int) {
		for _, f := range []string{"samples.png", "loss.png"} {
			if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
				n++
			}
		}
		return n
	}
	if code, _, e := fmgpu(t, append([]string{"train", "--out", dir, "--steps", "10"}, args...)...); code != 0 || plots() != 2 {
		t.Fatalf("train: exit %d, %d of 2 plots, %q", code, plots(), e)
	}
	args[len(args)-1] = "--no-plot" // not --quiet: the note is on stderr
	code, _, e := fmgpu(t, append([]string{"train", "--out", dir, "--steps", "20", "--resume"}, args...)...)
	if code != 0 || plots() != 0 || !strings.Contains(e, "removed samples.png and loss.png, which showed an earlier step") {
		t.Errorf("resume --no-plot: exit %d, %d plots left, stderr %q", code, plots(), e)
	}
	args[len(args)-1] = "--quiet"
	if code, _, e := fmgpu(t, append([]string{"train", "--out", dir, "--steps", "30", "--resume"}, args...)...); code != 0 || plots() != 2 {
		t.Errorf("resume: exit %d, %d of 2 plots, %q", code, plots(), e)
	}
}

// A run that ends without its plots says how to draw its samples: a grid
// for images, points over the data for 2-D, nothing for 1-D data.
func TestDrawLater(t *testing.T) {
	img := &data.Dataset{D: 64, Image: &data.ImageInfo{Channels: 1, Height: 8, Width: 8}}
	for _, c := range []struct {
		ds   *data.Dataset
		want string
	}{
		{img, "; draw the samples with fmgpu sample --checkpoint r/c.safetensors --grid r/samples.png"},
		{&data.Dataset{D: 2}, "; draw the samples with fmgpu sample --checkpoint r/c.safetensors --out r/samples.npy --plot r/samples.png"},
		{&data.Dataset{D: 1}, ""},
	} {
		if got := drawLater("r", "r/c.safetensors", c.ds); got != c.want {
			t.Errorf("D %d: %q, want %q", c.ds.D, got, c.want)
		}
	}
}

// A resumed run logs and saves as the run began (--log-every,
// --checkpoint-every) unless told otherwise.
func TestResumeKeepsSchedule(t *testing.T) {
	dir := t.TempDir()
	args := []string{"train", "--out", dir, "--data", "moons", "--n-data", "300", "--hidden", "8", "--batch", "16",
		"--steps", "40", "--warmup", "2", "--quiet", "--no-plot"}
	if code, _, e := fmgpu(t, append(args, "--log-every", "5", "--checkpoint-every", "10", "--stop-after", "20")...); code != 0 {
		t.Fatal(e)
	}
	if code, _, e := fmgpu(t, "train", "--out", dir, "--resume", "--quiet", "--no-plot", "--stop-after", "30"); code != 0 {
		t.Fatal(e)
	}
	ck, err := train.Load(filepath.Join(dir, train.CheckpointName))
	if err != nil {
		t.Fatal(err)
	}
	if s := ck.Meta.Schedule; s == nil || *s != (train.ScheduleInfo{LogEvery: 5, CheckpointEvery: 10}) {
		t.Errorf("resumed run's schedule %+v, want log every 5, checkpoint every 10", s)
	}
	if code, _, e := fmgpu(t, "train", "--out", dir, "--resume", "--quiet", "--no-plot", "--log-every", "10"); code != 0 {
		t.Fatal(e)
	}
	ms, err := os.ReadFile(filepath.Join(dir, train.MetricsName))
	if err != nil {
		t.Fatal(err)
	}
	var steps []int
	for _, l := range strings.Split(strings.TrimSpace(string(ms)), "\n") {
		var m train.Metric
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		if m.Event == "" {
			steps = append(steps, m.Step)
		}
	}
	if want := []int{5, 10, 15, 20, 25, 30, 40}; fmt.Sprint(steps) != fmt.Sprint(want) {
		t.Errorf("metrics at steps %v, want %v", steps, want)
	}
}
