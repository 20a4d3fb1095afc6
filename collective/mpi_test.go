package collective

import (
	"context"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMPI runs 2 ranks under mpirun: all-reduce, broadcast and barrier on
// random data (TestRankMPI, scenario "ops").
func TestMPI(t *testing.T) {
	t.Parallel()
	r := mpirunRanks(t, 2, "TestRankMPI", "ops", 2*time.Minute, "FMGPU_COLLECTIVE_DIR="+t.TempDir())
	if r.err != nil || strings.Count(r.out, "--- PASS: TestRankMPI") != 2 {
		t.Fatalf("mpirun: %v\n%s", r.err, r.out)
	}
	t.Logf("2 ranks in %v", r.elapsed.Round(time.Millisecond))
}

// TestMPICH runs the same 2 ranks under MPICH's mpiexec, where both are
// installed (Debian: apt-get install mpich): the MPICH ABI, whose handles
// are integer constants. CI installs Open MPI only, so this one skips there.
func TestMPICH(t *testing.T) {
	t.Parallel()
	mpiexec, err := exec.LookPath("mpiexec.mpich")
	if err != nil {
		t.Skip("MPICH's mpiexec.mpich not found (apt-get install mpich)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, mpiexec, "-n", "2", os.Args[0], "-test.run", "^TestRankMPI$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), scenarioEnv+"=ops", "FMGPU_COLLECTIVE_DIR="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil || strings.Count(string(out), "--- PASS: TestRankMPI") != 2 || !strings.Contains(string(out), "MPICH") {
		t.Fatalf("mpiexec.mpich: %v\n%s", err, out)
	}
}

// TestMPIAllReduceTime times MPI_Allreduce of each workload's gradient
// over 2 ranks of this machine (shared memory), when timeEnv is set:
//
//	FMGPU_COLLECTIVE_TIME=1 go test -run MPIAllReduceTime -v ./collective
func TestMPIAllReduceTime(t *testing.T) {
	if os.Getenv(timeEnv) == "" {
		t.Skipf("a measurement: set %s=1 to run it", timeEnv)
	}
	r := mpirunRanks(t, 2, "TestRankMPI", "time", 5*time.Minute)
	if r.err != nil {
		t.Fatalf("mpirun: %v\n%s", r.err, r.out)
	}
	for _, l := range strings.Split(r.out, "\n") {
		if i := strings.Index(l, "rank "); i >= 0 && strings.Contains(l, "MPI_Allreduce") {
			t.Log(l[i:])
		}
	}
}

const timeEnv = "FMGPU_COLLECTIVE_TIME"

// TestMPIKilledRank: rank 1 is killed while rank 0 waits for it in an
// all-reduce; mpirun ends the job within seconds, naming rank 1.
func TestMPIKilledRank(t *testing.T) {
	t.Parallel()
	r := mpirunRanks(t, 2, "TestRankMPI", "kill", time.Minute)
	const want = "process rank 1 with PID" // mpirun's line
	if r.err == nil || !strings.Contains(r.out, want) || r.elapsed > 30*time.Second {
		t.Fatalf("after %v, %v, want %q:\n%s", r.elapsed, r.err, want, r.out)
	}
	t.Logf("stopped after %v", r.elapsed.Round(time.Millisecond))
}

// TestMPIKilledRankOwnTimeout: the same under a launcher that lets the
// other ranks run on (as srun without --kill-on-bad-exit): rank 0's
// collective times out and names rank 1, which it finds gone.
func TestMPIKilledRankOwnTimeout(t *testing.T) {
	t.Parallel()
	r := mpirunRanks(t, 2, "TestRankMPI", "kill", time.Minute, "OMPI_MCA_orte_abort_on_non_zero_status=0", "FMGPU_COLLECTIVE_TEST_TIMEOUT=3s")
	want := regexp.MustCompile(`fmgpu: collective: mpi all-reduce of 1000 floats on rank 0 did not complete within 3s: rank 1 \(pid \d+\) has exited\n`)
	if r.err == nil || !want.MatchString(r.out) || r.elapsed > 30*time.Second {
		t.Fatalf("after %v, %v, want %q:\n%s", r.elapsed, r.err, want, r.out)
	}
	t.Logf("stopped after %v", r.elapsed.Round(time.Millisecond))
}

// TestMPITimeout: rank 1 stays alive but stops calling collectives; rank
// 0's all-reduce times out with a one-line error, and its Abort ends the
// job.
func TestMPITimeout(t *testing.T) {
	t.Parallel()
	r := mpirunRanks(t, 2, "TestRankMPI", "timeout", time.Minute, "FMGPU_COLLECTIVE_TEST_TIMEOUT=2s")
	if r.err == nil {
		t.Fatalf("the job succeeded:\n%s", r.out)
	}
	const want = "collective: mpi all-reduce of 1000 floats on rank 0 did not complete within 2s: every rank of this node is still running"
	if !strings.Contains(r.out, want) || r.elapsed > 30*time.Second {
		t.Fatalf("after %v, want %q:\n%s", r.elapsed, want, r.out)
	}
}

func TestRankMPI(t *testing.T) {
	scen := scenario(t)
	timeout := time.Minute
	if d, err := time.ParseDuration(os.Getenv("FMGPU_COLLECTIVE_TEST_TIMEOUT")); err == nil {
		timeout = d
	}
	c, err := Open(EngineMPI, Options{Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	rank, size := c.Rank(), c.Size()
	l, err := DetectLaunch(os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	if rank != l.Rank || size != 2 || c.LocalRank() != rank || c.Engine() != EngineMPI {
		t.Fatalf("%s: rank %d of %d, local %d; launch %v", c.Engine(), rank, size, c.LocalRank(), l)
	}
	t.Logf("rank %d of %d: %s", rank, size, Describe(c))
	switch scen {
	case "ops":
		// A nil dereference is still a Go panic, not a crash in a signal
		// handler of the MPI library (Open MPI installs its backtrace
		// handlers only where none is; UCX, under MPICH, replaces the Go
		// runtime's unless told not to).
		func() {
			defer func() { recover() }()
			var p *int
			t.Log(*p)
		}()
		testOps(t, c, uint64(time.Now().UnixNano()))
		// The barrier: rank 1 writes a file just before it; rank 0 finds
		// it just after.
		mark := filepath.Join(os.Getenv("FMGPU_COLLECTIVE_DIR"), "rank1")
		if rank == 1 {
			time.Sleep(200 * time.Millisecond)
			if err := os.WriteFile(mark, nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.Barrier(); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(mark); err != nil {
			t.Fatalf("after the barrier: %v", err)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	case "time":
		// The all-reduce of each workload's parameters, after a warm-up.
		for _, w := range workloadParams {
			x := rankData(3, rank, w.n)
			for range 5 {
				must(t, c.AllReduceSum(Host(x)))
			}
			const reps = 50
			must(t, c.Barrier())
			start := time.Now()
			for range reps {
				must(t, c.AllReduceSum(Host(x)))
			}
			d := time.Since(start) / reps
			busGBs := 2 * float64(size-1) / float64(size) * float64(4*w.n) / d.Seconds() / 1e9
			t.Logf("rank %d: %s, %d floats: MPI_Allreduce %v, bus bandwidth %.2f GB/s", rank, w.name, w.n, d.Round(time.Microsecond), busGBs)
		}
		must(t, c.Close())
	case "kill", "timeout":
		x := rankData(1, rank, 1000)
		if err := c.AllReduceSum(Host(x)); err != nil {
			t.Fatal(err)
		}
		if rank == 1 {
			if scen == "kill" {
				syscall.Kill(os.Getpid(), syscall.SIGKILL)
			}
			time.Sleep(time.Minute)
			t.Fatal("rank 1 was not stopped")
		}
		err := c.AllReduceSum(Host(x))
		if err == nil {
			t.Fatal("all-reduce without rank 1 succeeded")
		}
		os.Stderr.WriteString("fmgpu: " + err.Error() + "\n")
		c.Abort(err)
	}
}

// testOps checks all-reduce, broadcast and their agreement across ranks
// on random data of several lengths (one element; a prime count; 2^20 + 3,
// larger than the chunks of the fake NCCL).
func testOps(t *testing.T, c Comm, seed uint64) {
	t.Helper()
	seedBuf := []float32{math.Float32frombits(uint32(seed))}
	if err := c.Broadcast(Host(seedBuf)); err != nil { // every rank uses rank 0's seed
		t.Fatal(err)
	}
	seed = uint64(math.Float32bits(seedBuf[0]))
	for _, n := range []int{0, 1, 997, 1<<20 + 3} {
		x := rankData(seed, c.Rank(), n)
		if err := c.AllReduceSum(Host(x)); err != nil {
			t.Fatal(err)
		}
		checkSum(t, x, seed, c.Size())
		// Every rank has the same bits: rank 0's copy, broadcast, is ours.
		y := slices.Clone(x)
		if err := c.Broadcast(Host(y)); err != nil {
			t.Fatal(err)
		}
		for i := range x {
			if math.Float32bits(x[i]) != math.Float32bits(y[i]) {
				t.Fatalf("n=%d: rank %d has %g at %d, rank 0 %g", n, c.Rank(), x[i], i, y[i])
			}
		}
		// A broadcast replaces every rank's data with rank 0's.
		z := rankData(seed+1, c.Rank(), n)
		if err := c.Broadcast(Host(z)); err != nil {
			t.Fatal(err)
		}
		want := rankData(seed+1, 0, n)
		for i := range z {
			if math.Float32bits(z[i]) != math.Float32bits(want[i]) {
				t.Fatalf("broadcast n=%d: rank %d has %g at %d, want %g", n, c.Rank(), z[i], i, want[i])
			}
		}
	}
}

// processAlive tells a running process from one that has exited, reaped or
// not (a zombie: what a rank killed under mpirun is for a moment).
func TestProcessAlive(t *testing.T) {
	if !processAlive(os.Getpid()) {
		t.Fatal("this process is not alive")
	}
	cmd := exec.Command("sleep", "30")
	must(t, cmd.Start())
	pid := cmd.Process.Pid
	if !processAlive(pid) {
		t.Fatal("a sleeping child is not alive")
	}
	must(t, cmd.Process.Kill())
	deadline := time.Now().Add(5 * time.Second)
	for processAlive(pid) { // a zombie until Wait
		if time.Now().After(deadline) {
			t.Fatal("a killed child, not yet reaped, is still alive")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cmd.Wait()
	if processAlive(pid) {
		t.Fatal("a reaped child is alive")
	}
}
