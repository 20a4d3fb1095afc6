package collective

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/ebitengine/purego"

	"github.com/fmgpu/fmgpu/internal/cudadriver"
	"github.com/fmgpu/fmgpu/internal/fakecuda"
	"github.com/fmgpu/fmgpu/internal/fakenccl"
)

// The NCCL engine runs here through the fake libnccl (shared memory between
// the ranks' processes) and the fake libcuda (device pointers are host
// addresses): the real binding, bootstrap and stream arguments, no GPU.

// fakeEnv is the environment of a rank on the fakes: one fake device per
// rank.
func fakeEnv(t *testing.T, ranks int) []string {
	return []string{
		EnvLibNCCL + "=" + fakenccl.Library(t),
		cudadriver.LibraryEnv + "=" + fakecuda.Library(t),
		"FMGPU_FAKECUDA_DEVICES=" + strconv.Itoa(ranks),
		"FMGPU_COLLECTIVE_DIR=" + t.TempDir(),
	}
}

func allPassed(t *testing.T, runs []run) {
	t.Helper()
	for r, run := range runs {
		if run.err != nil || !strings.Contains(run.out, "--- PASS: TestRankNCCL") {
			t.Errorf("rank %d: %v\n%s", r, run.err, run.out)
		}
	}
}

// TestNCCLTorchrun: 2 ranks started with RANK, WORLD_SIZE, LOCAL_RANK,
// MASTER_ADDR, MASTER_PORT; the NCCL id goes over the TCP rendezvous.
func TestNCCLTorchrun(t *testing.T) {
	ps := spawnRanks(t, 2, "TestRankNCCL", "ops", fakeEnv(t, 2)...)
	runs := waitRanks(t, ps, 2*time.Minute)
	allPassed(t, runs)
	t.Logf("2 ranks in %v", runs[1].elapsed.Round(time.Millisecond))
}

// TestNCCLOverMPI: 2 ranks under mpirun; the NCCL id goes over MPI.
func TestNCCLOverMPI(t *testing.T) {
	r := mpirunRanks(t, 2, "TestRankNCCL", "ops", 2*time.Minute, fakeEnv(t, 2)...)
	if r.err != nil || strings.Count(r.out, "--- PASS: TestRankNCCL") != 2 {
		t.Fatalf("mpirun: %v\n%s", r.err, r.out)
	}
	t.Logf("2 ranks in %v", r.elapsed.Round(time.Millisecond))
}

// TestNCCLKilledRank: of 3 ranks, rank 2 is killed while the others wait
// for it inside ncclAllReduce. Rank 0 sees its connection end, aborts its
// communicator and tells rank 1; both exit with one line naming rank 2.
func TestNCCLKilledRank(t *testing.T) {
	t.Parallel()
	ps := spawnRanks(t, 3, "TestRankNCCL", "kill", fakeEnv(t, 3)...)
	runs := waitRanks(t, ps, time.Minute)
	want := []*regexp.Regexp{
		regexp.MustCompile(`(?m)^fmgpu: collective: rank 2 exited without closing: its rendezvous connection \(rank 2 \(pid \d+ on .+\)\) ended: end of stream$`),
		regexp.MustCompile(`(?m)^fmgpu: collective: rank 2 exited without closing: .* \(seen by rank 0\)$`),
	}
	for r := range 2 {
		if runs[r].err == nil || !want[r].MatchString(runs[r].out) {
			t.Errorf("rank %d: %v, want %q:\n%s", r, runs[r].err, want[r], runs[r].out)
		}
		t.Logf("rank %d stopped %v after the start", r, runs[r].elapsed.Round(time.Millisecond))
	}
	if runs[0].elapsed > 30*time.Second {
		t.Errorf("rank 0 stopped after %v", runs[0].elapsed)
	}
}

// TestNCCLKilledRankHandled: with its own OnFault, rank 0's blocked
// all-reduce returns the fault (the communicator was aborted under it) and
// the rank ends on its own terms.
func TestNCCLKilledRankHandled(t *testing.T) {
	t.Parallel()
	runs := waitRanks(t, spawnRanks(t, 2, "TestRankNCCL", "kill-handled", fakeEnv(t, 2)...), time.Minute)
	if runs[0].err != nil || !strings.Contains(runs[0].out, "--- PASS: TestRankNCCL") {
		t.Fatalf("rank 0: %v\n%s", runs[0].err, runs[0].out)
	}
}

// TestNCCLAbort: rank 1 fails and calls Abort; rank 0, waiting in a
// collective, stops with rank 1's reason.
func TestNCCLAbort(t *testing.T) {
	t.Parallel()
	ps := spawnRanks(t, 2, "TestRankNCCL", "abort", fakeEnv(t, 2)...)
	runs := waitRanks(t, ps, time.Minute)
	const want = "fmgpu: collective: rank 1 failed: bad batch in shard 3\n"
	if runs[0].err == nil || !strings.Contains(runs[0].out, want) {
		t.Errorf("rank 0: %v, want %q:\n%s", runs[0].err, want, runs[0].out)
	}
}

// TestNCCLMismatch: ranks that call different collectives get an error
// naming both calls from the fake (real NCCL would hang or mix data).
func TestNCCLMismatch(t *testing.T) {
	t.Parallel()
	runs := waitRanks(t, spawnRanks(t, 2, "TestRankNCCL", "mismatch", fakeEnv(t, 2)...), time.Minute)
	allPassed(t, runs)
}

// TestNCCLKilledRankWatchdog: under a launcher that lets the other ranks
// run when one dies (srun without --kill-on-bad-exit; here mpirun told
// so), the NCCL id went over MPI and no rendezvous watches the peers: rank
// 0's watchdog times its all-reduce out, finds rank 1's process gone, and
// the rank ends with one line naming it.
func TestNCCLKilledRankWatchdog(t *testing.T) {
	t.Parallel()
	env := append(fakeEnv(t, 2), "OMPI_MCA_orte_abort_on_non_zero_status=0", "FMGPU_COLLECTIVE_TEST_TIMEOUT=3s")
	r := mpirunRanks(t, 2, "TestRankNCCL", "kill-quiet", time.Minute, env...)
	want := regexp.MustCompile(`(?m)^fmgpu: collective: nccl all-reduce of 1000 floats on rank 0 did not complete within 3s: rank 1 \(pid \d+\) has exited$`)
	if r.err == nil || !want.MatchString(r.out) || r.elapsed > 30*time.Second {
		t.Fatalf("after %v, %v, want %q:\n%s", r.elapsed, r.err, want, r.out)
	}
	t.Logf("stopped after %v", r.elapsed.Round(time.Millisecond))
}

// TestNCCLStuckRankWatchdog: rank 1 is alive but stops calling
// collectives; rank 0's all-reduce times out, it aborts its communicator
// and says why, and rank 1 learns it over the rendezvous.
func TestNCCLStuckRankWatchdog(t *testing.T) {
	t.Parallel()
	ps := spawnRanks(t, 2, "TestRankNCCL", "stuck", append(fakeEnv(t, 2), "FMGPU_COLLECTIVE_TEST_TIMEOUT=2s")...)
	runs := waitRanks(t, ps, time.Minute)
	const why = "nccl all-reduce of 1000 floats on rank 0 did not complete within 2s: every rank is still running (one stopped calling collectives, or calls them in another order)"
	want := []string{"fmgpu: collective: " + why + "\n", "fmgpu: collective: rank 0 failed: " + why + "\n"}
	for r := range 2 {
		if runs[r].err == nil || !strings.Contains(runs[r].out, want[r]) {
			t.Errorf("rank %d: %v, want %q:\n%s", r, runs[r].err, want[r], runs[r].out)
		}
		if runs[r].elapsed > 30*time.Second {
			t.Errorf("rank %d stopped after %v", r, runs[r].elapsed)
		}
	}
	t.Logf("stopped after %v and %v", runs[0].elapsed.Round(time.Millisecond), runs[1].elapsed.Round(time.Millisecond))
}

// The watchdog's bookkeeping, with events that complete when the test
// says: collectives retire in order as their events complete, one still
// in its call holds back those after it, and the oldest pending one fires
// once, after the timeout.
func TestCollWatch(t *testing.T) {
	now := time.Unix(1000, 0)
	done := map[cudadriver.Event]bool{}
	w := &collWatch{timeout: 10 * time.Second, eventsOK: true, now: func() time.Time { return now },
		query: func(e cudadriver.Event) (bool, error) { return done[e], nil }}
	next := cudadriver.Event(0)
	newEvent := func() (cudadriver.Event, error) { next++; return next, nil }
	issue := func(n int) *collOp {
		op := w.begin("all-reduce", n)
		ev, ok := w.takeEvent(newEvent)
		if !ok {
			t.Fatal("no event")
		}
		w.queued(op, ev, true)
		return op
	}
	a := issue(1)
	now = now.Add(4 * time.Second)
	b := issue(2)
	if op, err := w.poll(); op != nil || err != nil || len(w.pending) != 2 {
		t.Fatalf("after 4 s: %v %v, %d pending", op, err, len(w.pending))
	}
	done[a.ev] = true
	now = now.Add(7 * time.Second) // a is 11 s old but complete; b is 7 s old
	if op, err := w.poll(); op != nil || err != nil || len(w.pending) != 1 || w.pending[0] != b {
		t.Fatalf("a complete: %v %v, pending %v", op, err, w.pending)
	}
	if ev, _ := w.takeEvent(newEvent); ev != a.ev {
		t.Errorf("a's event %v was not reused (got %v)", a.ev, ev)
	} else {
		w.free = append(w.free, ev)
	}
	// c is in its call (not queued): it holds back d, whose event is done.
	c := w.begin("broadcast", 3)
	d := issue(4)
	done[b.ev], done[d.ev] = true, true
	if op, _ := w.poll(); op != nil || len(w.pending) != 2 || w.pending[0] != c {
		t.Fatalf("c in its call: %v, pending %v", op, w.pending)
	}
	now = now.Add(11 * time.Second)
	if op, _ := w.poll(); op != c {
		t.Fatalf("c 11 s in its call: fired %v", op)
	}
	if op, _ := w.poll(); op != nil {
		t.Fatalf("fired twice: %v", op)
	}
	// A call that failed, or ran without events, leaves the queue.
	w2 := &collWatch{timeout: time.Second, now: time.Now, query: w.query}
	op := w2.begin("all-reduce", 5)
	w2.queued(op, 0, false)
	if len(w2.pending) != 0 {
		t.Fatalf("a returned call without an event is still pending")
	}
	if evs := w.events(); len(evs) != 2 { // b's, free again, and d's (a's, reused)
		t.Errorf("events to destroy: %v", evs)
	}
}

func TestNCCLErrorText(t *testing.T) {
	lib, err := loadNCCL(fakenccl.Library(t))
	must(t, err)
	if v := lib.versionString(); v != "2.18.5" {
		t.Errorf("version %q", v)
	}
	if v := (&ncclLib{version: 2708}).versionString(); v != "2.7.8" {
		t.Errorf("old-style version code: %q", v)
	}
	const want = "collective: ncclAllReduce: invalid usage (run with NCCL_DEBUG=WARN for details)"
	if err := lib.errorf("ncclAllReduce", 0, 5); err.Error() != want {
		t.Errorf("got %q, want %q", err, want)
	}
}

// TestNCCLRendezvousTimeout: rank 0 of 2 alone; Open fails after the
// timeout naming the missing rank.
func TestNCCLRendezvousTimeout(t *testing.T) {
	for _, e := range fakeEnv(t, 1) {
		k, v, _ := strings.Cut(e, "=")
		t.Setenv(k, v)
	}
	port := freePort(t)
	start := time.Now()
	_, err := Open(EngineNCCL, Options{Launch: &Launch{Launcher: LaunchTorchrun, Size: 2, MasterAddr: "127.0.0.1", MasterPort: port}, Timeout: 500 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "timed out after 500ms: rank 1 did not connect") {
		t.Fatalf("got %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("gave up after %v", d)
	}
}

// TestRankNCCL is one rank of the tests above, on the fakes.
func TestRankNCCL(t *testing.T) {
	scen := scenario(t)
	runtime.LockOSThread() // the CUDA context is current on this thread
	drv, err := cudadriver.Open("")
	if err != nil {
		t.Fatal(err)
	}
	l, err := DetectLaunch(os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	must(t, drv.Init())
	n, err := drv.DeviceCount()
	must(t, err)
	ord, err := l.DeviceOrdinal(n)
	must(t, err)
	dev, err := drv.Device(ord)
	must(t, err)
	ctx, err := drv.PrimaryCtxRetain(dev)
	must(t, err)
	must(t, drv.CtxSetCurrent(ctx))
	opts := Options{Timeout: 30 * time.Second}
	if d, err := time.ParseDuration(os.Getenv("FMGPU_COLLECTIVE_TEST_TIMEOUT")); err == nil {
		opts.Timeout = d
	}
	faults := make(chan error, 1)
	switch scen {
	case "mismatch":
		// Both ranks fail and close: the peer's abort is no news.
		opts.OnFault = func(err error) { t.Logf("fault: %v", err) }
	case "kill-handled":
		opts.OnFault = func(err error) { faults <- err }
	}
	c, err := Open(EngineNCCL, opts)
	if err != nil {
		t.Fatal(err)
	}
	nc := c.(*ncclComm)
	if c.Engine() != EngineNCCL || c.Rank() != l.Rank || c.Size() != l.Size || c.LocalRank() != l.LocalRank {
		t.Fatalf("%s: rank %d of %d, local %d; launch %v", c.Engine(), c.Rank(), c.Size(), c.LocalRank(), l)
	}
	t.Logf("%s: %s", l, Describe(c))
	stream, err := drv.StreamCreate(1)
	must(t, err)
	switch scen {
	case "ops":
		testOps(t, c, uint64(time.Now().UnixNano()))
		testDeviceOps(t, drv, nc, stream)
		mark := filepath.Join(os.Getenv("FMGPU_COLLECTIVE_DIR"), "rank1")
		if c.Rank() == 1 {
			time.Sleep(200 * time.Millisecond)
			must(t, os.WriteFile(mark, nil, 0o644))
		}
		must(t, c.Barrier())
		if _, err := os.Stat(mark); err != nil {
			t.Fatalf("after the barrier: %v", err)
		}
		if got := fakeLastStream(t, nc); got == uintptr(stream) || got != uintptr(nc.stream) {
			t.Errorf("the barrier ran on stream %#x, not the engine's own %#x", got, nc.stream)
		}
		must(t, c.Close())
		if err := c.AllReduceSum(Host([]float32{1})); !errors.Is(err, ErrClosed) {
			t.Errorf("after Close: %v", err)
		}
	case "mismatch":
		x := rankData(1, c.Rank(), 10)
		if c.Rank() == 0 {
			err = c.AllReduceSum(Host(x))
		} else {
			err = c.Broadcast(Host(x))
		}
		// This rank's own error, or the peer's, forwarded by the watchdog
		// when it came first: either names both calls.
		if err == nil || !strings.Contains(err.Error(), "invalid usage") ||
			!strings.Contains(err.Error(), "called ncclAllReduce(count 10, datatype 7, root 0)") ||
			!strings.Contains(err.Error(), "called ncclBroadcast(count 10, datatype 7, root 0)") {
			t.Fatalf("mismatched collectives: %v", err)
		}
		if err := c.Close(); err == nil {
			t.Fatal("Close after a failed collective reports nothing")
		}
	case "kill-handled":
		must(t, c.Barrier())
		if c.Rank() == 1 {
			time.Sleep(300 * time.Millisecond)
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
		}
		err := c.AllReduceSum(Host(rankData(1, 0, 1000)))
		const want = "collective: rank 1 exited without closing"
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Fatalf("the all-reduce returned %v, want %q", err, want)
		}
		if f := <-faults; f.Error() != err.Error() {
			t.Errorf("OnFault got %v", f)
		}
		if err := c.Close(); err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("Close: %v", err)
		}
	case "kill-quiet", "stuck":
		// Rank 1 dies, or lives on without calling collectives, while rank
		// 0 waits for it in an all-reduce; nothing but rank 0's watchdog
		// sees it.
		must(t, c.Barrier())
		if c.Rank() == 1 {
			time.Sleep(300 * time.Millisecond)
			if scen == "kill-quiet" {
				syscall.Kill(os.Getpid(), syscall.SIGKILL)
			}
			time.Sleep(time.Minute) // the rendezvous tells it rank 0's reason
			t.Fatal("rank 1 was not stopped")
		}
		err := c.AllReduceSum(Host(rankData(1, 0, 1000)))
		t.Fatalf("the all-reduce returned %v (the default OnFault exits first)", err)
	case "kill", "abort":
		must(t, c.Barrier())
		x := rankData(1, c.Rank(), 1000)
		if c.Rank() == c.Size()-1 {
			time.Sleep(300 * time.Millisecond) // the others are waiting in the all-reduce
			if scen == "kill" {
				syscall.Kill(os.Getpid(), syscall.SIGKILL)
			}
			c.Abort(errors.New("bad batch in shard 3"))
			os.Exit(1)
		}
		err := c.AllReduceSum(Host(x))
		// The default OnFault exits before the call returns.
		t.Fatalf("the all-reduce returned %v", err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// fakeLastStream asks the fake libnccl which stream its last collective
// was queued on.
func fakeLastStream(t *testing.T, c *ncclComm) uintptr {
	lib, err := purego.Dlopen(c.lib.path, purego.RTLD_NOW|purego.RTLD_LOCAL)
	must(t, err)
	fn, err := purego.Dlsym(lib, "fakenccl_last_stream")
	must(t, err)
	s, _, _ := purego.SyscallN(fn, c.comm.Load())
	return s
}

// testDeviceOps reduces and broadcasts device buffers on the caller's
// stream.
func testDeviceOps(t *testing.T, drv *cudadriver.Driver, c *ncclComm, stream cudadriver.Stream) {
	seed := uint64(42)
	for _, n := range []int{1, 997, 1<<20 + 3} {
		x := rankData(seed, c.Rank(), n)
		d, err := drv.MemAlloc(4 * n)
		must(t, err)
		must(t, drv.MemcpyHtoD(d, unsafe.Pointer(&x[0]), 4*n))
		must(t, c.AllReduceSum(Device(uint64(d), n, uintptr(stream))))
		if got := fakeLastStream(t, c); got != uintptr(stream) {
			t.Fatalf("ncclAllReduce queued on stream %#x, want the caller's %#x", got, stream)
		}
		must(t, drv.StreamSynchronize(stream))
		must(t, drv.MemcpyDtoH(unsafe.Pointer(&x[0]), d, 4*n))
		checkSum(t, x, seed, c.Size())
		y := rankData(seed+1, c.Rank(), n)
		must(t, drv.MemcpyHtoD(d, unsafe.Pointer(&y[0]), 4*n))
		must(t, c.Broadcast(Device(uint64(d), n, uintptr(stream))))
		must(t, drv.StreamSynchronize(stream))
		must(t, drv.MemcpyDtoH(unsafe.Pointer(&y[0]), d, 4*n))
		want := rankData(seed+1, 0, n)
		for i := range y {
			if y[i] != want[i] {
				t.Fatalf("device broadcast n=%d: %g at %d, want %g", n, y[i], i, want[i])
			}
		}
		must(t, drv.MemFree(d))
	}
}
