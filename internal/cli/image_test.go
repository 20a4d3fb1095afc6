package cli

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fmgpu/fmgpu/data"
	"github.com/fmgpu/fmgpu/train"
)

// imageFolder writes a tiny labelled image set: class "left" has its left
// half bright, class "right" its right half, 8x8 gray, a little noise.
func imageFolder(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for ci, class := range []string{"left", "right"} {
		os.MkdirAll(filepath.Join(dir, class), 0o755)
		for k := 0; k < 12; k++ {
			img := image.NewGray(image.Rect(0, 0, 8, 8))
			for y := 0; y < 8; y++ {
				for x := 0; x < 8; x++ {
					v := uint8((x*7 + y*13 + k*31) % 40)
					if (x < 4) == (ci == 0) {
						v += 200
					}
					img.SetGray(x, y, color.Gray{Y: v})
				}
			}
			f, err := os.Create(filepath.Join(dir, class, string(rune('a'+k))+".png"))
			if err != nil {
				t.Fatal(err)
			}
			png.Encode(f, img)
			f.Close()
		}
	}
	return dir
}

var tinyUNet = []string{"--model", "unet", "--base", "8", "--mults", "1,2", "--groups", "4", "--time-freqs", "8",
	"--batch", "8", "--warmup", "2", "--log-every", "5", "--quiet"}

// Image data through the command line at tiny sizes: class-conditional
// U-Net training with grids at checkpoints, sample --grid/--class/
// --guidance, and dequantized bits/dim.
func TestImageTrainSampleLikelihood(t *testing.T) {
	imgs := imageFolder(t)
	dir := t.TempDir()
	args := append([]string{"train", "--data", imgs, "--out", dir, "--steps", "20", "--checkpoint-every", "10"}, tinyUNet...)
	if code, _, e := fmgpu(t, args...); code != 0 {
		t.Fatalf("train: %s", e)
	}
	for _, f := range []string{"checkpoint.safetensors", "samples_000010.png", "samples_000020.png", "samples.png", "loss.png"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("train did not write %s", f)
		}
	}
	// The last checkpoint's grid is samples.png: the same model, seed and
	// guidance (train draws it once).
	last, err1 := os.ReadFile(filepath.Join(dir, "samples_000020.png"))
	final, err2 := os.ReadFile(filepath.Join(dir, "samples.png"))
	if err1 != nil || err2 != nil || !bytes.Equal(last, final) {
		t.Errorf("samples.png differs from samples_000020.png (%v, %v)", err1, err2)
	}
	ck, err := train.Load(filepath.Join(dir, train.CheckpointName))
	if err != nil {
		t.Fatal(err)
	}
	m := ck.Meta.Config.Model
	if m.Kind != "unet" || m.Classes != 2 || m.Image == nil || m.Image.Height != 8 || strings.Join(ck.Meta.Data.Classes, ",") != "left,right" {
		t.Fatalf("checkpoint model %+v, classes %v", m, ck.Meta.Data.Classes)
	}
	ckPath := filepath.Join(dir, train.CheckpointName)

	grid := filepath.Join(dir, "grid.png")
	out := filepath.Join(dir, "s.npy")
	code, stdout, e := fmgpu(t, "sample", "--checkpoint", ckPath, "--grid", grid, "--out", out, "--n", "6",
		"--class", "1", "--guidance", "3", "--solver", "euler", "--steps", "4")
	if code != 0 {
		t.Fatalf("sample: %s", e)
	}
	if !strings.Contains(stdout, "NFE 4 per sample with guidance 3, 2 network passes each") || !strings.Contains(stdout, "grid.png (solver euler, NFE 4 per sample with guidance 3, 2 network passes each)") {
		t.Errorf("guided sampling's line: %q", stdout)
	}
	// the class by its folder's name: the same samples
	byName := filepath.Join(dir, "s_right.npy")
	if code, _, e := fmgpu(t, "sample", "--checkpoint", ckPath, "--out", byName, "--n", "6",
		"--class", "right", "--guidance", "3", "--solver", "euler", "--steps", "4"); code != 0 {
		t.Fatalf("sample --class right: %s", e)
	}
	if a, b := readBytes(t, out), readBytes(t, byName); !bytes.Equal(a, b) {
		t.Error("--class right and --class 1 sampled differently")
	}
	if code, _, e := fmgpu(t, "sample", "--checkpoint", ckPath, "--out", byName, "--n", "6", "--class", "up"); code != ExitUsage || !strings.Contains(e, `--class "up": the model's classes are left, right`) {
		t.Errorf("--class up: exit %d %q", code, e)
	}
	f, err := os.Open(grid)
	if err != nil {
		t.Fatal(err)
	}
	g, err := png.Decode(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	// 10 x 10 tiles of 8 pixels with data.GridPad between and around them
	side := 10*8 + 11*data.GridPad
	if g.Bounds().Dx() != side || g.Bounds().Dy() != side {
		t.Errorf("grid is %v, want %dx%d", g.Bounds(), side, side)
	}
	if s, err := data.LoadNPY(out); err != nil || s.N != 6 || s.D != 64 {
		t.Errorf("samples: %v", err)
	}
	if !strings.Contains(stdout, "grid") {
		t.Errorf("sample output %q", stdout)
	}
	// --trajectory beside --grid alone: --n samples of their own, said so
	traj := filepath.Join(dir, "t.npy")
	code, stdout, e = fmgpu(t, "sample", "--checkpoint", ckPath, "--grid", grid, "--trajectory", traj, "--n", "3", "--solver", "euler", "--steps", "2")
	if code != 0 || !strings.Contains(stdout, "wrote the trajectories of 3 samples (3 states each, the noise first) to "+traj) {
		t.Errorf("sample --grid --trajectory --n 3: exit %d, %q %q", code, stdout, e)
	}
	if st, err := os.Stat(traj); err != nil || st.Size() != 128+3*3*64*4 { // header + (steps+1) x n x D float32
		t.Errorf("trajectory: %v, %v", st, err)
	}

	code, stdout, e = fmgpu(t, "likelihood", "--checkpoint", ckPath, "--data", imgs, "--solver", "euler", "--steps", "4", "--probes", "1")
	if code != 0 {
		t.Fatalf("likelihood: %s", e)
	}
	ls := strings.Split(strings.TrimSpace(stdout), "\n")
	if !strings.Contains(ls[0], "dequantized=uniform") || !strings.HasPrefix(ls[len(ls)-1], "nll_nats=") {
		t.Errorf("likelihood output %q", stdout)
	}
	if !strings.Contains(e, "Hutchinson") {
		t.Errorf("64 dimensions should default to Hutchinson: %q", e)
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"sample", "--checkpoint", ckPath, "--n", "2", "--out", out, "--class", "2"}, "--class"},
		{[]string{"sample", "--checkpoint", ckPath, "--n", "2"}, "--grid"},
		{[]string{"sample", "--checkpoint", ckPath, "--n", "2", "--out", out, "--guidance", "-1"}, "--guidance"},
		{[]string{"sample", "--checkpoint", ckPath, "--n", "7", "--grid", filepath.Join(t.TempDir(), "g.png")}, "--n applies to --out and --trajectory; --grid draws 10 x 10 samples"},
		{[]string{"sample", "--checkpoint", ckPath, "--n", "2", "--out", out, "--class", "1", "--guidance", "0"}, "--class 1 with --guidance 0"},
		{[]string{"sample", "--checkpoint", ckPath, "--n", "2", "--out", out, "--plot", filepath.Join(t.TempDir(), "p.png")}, "--plot draws points; for an image model use --grid"},
		{[]string{"reflow", "--checkpoint", ckPath, "--out", filepath.Join(t.TempDir(), "r"), "--guidance", "0"}, "--guidance 0: the pairs would be solved with the unconditional velocity"},
		{[]string{"reflow", "--checkpoint", ckPath, "--out", filepath.Join(t.TempDir(), "r"), "--pairs", "10000000"}, "--pairs 10000000: 10000000 pairs of 129 values"},
		{append([]string{"train", "--data", "moons", "--out", t.TempDir(), "--steps", "5"}, tinyUNet...), "--model unet needs image data"},
	} {
		if code, _, e := fmgpu(t, c.args...); code != ExitUsage || !strings.Contains(e, c.want) {
			t.Errorf("%v: exit %d %q, want usage error naming %s", c.args, code, e, c.want)
		}
	}
}

// --grid needs an image model.
func TestGridNeedsImages(t *testing.T) {
	ck := tinyTrain(t, t.TempDir(), "--no-plot")
	code, _, e := fmgpu(t, "sample", "--checkpoint", ck, "--grid", filepath.Join(t.TempDir(), "g.png"))
	if code != ExitUsage || !strings.Contains(e, "--grid") {
		t.Errorf("exit %d %q", code, e)
	}
}

// Scores below 0 bits/dim on dequantized pixels are flagged, within noise.
func TestImpossibleBitsPerDim(t *testing.T) {
	for _, c := range []struct {
		bpd, se float64
		warn    bool
	}{
		{1.65, 0.01, false},
		{0, 0, false},
		{-0.01, 0.01, false}, // within two standard errors of 0
		{-0.05, 0.01, true},
		{-1.69, 0.1, true},
	} {
		if w := impossibleBitsPerDim(c.bpd, c.se); (w != "") != c.warn {
			t.Errorf("bpd %g stderr %g: warning %q, want one: %t", c.bpd, c.se, w, c.warn)
		}
	}
}

// A model trained on a folder at another size and channel count than the
// folder's own (--image-size, --channels) resumes, scores and is evaluated
// with the folder read as it was trained: the flags need not be repeated.
func TestImageOptionsKept(t *testing.T) {
	imgs := imageFolder(t) // 8x8 gray
	dir := t.TempDir()
	args := append([]string{"train", "--data", imgs, "--out", dir, "--steps", "10", "--stop-after", "5", "--image-size", "4", "--channels", "3", "--no-plot"}, tinyUNet...)
	args = slices.DeleteFunc(args, func(a string) bool { return a == "--mults" || a == "1,2" })
	ck := filepath.Join(dir, train.CheckpointName)
	if code, _, e := fmgpu(t, args...); code != 0 || !strings.Contains(e, "stopped at step 5 of 10 as asked (saved "+ck+"); continue with --resume") {
		t.Fatalf("train: exit %d %q", code, e)
	}
	if code, _, e := fmgpu(t, "train", "--out", dir, "--resume", "--quiet", "--no-plot", "--image-size", "8"); code != ExitUsage ||
		!strings.Contains(e, "read at 8x8, 3 channel(s), is 192 values an image, the checkpoint's data 48: leave out --image-size and --channels") {
		t.Errorf("resume at another --image-size: exit %d %q", code, e)
	}
	if code, _, e := fmgpu(t, "train", "--out", dir, "--resume", "--quiet", "--no-plot"); code != 0 {
		t.Errorf("resume without --image-size and --channels: exit %d %q", code, e)
	}
	if code, _, e := fmgpu(t, "likelihood", "--checkpoint", ck, "--data", imgs, "--solver", "euler", "--steps", "2"); code != 0 ||
		!strings.Contains(e, "resized from 8x8, 1 channel(s), to the model's 4x4, 3 channel(s)") || !strings.Contains(e, "48 dimensions: Hutchinson") {
		t.Errorf("likelihood of the folder: exit %d %q", code, e)
	}
	if code, _, e := fmgpu(t, "eval", "--checkpoint", ck, "--n", "6", "--floors", "1", "--steps", "1", "--path-n", "0", "--guidance", "0"); code != 0 {
		t.Errorf("eval on the training folder: exit %d %q", code, e)
	}
}

// A network the image cannot carry is refused naming the flags to change.
func TestImageModelErrorsNameFlags(t *testing.T) {
	imgs := imageFolder(t) // 8x8
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--mults", "1,2,2,2,2"}, "--mults, --image-size: image size 8x8 is not divisible by 2^4"},
		{[]string{"--mults", "1,2", "--image-size", "5"}, "--mults, --image-size: image size 5x5 is not divisible by 2^1"},
		{[]string{"--mults", "1,2", "--groups", "3"}, "--groups: group norm groups 3 must divide the base width 8"},
	} {
		args := append([]string{"train", "--data", imgs, "--out", t.TempDir(), "--steps", "2", "--no-plot"}, tinyUNet...)
		args = slices.DeleteFunc(args, func(a string) bool { return a == "--mults" || a == "1,2" || a == "--groups" || a == "4" })
		args = append(args, c.args...)
		if code, _, e := fmgpu(t, args...); code != ExitUsage || !strings.Contains(e, c.want) {
			t.Errorf("%v: exit %d %q, want %q", c.args, code, e, c.want)
		}
	}
}

// --n-data cuts a class folder in path order: the classes past the cut
// get no image, and train says so.
func TestImageNDataWarnsOfEmptyClasses(t *testing.T) {
	imgs := imageFolder(t) // left/, right/: 12 images each
	args := append([]string{"train", "--data", imgs, "--out", t.TempDir(), "--steps", "2", "--n-data", "5", "--no-plot"}, tinyUNet...)
	code, _, e := fmgpu(t, args...)
	if code != 0 || !strings.Contains(e, "1 of 2 classes have no image among the 5 read (right): a folder's images are read in path order") {
		t.Errorf("exit %d %q", code, e)
	}
	// a built-in set is cut in its files' order, not class by class
	args = append([]string{"train", "--data", "mnist", "--out", t.TempDir(), "--steps", "2", "--n-data", "5", "--no-plot"}, tinyUNet...)
	if code, _, e := fmgpu(t, args...); code != 0 || !strings.Contains(e, "5 of 10 classes have no image among the 5 read (2, 3, 6, 7, 8): the set's first images, in its files' order") {
		t.Errorf("mnist: exit %d %q", code, e)
	}
}

func readBytes(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// --class by index of a model whose class folders are numbers out of
// numeric order (0, 1, 10, 11, 2, ...) says which folder it is.
func TestClassIndexOfNumberedFolders(t *testing.T) {
	names := []string{"0", "1", "10", "11", "2"}
	var e strings.Builder
	o := sampleOptions{classSet: true, class: 2}
	if err := resolveClass(&o, names, &e); err != nil || o.class != 2 || !strings.Contains(e.String(), `--class 2 is the class at index 2, named "10"; the class named "2" is --class 4`) {
		t.Errorf("--class 2: %v, class %d, %q", err, o.class, e.String())
	}
	e.Reset()
	o = sampleOptions{classSet: true, class: 1}
	if err := resolveClass(&o, names, &e); err != nil || e.Len() != 0 {
		t.Errorf("--class 1 (named 1): %v %q", err, e.String())
	}
	// zero-padded numbers are their numbers
	e.Reset()
	o = sampleOptions{classSet: true, class: 1}
	if err := resolveClass(&o, []string{"00", "01", "02"}, &e); err != nil || e.Len() != 0 {
		t.Errorf("--class 1 of 00, 01, 02: %v %q", err, e.String())
	}
	o = sampleOptions{classSet: true, class: -1, className: "11"}
	if err := resolveClass(&o, names, &e); err != nil || o.class != 3 {
		t.Errorf("--class 11 by name: %v, class %d", err, o.class)
	}
}
