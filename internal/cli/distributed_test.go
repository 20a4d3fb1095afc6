package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fmgpu/fmgpu/collective"
	"github.com/fmgpu/fmgpu/gpu"
	"github.com/fmgpu/fmgpu/internal/cudadriver"
	"github.com/fmgpu/fmgpu/internal/fakecuda"
	"github.com/fmgpu/fmgpu/internal/fakenccl"
	"github.com/fmgpu/fmgpu/train"
)

// Data-parallel `fmgpu train`: this test binary runs as every rank
// (TestMain's FMGPU_CLI_MAIN), under Open MPI's mpirun for CPU runs over
// MPI, and as processes with torchrun-style variables for GPU runs over
// NCCL, on the fake libcuda and the fake libnccl.

// requireMPIEnv, set by .ci/run, makes a missing mpirun fail the tests
// that need it instead of skipping them (as in package collective).
const requireMPIEnv = "FMGPU_REQUIRE_MPI"

// mpirunPath finds Open MPI's mpirun, or skips (fails under requireMPIEnv).
func mpirunPath(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("mpirun")
	if err == nil {
		out, _ := exec.Command(path, "--version").CombinedOutput()
		if bytes.Contains(out, []byte("Open MPI")) {
			return path
		}
		err = fmt.Errorf("%s is not Open MPI's", path)
	}
	if os.Getenv(requireMPIEnv) != "" {
		t.Fatalf("mpirun: %v (%s is set; apt-get install openmpi-bin libopenmpi-dev)", err, requireMPIEnv)
	}
	t.Skipf("Open MPI's mpirun not found (%v): apt-get install openmpi-bin libopenmpi-dev to run this test", err)
	return ""
}

// mpirunCmd is np ranks of fmgpu args under mpirun, with the variables
// env (NAME=value) passed to every rank.
func mpirunCmd(t *testing.T, np int, env []string, args ...string) *exec.Cmd {
	t.Helper()
	mpirun := mpirunPath(t)
	env = append(env, "FMGPU_CLI_MAIN=1",
		// containers often forbid the cross-memory attach of Open MPI's
		// shared-memory transport; plain copies work everywhere
		"OMPI_MCA_btl_vader_single_copy_mechanism=none")
	a := []string{"--oversubscribe", "-np", strconv.Itoa(np)}
	if os.Geteuid() == 0 {
		a = append([]string{"--allow-run-as-root"}, a...)
	}
	for _, e := range env {
		k, _, _ := strings.Cut(e, "=")
		a = append(a, "-x", k)
	}
	cmd := exec.Command(mpirun, append(append(a, os.Args[0]), args...)...)
	cmd.Env = append(os.Environ(), env...)
	return cmd
}

// mpirunFmgpu runs np ranks to the end, at most limit, and returns the
// exit code and the output of every rank.
func mpirunFmgpu(t *testing.T, np int, limit time.Duration, args ...string) (int, string) {
	t.Helper()
	return mpirunFmgpuEnv(t, np, limit, nil, args...)
}

func mpirunFmgpuEnv(t *testing.T, np int, limit time.Duration, env []string, args ...string) (int, string) {
	t.Helper()
	cmd := mpirunCmd(t, np, env, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return waitLimit(t, cmd, limit, &out)
}

func waitLimit(t *testing.T, cmd *exec.Cmd, limit time.Duration, out fmt.Stringer) (int, string) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return exitCode(err), out.String()
	case <-time.After(limit):
		cmd.Process.Kill()
		<-done
		t.Fatalf("%v did not finish within %v:\n%s", cmd.Args, limit, out.String())
	}
	return 0, ""
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// dpArgs is a small CPU run; the ranks and the single process use one
// thread each so that their sums differ by the split of the batch only.
func dpArgs(out string, extra ...string) []string {
	return append([]string{"train", "--data", "moons", "--out", out, "--steps", "30", "--batch", "64",
		"--hidden", "16,16", "--n-data", "2000", "--warmup", "5", "--log-every", "5", "--seed", "3",
		"--no-plot", "--device", "cpu", "--threads", "1"}, extra...)
}

// Tolerances of an N-rank run against one process. The ranks sum their
// gradients in another order than one process sums its rows, so each
// gradient element differs by float32 rounding, and Adam (which divides
// by the root of the second moment) carries that into the weights. Over
// these 30 steps (weights of magnitude up to about 1) the differences
// measured are below 1e-7 of each loss and gradient norm and below 5e-8
// in the weights and moments (2 ranks over MPI, 2026-12-04); the bounds
// leave a factor of a hundred, and are far below what a wrong share of
// the batch, a missing rank or a gradient counted twice gives (1e-2 and
// more).
const (
	dpLossRelTol   = 1e-5
	dpWeightAbsTol = 1e-5
)

type metricRow struct {
	Step     int      `json:"step"`
	Loss     *float64 `json:"loss"`
	GradNorm *float64 `json:"grad_norm"`
	LR       *float64 `json:"lr"`
}

func readMetricRows(t *testing.T, dir string) []metricRow {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, train.MetricsName))
	if err != nil {
		t.Fatal(err)
	}
	var rows []metricRow
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		var m metricRow
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("%s: %v", sc.Text(), err)
		}
		if m.Loss != nil {
			rows = append(rows, m)
		}
	}
	return rows
}

// sameTrace checks that two runs logged the same steps with the same
// losses and gradient norms (within dpLossRelTol) and learning rates.
func sameTrace(t *testing.T, want, got string) {
	t.Helper()
	a, b := readMetricRows(t, want), readMetricRows(t, got)
	if len(a) != len(b) || len(a) == 0 {
		t.Fatalf("%d logged steps, want %d", len(b), len(a))
	}
	worst := 0.0
	for i := range a {
		if a[i].Step != b[i].Step || *a[i].LR != *b[i].LR {
			t.Fatalf("line %d: step %d lr %v, want step %d lr %v", i, b[i].Step, *b[i].LR, a[i].Step, *a[i].LR)
		}
		for _, p := range [][2]float64{{*a[i].Loss, *b[i].Loss}, {*a[i].GradNorm, *b[i].GradNorm}} {
			rel := math.Abs(p[1]-p[0]) / math.Abs(p[0])
			worst = max(worst, rel)
			if !(rel <= dpLossRelTol) {
				t.Errorf("step %d: %v, want %v (relative difference %.2g > %.0g)", a[i].Step, p[1], p[0], rel, dpLossRelTol)
			}
		}
	}
	t.Logf("loss and gradient norm: largest relative difference %.2g over %d logged steps", worst, len(a))
}

// closeCheckpoints checks two checkpoints hold the same step and the same
// state within dpWeightAbsTol, and returns the second.
func closeCheckpoints(t *testing.T, want, got string) *train.Checkpoint {
	t.Helper()
	a, err := train.Load(filepath.Join(want, train.CheckpointName))
	if err != nil {
		t.Fatal(err)
	}
	b, err := train.Load(filepath.Join(got, train.CheckpointName))
	if err != nil {
		t.Fatal(err)
	}
	if a.Meta.Step != b.Meta.Step {
		t.Fatalf("checkpoint at step %d, want %d", b.Meta.Step, a.Meta.Step)
	}
	for _, p := range []struct {
		name string
		x, y []float32
	}{{"weights", a.Params, b.Params}, {"ema", a.EMA, b.EMA}, {"adam m", a.AdamM, b.AdamM}, {"adam v", a.AdamV, b.AdamV}} {
		worst := 0.0
		for i := range p.x {
			d := math.Abs(float64(p.x[i]) - float64(p.y[i]))
			worst = max(worst, d)
			if !(d <= dpWeightAbsTol) {
				t.Fatalf("%s[%d] = %v, want %v (difference %.2g > %.0g)", p.name, i, p.y[i], p.x[i], d, dpWeightAbsTol)
			}
		}
		t.Logf("%s: largest difference %.2g", p.name, worst)
	}
	return b
}

func trainOnce(t *testing.T, args ...string) {
	t.Helper()
	if code, _, stderr := fmgpu(t, args...); code != 0 {
		t.Fatalf("%v: exit %d: %s", args, code, stderr)
	}
}

// Two ranks over MPI compute what one process computes with the same
// global batch and seed: the same loss trace and weights (within the
// float32 rounding of the different order of the sums); the first line
// and the checkpoint record the engine and world_size; rank 0 alone
// writes.
func TestDistributedMPIMatchesOneProcess(t *testing.T) {
	one, two := t.TempDir(), filepath.Join(t.TempDir(), "run")
	trainOnce(t, dpArgs(one)...)
	code, out := mpirunFmgpu(t, 2, 2*time.Minute, dpArgs(two)...)
	if code != 0 {
		t.Fatalf("mpirun: exit %d:\n%s", code, out)
	}
	sameTrace(t, one, two)
	ck := closeCheckpoints(t, one, two)
	if p := ck.Meta.Parallel; p == nil || p.Engine != "mpi" || p.WorldSize != 2 {
		t.Errorf("checkpoint metadata: parallel %+v, want engine mpi, world_size 2", p)
	}
	if ck1, _ := train.Load(filepath.Join(one, train.CheckpointName)); ck1 == nil || ck1.Meta.Parallel != nil {
		t.Errorf("a single process's checkpoint records parallel %+v", ck1.Meta.Parallel)
	}
	first := regexp.MustCompile(`(?m)^fmgpu train: mlp, .*; data-parallel: world_size 2, engine mpi \(.*\), openmpi launch$`)
	if !first.MatchString(out) || strings.Count(out, "fmgpu train: mlp") != 1 || strings.Count(out, "wrote ") != 1 {
		t.Errorf("want one first line naming the engine and world_size, and one report (rank 0's):\n%s", out)
	}
}

// A coupled batch over 2 ranks is paired as one process pairs it: over
// the global batch on every rank (the default), or in blocks, here one a
// rank; the checkpoint records the coupling.
func TestDistributedMPICoupling(t *testing.T) {
	mpirunPath(t)
	for _, c := range []struct {
		name string
		args []string
		want train.Coupling
	}{
		{"ot-global", []string{"--coupling", "ot"}, train.Coupling{Kind: "ot"}},
		{"sinkhorn-blocks", []string{"--coupling", "sinkhorn", "--ot-reg", "0.5", "--coupling-blocks", "2"}, train.Coupling{Kind: "sinkhorn", Reg: 0.5, Blocks: 2}},
	} {
		t.Run(c.name, func(t *testing.T) {
			one, two := t.TempDir(), filepath.Join(t.TempDir(), "run")
			trainOnce(t, dpArgs(one, c.args...)...)
			code, out := mpirunFmgpu(t, 2, 2*time.Minute, dpArgs(two, c.args...)...)
			if code != 0 {
				t.Fatalf("mpirun: exit %d:\n%s", code, out)
			}
			sameTrace(t, one, two)
			ck := closeCheckpoints(t, one, two)
			if ck.Meta.Config.Coupling != c.want || ck.Meta.Parallel == nil || ck.Meta.Parallel.WorldSize != 2 {
				t.Errorf("checkpoint: coupling %+v, parallel %+v", ck.Meta.Config.Coupling, ck.Meta.Parallel)
			}
		})
	}
}

// An image directory is read in shards (each rank decodes half of the
// files and the ranks exchange them): 2 ranks train what one process
// does, and the checkpoint records the data's checksum of one process's
// read. A file that does not decode fails both ranks, with one line from
// the rank that read it.
func TestDistributedImageDirSharded(t *testing.T) {
	mpirunPath(t)
	imgs := imageFolder(t)
	args := func(out string) []string {
		a := append([]string{"train", "--data", imgs, "--out", out}, tinyUNet...)
		return append(a, "--steps", "6", "--log-every", "2", "--seed", "4", "--device", "cpu", "--threads", "1", "--no-plot")
	}
	one, two := t.TempDir(), filepath.Join(t.TempDir(), "run")
	trainOnce(t, args(one)...)
	code, out := mpirunFmgpu(t, 2, 3*time.Minute, args(two)...)
	if code != 0 {
		t.Fatalf("mpirun: exit %d:\n%s", code, out)
	}
	sameTrace(t, one, two)
	ck := closeCheckpoints(t, one, two)
	ck1, err := train.Load(filepath.Join(one, train.CheckpointName))
	if err != nil {
		t.Fatal(err)
	}
	if ck.Meta.Data.SHA256 == "" || ck.Meta.Data.SHA256 != ck1.Meta.Data.SHA256 {
		t.Errorf("data checksum %q, one process's %q", ck.Meta.Data.SHA256, ck1.Meta.Data.SHA256)
	}

	// The last file (rank 1's share) is broken.
	bad := filepath.Join(imgs, "right", "l.png")
	if err := os.WriteFile(bad, []byte("not a png"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out = mpirunFmgpu(t, 2, 3*time.Minute, args(filepath.Join(t.TempDir(), "run"))...)
	if code == 0 || !strings.Contains(out, bad+": not a PNG or JPEG image") {
		t.Fatalf("a broken file: exit %d, want its error:\n%s", code, out)
	}
	t.Logf("a broken file:\n%s", out)
}

// A checkpoint of 2 ranks resumes on 1, and one of 1 on 2: the chunked
// runs end where an unbroken single process does.
func TestDistributedResumeOnOtherRanks(t *testing.T) {
	mpirunPath(t)
	ref := t.TempDir()
	trainOnce(t, dpArgs(ref)...)

	twoThenOne := filepath.Join(t.TempDir(), "run")
	if code, out := mpirunFmgpu(t, 2, 2*time.Minute, dpArgs(twoThenOne, "--stop-after", "15")...); code != 0 {
		t.Fatalf("2 ranks, --stop-after 15: exit %d:\n%s", code, out)
	}
	trainOnce(t, dpArgs(twoThenOne, "--resume")...)
	sameTrace(t, ref, twoThenOne)
	if ck := closeCheckpoints(t, ref, twoThenOne); ck.Meta.Parallel != nil {
		t.Errorf("resumed on one process: parallel %+v", ck.Meta.Parallel)
	}

	oneThenTwo := filepath.Join(t.TempDir(), "run")
	trainOnce(t, dpArgs(oneThenTwo, "--stop-after", "15")...)
	if code, out := mpirunFmgpu(t, 2, 2*time.Minute, dpArgs(oneThenTwo, "--resume")...); code != 0 {
		t.Fatalf("2 ranks, --resume: exit %d:\n%s", code, out)
	}
	sameTrace(t, ref, oneThenTwo)
	if ck := closeCheckpoints(t, ref, oneThenTwo); ck.Meta.Parallel == nil || ck.Meta.Parallel.WorldSize != 2 {
		t.Errorf("resumed on 2 ranks: parallel %+v", ck.Meta.Parallel)
	}
}

// longArgs is a run that lasts until it is stopped.
func longArgs(out string, extra ...string) []string {
	return append([]string{"train", "--data", "moons", "--out", out, "--steps", "5000000", "--batch", "64",
		"--hidden", "16,16", "--n-data", "2000", "--log-every", "100", "--no-plot", "--threads", "1"}, extra...)
}

// lockedBuffer is an output written by a process and read by the test.
type lockedBuffer struct {
	mu chan struct{}
	b  bytes.Buffer
}

func newLockedBuffer() *lockedBuffer { return &lockedBuffer{mu: make(chan struct{}, 1)} }

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu <- struct{}{}
	defer func() { <-l.mu }()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu <- struct{}{}
	defer func() { <-l.mu }()
	return l.b.String()
}

// startMPIRanks starts np ranks of a long run under mpirun and returns,
// once every rank has written a checkpoint-free step to the metrics (rank
// 0) and the run is under way, the command and the ranks' process ids by
// rank.
func startMPIRanks(t *testing.T, np int, out string, extra ...string) (*exec.Cmd, *lockedBuffer, []int) {
	t.Helper()
	cmd := mpirunCmd(t, np, nil, longArgs(out, extra...)...)
	buf := newLockedBuffer()
	cmd.Stdout, cmd.Stderr = buf, buf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	deadline := time.Now().Add(time.Minute)
	for {
		pids := rankPids(cmd.Process.Pid, np)
		if pids != nil {
			if st, err := os.Stat(filepath.Join(out, train.MetricsName)); err == nil && st.Size() > 0 {
				return cmd, buf, pids
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the ranks did not start training within a minute:\n%s", buf.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// rankPids finds the processes mpirun (pid) started, by the rank Open MPI
// gave each in its environment; nil until all np are there.
func rankPids(parent, np int) []int {
	entries, _ := os.ReadDir("/proc")
	pids := make([]int, np)
	found := 0
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, not ')'
		rest := stat[bytes.LastIndexByte(stat, ')')+2:]
		f := strings.Fields(string(rest))
		if len(f) < 2 || f[1] != strconv.Itoa(parent) {
			continue
		}
		env, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		for _, kv := range bytes.Split(env, []byte{0}) {
			if v, ok := bytes.CutPrefix(kv, []byte(collective.EnvOMPIRank+"=")); ok {
				if r, err := strconv.Atoi(string(v)); err == nil && r >= 0 && r < np && pids[r] == 0 {
					pids[r] = pid
					found++
				}
			}
		}
	}
	if found < np {
		return nil
	}
	return pids
}

// A rank killed in the middle of a run ends it within a bounded time,
// with one line naming the rank (mpirun's).
func TestDistributedKilledRank(t *testing.T) {
	out := filepath.Join(t.TempDir(), "run")
	cmd, buf, pids := startMPIRanks(t, 2, out, "--device", "cpu")
	killed := time.Now()
	if err := syscall.Kill(pids[1], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	code, output := waitLimit(t, cmd, 30*time.Second, buf)
	t.Logf("the run ended %v after rank 1 was killed, exit %d", time.Since(killed).Round(time.Millisecond), code)
	// (Open MPI 4.1 may print PID 0 for a rank it did not reap itself)
	want := regexp.MustCompile(`(?m)^mpirun noticed that process rank 1 with PID \d+ on node \S+ exited on signal 9 \(Killed\)\.$`)
	if code == 0 || !want.MatchString(output) {
		t.Fatalf("exit %d, want a failure and a line matching %q:\n%s", code, want, output)
	}
}

// A usage error every rank finds after the MPI engine opened (a CPU run
// with --precision tf32) ends the job with exit status 2, as a single
// process exits, not 1.
func TestDistributedUsageErrorExitsTwo(t *testing.T) {
	out := filepath.Join(t.TempDir(), "run")
	code, output := mpirunFmgpu(t, 2, 60*time.Second, "train", "--data", "moons", "--steps", "40", "--precision", "tf32",
		"--threads", "1", "--no-plot", "--device", "cpu", "--out", out)
	if code != ExitUsage || !strings.Contains(output, "--precision tf32 on cpu") {
		t.Fatalf("exit %d, want %d:\n%s", code, ExitUsage, output)
	}
	// the abort ends the process: the lock and the directory made for
	// --out went first, as a single process leaves nothing
	if _, err := os.Stat(out); err == nil {
		entries, _ := os.ReadDir(out)
		t.Errorf("the refused run left --out %s (%d entries)", out, len(entries))
	}
}

// Ranks started with different flags are refused before any weight is
// broadcast, naming the setting: a different --hidden corrupted the heap,
// a different --lr trained apart and exited 0.
func TestDistributedRanksAgree(t *testing.T) {
	base := []string{"train", "--data", "moons", "--steps", "40", "--threads", "1", "--no-plot", "--quiet", "--device", "cpu"}
	for _, c := range []struct {
		rank1 []string
		want  string
	}{
		{[]string{"--hidden", "64,64"}, "different settings: the model (--model, --hidden"},
		{[]string{"--lr", "0.01"}, "different settings: --lr;"},
		{[]string{"--log-every", "7"}, "different settings: --log-every;"},
		// settings the checkpoint's JSON leaves out at their default (a
		// list one setting longer on one rank: MPI_ERR_TRUNCATE)
		{[]string{"--coupling", "ot"}, "different settings: the coupling (--coupling, --ot-reg, --coupling-blocks);"},
		{[]string{"--precision", "tf32x3"}, "different settings: --precision;"},
		{[]string{"--out", filepath.Join(t.TempDir(), "elsewhere")}, "different settings: --out;"},
	} {
		out := filepath.Join(t.TempDir(), "run")
		args := append(append(slices.Clone(base), "--out", out), ":", "-np", "1", os.Args[0])
		args = append(append(append(args, base...), "--out", out), c.rank1...)
		code, output := mpirunFmgpu(t, 1, 60*time.Second, args...)
		if code != ExitUsage || strings.Count(output, c.want) != 2 {
			t.Errorf("rank 1 with %v: exit %d, want %d and both ranks saying %q:\n%s", c.rank1, code, ExitUsage, c.want, output)
		}
	}
}

// SIGTERM to every rank (what srun and scancel send): the ranks agree on
// the step to stop after, rank 0 saves it, the run exits 130, and the
// checkpoint resumes on one process.
func TestDistributedSIGTERM(t *testing.T) {
	out := filepath.Join(t.TempDir(), "run")
	cmd, buf, pids := startMPIRanks(t, 2, out, "--device", "cpu")
	sent := time.Now()
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGTERM)
	}
	code, output := waitLimit(t, cmd, time.Minute, buf)
	t.Logf("the run ended %v after SIGTERM, exit %d", time.Since(sent).Round(time.Millisecond), code)
	m := regexp.MustCompile(`(?m)^fmgpu: interrupted; saved \S+ at step (\d+); continue with --resume$`).FindStringSubmatch(output)
	if code != ExitInterrupted || m == nil || !strings.Contains(output, "fmgpu: interrupted; rank 1 stopped after step "+m[1]+"; rank 0 saves the checkpoint") {
		t.Fatalf("exit %d, want %d, rank 0 saying what it saved and rank 1 stopping at the same step:\n%s", code, ExitInterrupted, output)
	}
	ck, err := train.Load(filepath.Join(out, train.CheckpointName))
	if err != nil {
		t.Fatal(err)
	}
	if strconv.Itoa(ck.Meta.Step) != m[1] {
		t.Fatalf("checkpoint at step %d, rank 0 said %s", ck.Meta.Step, m[1])
	}
	steps := strconv.Itoa(ck.Meta.Step + 10)
	trainOnce(t, "train", "--out", out, "--resume", "--steps", steps, "--quiet", "--no-plot")
}

// A CPU run with torchrun-style variables is refused at once: MPI needs
// an MPI launcher.
func TestDistributedCPUNeedsMPILauncher(t *testing.T) {
	cmd := fmgpuProcess(dpArgs(filepath.Join(t.TempDir(), "run"))...)
	cmd.Env = append(cmd.Env, "RANK=0", "WORLD_SIZE=2", "LOCAL_RANK=0", "MASTER_ADDR=127.0.0.1", "MASTER_PORT=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	code, output := waitLimit(t, cmd, time.Minute, &out)
	if code != ExitFailure || !strings.Contains(output, "needs an MPI launcher") {
		t.Fatalf("exit %d, want %d and the launcher named:\n%s", code, ExitFailure, output)
	}
}

// ncclEnv runs the CUDA backend on the fake libcuda (kernelsim's kernels
// behind the real launcher) and NCCL's engine on the fake libnccl.
func ncclEnv(t *testing.T, devices int) []string {
	if gpu.Flavor == "kernelsim" {
		t.Skip("the kernelsim build's --device cuda has no CUDA stream; the default build runs this test on the fake libcuda")
	}
	return []string{
		collective.EnvLibNCCL + "=" + fakenccl.Library(t),
		cudadriver.LibraryEnv + "=" + fakecuda.Library(t),
		"FMGPU_FAKECUDA_DEVICES=" + strconv.Itoa(devices),
	}
}

func freeTCPPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// torchrunRanks starts ranks 0..n-1 of fmgpu args (only those in start,
// when given) with torchrun-style variables.
func torchrunRanks(t *testing.T, n int, env []string, args []string, start ...int) []*exec.Cmd {
	t.Helper()
	if start == nil {
		for r := range n {
			start = append(start, r)
		}
	}
	port := freeTCPPort(t)
	var cmds []*exec.Cmd
	for _, r := range start {
		cmd := fmgpuProcess(args...)
		cmd.Env = append(cmd.Env, env...)
		cmd.Env = append(cmd.Env, fmt.Sprintf("RANK=%d", r), fmt.Sprintf("WORLD_SIZE=%d", n), fmt.Sprintf("LOCAL_RANK=%d", r),
			"MASTER_ADDR=127.0.0.1", fmt.Sprintf("MASTER_PORT=%d", port))
		cmds = append(cmds, cmd)
	}
	return cmds
}

// runAll runs the commands together, at most limit, and returns their
// exit codes and outputs.
func runAll(t *testing.T, cmds []*exec.Cmd, limit time.Duration) ([]int, []string) {
	t.Helper()
	bufs := make([]*lockedBuffer, len(cmds))
	for i, c := range cmds {
		bufs[i] = newLockedBuffer()
		c.Stdout, c.Stderr = bufs[i], bufs[i]
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	codes := make([]int, len(cmds))
	outs := make([]string, len(cmds))
	done := make(chan int, len(cmds))
	for i, c := range cmds {
		go func() { codes[i] = exitCode(c.Wait()); done <- i }()
	}
	for range cmds {
		select {
		case <-done:
		case <-ctx.Done():
			for _, c := range cmds {
				c.Process.Kill()
			}
			var all strings.Builder
			for i, b := range bufs {
				fmt.Fprintf(&all, "--- process %d:\n%s\n", i, b.String())
			}
			t.Fatalf("the processes did not finish within %v:\n%s", limit, all.String())
		}
	}
	for i, b := range bufs {
		outs[i] = b.String()
	}
	return codes, outs
}

// ncclArgs is a tiny GPU run: the fake libcuda runs every GPU thread on
// the CPU.
func ncclArgs(out string, extra ...string) []string {
	return append([]string{"train", "--data", "moons", "--out", out, "--steps", "8", "--batch", "16",
		"--hidden", "8,8", "--n-data", "500", "--warmup", "2", "--log-every", "2", "--seed", "5",
		"--no-plot", "--device", "cuda"}, extra...)
}

// Two GPU ranks started with torchrun-style variables bootstrap NCCL over
// the TCP rendezvous, each on the device of its LOCAL_RANK, and sum their
// device gradients with ncclAllReduce on the backend's stream: the run
// equals one process on the same fake GPU.
func TestDistributedTorchrunNCCL(t *testing.T) {
	env := ncclEnv(t, 2)
	one, two := t.TempDir(), filepath.Join(t.TempDir(), "run")
	single := fmgpuProcess(ncclArgs(one)...)
	single.Env = append(single.Env, env...)
	codes, outs := runAll(t, []*exec.Cmd{single}, 5*time.Minute)
	if codes[0] != 0 {
		t.Fatalf("one process on the fake GPU: exit %d:\n%s", codes[0], outs[0])
	}
	codes, outs = runAll(t, torchrunRanks(t, 2, env, ncclArgs(two)), 5*time.Minute)
	for r := range codes {
		if codes[r] != 0 {
			t.Fatalf("rank %d: exit %d:\n%s", r, codes[r], outs[r])
		}
	}
	if !regexp.MustCompile(`(?m)^fmgpu train: mlp, .*; data-parallel: world_size 2, engine nccl .*bootstrap tcp.*, torchrun launch$`).MatchString(outs[0]) {
		t.Errorf("rank 0's first line does not name the NCCL engine, its TCP bootstrap and world_size:\n%s", outs[0])
	}
	if strings.Contains(outs[1], "fmgpu train:") {
		t.Errorf("rank 1 reported progress:\n%s", outs[1])
	}
	sameTrace(t, one, two)
	if ck := closeCheckpoints(t, one, two); ck.Meta.Parallel == nil || ck.Meta.Parallel.Engine != "nccl" {
		t.Errorf("checkpoint metadata: parallel %+v, want engine nccl", ck.Meta.Parallel)
	}

	// Under mpirun, the NCCL id goes over MPI.
	t.Run("mpirun", func(t *testing.T) {
		two := filepath.Join(t.TempDir(), "run")
		code, out := mpirunFmgpuEnv(t, 2, 5*time.Minute, env, ncclArgs(two)...)
		if code != 0 {
			t.Fatalf("mpirun: exit %d:\n%s", code, out)
		}
		if !regexp.MustCompile(`(?m)^fmgpu train: mlp, .*; data-parallel: world_size 2, engine nccl .*bootstrap mpi.*, openmpi launch$`).MatchString(out) {
			t.Errorf("the first line does not name the NCCL engine and its MPI bootstrap:\n%s", out)
		}
		sameTrace(t, one, two)
		closeCheckpoints(t, one, two)
	})
}

// A GPU rank killed in a torchrun-style run: the survivor sees its
// rendezvous connection end and stops at once with one line naming it.
func TestDistributedTorchrunKilledRank(t *testing.T) {
	env := ncclEnv(t, 2)
	out := filepath.Join(t.TempDir(), "run")
	cmds := torchrunRanks(t, 2, env, ncclArgs(out, "--steps", "5000000", "--log-every", "1"))
	bufs := []*lockedBuffer{newLockedBuffer(), newLockedBuffer()}
	for i, c := range cmds {
		c.Stdout, c.Stderr = bufs[i], bufs[i]
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if c.ProcessState == nil {
				c.Process.Kill()
				c.Wait()
			}
		})
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		if st, err := os.Stat(filepath.Join(out, train.MetricsName)); err == nil && st.Size() > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no step logged within 3 minutes:\n%s\n%s", bufs[0].String(), bufs[1].String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	killed := time.Now()
	cmds[1].Process.Kill()
	cmds[1].Wait()
	code, output := waitLimit(t, cmds[0], 30*time.Second, bufs[0])
	t.Logf("rank 0 stopped %v after rank 1 was killed, exit %d", time.Since(killed).Round(time.Millisecond), code)
	want := regexp.MustCompile(`(?m)^fmgpu: collective: rank 1 exited without closing: .*$`)
	if code == 0 || !want.MatchString(output) {
		t.Fatalf("rank 0: exit %d, want a failure and a line matching %q:\n%s", code, want, output)
	}
}

// A GPU rank killed under a launcher that lets the others run on (srun
// without --kill-on-bad-exit; here mpirun told so): NCCL was bootstrapped
// over MPI, so no rendezvous watches the peers, and NCCL itself would wait
// for rank 1 forever. Rank 0's watchdog times its collective out, names
// the rank whose process is gone, and ends the job.
func TestDistributedNCCLKilledRankWatchdog(t *testing.T) {
	env := append(ncclEnv(t, 2), "OMPI_MCA_orte_abort_on_non_zero_status=0", EnvCollectiveTimeout+"=3s")
	out := filepath.Join(t.TempDir(), "run")
	cmd := mpirunCmd(t, 2, env, ncclArgs(out, "--steps", "5000000", "--log-every", "1")...)
	buf := newLockedBuffer()
	cmd.Stdout, cmd.Stderr = buf, buf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	deadline := time.Now().Add(3 * time.Minute)
	var pids []int
	for {
		if pids = rankPids(cmd.Process.Pid, 2); pids != nil {
			if st, err := os.Stat(filepath.Join(out, train.MetricsName)); err == nil && st.Size() > 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no step logged within 3 minutes:\n%s", buf.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	killed := time.Now()
	if err := syscall.Kill(pids[1], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	code, output := waitLimit(t, cmd, time.Minute, buf)
	t.Logf("the run ended %v after rank 1 was killed, exit %d", time.Since(killed).Round(time.Millisecond), code)
	want := regexp.MustCompile(`(?m)^fmgpu: collective: nccl (all-reduce|broadcast) of \d+ floats on rank 0 did not complete within 3s: rank 1 \(pid ` + strconv.Itoa(pids[1]) + `\) has exited$`)
	if code == 0 || !want.MatchString(output) || strings.Count(output, "fmgpu: ") != 1 {
		t.Fatalf("exit %d, want a failure and one line matching %q:\n%s", code, want, output)
	}
	t.Logf("output:\n%s", output)
}

// A rendezvous that never completes (rank 0 never starts) times out with
// a message naming MASTER_ADDR:MASTER_PORT.
func TestDistributedRendezvousTimeout(t *testing.T) {
	env := append(ncclEnv(t, 2), EnvCollectiveTimeout+"=2s")
	cmds := torchrunRanks(t, 2, env, ncclArgs(filepath.Join(t.TempDir(), "run")), 1)
	start := time.Now()
	codes, outs := runAll(t, cmds, time.Minute)
	t.Logf("rank 1 gave up after %v", time.Since(start).Round(time.Millisecond))
	want := regexp.MustCompile(`(?m)^fmgpu: collective: rank 1 could not reach the rendezvous at 127\.0\.0\.1:\d+ \(MASTER_ADDR:MASTER_PORT, rank 0\) within 2s: .*$`)
	if codes[0] != ExitFailure || !want.MatchString(outs[0]) {
		t.Fatalf("exit %d, want %d and a line matching %q:\n%s", codes[0], ExitFailure, want, outs[0])
	}
}

// Commands other than train started by a launcher as one rank of several
// say so (each rank would do the whole work and write the same files) and
// run: a job's rank 0 may run them on purpose.
func TestOnlyTrainIsDataParallel(t *testing.T) {
	dir := t.TempDir()
	ck := tinyTrain(t, dir, "--no-plot", "--device", "cpu")
	for k, v := range map[string]string{"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"} {
		t.Setenv(k, v)
	}
	for _, args := range [][]string{
		{"sample", "--checkpoint", ck, "--n", "10", "--out", filepath.Join(dir, "s.npy")},
		{"likelihood", "--checkpoint", ck, "--data", "moons", "--n-data", "10"},
	} {
		code, _, e := cpuRun(t, args...)
		if want := "fmgpu " + args[0] + ": note: started as rank 1 of 2 (torchrun launch); only train is data-parallel"; code != 0 || !strings.Contains(e, want) {
			t.Errorf("%s under torchrun's variables: exit %d %q", args[0], code, e)
		}
	}
}

// A launcher's variables that do not describe a launch are a usage error
// (exit 2), naming the variable.
func TestBadLaunchVariables(t *testing.T) {
	t.Setenv("RANK", "abc")
	t.Setenv("WORLD_SIZE", "2")
	t.Setenv("LOCAL_RANK", "0")
	code, _, e := cpuRun(t, "train", "--data", "moons", "--out", filepath.Join(t.TempDir(), "r"), "--steps", "5")
	if code != ExitUsage || !strings.Contains(e, "RANK") {
		t.Errorf("RANK=abc: exit %d %q", code, e)
	}
}

// Ranks an MPI launcher started on different devices (one on the fake
// GPU, one on the CPU) are refused at once, not left waiting in NCCL's
// initialisation (which has no timeout).
func TestDistributedRanksAgreeOnTheEngine(t *testing.T) {
	env := ncclEnv(t, 2)
	base := []string{"train", "--data", "moons", "--steps", "20", "--hidden", "16,16", "--threads", "1", "--no-plot", "--quiet", "--out", filepath.Join(t.TempDir(), "run")}
	args := append(append(slices.Clone(base), "--device", "cuda", ":", "-np", "1", os.Args[0]), base...)
	args = append(args, "--device", "cpu")
	start := time.Now()
	code, output := mpirunFmgpuEnv(t, 1, 90*time.Second, env, args...)
	if code == 0 || strings.Count(output, "the ranks chose different engines: 1 of 2 on GPUs (NCCL), 1 on CPUs (MPI)") != 2 {
		t.Fatalf("exit %d after %v:\n%s", code, time.Since(start), output)
	}
	t.Logf("refused in %v", time.Since(start).Round(time.Millisecond))
}
