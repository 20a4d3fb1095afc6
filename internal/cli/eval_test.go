package cli

import (
	"encoding/json"
	"flag"
	"fmt"
	"image/png"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fmgpu/fmgpu/data"
)

// evalW2Line is the first line eval --samples has always printed.
var evalW2Line = regexp.MustCompile(`^n=(\d+) dim=(\d+) w2=([0-9.]+) w2_floor=([0-9.]+) w2_floor_sd=([0-9.]+) floors=(\d+) ratio=([0-9.]+)$`)

// eval --samples keeps its first line and adds the MMD line; samples that
// are a fresh draw of the data score at the floor, and --json carries the
// same numbers.
func TestEvalSamplesMMD(t *testing.T) {
	dir := t.TempDir()
	fresh := filepath.Join(dir, "fresh.npy")
	ds, _ := data.Builtin("moons", 400, 77)
	if err := writeMatrix(fresh, ds.X, ds.N, ds.D); err != nil {
		t.Fatal(err)
	}
	// the same samples as a ';' CSV: --delimiter reads --samples too
	semi := filepath.Join(dir, "fresh.csv")
	var b strings.Builder
	for i := range ds.N {
		fmt.Fprintf(&b, "%g;%g\n", ds.X[2*i], ds.X[2*i+1])
	}
	os.WriteFile(semi, []byte(b.String()), 0o644)
	if code, _, e := fmgpu(t, "eval", "--samples", semi, "--data", "moons", "--delimiter", ";", "--n", "400", "--quiet"); code != 0 {
		t.Errorf("--samples of a ';' CSV with --delimiter ';': exit %d %q", code, e)
	}
	// ';' data against fmgpu sample's ',' samples: --samples-delimiter
	comma := filepath.Join(dir, "comma.csv")
	os.WriteFile(comma, []byte(strings.ReplaceAll(b.String(), ";", ",")), 0o644)
	bigSemi := filepath.Join(dir, "data.csv")
	os.WriteFile(bigSemi, []byte(strings.Repeat(b.String(), 2)), 0o644)
	code, _, e := fmgpu(t, "eval", "--samples", comma, "--data", bigSemi, "--delimiter", ";", "--n", "400", "--quiet")
	if code != ExitUsage || !strings.Contains(e, "(pass --samples-delimiter ',')") {
		t.Errorf("',' samples against ';' data: exit %d %q", code, e)
	}
	if code, _, e := fmgpu(t, "eval", "--samples", comma, "--data", bigSemi, "--delimiter", ";", "--samples-delimiter", ",", "--n", "400", "--floors", "1", "--quiet"); code != 0 {
		t.Errorf("--samples-delimiter ',': exit %d %q", code, e)
	}
	if code, _, e := fmgpu(t, "eval", "--samples", fresh, "--data", "moons", "--samples-delimiter", ","); code != ExitUsage || !strings.Contains(e, "--samples-delimiter applies to --samples FILE.csv") {
		t.Errorf("--samples-delimiter with .npy samples: exit %d %q", code, e)
	}
	code, out, e := fmgpu(t, "eval", "--samples", fresh, "--data", "moons", "--n", "400", "--quiet")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 2 {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, e)
	}
	m := evalW2Line.FindStringSubmatch(lines[0])
	if m == nil || m[1] != "400" || m[2] != "2" || m[6] != "5" {
		t.Fatalf("first line %q", lines[0])
	}
	// a fresh draw is as good as it gets: W2 within a factor 1.5 of the
	// floor's mean (the floors' spread at n = 400 is about 10%)
	if r, _ := strconv.ParseFloat(m[7], 64); r < 0.67 || r > 1.5 {
		t.Errorf("ratio %v for a fresh draw", r)
	}
	mm := regexp.MustCompile(`^mmd2=(\S+) mmd2_floor=(\S+) mmd2_floor_sd=(\S+) bandwidth=(\S+)$`).FindStringSubmatch(lines[1])
	if mm == nil {
		t.Fatalf("second line %q", lines[1])
	}
	v, _ := strconv.ParseFloat(mm[1], 64)
	sd, _ := strconv.ParseFloat(mm[3], 64)
	h, _ := strconv.ParseFloat(mm[4], 64)
	// unbiased: a fresh draw's MMD^2 is 0 give or take the floors' spread
	// (5 standard deviations, and at least 0.005, docs/math.md §12.1's
	// spread at n = 2000 times sqrt(5))
	if abs(v) > max(5*sd, 0.005) || !(h > 0.5 && h < 2) {
		t.Errorf("mmd2 %v (floor sd %v), bandwidth %v", v, sd, h)
	}
	code, js, e := fmgpu(t, "eval", "--samples", fresh, "--data", "moons", "--n", "400", "--quiet", "--json")
	var rep evalReport
	if code != 0 || json.Unmarshal([]byte(js), &rep) != nil || rep.W2 == nil || rep.W2.Value == nil || rep.MMD2 == nil || rep.MMD2.Value == nil {
		t.Fatalf("--json: exit %d %q %q", code, js, e)
	}
	if w2, _ := strconv.ParseFloat(m[3], 64); abs(*rep.W2.Value-w2) > 5e-6 || abs(*rep.MMD2.Value-v) > 5e-4*abs(v)+1e-12 {
		t.Errorf("--json %+v %+v, text %q", *rep.W2, *rep.MMD2, out)
	}
}

// eval --checkpoint: one row per step count, the right NFE, each row the
// numbers eval --samples gives for `fmgpu sample` with the same solver,
// steps and seed; the path statistics; the plot; --json.
func TestEvalCheckpoint(t *testing.T) {
	dir := t.TempDir()
	ck := tinyTrain(t, dir, "--no-plot")
	plot := filepath.Join(dir, "steps.png")
	args := []string{"eval", "--checkpoint", ck, "--n", "300", "--floors", "2", "--solver", "midpoint", "--steps", "3,1",
		"--sample-seed", "5", "--path-steps", "400", "--quiet", "--device", "cpu"}
	code, out, e := fmgpu(t, append(args, "--plot", plot)...)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 5 {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, e)
	}
	if !strings.HasPrefix(lines[0], "n=300 dim=2 w2_floor=") || !strings.Contains(lines[0], " floors=2 ") || !strings.Contains(lines[0], " bandwidth=") {
		t.Errorf("header %q", lines[0])
	}
	if f := strings.Fields(lines[1]); strings.Join(f, " ") != "solver steps nfe w2 ratio mmd2" {
		t.Errorf("table header %q", lines[1])
	}
	for i, steps := range []int{3, 1} {
		f := strings.Fields(lines[2+i])
		if len(f) != 6 || f[0] != "midpoint" || f[1] != strconv.Itoa(steps) || f[2] != strconv.Itoa(2*steps) {
			t.Fatalf("row %d: %q", i, lines[2+i])
		}
		s := filepath.Join(dir, "s"+f[1]+".npy")
		if code, _, e := fmgpu(t, "sample", "--checkpoint", ck, "--n", "300", "--solver", "midpoint", "--steps", f[1], "--seed", "5", "--out", s, "--quiet", "--device", "cpu"); code != 0 {
			t.Fatal(e)
		}
		_, so, _ := fmgpu(t, "eval", "--samples", s, "--data", "moons", "--n", "300", "--floors", "2", "--quiet")
		m := evalW2Line.FindStringSubmatch(strings.Split(so, "\n")[0])
		mm := regexp.MustCompile(`mmd2=(\S+) `).FindStringSubmatch(so)
		if m == nil || mm == nil || m[3] != f[3] || m[7] != f[4] || mm[1] != f[5] {
			t.Errorf("%d steps: eval --checkpoint's row %q, eval --samples of fmgpu sample's output %q", steps, lines[2+i], so)
		}
	}
	pm := regexp.MustCompile(`^straightness=([0-9.]+) kinetic=([0-9.]+) displacement=([0-9.]+) trajectories=300 rk4_steps=400$`).FindStringSubmatch(lines[4])
	if pm == nil {
		t.Fatalf("path line %q", lines[4])
	}
	s, _ := strconv.ParseFloat(pm[1], 64)
	k, _ := strconv.ParseFloat(pm[2], 64)
	d, _ := strconv.ParseFloat(pm[3], 64)
	// S = K - E|x1 - x0|^2 up to the quadrature (docs/math.md §12.2): 5%
	// of K at 400 steps (this barely trained network varies fast in t: at
	// 50 steps the two sides differed by 40%)
	if !(s > 0) || abs(k-d-s) > 0.05*k {
		t.Errorf("S %v, K %v, E|x1-x0|^2 %v", s, k, d)
	}
	f, err := os.Open(plot)
	if err != nil {
		t.Fatal(err)
	}
	im, err := png.Decode(f)
	f.Close()
	if err != nil || im.Bounds().Dx() < im.Bounds().Dy()*3/2 { // two panels side by side
		t.Errorf("--plot: %v, %v", err, im.Bounds())
	}

	noPath := slices.DeleteFunc(slices.Clone(args), func(a string) bool { return a == "--path-steps" || a == "400" })
	code, js, e := fmgpu(t, append(noPath, "--json", "--path-n", "0")...)
	var rep evalReport
	if code != 0 || json.Unmarshal([]byte(js), &rep) != nil || len(rep.Table) != 2 || rep.Path != nil || rep.W2 == nil || rep.W2.Value != nil {
		t.Fatalf("--json: exit %d %q %q", code, js, e)
	}
	if r := rep.Table[1]; r.Steps != 1 || r.NFE != 2 || r.W2 == nil || r.MMD2 == nil || r.Solver != "midpoint" {
		t.Errorf("--json row %+v", r)
	}
}

// Bad flags of eval exit 2 with one line naming the flag.
func TestEvalUsage(t *testing.T) {
	dir := t.TempDir()
	ck := tinyTrain(t, dir, "--no-plot")
	npy := filepath.Join(dir, "s.npy")
	ds, _ := data.Builtin("moons", 50, 1)
	writeMatrix(npy, ds.X, ds.N, ds.D)
	missing := filepath.Join(dir, "missing.npy")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"eval"}, "--samples is required, or --checkpoint"},
		{[]string{"eval", "--data", "moons"}, "--samples is required, or --checkpoint"},
		{[]string{"eval", "--samples", npy, "--checkpoint", ck, "--data", "moons"}, "--samples and --checkpoint"},
		{[]string{"eval", "--samples", npy}, "--data is required with --samples"},
		{[]string{"eval", "--samples", "moons", "--data", "moons"}, "--samples takes a file of samples"},
		{[]string{"eval", "--samples", npy, "--data", "moons", "--steps", "1,2"}, "--steps applies to --checkpoint"},
		{[]string{"eval", "--samples", npy, "--data", "moons", "--plot", "p.png"}, "--plot applies to --checkpoint"},
		{[]string{"eval", "--samples", npy, "--data", "moons", "--data-dir", dir}, "--data-dir applies to --data mnist"},
		{[]string{"eval", "--samples", missing, "--data", "moons"}, missing},
		{[]string{"eval", "--samples", npy, "--data", "mnist", "--n", "50"}, "--samples has 2 columns, --data mnist images have 784"},
		{[]string{"eval", "--checkpoint", ck, "--steps", "1,,2"}, `--steps "1,,2": an empty entry`},
		{[]string{"eval", "--checkpoint", ck, "--steps", "1,two"}, `"two" is not a whole number`},
		{[]string{"eval", "--checkpoint", ck, "--steps", "0"}, "--steps \"0\": 0 is outside"},
		{[]string{"eval", "--checkpoint", ck, "--steps", "4,2,4"}, "4 appears twice"},
		{[]string{"eval", "--checkpoint", ck, "--solver", "dopri5"}, "--solver dopri5: eval's table needs a fixed-step solver"},
		{[]string{"eval", "--checkpoint", ck, "--solver", "leapfrog"}, "--solver"},
		{[]string{"eval", "--checkpoint", ck, "--path-n", "-1"}, "--path-n -1"},
		{[]string{"eval", "--checkpoint", ck, "--path-steps", "0"}, "--path-steps 0"},
		{[]string{"eval", "--checkpoint", ck, "--guidance", "3"}, "--guidance: this model is unconditional"},
		{[]string{"eval", "--checkpoint", ck, "--plot", filepath.Join(dir, "p.jpg")}, "--plot"},
		{[]string{"eval", "--checkpoint", ck, "--data", "mnist"}, "--data mnist: the model makes 2 values per sample"},
		{[]string{"eval", "--checkpoint", ck, "--data", npy, "--seed", "4"}, "--seed applies to a built-in --data"},
		{[]string{"eval", "--checkpoint", ck, "--n", "0"}, "--n 0"},
		{[]string{"eval", "--checkpoint", ck, "--n", "1"}, "--n 1: need 2..20000"},
		{[]string{"eval", "--checkpoint", ck, "--path-n", "0", "--path-steps", "5"}, "--path-steps applies to the path statistics"},
	} {
		code, _, e := fmgpu(t, c.args...)
		if code != ExitUsage || !strings.Contains(e, c.want) || strings.Count(e, "\n") != 1 {
			t.Errorf("%v: exit %d %q, want exit 2 with one line containing %q", c.args, code, e, c.want)
		}
	}
	// a missing checkpoint: one line naming it, exit 1 as for sample
	code, _, e := fmgpu(t, "eval", "--checkpoint", filepath.Join(dir, "none.safetensors"), "--quiet")
	if code == 0 || !strings.Contains(e, "none.safetensors") || strings.Count(e, "\n") != 1 {
		t.Errorf("missing checkpoint: exit %d %q", code, e)
	}
}

// parseStepList keeps the order given and reads spaces around entries.
func TestParseStepList(t *testing.T) {
	got, err := parseStepList(" 16, 1,4 ")
	if err != nil || len(got) != 3 || got[0] != 16 || got[1] != 1 || got[2] != 4 {
		t.Errorf("%v %v", got, err)
	}
	if _, err := parseStepList(strings.Repeat("1,", 40) + "1"); err == nil || !strings.Contains(err.Error(), "at most 32") {
		t.Errorf("41 entries: %v", err)
	}
	for _, o := range []evalOptions{{n: 3000, floors: 5}, {n: 5000, floors: 3, floorsSet: true}, {n: 10001, floors: 1}} {
		f, err := imageFloors(o)
		switch {
		case o.n == 3000 && (err != nil || f != 3): // 10000 held-out images: 3 sets of 3000
			t.Errorf("n 3000: %d floors, %v", f, err)
		case o.n == 5000 && (err == nil || !strings.Contains(err.Error(), "--floors 3")):
			t.Errorf("n 5000, --floors 3: %v", err)
		case o.n == 10001 && (err == nil || !strings.Contains(err.Error(), "--n 10001")):
			t.Errorf("n 10001: %v", err)
		}
	}
}

// eval of MNIST images in mnistnet's features: training images the
// classifier never saw sit near the floor, noise far above it.
func TestEvalImages(t *testing.T) {
	if testing.Short() {
		t.Skip("reads MNIST and computes 10,000 images' features")
	}
	tr, err := data.LoadImages("mnist", data.ImageOptions{})
	if err != nil {
		t.Skipf("no MNIST: %v", err)
	}
	dir := t.TempDir()
	const n = 500
	real := filepath.Join(dir, "real.npy")
	// every 97th image of the training split's first 48,500: spread over
	// the file, with an odd stride (the file is not in random order:
	// images 40000..40499 scored 1.65 times the floor, and even and odd
	// images differ, docs/metrics.md), and not the held-out ones the
	// floor uses
	rx := make([]float32, 0, n*784)
	for i := range n {
		rx = append(rx, tr.X[i*97*784:(i*97+1)*784]...)
	}
	writeMatrix(real, rx, n, 784)
	noise := filepath.Join(dir, "noise.npy")
	nx := make([]float32, n*784)
	for i := range nx {
		nx[i] = float32(i%7)/3 - 1
	}
	writeMatrix(noise, nx, n, 784)
	line := regexp.MustCompile(`^n=500 dim=784 features=mnistnet fd=([0-9.]+) fd_floor=([0-9.]+) fd_floor_sd=([0-9.]+) floors=2 ratio=([0-9.]+)\nkid=(\S+) kid_sd=(\S+) kid_floor=(\S+) kid_floor_sd=(\S+) subsets=100 subset_size=500 reference="mnist:test, 10000 images"\n$`)
	ratio := map[string]float64{}
	for name, s := range map[string]string{"real": real, "noise": noise} {
		code, out, e := fmgpu(t, "eval", "--samples", s, "--data", "mnist", "--n", "500", "--floors", "2", "--quiet")
		m := line.FindStringSubmatch(out)
		if code != 0 || m == nil {
			t.Fatalf("%s: exit %d %q %q", name, code, out, e)
		}
		ratio[name], _ = strconv.ParseFloat(m[4], 64)
		t.Logf("%s: %s", name, strings.ReplaceAll(out, "\n", " | "))
	}
	// real images: within 1.3 times the floor; noise a hundred times
	// above it
	if ratio["real"] > 1.3 || ratio["noise"] < 100 {
		t.Errorf("FD ratios %v", ratio)
	}
	// Fashion-MNIST: measured in the digit classifier's features, with a
	// warning saying so
	if _, err := data.LoadImages("fashion-mnist:test", data.ImageOptions{Max: 1}); err != nil {
		t.Logf("no Fashion-MNIST (%v): its warning is not checked", err)
		return
	}
	code, out, e := fmgpu(t, "eval", "--samples", noise, "--data", "fashion-mnist", "--n", "500", "--floors", "1", "--quiet")
	if code != 0 || !strings.Contains(out, "features=mnistnet") || !strings.Contains(e, "warning: the features are those of an MNIST digit classifier") {
		t.Errorf("fashion-mnist: exit %d %q %q", code, out, e)
	}
}

// eval --checkpoint stops on the first SIGINT within seconds, exit 130,
// in each of its phases: sampling, the path statistics, the distances;
// --plot is not written.
func TestEvalCheckpointSignals(t *testing.T) {
	dir := t.TempDir()
	ck := tinyTrain(t, dir, "--no-plot")
	plot := filepath.Join(dir, "steps.png")
	base := []string{"eval", "--checkpoint", ck, "--device", "cpu", "--plot", plot}
	for name, extra := range map[string][]string{
		// 20000 rows through 200000 Euler steps: minutes of sampling
		"sampling": {"--n", "20000", "--steps", "200000", "--path-n", "0"},
		// then 4 x 65536 + 1 evaluations of 20000 trajectories
		"path": {"--n", "20000", "--steps", "1", "--path-steps", "65536"},
		// then O(n^3) assignments of 20000 points
		"distances": {"--n", "20000", "--steps", "1", "--path-n", "0"},
	} {
		code, stderr, el := interruptAfterSleep(t, syscall.SIGINT, 1500*time.Millisecond, append(base, extra...)...)
		if code != ExitInterrupted || !strings.Contains(stderr, "nothing written") || el > 5 {
			t.Errorf("%s: exit %d %.2fs after SIGINT, stderr %q", name, code, el, stderr)
		}
		if _, err := os.Stat(plot); err == nil {
			t.Errorf("%s: wrote %s after the signal", name, plot)
		}
		t.Logf("%s: exit %d %.2fs after SIGINT", name, code, el)
	}
}

var evalFloorsFlag = flag.Bool("eval-floors", false, "TestEvalFloors: print eval's noise floors (docs/metrics.md)")

// TestEvalFloors prints the noise floors eval reports with its defaults
// (--n 2000, 5 floor pairs) for each built-in set (docs/metrics.md):
//
//	go test ./internal/cli -run 'EvalFloors$' -v -eval-floors
func TestEvalFloors(t *testing.T) {
	if !*evalFloorsFlag {
		t.Skip("measurement; run with -eval-floors")
	}
	dir := t.TempDir()
	for _, name := range data.BuiltinNames() {
		// the samples: one more fresh draw, so that the samples' line is a
		// sixth floor pair
		s := filepath.Join(dir, name+".npy")
		ds, _ := data.Builtin(name, 2000, 1)
		writeMatrix(s, ds.X, ds.N, ds.D)
		code, out, e := fmgpu(t, "eval", "--samples", s, "--data", name, "--quiet", "--json")
		var r evalReport
		if code != 0 || json.Unmarshal([]byte(out), &r) != nil {
			t.Fatalf("%s: exit %d %q %q", name, code, out, e)
		}
		fmt.Printf("| %s | %.4f | %.4f | %.2f | %.1e | %.1e | %.1e | %.3f |\n", name, r.W2.Floor, r.W2.FloorSD, *r.W2.Ratio,
			r.MMD2.Floor, r.MMD2.FloorSD, *r.MMD2.Value, r.MMD2.Bandwidth)
	}
}

// TestEvalFloorsMNIST is TestEvalFloors for MNIST at --n 1000, 2000 and
// 5000, then the FD of subsets of the training file that are not random
// (docs/metrics.md):
//
//	go test ./internal/cli -run EvalFloorsMNIST -v -eval-floors
func TestEvalFloorsMNIST(t *testing.T) {
	if !*evalFloorsFlag {
		t.Skip("measurement; run with -eval-floors")
	}
	dir := t.TempDir()
	tr, err := data.LoadImages("mnist", data.ImageOptions{})
	if err != nil {
		t.Skipf("no MNIST: %v", err)
	}
	for _, n := range []int{1000, 2000, 5000} {
		// the samples: n random images of the first 50,000 training images
		// (which the classifier saw; the floors use the others). Random,
		// not every k-th: the training file's even and odd images differ
		// (docs/metrics.md), and every 10th image scores 4 times the floor.
		s := filepath.Join(dir, fmt.Sprintf("mnist%d.npy", n))
		x := make([]float32, 0, n*784)
		for _, j := range rand.New(rand.NewPCG(uint64(n), 1)).Perm(50000)[:n] {
			x = append(x, tr.X[j*784:(j+1)*784]...)
		}
		writeMatrix(s, x, n, 784)
		code, out, e := fmgpu(t, "eval", "--samples", s, "--data", "mnist", "--n", strconv.Itoa(n), "--quiet", "--json")
		var r evalReport
		if code != 0 || json.Unmarshal([]byte(out), &r) != nil {
			t.Fatalf("mnist %d: exit %d %q %q", n, code, out, e)
		}
		fmt.Printf("| %d | %d | %.4f | %.4f | %.3f | %.1e | %.1e | %.1e | %d |\n", n, r.Floors, r.FD.Floor, r.FD.FloorSD, *r.FD.Ratio,
			r.KID.Floor, r.KID.FloorSD, *r.KID.Value, r.KID.SubsetSize)
	}
	// 2,000 training images chosen by rule, not at random
	for _, c := range []struct {
		what          string
		first, stride int
	}{
		{"images 0, 2, 4, ..., 3998", 0, 2}, {"images 1, 3, 5, ..., 3999", 1, 2}, {"images 0, 10, 20, ..., 19990", 0, 10},
		{"images 0, 25, 50, ..., 49975", 0, 25}, {"images 0 to 1999", 0, 1}, {"images 20000 to 21999", 20000, 1},
		{"images 40000 to 41999", 40000, 1}, {"images 48000 to 49999", 48000, 1},
	} {
		s := filepath.Join(dir, "rule.npy")
		x := make([]float32, 0, 2000*784)
		for i := range 2000 {
			j := c.first + i*c.stride
			x = append(x, tr.X[j*784:(j+1)*784]...)
		}
		writeMatrix(s, x, 2000, 784)
		code, out, e := fmgpu(t, "eval", "--samples", s, "--data", "mnist", "--quiet", "--json")
		var r evalReport
		if code != 0 || json.Unmarshal([]byte(out), &r) != nil {
			t.Fatalf("%s: exit %d %q %q", c.what, code, out, e)
		}
		fmt.Printf("| %s | %.4f | %.2f | %.1e |\n", c.what, *r.FD.Value, *r.FD.Ratio, *r.KID.Value)
	}
}

// eval --checkpoint of an image model that has no feature network: W2
// and MMD on the pixels, a guided field for the path statistics, and
// --plot as a grid with one row of samples per step count.
func TestEvalCheckpointImageGrid(t *testing.T) {
	imgs := imageFolder(t)
	dir := t.TempDir()
	if code, _, e := fmgpu(t, append([]string{"train", "--data", imgs, "--out", dir, "--steps", "5", "--no-plot", "--device", "cpu"}, tinyUNet...)...); code != 0 {
		t.Fatalf("train: %s", e)
	}
	grid := filepath.Join(dir, "grid.png")
	code, out, e := fmgpu(t, "eval", "--checkpoint", filepath.Join(dir, "checkpoint.safetensors"), "--n", "10", "--steps", "1,3", "--path-n", "4", "--path-steps", "2",
		"--guidance", "1.5", "--plot", grid, "--quiet", "--device", "cpu")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 5 || !strings.HasPrefix(lines[0], "n=10 dim=64 w2_floor=") || !strings.HasSuffix(lines[4], "trajectories=4 rk4_steps=2") {
		t.Fatalf("exit %d %q %q", code, out, e)
	}
	f, err := os.Open(grid)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cfg, err := png.DecodeConfig(f)
	// 10 columns and 2 rows of 8 x 8 images (and the grid's separators)
	if err != nil || cfg.Width < 80 || cfg.Height < 16 || cfg.Width < 4*cfg.Height {
		t.Errorf("grid %+v, %v", cfg, err)
	}
}

// One floor pair gives no spread: its standard deviation is NaN in the
// text and null in JSON, never a 0 that would make any difference look
// significant.
func TestEvalOneFloorHasNoSpread(t *testing.T) {
	fresh := filepath.Join(t.TempDir(), "fresh.npy")
	ds, _ := data.Builtin("moons", 300, 77)
	if err := writeMatrix(fresh, ds.X, ds.N, ds.D); err != nil {
		t.Fatal(err)
	}
	code, out, e := fmgpu(t, "eval", "--samples", fresh, "--data", "moons", "--n", "300", "--floors", "1", "--quiet")
	if code != 0 || !strings.Contains(out, "w2_floor_sd=NaN floors=1") || !strings.Contains(out, "mmd2_floor_sd=NaN") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, e)
	}
	code, js, e := fmgpu(t, "eval", "--samples", fresh, "--data", "moons", "--n", "300", "--floors", "1", "--quiet", "--json")
	var rep map[string]any
	if code != 0 || json.Unmarshal([]byte(js), &rep) != nil {
		t.Fatalf("--json: exit %d %q %q", code, js, e)
	}
	for _, k := range []string{"w2", "mmd2"} {
		m, _ := rep[k].(map[string]any)
		if v, ok := m["floor_sd"]; !ok || v != nil {
			t.Errorf("%s floor_sd %v (present %v), want null", k, v, ok)
		}
	}
}
