package cli

// The command line as a demanding newcomer meets it (issue 12): data names,
// resume provenance, outputs checked first, NFE, defaults, ignored input,
// messages, help. Signals and the --out lock are in signals_test.go,
// progress in progress_test.go.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fmgpu/fmgpu/train"
)

// cpuRun is fmgpu on the CPU backend for the commands that take --device:
// these tests are of the command line, and in a kernelsim build the
// default device runs every GPU thread on the CPU, slowly. The device
// path through the command line is tested by cli_test.go and
// reliability_test.go.
func cpuRun(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	if len(args) > 0 && !slices.Contains(args, "--help") {
		switch args[0] {
		case "train", "sample", "likelihood", "bench":
			args = append(slices.Clone(args), "--device", "cpu")
		}
	}
	return fmgpu(t, args...)
}

// quickTrain is tinyTrain's configuration for runs the tests change.
var quickTrain = []string{"--steps", "60", "--batch", "64", "--hidden", "16,16", "--n-data", "2000", "--log-every", "20", "--no-plot"}

// A directory named like a built-in set does not replace it (item 1): the
// second run of `--data moons --out moons` trains on moons again, not on
// the first run's pictures. ./moons is the directory; a run's folder is
// never image data; --out inside an image --data is refused.
func TestBuiltinNameBeatsDirectory(t *testing.T) {
	t.Chdir(t.TempDir())
	args := append([]string{"train", "--data", "moons", "--out", "moons", "--warmup", "5"}, quickTrain...)
	args[len(args)-1] = "--quiet" // draw the plots: the PNGs that used to become images
	if code, _, e := cpuRun(t, args...); code != 0 {
		t.Fatalf("first run: %s", e)
	}
	code, _, e := cpuRun(t, append([]string{"train", "--data", "moons", "--out", "moons_v2", "--warmup", "5"}, quickTrain...)...)
	if code != 0 || !strings.Contains(e, "mlp, 2000 x 2 data from moons") {
		t.Errorf("second run: exit %d, %q", code, e)
	}
	ck, err := train.Load(filepath.Join("moons_v2", train.CheckpointName))
	if err != nil || ck.Meta.Config.Model.Kind != "mlp" || ck.Meta.Data.Dim != 2 {
		t.Fatalf("second run's checkpoint: %v", err)
	}
	// ./moons is the directory, which holds a checkpoint: not image data
	code, _, e = cpuRun(t, "train", "--data", "./moons", "--out", "x", "--steps", "5", "--quiet")
	if code != ExitUsage || !strings.Contains(e, "holds a checkpoint") {
		t.Errorf("--data ./moons: exit %d %q", code, e)
	}
	imgs := imageFolder(t)
	code, _, e = cpuRun(t, "train", "--data", imgs, "--out", filepath.Join(imgs, "run"), "--steps", "5", "--quiet")
	if code != ExitUsage || !strings.Contains(e, "inside --data") {
		t.Errorf("--out inside --data: exit %d %q", code, e)
	}
	if _, err := os.Stat(filepath.Join(imgs, "run")); err == nil {
		t.Error("the refused run created its --out inside --data")
	}
}

// --resume continues exactly or says why not (item 3): another source,
// other --n-data, other contents are refused naming the flag; flags not
// given take the checkpoint's values; an allowed change is noted in
// metrics.jsonl.
func TestResumeProvenance(t *testing.T) {
	dir := t.TempDir()
	base := []string{"--data", "moons", "--steps", "300", "--batch", "64", "--hidden", "32,32", "--n-data", "3000",
		"--lr", "1e-3", "--warmup", "20", "--log-every", "50", "--quiet", "--no-plot", "--seed", "7"}
	if code, _, e := cpuRun(t, append([]string{"train", "--out", dir, "--stop-after", "100"}, base...)...); code != 0 {
		t.Fatal(e)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--data", "8gaussians"}, "--data differs"},
		{[]string{"--n-data", "2500"}, "--n-data differs"},
		{[]string{"--seed", "8"}, "--seed differs"},
		{[]string{"--batch", "32"}, "--batch differs"},
		{[]string{"--optimizer", "adamw"}, "--optimizer differs"},
		{[]string{"--time-freqs", "8"}, "network differs"},
	} {
		code, _, e := cpuRun(t, append([]string{"train", "--out", dir, "--resume"}, c.args...)...)
		if code != ExitUsage || !strings.Contains(e, c.want) {
			t.Errorf("resume with %v: exit %d %q, want %q", c.args, code, e, c.want)
		}
	}
	// nothing but --resume: every setting from the checkpoint, which ends
	// where a straight run ends
	straight := t.TempDir()
	if code, _, e := cpuRun(t, append([]string{"train", "--out", straight}, base...)...); code != 0 {
		t.Fatal(e)
	}
	if code, _, e := cpuRun(t, "train", "--out", dir, "--resume", "--quiet", "--no-plot", "--stop-after", "200"); code != 0 {
		t.Fatalf("bare --resume: %s", e)
	}
	// an allowed change: noted where the run resumed
	if code, _, e := cpuRun(t, "train", "--out", dir, "--resume", "--quiet", "--no-plot", "--steps", "300"); code != 0 {
		t.Fatalf("resume with the same --steps: %s", e)
	}
	sameCheckpointTensors(t, filepath.Join(straight, train.CheckpointName), filepath.Join(dir, train.CheckpointName))
	if code, _, e := cpuRun(t, "train", "--out", dir, "--resume", "--quiet", "--no-plot", "--steps", "350", "--lr", "5e-4"); code != 0 {
		t.Fatalf("resume with a new --lr: %s", e)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, train.MetricsName))
	if !strings.Contains(string(raw), `{"changed":{"lr":[0.001,0.0005],"steps":[300,350]},"event":"resume","step":300}`) {
		t.Errorf("metrics.jsonl does not note the change:\n%s", raw)
	}

	// a file whose contents changed under the same name
	csvDir := t.TempDir()
	pts := filepath.Join(csvDir, "pts.csv")
	var b strings.Builder
	for i := range 200 {
		b.WriteString(strings.Repeat("0.", 1) + string(rune('1'+i%9)) + "," + string(rune('1'+i%7)) + "\n")
	}
	os.WriteFile(pts, []byte(b.String()), 0o644)
	out := filepath.Join(csvDir, "run")
	small := []string{"--steps", "40", "--batch", "16", "--hidden", "8", "--warmup", "2", "--quiet", "--no-plot"}
	if code, _, e := cpuRun(t, append([]string{"train", "--data", pts, "--out", out, "--stop-after", "20"}, small...)...); code != 0 {
		t.Fatal(e)
	}
	os.WriteFile(pts, []byte(strings.Replace(b.String(), "0.1,", "0.2,", 1)), 0o644)
	code, _, e := cpuRun(t, append([]string{"train", "--data", pts, "--out", out, "--resume"}, small...)...)
	if code != ExitUsage || !strings.Contains(e, "other values") {
		t.Errorf("resume on a changed file: exit %d %q", code, e)
	}
	// what may change is in the help
	_, help, _ := cpuRun(t, "train", "--help")
	if !strings.Contains(help, "--steps, --lr, --warmup") || !strings.Contains(help, "may be changed") {
		t.Errorf("train --help does not say what --resume may change")
	}
}

// Output sizes are checked before allocating, with a one-line usage error,
// never a panic (item 4); a panic exits 1, not 2.
func TestTrajectorySizeChecked(t *testing.T) {
	dir := t.TempDir()
	ck := tinyTrain(t, dir, "--no-plot", "--device", "cpu")
	start := time.Now()
	code, _, e := cpuRun(t, "sample", "--checkpoint", ck, "--n", "10000000", "--steps", "100000", "--solver", "euler",
		"--out", filepath.Join(dir, "s.npy"), "--trajectory", filepath.Join(dir, "t.npy"))
	if code != ExitUsage || !strings.Contains(e, "--trajectory") || strings.Count(strings.TrimSpace(e), "\n") > 0 || strings.Contains(e, "panic") {
		t.Errorf("huge trajectory: exit %d %q", code, e)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("the size check took %v", el)
	}
	var buf bytes.Buffer
	code = func() (code int) {
		defer recoverPanic(&buf, &code)
		panic("makeslice: len out of range")
	}()
	if code != ExitFailure || !strings.Contains(buf.String(), "internal error") {
		t.Errorf("a panic: exit %d %q", code, buf.String())
	}
}

// Outputs are validated before the work (item 5): a missing directory,
// --plot on 1-D data, and an output named twice fail at once, with
// nothing written.
func TestOutputsCheckedBeforeWork(t *testing.T) {
	dir := t.TempDir()
	ck := tinyTrain(t, dir, "--no-plot", "--device", "cpu")
	big := []string{"--n", "5000000", "--solver", "euler", "--steps", "1000"}
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--out", filepath.Join(dir, "missing", "s.npy")}, ExitFailure, "--out"},
		{[]string{"--out", filepath.Join(dir, "s.npy"), "--plot", filepath.Join(dir, "missing", "p.png")}, ExitFailure, "--plot"},
		{[]string{"--out", filepath.Join(dir, "s.npy"), "--trajectory", filepath.Join(dir, "s.npy")}, ExitUsage, "same file"},
		{[]string{"--out", dir}, ExitUsage, "--out"},
	} {
		start := time.Now()
		code, _, e := cpuRun(t, append(append([]string{"sample", "--checkpoint", ck}, big...), c.args...)...)
		if code != c.code || !strings.Contains(e, c.want) || time.Since(start) > 5*time.Second {
			t.Errorf("%v: exit %d %q after %v", c.args, code, e, time.Since(start))
		}
	}
	code, _, e := cpuRun(t, "likelihood", "--checkpoint", ck, "--data", "moons", "--out", filepath.Join(dir, "no", "ll.npy"))
	if code != ExitFailure || !strings.Contains(e, "--out") {
		t.Errorf("likelihood to a missing directory: exit %d %q", code, e)
	}
	// --out naming the scored file itself, by its name or through a link
	pts := filepath.Join(dir, "pts.csv")
	os.WriteFile(pts, []byte("0.5,0.25\n1,-0.5\n"), 0o644)
	link := filepath.Join(dir, "link.csv")
	if err := os.Symlink(pts, link); err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{pts, link} {
		code, _, e := cpuRun(t, "likelihood", "--checkpoint", ck, "--data", pts, "--out", out)
		if b, _ := os.ReadFile(pts); code != ExitUsage || !strings.Contains(e, "--out "+out+" is the file --data reads") || string(b) != "0.5,0.25\n1,-0.5\n" {
			t.Errorf("likelihood --out %s over its --data: exit %d %q, the data now %q", out, code, e, b)
		}
	}
	// --plot on a model of 1-D data, refused before the .npy is written
	one := filepath.Join(dir, "one.csv")
	var b strings.Builder
	for i := range 100 {
		b.WriteString(strings.Repeat("1", 1+i%3) + "\n")
	}
	os.WriteFile(one, []byte(b.String()), 0o644)
	ck1 := filepath.Join(dir, "one")
	if code, _, e := cpuRun(t, "train", "--data", one, "--out", ck1, "--steps", "5", "--hidden", "4", "--quiet", "--no-plot"); code != 0 {
		t.Fatal(e)
	}
	npy := filepath.Join(dir, "one.npy")
	code, _, e = cpuRun(t, "sample", "--checkpoint", filepath.Join(ck1, train.CheckpointName), "--out", npy, "--plot", filepath.Join(dir, "p.png"))
	if code != ExitUsage || !strings.Contains(e, "--plot") {
		t.Errorf("--plot on 1-D: exit %d %q", code, e)
	}
	if _, err := os.Stat(npy); err == nil {
		t.Error("the .npy was written before --plot was refused")
	}
}

// NFE is the solver's per trajectory, whatever the number of chunks
// (item 6).
func TestNFEPerTrajectory(t *testing.T) {
	dir := t.TempDir()
	ck := tinyTrain(t, dir, "--no-plot", "--device", "cpu")
	_, out, e := cpuRun(t, "sample", "--checkpoint", ck, "--n", "32769", "--solver", "euler", "--steps", "10", "--out", filepath.Join(dir, "s.npy"))
	if !strings.Contains(out, "NFE 10 per sample; 20 in all over 2 chunks") {
		t.Errorf("sample over two chunks: %q %q", out, e)
	}
	_, out, _ = cpuRun(t, "sample", "--checkpoint", ck, "--n", "100", "--solver", "rk4", "--steps", "5", "--out", filepath.Join(dir, "s.npy"))
	if !strings.Contains(out, "NFE 20 per sample,") {
		t.Errorf("sample in one chunk: %q", out)
	}
	_, out, e = cpuRun(t, "likelihood", "--checkpoint", ck, "--data", "moons", "--n-data", "16385", "--solver", "euler", "--steps", "3")
	if !strings.Contains(out, "nfe=3 nfe_total=6 ") {
		t.Errorf("likelihood over two chunks: %q %q", out, e)
	}
}

// A corrupted optimizer state does not load, and a diverging run's
// message says what is true: clipping is on by default, and whether a
// checkpoint was kept (item 7).
func TestOptimizerStateAndNonFiniteMessage(t *testing.T) {
	dir := t.TempDir()
	code, _, e := cpuRun(t, "train", "--out", dir, "--data", "moons", "--steps", "400", "--batch", "64", "--hidden", "32,32",
		"--n-data", "1000", "--warmup", "0", "--lr", "1e30", "--log-every", "1", "--quiet", "--no-plot")
	if code != ExitFailure || !strings.Contains(e, "clipped at norm 1 already") || !strings.Contains(e, "no checkpoint was written") || strings.Contains(e, "set --clip-grad") {
		t.Errorf("diverged with clipping on, no checkpoint: exit %d %q", code, e)
	}
	dir = t.TempDir()
	code, _, e = cpuRun(t, "train", "--out", dir, "--data", "moons", "--steps", "400", "--batch", "64", "--hidden", "32,32",
		"--n-data", "1000", "--warmup", "0", "--lr", "1e30", "--clip-grad", "0", "--checkpoint-every", "1", "--log-every", "1", "--quiet", "--no-plot")
	if code != ExitFailure || !strings.Contains(e, "set --clip-grad") || !strings.Contains(e, "of step ") || !strings.Contains(e, "is kept") {
		t.Errorf("diverged with clipping off: exit %d %q", code, e)
	}

	// negative second moments
	dir = t.TempDir()
	ckPath := tinyTrain(t, dir, "--no-plot", "--stop-after", "30", "--device", "cpu")
	ck, err := train.Load(ckPath)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(ckPath)
	// flip the sign bit of the first exp_avg_sq value in place: find it
	// through the safetensors header
	hlen := int(raw[0]) | int(raw[1])<<8 | int(raw[2])<<16 | int(raw[3])<<24
	var hdr map[string]json.RawMessage
	json.Unmarshal(raw[8:8+hlen], &hdr)
	var ent struct {
		DataOffsets [2]int `json:"data_offsets"`
	}
	name := "optim.exp_avg_sq." + ck.Tensors[0].Name
	json.Unmarshal(hdr[name], &ent)
	copy(raw[8+hlen+ent.DataOffsets[0]:], []byte{0, 0, 0x80, 0xbf}) // float32 -1
	os.WriteFile(ckPath, raw, 0o644)
	code, _, e = cpuRun(t, "train", "--out", dir, "--resume", "--quiet", "--no-plot")
	if code != ExitFailure || !strings.Contains(e, "negative second moment") || !strings.Contains(e, name) {
		t.Errorf("resume from negative moments: exit %d %q", code, e)
	}
}

// The default warm-up scales with the run; only an explicit --warmup
// longer than --steps is an error; --steps 0 and -1 name --steps (item 9).
func TestWarmupDefault(t *testing.T) {
	dir := t.TempDir()
	code, _, e := cpuRun(t, "train", "--data", "moons", "--out", dir, "--steps", "100", "--hidden", "8", "--n-data", "500", "--quiet", "--no-plot")
	if code != 0 {
		t.Fatalf("--steps 100: %s", e)
	}
	ck, _ := train.Load(filepath.Join(dir, train.CheckpointName))
	if w := ck.Meta.Config.Warmup; w != 20 {
		t.Errorf("--steps 100 warmed up over %d steps, want 20", w)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--steps", "30", "--warmup", "50"}, "--warmup 50 exceeds --steps 30"},
		{[]string{"--steps", "0"}, "--steps 0"},
		{[]string{"--steps", "-1"}, "--steps -1"},
	} {
		code, _, e := cpuRun(t, append([]string{"train", "--data", "moons", "--out", t.TempDir(), "--quiet"}, c.args...)...)
		if code != ExitUsage || !strings.Contains(e, c.want) || strings.Contains(e, "--warmup 200") {
			t.Errorf("%v: exit %d %q", c.args, code, e)
		}
	}
	// a resumed run keeps its warm-up (200 steps of 1000): shortened
	// below it, it ends still warming up, and says so
	run := t.TempDir()
	if code, _, e := cpuRun(t, "train", "--data", "moons", "--out", run, "--steps", "1000", "--stop-after", "100", "--hidden", "8", "--n-data", "500", "--quiet", "--no-plot"); code != 0 {
		t.Fatal(e)
	}
	code, _, e = cpuRun(t, "train", "--out", run, "--resume", "--steps", "150", "--quiet", "--no-plot")
	if code != 0 || !strings.Contains(e, "note: --steps 150 ends the run during its warm-up of 200 steps") {
		t.Errorf("resumed with --steps 150: exit %d %q", code, e)
	}
}

// The logged loss is per element, the sum beside it (item 10).
func TestLossPerElement(t *testing.T) {
	dir := t.TempDir()
	cube := filepath.Join(dir, "cube.csv")
	var b strings.Builder
	for i := range 300 {
		b.WriteString(strings.Join([]string{string(rune('0' + i%10)), string(rune('0' + i%7)), string(rune('0' + i%3))}, ",") + "\n")
	}
	os.WriteFile(cube, []byte(b.String()), 0o644)
	out := filepath.Join(dir, "run")
	if code, _, e := cpuRun(t, "train", "--data", cube, "--out", out, "--steps", "40", "--hidden", "8", "--log-every", "10", "--quiet", "--no-plot"); code != 0 {
		t.Fatal(e)
	}
	f, _ := os.Open(filepath.Join(out, train.MetricsName))
	defer f.Close()
	sc := bufio.NewScanner(f)
	lines := 0
	for sc.Scan() {
		var m struct{ Loss, LossSum float64 }
		var raw map[string]float64
		json.Unmarshal(sc.Bytes(), &raw)
		m.Loss, m.LossSum = raw["loss"], raw["loss_sum"]
		if !(m.Loss > 0) || abs(m.LossSum-3*m.Loss) > 1e-9*m.LossSum {
			t.Errorf("line %s: want loss_sum = 3 x loss", sc.Text())
		}
		lines++
	}
	if lines != 4 {
		t.Errorf("%d metrics lines", lines)
	}
	readme, _ := os.ReadFile("../../README.md")
	if !strings.Contains(string(readme), "per element") || !strings.Contains(string(readme), "loss_sum") {
		t.Error("README does not say the loss is per element")
	}
}

// Input that would be accepted and ignored is an error naming the flag,
// or does what it says (item 11).
func TestIgnoredInputRefused(t *testing.T) {
	dir := t.TempDir()
	ck := tinyTrain(t, dir, "--no-plot", "--device", "cpu")
	noEMA := filepath.Join(t.TempDir(), "noema")
	tinyTrain(t, noEMA, "--no-plot", "--ema", "0", "--device", "cpu")
	imgs := imageFolder(t)
	npy := filepath.Join(dir, "s.npy")
	if code, _, e := cpuRun(t, "sample", "--checkpoint", ck, "--n", "50", "--out", npy); code != 0 {
		t.Fatal(e)
	}
	out := func() string { return filepath.Join(t.TempDir(), "o") }
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"train", "--data", "moons", "--out", out(), "extra"}, `unexpected argument "extra"`},
		{[]string{"sample", "--checkpoint", ck, "--out", npy, "--n", "5", "1000"}, `unexpected argument "1000"`},
		{[]string{"train", "--data", "moons", "--out", out(), "--base", "16"}, "--base applies to --model unet"},
		{[]string{"train", "--data", imgs, "--out", out(), "--hidden", "64"}, "--hidden applies to --model mlp"},
		{[]string{"train", "--data", "moons", "--out", out(), "--class-dropout", "0.2"}, "--class-dropout"},
		{[]string{"train", "--data", "moons", "--out", out(), "--logit-mean", "0.5"}, "--logit-mean applies to --time-sampling logit-normal"},
		{[]string{"train", "--data", npy, "--out", out(), "--n-data", "10"}, "--n-data applies to"},
		{[]string{"train", "--data", npy, "--out", out(), "--delimiter", ";"}, "--delimiter applies to a .csv file"},
		{[]string{"sample", "--checkpoint", ck, "--out", npy, "--guidance", "3"}, "--guidance: this model is unconditional"},
		{[]string{"sample", "--checkpoint", filepath.Join(noEMA, train.CheckpointName), "--out", npy, "--no-ema"}, "--no-ema"},
		{[]string{"sample", "--checkpoint", ck, "--out", npy, "--solver", "dopri5", "--steps", "50"}, "--steps applies to fixed-step solvers"},
		{[]string{"sample", "--checkpoint", ck, "--out", npy, "--solver", "rk4", "--rtol", "1e-3"}, "--rtol applies to --solver dopri5"},
		{[]string{"likelihood", "--checkpoint", ck, "--data", npy, "--probes", "4"}, "--probes and --probe apply to --divergence hutchinson"},
		{[]string{"likelihood", "--checkpoint", ck, "--data", npy, "--n-data", "10"}, "--n-data applies to"},
		{[]string{"likelihood", "--checkpoint", ck, "--data", npy, "--seed", "3"}, "--seed draws Hutchinson's probes"},
		{[]string{"path", "--path", "ve", "--t", "0", "--x0", "1e308", "--x1", "-1e307"}, "x_t or u_t overflows float64"},
		{[]string{"info", "--checkpoint", ""}, "--checkpoint: an empty path"},
		{[]string{"eval", "--samples", npy, "--data", npy, "--seed", "3", "--n", "10"}, "--seed applies to a built-in --data"},
	} {
		code, _, e := cpuRun(t, c.args...)
		if code != ExitUsage || !strings.Contains(e, c.want) {
			t.Errorf("%v: exit %d %q, want a usage error with %q", c.args, code, e, c.want)
		}
	}
	code, stdout, e := cpuRun(t, "bench", "--workload", "sample-euler", "--steps", "7")
	if code != 0 || !strings.Contains(stdout, "nfe=7 ") {
		t.Errorf("bench --steps 7 for sample-euler: exit %d %q %q", code, stdout, e)
	}
}

// The messages of item 13.
func TestMessages(t *testing.T) {
	dir := t.TempDir()
	semi := filepath.Join(dir, "semi.csv")
	var b strings.Builder
	b.WriteString("x;y;z\n")
	for i := range 200 {
		b.WriteString(string(rune('0'+i%10)) + ";" + string(rune('0'+i%7)) + ";5\n")
	}
	os.WriteFile(semi, []byte(b.String()), 0o644)
	code, _, e := cpuRun(t, "train", "--data", semi, "--out", filepath.Join(dir, "a"), "--quiet")
	if code != ExitUsage || !strings.Contains(e, "pass --delimiter ';'") {
		t.Errorf("';' CSV: exit %d %q", code, e)
	}
	// declared: trains, warning about the constant third column
	code, _, e = cpuRun(t, "train", "--data", semi, "--delimiter", ";", "--out", filepath.Join(dir, "b"), "--steps", "10", "--hidden", "8", "--quiet", "--no-plot")
	if code != 0 || !strings.Contains(e, "warning: "+semi+": column 3 is constant (5)") {
		t.Errorf("';' CSV with --delimiter: exit %d %q", code, e)
	}
	// a header of numbers, declared
	num := filepath.Join(dir, "num.csv")
	os.WriteFile(num, []byte("0,1\n1,2\n3,4\n5,7\n"), 0o644)
	code, _, e = cpuRun(t, "train", "--data", num, "--header", "--out", filepath.Join(dir, "c"), "--steps", "5", "--hidden", "4", "--batch", "2", "--no-plot")
	if code != 0 || !strings.Contains(e, "3 x 2 data") {
		t.Errorf("--header: exit %d %q", code, e)
	}
	// resumed without --header or --delimiter: read as the run began (the
	// header was read as a row, and the file reported changed)
	numSemi := filepath.Join(dir, "num-semi.csv")
	os.WriteFile(numSemi, []byte("0;1\n1;2\n3;4\n5;7\n2;2\n"), 0o644)
	code, _, e = cpuRun(t, "train", "--data", numSemi, "--delimiter", ";", "--header", "--out", filepath.Join(dir, "c2"), "--steps", "10", "--stop-after", "5", "--hidden", "4", "--batch", "2", "--quiet", "--no-plot")
	if code != 0 {
		t.Fatalf("';' CSV with --header, 5 of 10 steps: exit %d %q", code, e)
	}
	code, _, e = cpuRun(t, "train", "--out", filepath.Join(dir, "c2"), "--resume", "--quiet", "--no-plot")
	if code != 0 {
		t.Errorf("resumed without --delimiter and --header: exit %d %q", code, e)
	}
	// a single row
	row := filepath.Join(dir, "row.csv")
	os.WriteFile(row, []byte("1,2\n"), 0o644)
	code, _, e = cpuRun(t, "train", "--data", row, "--out", filepath.Join(dir, "d"), "--steps", "5", "--hidden", "4", "--quiet", "--no-plot")
	if code != 0 || !strings.Contains(e, "single row") {
		t.Errorf("one row: exit %d %q", code, e)
	}
	// grammar
	ragged := filepath.Join(dir, "ragged.csv")
	os.WriteFile(ragged, []byte("1,2\n3\n"), 0o644)
	if _, _, e := cpuRun(t, "train", "--data", ragged, "--out", filepath.Join(dir, "e")); !strings.Contains(e, "has 1 field,") {
		t.Errorf("ragged: %q", e)
	}
	// likelihood on degenerate data says so
	ck := tinyTrain(t, filepath.Join(dir, "m"), "--no-plot", "--device", "cpu")
	flat := filepath.Join(dir, "flat.csv")
	os.WriteFile(flat, []byte("0.5,1\n0.25,1\n0.75,1\n"), 0o644)
	if _, _, e := cpuRun(t, "likelihood", "--checkpoint", ck, "--data", flat, "--solver", "rk4", "--steps", "4"); !strings.Contains(e, "column 2 is constant") {
		t.Errorf("likelihood on a constant column: %q", e)
	}
	// but one point to score is no degenerate training set
	if code, _, e := cpuRun(t, "likelihood", "--checkpoint", ck, "--data", row, "--solver", "rk4", "--steps", "4"); code != 0 || strings.Contains(e, "warning") {
		t.Errorf("likelihood of one point: exit %d %q", code, e)
	}
	// path's JSON names its kind
	_, out, _ := cpuRun(t, "path", "--path", "linear-vp", "--t", "0.6", "--x0", "0.5", "--x1", "1")
	if !strings.Contains(out, `"spec":{"kind":"linear-vp"`) {
		t.Errorf("path JSON: %s", out)
	}
	for v, want := range map[float64]string{1000: "1000", 12345.6: "12346", 57.34: "57.3", 0.41234: "0.412"} {
		if got := formatRate(v); got != want {
			t.Errorf("formatRate(%g) = %q, want %q", v, got, want)
		}
	}
	for v, want := range map[float64]string{1.5: "1.500000", -2.25: "-2.250000", 3.5e9: "3.5e+09", -1.25e12: "-1.25e+12"} {
		if got := formatScore(v); got != want {
			t.Errorf("formatScore(%g) = %q, want %q", v, got, want)
		}
	}
	// eval: several floors by default, with their spread
	s := filepath.Join(dir, "s.npy")
	if code, _, e := cpuRun(t, "sample", "--checkpoint", ck, "--n", "200", "--out", s, "--solver", "euler", "--steps", "5"); code != 0 {
		t.Fatal(e)
	}
	_, out, e = cpuRun(t, "eval", "--samples", s, "--data", "moons", "--n", "200")
	m := regexp.MustCompile(`w2_floor_sd=([0-9.]+) floors=(\d+)`).FindStringSubmatch(out)
	if m == nil || m[2] != "5" || m[1] == "0.00000" {
		t.Errorf("eval: %q %q", out, e)
	}
}

// Help and README (item 14).
func TestHelpAndREADME(t *testing.T) {
	_, help, _ := cpuRun(t, "likelihood", "--help")
	if !strings.Contains(help, "hutchinson for images") {
		t.Errorf("likelihood --help does not state the image default:\n%s", help)
	}
	_, help, _ = cpuRun(t, "train", "--help")
	for _, line := range strings.Split(help, "\n") {
		if strings.Contains(line, "--sigma-min") && strings.Count(line, "default") != 1 {
			t.Errorf("path flag help with %d defaults: %s", strings.Count(line, "default"), line)
		}
		if strings.Contains(line, "--time-shift") && !strings.Contains(line, "0 or 1: none") {
			t.Errorf("--time-shift help: %s", line)
		}
	}
	for _, cat := range []string{catData, catModel, catPath, catOptim, catOutput} {
		if !strings.Contains(help, "\n   "+cat+"\n") {
			t.Errorf("train --help lacks the %q group", cat)
		}
	}
	_, help, _ = cpuRun(t, "sample", "--help")
	if !strings.Contains(help, "--n value") || strings.Contains(help, " -n value") {
		t.Errorf("sample --help spells -n with one dash:\n%s", help)
	}
	code, out, e := cpuRun(t, "train", "--data", "moons")
	if code != ExitUsage || out != "" || strings.Count(strings.TrimSpace(e), "\n") != 0 || !strings.Contains(e, "--out is required") {
		t.Errorf("missing --out: exit %d, stdout %q, stderr %q", code, out, e)
	}

	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(readme)
	if strings.Contains(text, "../") {
		t.Error("README points outside the repository (../)")
	}
	if !strings.Contains(text, "**eval**") || !strings.Contains(text, "fmgpu eval --samples") {
		t.Error("README's tour does not cover eval")
	}
	// every flag the README spells exists in some command's help
	known := map[string]bool{"help": true, "version": true, "gpus": true /* docker's */, "kill-on-bad-exit": true /* srun's */, "allow-run-as-root": true /* mpirun's */}
	for _, c := range newApp(nil, nil).Commands {
		for _, f := range c.Flags {
			for _, n := range f.Names() {
				known[n] = true
			}
		}
	}
	for _, m := range regexp.MustCompile("(?:^|[\\s`\\[(])--([a-z][a-z0-9-]*)").FindAllStringSubmatch(text, -1) {
		if !known[m[1]] {
			t.Errorf("README spells --%s, which no command has", m[1])
		}
	}
}

// A run refused for its flags or its data leaves no empty --out behind,
// nor the parents it made for it.
func TestRefusedRunLeavesNoOut(t *testing.T) {
	tmp := t.TempDir()
	out := filepath.Join(tmp, "run")
	code, _, e := cpuRun(t, "train", "--data", "moons", "--out", out, "--base", "16", "--quiet")
	if code != ExitUsage || !strings.Contains(e, "--base") {
		t.Fatalf("exit %d %q", code, e)
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("the refused run left its --out")
	}
	for _, cmd := range [][]string{{"train", "--data", filepath.Join(tmp, "nosuch.npy")}, {"reflow", "--checkpoint", filepath.Join("..", "..", "testdata", "moons.safetensors"), "--device", "cpu", "--precision", "tf32"}} {
		code, _, e = cpuRun(t, append(cmd, "--out", filepath.Join(tmp, "new", "runs", "a"), "--quiet")...)
		if code == 0 {
			t.Fatalf("%s on missing input: exit 0 %q", cmd[0], e)
		}
		if _, err := os.Stat(filepath.Join(tmp, "new")); err == nil {
			t.Errorf("%s refused (exit %d %q) left the directories made for --out", cmd[0], code, e)
		}
	}
}

// A run whose data was given by a relative path (a ';' CSV) resumes, and
// is evaluated, from another working directory: the checkpoint records
// the absolute path and how the file was read.
func TestResumeFromAnotherDirectory(t *testing.T) {
	dir, elsewhere := t.TempDir(), t.TempDir()
	var b strings.Builder
	for i := range 300 {
		b.WriteString(strconv.Itoa(i%13) + ";" + strconv.Itoa(i%7) + "\n")
	}
	if err := os.WriteFile(filepath.Join(dir, "points.csv"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	if code, _, e := cpuRun(t, "train", "--data", "points.csv", "--delimiter", ";", "--out", "run", "--steps", "20", "--stop-after", "10", "--hidden", "8", "--quiet", "--no-plot"); code != 0 {
		t.Fatal(e)
	}
	t.Chdir(elsewhere)
	// a file of the same name and shape here is not the run's data
	decoy := strings.ReplaceAll(b.String(), ";", ";1")
	if err := os.WriteFile("points.csv", []byte(decoy), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, e := cpuRun(t, "train", "--out", filepath.Join(dir, "run"), "--resume", "--steps", "30", "--quiet", "--no-plot"); code != 0 {
		t.Errorf("resumed from another directory: exit %d %q", code, e)
	}
	// the same file, named another way, is read as the run read it
	rel, err := filepath.Rel(elsewhere, filepath.Join(dir, "points.csv"))
	if err != nil {
		t.Fatal(err)
	}
	if code, _, e := cpuRun(t, "train", "--data", rel, "--out", filepath.Join(dir, "run"), "--resume", "--steps", "40", "--quiet", "--no-plot"); code != 0 {
		t.Errorf("resumed with --data named another way: exit %d %q", code, e)
	}
	// every row of a file is used: --n-data is refused, as in a new run
	if code, _, e := cpuRun(t, "train", "--out", filepath.Join(dir, "run"), "--resume", "--steps", "50", "--n-data", "50", "--quiet", "--no-plot"); code != ExitUsage || !strings.Contains(e, "--n-data applies to built-in sets") {
		t.Errorf("resumed with --n-data: exit %d %q", code, e)
	}
	// the same file read with a header it was not read with: the flag is
	// named, not "the file changed"
	if code, _, e := cpuRun(t, "train", "--out", filepath.Join(dir, "run"), "--resume", "--steps", "50", "--header", "--quiet", "--no-plot"); code != ExitUsage || !strings.Contains(e, "--header reads") {
		t.Errorf("resumed with --header: exit %d %q", code, e)
	}
	// eval's default data is the same file, read the same way
	ck := filepath.Join(dir, "run", train.CheckpointName)
	evalArgs := []string{"eval", "--checkpoint", ck, "--n", "100", "--floors", "1", "--steps", "1", "--path-n", "0", "--json"}
	code, out, e := cpuRun(t, evalArgs...)
	var rep struct{ Data string }
	if err := json.Unmarshal([]byte(out), &rep); code != 0 || err != nil || rep.Data != filepath.Join(dir, "points.csv") {
		t.Errorf("eval from another directory: exit %d, data %q (%v) %q", code, rep.Data, err, e)
	}
	// nor is the run's file once it holds other values
	if err := os.WriteFile(filepath.Join(dir, "points.csv"), []byte(decoy), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, e := cpuRun(t, evalArgs...); code != ExitUsage || !strings.Contains(e, "holds other values than it did in training") {
		t.Errorf("eval against a changed file: exit %d %q", code, e)
	}
}

// Dopri5's tolerances below float32's resolution are warned of.
func TestTolerancesBelowFloat32(t *testing.T) {
	dir := t.TempDir()
	ck := tinyTrain(t, dir, "--no-plot", "--device", "cpu")
	code, _, e := cpuRun(t, "sample", "--checkpoint", ck, "--n", "4", "--out", filepath.Join(dir, "s.npy"), "--solver", "dopri5", "--rtol", "1e-9", "--atol", "1e-9")
	if code != 0 || !strings.Contains(e, "fmgpu sample: warning: --rtol 1e-09 --atol 1e-09: below float32's resolution") {
		t.Errorf("exit %d %q", code, e)
	}
	code, _, e = cpuRun(t, "sample", "--checkpoint", ck, "--n", "4", "--out", filepath.Join(dir, "s.npy"), "--solver", "dopri5")
	if code != 0 || strings.Contains(e, "warning") {
		t.Errorf("default tolerances: exit %d %q", code, e)
	}
}
