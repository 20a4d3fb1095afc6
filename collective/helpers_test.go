package collective

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// The multi-process tests run this test binary as the ranks: a parent test
// starts it under mpirun, or several times with torchrun-style variables,
// with -test.run naming a TestRank* function and scenarioEnv naming what
// that rank does. A TestRank* function skips when scenarioEnv is unset.
const scenarioEnv = "FMGPU_COLLECTIVE_SCENARIO"

// requireMPIEnv, set by .ci/run, makes a missing mpirun fail the MPI tests
// instead of skipping them.
const requireMPIEnv = "FMGPU_REQUIRE_MPI"

func scenario(t *testing.T) string {
	s := os.Getenv(scenarioEnv)
	if s == "" {
		t.Skip("a rank of a multi-process test; run by its parent test")
	}
	return s
}

// openMPIRun finds Open MPI's mpirun; without one the test skips (fails
// where requireMPIEnv is set).
func openMPIRun(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("mpirun")
	if err == nil {
		out, _ := exec.Command(path, "--version").CombinedOutput()
		if bytes.Contains(out, []byte("Open MPI")) {
			return path
		}
		err = fmt.Errorf("%s is not Open MPI's: %s", path, firstLine(string(out)))
	}
	if os.Getenv(requireMPIEnv) != "" {
		t.Fatalf("mpirun: %v (%s is set; apt-get install openmpi-bin libopenmpi-dev)", err, requireMPIEnv)
	}
	t.Skipf("Open MPI's mpirun not found (%v): apt-get install openmpi-bin libopenmpi-dev to run this test", err)
	return ""
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return l
}

// run is the outcome of a multi-process run.
type run struct {
	out     string // stdout and stderr
	err     error  // the exit status
	elapsed time.Duration
}

// mpirunRanks runs np ranks of this binary's test function under mpirun,
// with the scenario and extra variables, for at most limit.
func mpirunRanks(t *testing.T, np int, test, scen string, limit time.Duration, env ...string) run {
	t.Helper()
	mpirun := openMPIRun(t)
	args := []string{"--allow-run-as-root", "--oversubscribe", "-np", fmt.Sprint(np)}
	env = append(env, scenarioEnv+"="+scen,
		// Containers often forbid the cross-memory attach of Open MPI's
		// shared-memory transport; plain copies work everywhere.
		"OMPI_MCA_btl_vader_single_copy_mechanism=none")
	for _, e := range env {
		k, _, _ := strings.Cut(e, "=")
		args = append(args, "-x", k)
	}
	args = append(args, os.Args[0], "-test.run", "^"+test+"$", "-test.v", "-test.count=1")
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, mpirun, args...)
	cmd.Env = append(os.Environ(), env...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	r := run{out: string(out), err: err, elapsed: time.Since(start)}
	if ctx.Err() != nil {
		t.Fatalf("mpirun did not finish within %v:\n%s", limit, out)
	}
	return r
}

// proc is one rank started by spawnRanks.
type proc struct {
	cmd *exec.Cmd
	out bytes.Buffer
}

// spawnRanks starts n ranks of this binary's test function with
// torchrun-style variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
// MASTER_PORT) and returns them running.
func spawnRanks(t *testing.T, n int, test, scen string, env ...string) []*proc {
	t.Helper()
	port := freePort(t)
	ps := make([]*proc, n)
	for r := range ps {
		p := &proc{cmd: exec.Command(os.Args[0], "-test.run", "^"+test+"$", "-test.v", "-test.count=1")}
		p.cmd.Env = append(os.Environ(), env...)
		p.cmd.Env = append(p.cmd.Env, scenarioEnv+"="+scen, fmt.Sprintf("RANK=%d", r), fmt.Sprintf("WORLD_SIZE=%d", n),
			fmt.Sprintf("LOCAL_RANK=%d", r), "MASTER_ADDR=127.0.0.1", fmt.Sprintf("MASTER_PORT=%d", port))
		p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		ps[r] = p
	}
	t.Cleanup(func() {
		for _, p := range ps {
			if p.cmd.ProcessState == nil {
				p.cmd.Process.Kill()
				p.cmd.Wait()
			}
		}
	})
	return ps
}

// wait waits for every rank, at most limit in all, and returns their
// outcomes.
func waitRanks(t *testing.T, ps []*proc, limit time.Duration) []run {
	t.Helper()
	start := time.Now()
	runs := make([]run, len(ps))
	done := make(chan int, len(ps))
	for i, p := range ps {
		go func() {
			runs[i].err = p.cmd.Wait()
			runs[i].elapsed = time.Since(start)
			done <- i
		}()
	}
	timeout := time.After(limit)
	for range ps {
		select {
		case <-done:
		case <-timeout:
			for _, p := range ps {
				p.cmd.Process.Kill()
			}
			for range ps {
				if len(done) == 0 {
					time.Sleep(100 * time.Millisecond)
				}
			}
			var b strings.Builder
			for i, p := range ps {
				fmt.Fprintf(&b, "--- rank %d:\n%s\n", i, p.out.String())
			}
			t.Fatalf("the ranks did not finish within %v:\n%s", limit, b.String())
		}
	}
	for i, p := range ps {
		runs[i].out = p.out.String()
	}
	return runs
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// rankData is rank r's random input of n floats for a test seed: every
// rank can make every other rank's data, and so the expected sum.
func rankData(seed uint64, r, n int) []float32 {
	rng := rand.New(rand.NewPCG(seed, uint64(r)))
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	return x
}

// checkSum compares got with the float64 sum of the ranks' data. The
// tolerance is the bound of any float32 summation order over size terms:
// (size-1) u sum_r |x_r[i]|, u = 2^-24 the unit roundoff, plus 1 ulp of
// the result for the final rounding.
func checkSum(t *testing.T, got []float32, seed uint64, size int) {
	t.Helper()
	n := len(got)
	ref := make([]float64, n)
	abs := make([]float64, n)
	for r := range size {
		for i, v := range rankData(seed, r, n) {
			ref[i] += float64(v)
			abs[i] += math.Abs(float64(v))
		}
	}
	const u = 1.0 / (1 << 24)
	bad := 0
	for i := range got {
		tol := float64(size-1)*u*abs[i] + 2*u*math.Abs(ref[i])
		if d := math.Abs(float64(got[i]) - ref[i]); !(d <= tol) {
			if bad < 5 {
				t.Errorf("element %d of %d: got %g, want %g (error %.3g > tolerance %.3g)", i, n, got[i], ref[i], d, tol)
			}
			bad++
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d elements outside the tolerance", bad, n)
	}
}
