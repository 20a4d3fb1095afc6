package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/fmgpu/fmgpu/data"
	"github.com/fmgpu/fmgpu/flow"
	"github.com/fmgpu/fmgpu/gpu"
	"github.com/fmgpu/fmgpu/train"
)

// fmgpu runs the command line in-process and returns its exit code and
// outputs.
func fmgpu(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), append([]string{"fmgpu"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

// tinyTrain trains a small model quickly; it is the fixture of the
// sample and likelihood tests.
func tinyTrain(t *testing.T, dir string, extra ...string) string {
	t.Helper()
	args := append([]string{"train", "--data", "moons", "--out", dir, "--steps", "60", "--batch", "64",
		"--hidden", "16,16", "--n-data", "2000", "--warmup", "5", "--log-every", "20", "--quiet"}, extra...)
	code, _, stderr := fmgpu(t, args...)
	if code != 0 {
		t.Fatalf("train exit %d: %s", code, stderr)
	}
	return filepath.Join(dir, train.CheckpointName)
}

func TestTrainSampleLikelihood(t *testing.T) {
	dir := t.TempDir()
	ck := tinyTrain(t, dir)
	for _, f := range []string{"checkpoint.safetensors", "metrics.jsonl", "samples.png", "loss.png"} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Size() == 0 {
			t.Errorf("train did not write %s: %v", f, err)
		}
	}
	raw, _ := os.ReadFile(filepath.Join(dir, "metrics.jsonl"))
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	if len(lines) != 3 { // steps 20, 40, 60
		t.Errorf("metrics.jsonl has %d lines, want 3", len(lines))
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"step", "loss", "lr", "grad_norm", "steps_per_s"} {
		if _, ok := m[k]; !ok {
			t.Errorf("metrics line lacks %q: %s", k, lines[0])
		}
	}

	out := filepath.Join(dir, "s.npy")
	traj := filepath.Join(dir, "traj.npy")
	code, stdout, stderr := fmgpu(t, "sample", "--checkpoint", ck, "--n", "300", "--out", out, "--solver", "euler", "--steps", "10", "--trajectory", traj)
	if code != 0 {
		t.Fatalf("sample exit %d: %s", code, stderr)
	}
	ds, err := data.LoadNPY(out)
	if err != nil || ds.N != 300 || ds.D != 2 {
		t.Fatalf("samples: %v %+v", err, ds)
	}
	if !strings.Contains(stdout, "wrote 300 samples") || !strings.Contains(stdout, "wrote the trajectories of 300 samples (11 states each, the noise first) to "+traj) {
		t.Errorf("sample output %q", stdout)
	}
	st, err := os.Stat(traj)
	if err != nil || st.Size() != 128+11*300*2*4 { // header + (steps+1) x n x D float32
		t.Errorf("trajectory size %v, %v", st, err)
	}
	// the trajectory's last frame is the samples
	rawT, _ := os.ReadFile(traj)
	rawS, _ := os.ReadFile(out)
	if !bytes.Equal(rawT[len(rawT)-300*2*4:], rawS[len(rawS)-300*2*4:]) {
		t.Error("the last trajectory frame differs from the samples")
	}

	csv := filepath.Join(dir, "s.csv")
	if code, _, stderr := fmgpu(t, "sample", "--checkpoint", ck, "--n", "50", "--out", csv, "--solver", "dopri5"); code != 0 {
		t.Fatalf("sample csv exit %d: %s", code, stderr)
	}
	if ds, err := data.LoadCSV(csv); err != nil || ds.N != 50 {
		t.Fatalf("csv samples: %v", err)
	}

	lout := filepath.Join(dir, "ll.npy")
	code, stdout, stderr = fmgpu(t, "likelihood", "--checkpoint", ck, "--data", out, "--solver", "rk4", "--steps", "20", "--out", lout)
	if code != 0 {
		t.Fatalf("likelihood exit %d: %s", code, stderr)
	}
	ls := strings.Split(strings.TrimSpace(stdout), "\n")
	last := ls[len(ls)-1]
	if !strings.HasPrefix(last, "nll_nats=") || !strings.Contains(last, " bits_per_dim=") {
		t.Errorf("likelihood last line %q", last)
	}
	if ll, err := data.LoadNPY(lout); err != nil || ll.N != 300 || ll.D != 1 {
		t.Errorf("per-point log-likelihoods: %v", err)
	}
	code, stdout, _ = fmgpu(t, "likelihood", "--checkpoint", ck, "--data", out, "--divergence", "hutchinson", "--probes", "2", "--solver", "rk4", "--steps", "10")
	if code != 0 || !strings.Contains(stdout, "nll_nats=") {
		t.Errorf("hutchinson likelihood exit %d: %s", code, stdout)
	}

	code, stdout, _ = fmgpu(t, "info", "--checkpoint", ck)
	if code != 0 || !strings.Contains(stdout, gpu.Flavor+" build") || !strings.Contains(stdout, "layers.0.weight") {
		t.Errorf("info: %d %s", code, stdout)
	}
}

// docs/math.md's test vector through the CLI.
func TestPathCommand(t *testing.T) {
	code, stdout, stderr := fmgpu(t, "path", "--path", "linear-vp", "--t", "0.6", "--x0", "0.5", "--x1", "1")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var r struct {
		Path  string
		T     float64
		Mu    []float64
		Sigma float64
		Xt    []float64
		Ut    []float64
	}
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatal(err)
	}
	if r.Path != "linear-vp" || r.T != 0.6 || len(r.Xt) != 1 || abs(r.Xt[0]-1) > 1e-12 || abs(r.Ut[0]-0.625) > 1e-12 || abs(r.Sigma-0.8) > 1e-12 {
		t.Errorf("path output %s", stdout)
	}
	code, stdout, _ = fmgpu(t, "path", "--path", "vp", "--t", "0.6", "--x0", "0.5,0", "--x1", "1,2")
	if code != 0 || !strings.Contains(stdout, "1.34276111") {
		t.Errorf("vp path: %d %s", code, stdout)
	}
}

func abs(v float64) float64 {
	if v < 0 {
		return -v
	}
	return v
}

// Bad input: exit code 2 for usage, 1 for failures, one line on stderr
// naming the flag or file, and no output file left behind.
func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.npy")
	os.WriteFile(bad, []byte("\x93NUMPY\x01\x00garbage"), 0o644)
	notCk := filepath.Join(dir, "not.safetensors")
	os.WriteFile(notCk, []byte("{}"), 0o644)
	// a run of the constant schedule, which a resumed --min-lr-frac cannot change
	if code, _, e := fmgpu(t, "train", "--data", "moons", "--n-data", "200", "--hidden", "8", "--steps", "20", "--schedule", "constant",
		"--out", filepath.Join(dir, "constant"), "--quiet", "--no-plot"); code != 0 {
		t.Fatal(e)
	}
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"train", "--data", "moons"}, 2, "out"},
		{[]string{"train", "--data", "nosuchset", "--out", dir + "/a"}, 2, "nosuchset"},
		{[]string{"train", "--data", bad, "--out", dir + "/b"}, 2, "bad.npy"},
		{[]string{"train", "--data", "moons", "--out", dir + "/c", "--path", "warp"}, 2, "--path"},
		{[]string{"train", "--data", "moons", "--out", dir + "/d", "--hidden", "256,x"}, 2, "--hidden"},
		{[]string{"train", "--data", "moons", "--out", dir + "/e", "--lr", "-1"}, 2, "--lr"},
		{[]string{"train", "--data", "moons", "--out", dir + "/f", "--beta-min", "1"}, 2, "--beta-min"},
		{[]string{"train", "--data", "moons", "--out", dir + "/g", "--device", "tpu"}, 2, "--device"},
		{[]string{"train", "--data", "moons", "--out", dir + "/g2", "--device", ""}, 2, `--device "": want auto, cpu or cuda`},
		{[]string{"train", "--data", "moons", "--out", dir + "/h", "--steps", "abc"}, 2, "for flag --steps"},
		{[]string{"train", "--nosuchflag"}, 2, "flag provided but not defined: --nosuchflag"},
		{[]string{"train", "--data", "moons", "--out", dir + "/i", "--channels", "3"}, 2, "--image-size, --channels and --data-dir apply to image data, not moons"},
		{[]string{"train", "--data", "moons", "--out", dir + "/j", "--schedule", "constant", "--min-lr-frac", "0.5"}, 2, "--min-lr-frac applies to the cosine schedule only"},
		{[]string{"train", "--out", dir + "/constant", "--resume", "--steps", "40", "--min-lr-frac", "0.2"}, 2, "--min-lr-frac applies to the cosine schedule only (this run's is constant)"},
		// a resumed run's data is the checkpoint's: the same flags refused
		{[]string{"train", "--out", dir + "/constant", "--resume", "--steps", "40", "--delimiter", ";"}, 2, "--delimiter applies to a .csv file, not --data moons"},
		{[]string{"train", "--out", dir + "/constant", "--resume", "--steps", "40", "--image-size", "8"}, 2, "--image-size, --channels and --data-dir apply to image data, not moons"},
		{[]string{"train", "--data", imageFolder(t), "--data-dir", dir, "--out", dir + "/k"}, 2, "--data-dir applies to --data mnist, fashion-mnist or cifar10, not the folder"},
		{[]string{"sample", "--checkpoint", notCk, "--n", "10", "--out", dir + "/x.npy"}, 1, "not.safetensors"},
		{[]string{"sample", "--checkpoint", dir + "/missing.safetensors", "--n", "10", "--out", dir + "/y.npy"}, 1, "missing.safetensors"},
		{[]string{"sample", "--checkpoint", notCk, "--n", "10", "--out", dir + "/x.txt"}, 2, "--out"},
		{[]string{"sample", "--checkpoint", notCk, "--n", "0", "--out", dir + "/x.npy"}, 2, "--n"},
		{[]string{"sample", "--checkpoint", notCk, "--n", "5", "--out", dir + "/x.npy", "--solver", "leapfrog"}, 2, "--solver"},
		{[]string{"likelihood", "--checkpoint", notCk, "--data", bad}, 2, "bad.npy"},
		{[]string{"path", "--path", "ot", "--t", "2", "--x0", "0", "--x1", "1"}, 2, "--t"},
		{[]string{"path", "--path", "ot", "--t", "0.5", "--x0", "0,1", "--x1", "1"}, 2, "--x0"},
		{[]string{"bench", "--workload", "nope"}, 2, "--workload"},
	}
	for _, c := range cases {
		code, _, stderr := fmgpu(t, c.args...)
		msg := strings.TrimSpace(stderr)
		if code != c.code || !strings.Contains(msg, c.want) || strings.Count(msg, "\n") > 0 && c.code != 2 {
			t.Errorf("%v: exit %d, stderr %q; want exit %d mentioning %q", c.args, code, msg, c.code, c.want)
		}
		if strings.Contains(stderr, "panic") || strings.Contains(stderr, "goroutine") {
			t.Errorf("%v panicked: %s", c.args, stderr)
		}
	}
	for _, f := range []string{"x.npy", "y.npy", "x.txt"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			t.Errorf("a failed command left %s behind", f)
		}
	}
}

// A second train into the same directory must not silently overwrite the
// first run; --resume continues it; contradicting flags are an error.
func TestResumeThroughCLI(t *testing.T) {
	dir := t.TempDir()
	ck := tinyTrain(t, dir)
	code, _, stderr := fmgpu(t, "train", "--data", "moons", "--out", dir, "--steps", "60", "--warmup", "5", "--quiet")
	if code != 2 || !strings.Contains(stderr, "--resume") {
		t.Errorf("second train into the same directory: exit %d %q", code, stderr)
	}
	code, _, stderr = fmgpu(t, "train", "--data", "moons", "--out", dir, "--steps", "80", "--batch", "64",
		"--hidden", "32,32", "--n-data", "2000", "--warmup", "5", "--resume", "--quiet")
	if code != 2 || !strings.Contains(stderr, "network differs") {
		t.Errorf("resume with another network: exit %d %q", code, stderr)
	}
	_ = ck
}

// bench prints the line scripts/bench-vs-torch.sh parses, with a loss on
// the peer's per-element scale (8gaussians starts near 3 and falls).
func TestBenchCommand(t *testing.T) {
	code, stdout, stderr := fmgpu(t, "bench", "--workload", "mlp256-b256", "--steps", "40")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	fields := map[string]string{}
	for _, f := range strings.Fields(strings.TrimSpace(stdout)) {
		if k, v, ok := strings.Cut(f, "="); ok {
			fields[k] = v
		}
	}
	if fields["workload"] != "mlp256-b256" || fields["device"] == "" {
		t.Fatalf("bench line %q", stdout)
	}
	want := map[string][2]float64{"steps_per_s": {1e-3, 1e7}, "loss_mean": {0.5, 6}, "allocs_per_step": {0, 1e6}}
	if fields["device"] != "cpu" { // the kernelsim build's default device counts launches
		want["launches_per_step"] = [2]float64{1, 1000}
	}
	for k, lim := range want {
		v, err := strconv.ParseFloat(fields[k], 64)
		if err != nil || !(v >= lim[0] && v <= lim[1]) {
			t.Errorf("%s=%q, want a number in [%g, %g]", k, fields[k], lim[0], lim[1])
		}
	}
}

// info names the settings its first line leaves out when a run set them
// (the time shift also applies when sampling), and adds nothing otherwise.
func TestInfoTrainingSettings(t *testing.T) {
	var m train.Meta
	m.Config.Time = flow.DefaultTimeSampler(flow.TimeUniform)
	if s := trainingSettings(m); s != "" {
		t.Errorf("defaults: %q", s)
	}
	m.Config.Time = flow.TimeSampler{Kind: flow.TimeLogitNormal, Mean: 0.5, Std: 1.2, Shift: 3}
	m.Config.Precision = gpu.PrecisionTF32x3
	m.Parallel = &train.ParallelInfo{Engine: "mpi", WorldSize: 2}
	want := "training: time logit-normal mean 0.5, std 1.2, time shift 3 (training and sampling), precision tf32x3, trained on 2 ranks (mpi)"
	if s := trainingSettings(m); s != want {
		t.Errorf("got  %q\nwant %q", s, want)
	}
	if s := classLine([]string{"cat", "dog"}); s != "classes (sample --class): 0 cat, 1 dog" {
		t.Errorf("classes: %q", s)
	}
	if s := classLine(nil); s != "" {
		t.Errorf("no class names: %q", s)
	}
}
