package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fmgpu/fmgpu/data"
	"github.com/fmgpu/fmgpu/model"
	"github.com/fmgpu/fmgpu/train"
)

// cifarFolder writes synthetic CIFAR-10 batches in the official binary
// layout (a label byte, then the red, green and blue 32 x 32 planes) with
// per records each: the image of class k is bright in plane k % 3 and on
// the rows k*3 to k*3+2, dim elsewhere, plus a little texture, so that the
// classes differ.
func cifarFolder(t *testing.T, per int) string {
	t.Helper()
	dir := t.TempDir()
	files := []string{"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"}
	for f, name := range files {
		var b []byte
		for i := range per {
			k := (f*per + i) % 10
			b = append(b, byte(k))
			for c := range 3 {
				for y := range 32 {
					for x := range 32 {
						v := byte((x*5 + y*3 + i*17) % 48)
						if c == k%3 {
							v += 120
						}
						if y/3 == k {
							v += 80
						}
						b = append(b, v)
					}
				}
			}
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// tinyCIFAR are the cifar10 preset with the network shrunk to train in
// seconds on a CPU: its blocks (attention after each residual block at
// 16x16 and in the middle, several heads, dropout) at 8 channels.
var tinyCIFAR = []string{"--preset", "cifar10", "--base", "8", "--mults", "1,2", "--res-blocks", "1", "--groups", "4",
	"--heads", "2", "--time-freqs", "8", "--batch", "6", "--n-data", "60", "--log-every", "5", "--quiet", "--no-plot"}

// --data cifar10 without the files fails with one line saying where to
// get them, and leaves no --out behind.
func TestCIFAR10Missing(t *testing.T) {
	t.Setenv(data.EnvCIFAR10Dir, "")
	out := filepath.Join(t.TempDir(), "run")
	code, _, e := fmgpu(t, "train", "--data", "cifar10", "--out", out, "--quiet")
	if code != 2 || strings.Count(strings.TrimSpace(e), "\n") != 0 || !strings.Contains(e, data.CIFAR10URL) || !strings.Contains(e, "--data-dir") {
		t.Errorf("exit %d, stderr %q: want 2 and one line with %s", code, e, data.CIFAR10URL)
	}
	empty := t.TempDir()
	code, _, e = fmgpu(t, "train", "--data", "cifar10", "--data-dir", empty, "--out", out, "--quiet")
	if code != 2 || !strings.Contains(e, "data_batch_1.bin not found in "+empty) || !strings.Contains(e, data.CIFAR10URL) {
		t.Errorf("empty --data-dir: exit %d, stderr %q", code, e)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("a refused run left %s", out)
	}
}

// --preset cifar10 on synthetic CIFAR-10: the recipe's settings where no
// flag overrides them, recorded with the preset's name; a conditional
// model of the 10 classes whose loss falls in 40 steps; an interrupted
// and resumed run (dropout masks and all) ends bit for bit where a
// straight one does; the class-conditional sampler runs on it. On the CPU
// in every build: the same network on the device is
// TestKernelSimUNetDropoutTrainingMatchesCPU's (package gpu).
func TestCIFAR10PresetTrain(t *testing.T) {
	dir := cifarFolder(t, 12)
	t.Setenv(data.EnvCIFAR10Dir, dir)
	straight := t.TempDir()
	args := append([]string{"train", "--data", "cifar10", "--out", straight, "--steps", "40", "--lr", "2e-3"}, tinyCIFAR...)
	if code, _, e := cpuRun(t, args...); code != 0 {
		t.Fatalf("train: %s", e)
	}
	ckPath := filepath.Join(straight, train.CheckpointName)
	ck, err := train.Load(ckPath)
	if err != nil {
		t.Fatal(err)
	}
	c := ck.Meta.Config
	m := c.Model
	u := m.UNet
	want := model.UNetConfig{Base: 8, Mults: []int{1, 2}, ResBlocks: 1, Attention: true, Groups: 4, AttentionRes: []int{16}, Heads: 2, Dropout: 0.1}
	if m.Kind != model.KindUNet || m.Classes != 10 || m.Image == nil || *m.Image != (model.ImageShape{Channels: 3, Height: 32, Width: 32}) ||
		u.Base != want.Base || !slices.Equal(u.Mults, want.Mults) || u.ResBlocks != want.ResBlocks || u.Attention != want.Attention ||
		u.Groups != want.Groups || !slices.Equal(u.AttentionRes, want.AttentionRes) || u.Heads != want.Heads || u.Dropout != want.Dropout {
		t.Errorf("model %v, want %+v and 10 classes", m, want)
	}
	// The preset's values where no flag was given: lr and steps were
	// given; the warm-up is the recipe's 5000 cut to the run's 40 steps.
	if c.Preset != "cifar10" || c.LR != 2e-3 || c.Steps != 40 || c.Batch != 6 || c.Warmup != 40 || c.Schedule != train.Constant ||
		c.EMADecay != 0.9999 || c.MaxGradNorm != 1 || m.TimeEmbed.Freqs != 8 {
		t.Errorf("config %+v", c)
	}
	losses := metricLosses(t, straight)
	if len(losses) != 8 || !(losses[len(losses)-1] < 0.8*losses[0]) {
		t.Errorf("losses %v: want 8 logs, the last under 0.8 of the first", losses)
	}

	chunked := t.TempDir()
	args[4] = chunked
	if code, _, e := cpuRun(t, append(args, "--stop-after", "17")...); code != 0 {
		t.Fatalf("train --stop-after: %s", e)
	}
	// --resume takes the checkpoint's settings, preset included.
	if code, _, e := cpuRun(t, "train", "--out", chunked, "--resume", "--quiet", "--no-plot"); code != 0 {
		t.Fatalf("resume: %s", e)
	}
	sameCheckpointTensors(t, ckPath, filepath.Join(chunked, train.CheckpointName))

	code, _, e := cpuRun(t, "sample", "--checkpoint", ckPath, "--out", filepath.Join(t.TempDir(), "s.npy"), "--n", "3",
		"--class", "4", "--solver", "euler", "--steps", "2")
	if code != 0 {
		t.Errorf("sample: %s", e)
	}
	code, stdout, e := fmgpu(t, "info", "--checkpoint", ckPath)
	if code != 0 || !strings.Contains(stdout+e, "attention-res [16] heads 2 dropout 0.1") {
		t.Errorf("info: exit %d, %s%s", code, stdout, e)
	}
}

// The preset's misuses are one-line usage errors.
func TestPresetErrors(t *testing.T) {
	dir := cifarFolder(t, 2)
	t.Setenv(data.EnvCIFAR10Dir, dir)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--data", "moons", "--preset", "cifar10"}, "--preset cifar10 trains a U-Net on image data, not moons"},
		{[]string{"--data", "cifar10", "--preset", "imagenet"}, `--preset "imagenet": want cifar10`},
		{[]string{"--data", "cifar10", "--heads", "0"}, "--heads 0: need at least 1"},
		{[]string{"--data", "cifar10", "--dropout", "1"}, "--dropout 1: need 0 <= p < 1"},
		{[]string{"--data", "cifar10", "--attention-res", "x"}, "--attention-res"},
		{[]string{"--data", "cifar10", "--attention-res", "12"}, "attention resolution 12"},
		{[]string{"--data", "cifar10", "--heads", "3", "--attention"}, "heads 3"},
		{[]string{"--data", "moons", "--dropout", "0.1"}, "--dropout applies to --model unet"},
	} {
		out := filepath.Join(t.TempDir(), "run")
		code, _, e := fmgpu(t, append([]string{"train", "--out", out, "--quiet", "--steps", "2"}, c.args...)...)
		if code != 2 || !strings.Contains(e, c.want) || strings.Count(strings.TrimSpace(e), "\n") != 0 {
			t.Errorf("%v: exit %d, %q; want 2 and %q", c.args, code, e, c.want)
		}
	}
}

// metricLosses are the losses of metrics.jsonl's progress lines.
func metricLosses(t *testing.T, dir string) []float64 {
	t.Helper()
	var out []float64
	for _, line := range metricTrace(t, dir) {
		var m struct {
			Event string   `json:"event"`
			Loss  *float64 `json:"loss"`
		}
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatal(err)
		}
		if m.Event == "" && m.Loss != nil {
			out = append(out, *m.Loss)
		}
	}
	return out
}
