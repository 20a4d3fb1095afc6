package cli

import (
	"bufio"
	"context"
	"errors"
	"io"
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
	"github.com/fmgpu/fmgpu/internal/dirlock"
	"github.com/fmgpu/fmgpu/train"
)

// interruptAfter starts the command line as a process, sends sig once
// ready returns (it reads the process's stderr as it comes), and returns
// the exit code, stderr and the seconds from the signal to the exit.
func interruptAfter(t *testing.T, sig syscall.Signal, ready func(stderrLine string) bool, args ...string) (int, string, float64) {
	t.Helper()
	cmd := fmgpuProcess(args...)
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	deadline := time.After(60 * time.Second)
wait:
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				break wait
			}
			stderr.WriteString(l + "\n")
			if ready(l) {
				break wait
			}
		case <-deadline:
			cmd.Process.Kill()
			t.Fatalf("%v: not ready after 60 s: %s", args, stderr.String())
		}
	}
	sent := time.Now()
	cmd.Process.Signal(sig)
	for l := range lines {
		stderr.WriteString(l + "\n")
	}
	err = cmd.Wait()
	el := time.Since(sent).Seconds()
	var ee *exec.ExitError
	code := 0
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	}
	return code, stderr.String(), el
}

// Every long command stops on the first SIGINT or SIGTERM within a
// moment, writes nothing, says so and exits 130 (item 2).
func TestSignalsStopEveryCommand(t *testing.T) {
	dir := t.TempDir()
	ck := tinyTrain(t, dir, "--no-plot")
	// eval's samples: more points than an O(n^3) assignment gets through
	big := filepath.Join(dir, "big.npy")
	bd, _ := data.Builtin("moons", 20000, 3)
	if err := writeMatrix(big, bd.X, bd.N, bd.D); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.npy")
	cases := []struct {
		name string
		sig  syscall.Signal
		args []string
	}{
		{"sample", syscall.SIGINT, []string{"sample", "--checkpoint", ck, "--n", "10000000", "--solver", "euler", "--steps", "1000", "--out", out}},
		{"likelihood", syscall.SIGTERM, []string{"likelihood", "--checkpoint", ck, "--data", "moons", "--n-data", "5000000", "--solver", "rk4", "--steps", "1000", "--out", out}},
		{"eval", syscall.SIGINT, []string{"eval", "--samples", big, "--data", "moons", "--n", "20000"}},
		{"bench", syscall.SIGTERM, []string{"bench", "--device", "cpu", "--workload", "unet-mnist-b64", "--steps", "1000"}},
		{"bench sample-euler", syscall.SIGINT, []string{"bench", "--device", "cpu", "--workload", "sample-euler", "--steps", "5000"}},
	}
	for _, c := range cases {
		// one second in, each command is deep in its work (minutes of it)
		code, stderr, el := interruptAfterSleep(t, c.sig, time.Second, c.args...)
		if code != ExitInterrupted || !strings.Contains(stderr, "nothing written") || el > 5 {
			t.Errorf("%s: exit %d %.2fs after %v, stderr %q", c.name, code, el, c.sig, stderr)
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("%s: wrote %s after the signal", c.name, out)
			os.Remove(out)
		}
		t.Logf("%s: exit %d %.2fs after %v", c.name, code, el, c.sig)
	}
}

// interruptAfterSleep sends sig a fixed time after the start.
func interruptAfterSleep(t *testing.T, sig syscall.Signal, d time.Duration, args ...string) (int, string, float64) {
	t.Helper()
	cmd := fmgpuProcess(args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(d)
	sent := time.Now()
	cmd.Process.Signal(sig)
	err := cmd.Wait()
	el := time.Since(sent).Seconds()
	var ee *exec.ExitError
	code := 0
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	}
	return code, stderr.String(), el
}

// A signal while train draws its end-of-run plots stops the drawing: the
// final checkpoint is on disk, the plots are not, exit 130 (item 2).
func TestSignalDuringTrainPlots(t *testing.T) {
	dir := t.TempDir()
	code, stderr, el := interruptAfter(t, syscall.SIGINT, func(l string) bool { return strings.Contains(l, "drawing loss.png and samples.png") },
		"train", "--data", "moons", "--out", dir, "--steps", "20", "--warmup", "2", "--hidden", "512,512,512", "--n-data", "500", "--log-every", "10", "--device", "cpu")
	if code != ExitInterrupted || el > 5 || !strings.Contains(stderr, "samples.png were not drawn") {
		t.Fatalf("exit %d %.2fs after the signal, stderr %q", code, el, stderr)
	}
	ck, err := train.Load(filepath.Join(dir, train.CheckpointName))
	if err != nil || ck.Meta.Step != 20 {
		t.Fatalf("checkpoint after the interrupted plots: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "samples.png")); err == nil {
		t.Error("samples.png written after the signal")
	}
	t.Logf("stopped %.2fs after the signal: %s", el, strings.TrimSpace(stderr))
}

// One run at a time in an --out (item 8): a second exits 2 naming the
// holder's pid; once the holder is killed, its lock is taken over.
func TestOutLocked(t *testing.T) {
	dir := t.TempDir()
	cmd := fmgpuProcess("train", "--out", dir, "--data", "moons", "--steps", "1000000", "--batch", "64", "--hidden", "64,64",
		"--n-data", "1000", "--warmup", "1", "--log-every", "10", "--quiet", "--no-plot")
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	waitForFile(t, filepath.Join(dir, train.MetricsName))
	pid := strconv.Itoa(cmd.Process.Pid)
	for _, extra := range [][]string{{"--resume"}, {}} {
		args := append([]string{"train", "--out", dir, "--data", "moons", "--steps", "100", "--quiet", "--no-plot"}, extra...)
		code, _, e := fmgpu(t, args...)
		if code != ExitUsage || !strings.Contains(e, "pid "+pid) || !strings.Contains(e, "in use") {
			t.Errorf("second run %v: exit %d %q, want a usage error naming pid %s", extra, code, e, pid)
		}
	}
	cmd.Process.Kill()
	cmd.Wait()
	if b, err := os.ReadFile(filepath.Join(dir, dirlock.Name)); err != nil || strings.TrimSpace(string(b)) != pid {
		t.Fatalf("the killed run's lock file: %q %v", b, err)
	}
	// killed, it saved no checkpoint: a new run starts in the directory
	code, _, e := fmgpu(t, "train", "--out", dir, "--data", "moons", "--steps", "20", "--batch", "64", "--hidden", "64,64",
		"--n-data", "1000", "--warmup", "1", "--quiet", "--no-plot")
	if code != 0 {
		t.Errorf("after the holder died: exit %d %q", code, e)
	}
	if _, err := os.Stat(filepath.Join(dir, dirlock.Name)); err == nil {
		t.Error("a finished run left its lock file")
	}
}

// A signal that comes before a phase begins is answered with the earlier
// phase's note, and enterPhase then reports it, so that the command keeps
// that note's promise: a train interrupted as it started said "nothing
// will be written", then trained a step and wrote a checkpoint.
func TestEnterPhaseAfterSignal(t *testing.T) {
	stderr := newLockedBuffer()
	ctx, stop := withSignals(context.Background(), stderr)
	defer stop()
	if err := enterPhase(ctx, "loading"); err != nil {
		t.Fatalf("before any signal: %v", err)
	}
	onInterrupt(ctx, "stopping; nothing will be written")
	if err := syscall.Kill(os.Getpid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the signal did not cancel the context")
	}
	if err := enterPhase(ctx, "saving a checkpoint"); err == nil {
		t.Error("enterPhase after the signal returned nil: the command would go on to write")
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(stderr.String(), "interrupted; stopping; nothing will be written") {
		if time.Now().After(deadline) {
			t.Fatalf("stderr %q", stderr.String())
		}
		time.Sleep(time.Millisecond)
	}
}

// A signal as training starts either stops the run before its first step,
// writing nothing as the note says, or lets the step under way finish and
// saves it; here that step is the last, and the message says the run is
// complete rather than to continue it with --resume (which would refuse).
//
// The step is made long (a wide network at a large batch) so that the
// signal lands in either window; the simulated device of a kernelsim build
// runs a step a hundred times slower than the CPU, and there a narrower
// network leaves the same windows in a second instead of a minute.
func TestInterruptAtTheStart(t *testing.T) {
	out := filepath.Join(t.TempDir(), "run")
	hidden := "1024,1024,1024"
	if gpu.Flavor == "kernelsim" {
		hidden = "256,256,256"
	}
	code, stderr, _ := interruptAfter(t, syscall.SIGINT, func(l string) bool { return strings.Contains(l, "parameters, on") },
		"train", "--data", "moons", "--out", out, "--steps", "1", "--batch", "4096", "--hidden", hidden, "--no-plot")
	_, err := os.Stat(filepath.Join(out, train.CheckpointName))
	saved := err == nil
	switch {
	case code != ExitInterrupted:
		t.Errorf("exit %d, stderr %q", code, stderr)
	case strings.Contains(stderr, "nothing will be written") != !saved:
		t.Errorf("checkpoint saved: %t, stderr %q", saved, stderr)
	case saved && !strings.Contains(stderr, "at step 1, the last: the run is complete"):
		t.Errorf("saved the last step, stderr %q", stderr)
	}
	t.Logf("saved: %t", saved)
}
