//go:build kernelsim

package kernels_test

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"

	// An external test package (with the package's names in scope): an
	// internal one would compile the C++ harness a second time, for minutes.
	. "github.com/fmgpu/fmgpu/kernels"
)

// The harness's table has exactly the kernels of the sources.
func TestSimTableMatchesSources(t *testing.T) {
	fatbin, selftest := sourceKernels(t)
	var table []string
	for name := range SimKernels() {
		table = append(table, name)
	}
	slices.Sort(table)
	want := slices.Sorted(slices.Values(append(slices.Clone(fatbin), selftest...)))
	if !slices.Equal(table, want) {
		t.Errorf("sim_kernels.cc registers\n  %v\nthe sources declare\n  %v", table, want)
	}
}

type simBuf struct {
	p uint64
	n int
}

func alloc(t *testing.T, n int) simBuf {
	t.Helper()
	p := SimAlloc(4 * n)
	if p == 0 {
		t.Fatalf("SimAlloc(%d) failed", 4*n)
	}
	t.Cleanup(func() { SimFree(p) })
	return simBuf{p, n}
}

func (b simBuf) get() []float32 {
	out := make([]float32, b.n)
	SimDtoH(out, b.p)
	return out
}

func launch(name string, grid, block [3]uint32, shared int, args []uint64, sig string) error {
	return SimLaunch(name, grid, block, shared, args, sig)
}

// defaultConfig is the harness's configuration between tests.
func defaultConfig() { SimConfig(0, SimShuffle, 0x5eed, SimAllChecks) }

func withOrder(t *testing.T, o SimOrder, fn func()) {
	SimConfig(0, o, 1, SimAllChecks)
	defer defaultConfig()
	fn()
}

// withChecks runs fn with only the given optional checks.
func withChecks(c SimChecks, fn func()) {
	SimConfig(0, SimShuffle, 0x5eed, c)
	defer defaultConfig()
	fn()
}

// needChecks skips a test of the access hooks where they are not compiled
// in (the simasan build).
func needChecks(t *testing.T) {
	t.Helper()
	if !SimChecksAvailable() {
		t.Skip("the access checks are not compiled in this build")
	}
}

// wantErr checks that err names every one of parts.
func wantErr(t *testing.T, what string, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: no error, want one naming %q", what, parts)
		return
	}
	t.Logf("%s: %v", what, err)
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("%s: error %q does not say %q", what, err, p)
		}
	}
}

// A barrier makes a shared-memory exchange correct in every thread order.
// Without it, the checks report the read of a word another thread writes
// in the same barrier interval (initcheck when the read comes first in the
// order, racecheck when the write does); without the checks, an order that
// is not thread 0 first shows it as wrong results.
func TestSimBarrier(t *testing.T) {
	const blocks, threads = 5, 1024
	in := alloc(t, blocks*threads)
	out := alloc(t, blocks*threads)
	host := make([]float32, blocks*threads)
	for i := range host {
		host[i] = float32(i)
	}
	SimHtoD(in.p, host)
	run := func(o SimOrder, c SimChecks, sync uint64) (bad int, err error) {
		SimConfig(0, o, 1, c)
		defer defaultConfig()
		err = launch("simtest_reverse_kernel", [3]uint32{blocks, 1, 1}, [3]uint32{threads, 1, 1}, 0,
			[]uint64{in.p, out.p, sync}, "ppi")
		for i, v := range out.get() {
			b, j := i/threads, i%threads
			if v != float32(b*threads+threads-1-j) {
				bad++
			}
		}
		return bad, err
	}
	for _, o := range []SimOrder{SimForward, SimReverse, SimShuffle} {
		if bad, err := run(o, SimAllChecks, 1); err != nil || bad > 0 {
			t.Errorf("order %d: %d wrong elements with the barrier (err %v)", o, bad, err)
		}
		if bad, err := run(o, 0, 0); err != nil || (o != SimForward && bad == 0) {
			t.Errorf("order %d, no checks: the race without the barrier went unnoticed (err %v)", o, err)
		}
		if !SimChecksAvailable() {
			continue
		}
		_, err := run(o, SimAllChecks, 0)
		wantErr(t, fmt.Sprintf("order %d, no barrier", o), err, "simtest_reverse_kernel::s", "thread (")
		if err != nil && !strings.Contains(err.Error(), "racecheck") && !strings.Contains(err.Error(), "initcheck") {
			t.Errorf("order %d: %v is neither racecheck nor initcheck", o, err)
		}
		if _, err := run(o, SimRacecheck, 0); err != nil && !strings.Contains(err.Error(), "racecheck") {
			t.Errorf("order %d, racecheck only: %v", o, err)
		} else if err == nil && o != SimForward {
			t.Errorf("order %d, racecheck only: the race went unreported", o)
		}
	}
}

func TestSimBarrierMisuse(t *testing.T) {
	out := alloc(t, 256)
	err := launch("simtest_early_exit_kernel", [3]uint32{2, 1, 1}, [3]uint32{256, 1, 1}, 0, []uint64{out.p}, "p")
	wantErr(t, "barrier after an early return", err, "synccheck", "after 128 threads of the block returned")
	err = launch("simtest_divergent_kernel", [3]uint32{1, 1, 1}, [3]uint32{256, 1, 1}, 0, []uint64{out.p}, "p")
	wantErr(t, "divergent barrier", err, "synccheck", "__shfl_xor_sync", "waits at __syncthreads (sim_selftest.h:", "divergent")
	err = launch("simtest_barrier_sites_kernel", [3]uint32{1, 1, 1}, [3]uint32{64, 1, 1}, 0, []uint64{out.p}, "p")
	wantErr(t, "barriers at two call sites", err, "synccheck: divergent __syncthreads", "sim_selftest.h:")
}

func TestSimWarpOps(t *testing.T) {
	for _, threads := range []int{32, 96, 1024} {
		in := alloc(t, threads)
		sum := alloc(t, 2)
		xorv := alloc(t, threads)
		downv := alloc(t, threads)
		host := make([]float32, threads)
		want := 0.0
		for i := range host {
			host[i] = float32(i%7) - 2.5
			want += float64(host[i])
		}
		SimHtoD(in.p, host)
		if err := launch("simtest_warp_kernel", [3]uint32{1, 1, 1}, [3]uint32{uint32(threads), 1, 1}, 0,
			[]uint64{in.p, sum.p, xorv.p, downv.p}, "pppp"); err != nil {
			t.Fatal(err)
		}
		s := sum.get()
		got := math.Float64frombits(uint64(math.Float32bits(s[0])) | uint64(math.Float32bits(s[1]))<<32)
		if got != want {
			t.Errorf("%d threads: block sum %v, want %v", threads, got, want)
		}
		x, dn := xorv.get(), downv.get()
		for i := 0; i < threads; i++ {
			lane := i % 32
			wantDown := lane
			if lane+3 < 32 {
				wantDown = lane + 3
			}
			if gx, gd := int32(math.Float32bits(x[i])), int32(math.Float32bits(dn[i])); gx != int32(lane^5) || gd != int32(wantDown) {
				t.Errorf("%d threads: thread %d: xor %d down %d, want %d, %d", threads, i, gx, gd, lane^5, wantDown)
				break
			}
		}
	}
}

// Dynamic shared memory starts as NaN in every block; with initcheck,
// reading it before a write is an error.
func TestSimDynamicSharedMemory(t *testing.T) {
	before, after := alloc(t, 3*256), alloc(t, 3*256)
	args := []uint64{before.p, after.p}
	withChecks(SimRacecheck, func() {
		if err := launch("simtest_dynamic_smem_kernel", [3]uint32{3, 1, 1}, [3]uint32{256, 1, 1}, 4*256, args, "pp"); err != nil {
			t.Fatal(err)
		}
	})
	b, a := before.get(), after.get()
	for i := range b {
		if !math.IsNaN(float64(b[i])) || a[i] != float32(255-i%256) {
			t.Fatalf("thread %d: before %v (want NaN), after %v (want %d)", i, b[i], a[i], 255-i%256)
		}
	}
	if !SimChecksAvailable() {
		return
	}
	err := launch("simtest_dynamic_smem_kernel", [3]uint32{3, 1, 1}, [3]uint32{256, 1, 1}, 4*256, args, "pp")
	wantErr(t, "read before write", err, "initcheck", "read of dynamic shared memory +", "(of 1024 bytes)")
	withChecks(SimRacecheck, func() {
		err = launch("simtest_dynamic_smem_kernel", [3]uint32{1, 1, 1}, [3]uint32{256, 1, 1}, 4*255, args, "pp")
	})
	wantErr(t, "past the launch's dynamic shared memory", err, "memcheck", "dynamic shared memory + 1020 (of 1020 bytes)", "out of bounds")
}

func TestSimIndices(t *testing.T) {
	grid, block := [3]uint32{3, 2, 2}, [3]uint32{8, 4, 2}
	n := 3 * 2 * 2 * 8 * 4 * 2
	out := alloc(t, n)
	if err := launch("simtest_index_kernel", grid, block, 0, []uint64{out.p}, "p"); err != nil {
		t.Fatal(err)
	}
	got := out.get()
	i := 0
	for bz := uint32(0); bz < grid[2]; bz++ {
		for by := uint32(0); by < grid[1]; by++ {
			for bx := uint32(0); bx < grid[0]; bx++ {
				for tz := uint32(0); tz < block[2]; tz++ {
					for ty := uint32(0); ty < block[1]; ty++ {
						for tx := uint32(0); tx < block[0]; tx++ {
							want := tx | ty<<8 | tz<<16 | bx<<20 | by<<24 | bz<<28
							if g := math.Float32bits(got[i]); g != want {
								t.Fatalf("element %d = %#x, want %#x", i, g, want)
							}
							i++
						}
					}
				}
			}
		}
	}
}

// Arguments: the signature is checked, and each scalar arrives intact from
// the low bytes of its 8-byte slot.
func TestSimArguments(t *testing.T) {
	out := alloc(t, 10)
	i, f, d, u := int32(-7), float32(1.5), -2.25, uint64(0xDEADBEEF00C0FFEE)
	args := []uint64{uint64(uint32(i)), uint64(math.Float32bits(f)), math.Float64bits(d), u, out.p}
	if err := launch("simtest_args_kernel", [3]uint32{1, 1, 1}, [3]uint32{32, 1, 1}, 0, args, "ifdLp"); err != nil {
		t.Fatal(err)
	}
	g := out.get()
	var got [5]float64
	for k := range got {
		got[k] = math.Float64frombits(uint64(math.Float32bits(g[2*k])) | uint64(math.Float32bits(g[2*k+1]))<<32)
	}
	want := [5]float64{-7, 1.5, -2.25, 0xDEADBEEF, 0x00C0FFEE}
	if got != want {
		t.Errorf("scalars arrived as %v, want %v", got, want)
	}
	if err := launch("simtest_args_kernel", [3]uint32{1, 1, 1}, [3]uint32{32, 1, 1}, 0, args, "ifdpp"); err == nil ||
		!strings.Contains(err.Error(), "the kernel takes (ifdLp)") {
		t.Errorf("wrong signature: err = %v", err)
	}
	if err := launch("simtest_args_kernel", [3]uint32{1, 1, 1}, [3]uint32{32, 1, 1}, 0, args[:4], "ifdL"); err == nil {
		t.Error("missing argument accepted")
	}
	if err := launch("no_such_kernel", [3]uint32{1, 1, 1}, [3]uint32{32, 1, 1}, 0, nil, ""); err == nil {
		t.Error("unknown kernel accepted")
	}
	for _, c := range []struct {
		grid, block [3]uint32
		shared      int
	}{{[3]uint32{0, 1, 1}, [3]uint32{32, 1, 1}, 0}, {[3]uint32{1, 1, 1}, [3]uint32{1025, 1, 1}, 0},
		{[3]uint32{1, 65536, 1}, [3]uint32{32, 1, 1}, 0}, {[3]uint32{1, 1, 1}, [3]uint32{32, 1, 1}, 48<<10 + 1}} {
		if err := launch("simtest_args_kernel", c.grid, c.block, c.shared, args, "ifdLp"); err == nil {
			t.Errorf("grid %v block %v shared %d accepted", c.grid, c.block, c.shared)
		}
	}
}

// memcheck: a read just past the end of a buffer, just before its start,
// or of a freed buffer fails the launch and names the allocation and the
// kernel argument that points into it. Without the access hooks (the
// simasan build) the guard pages after and before every allocation fault,
// in a child process since the fault ends it.
func TestSimMemcheck(t *testing.T) {
	if off := os.Getenv("FMGPU_SIM_OVERRUN_CHILD"); off != "" {
		SimConfig(1, SimForward, 0, 0)
		in, out := SimAlloc(4*5), SimAlloc(4)
		o, _ := strconv.Atoi(off)
		err := launch("simtest_load_kernel", [3]uint32{1, 1, 1}, [3]uint32{32, 1, 1}, 0, []uint64{in, uint64(int64(o)), out}, "plp")
		fmt.Println("no fault:", err)
		os.Exit(0) // not reached when the guard works
	}
	if !SimChecksAvailable() {
		if testing.Short() {
			t.Skip("starts child processes")
		}
		// With AddressSanitizer, any byte out of bounds; else the guard
		// pages: a page after the end and before the start.
		offs := []int{5, -1}
		if !simASan {
			offs = []int{5, -1 - 4096/4}
		}
		for _, off := range offs {
			cmd := exec.Command(os.Args[0], "-test.run=^TestSimMemcheck$")
			cmd.Env = append(os.Environ(), fmt.Sprintf("FMGPU_SIM_OVERRUN_CHILD=%d", off))
			out, err := cmd.CombinedOutput()
			want := "SIGSEGV"
			if simASan {
				want = "AddressSanitizer: use-after-poison"
			}
			if err == nil || !strings.Contains(string(out), want) {
				t.Errorf("reading in[%d] of 5 did not fault: err = %v, output:\n%s", off, err, out)
			} else {
				t.Logf("in[%d]: %s", off, bytes.TrimSpace(out))
			}
		}
		return
	}
	in, out := alloc(t, 5), alloc(t, 1)
	load := func(off int64) error {
		return launch("simtest_load_kernel", [3]uint32{1, 1, 1}, [3]uint32{32, 1, 1}, 0,
			[]uint64{in.p, uint64(off), out.p}, "plp")
	}
	if err := load(4); err != nil {
		t.Errorf("in[4] of 5: %v", err)
	}
	wantErr(t, "in[5] of 5", load(5), "memcheck", "4-byte read of global memory: 0 bytes past the end of allocation", "(20 bytes, kernel argument 0)")
	wantErr(t, "in[-1]", load(-1), "memcheck", "4 bytes before the start of allocation", "kernel argument 0")
	wantErr(t, "in[-1024]", load(-1024), "memcheck", "global memory")
	if in.p%256 != 0 {
		t.Errorf("allocation at %#x: not 256-byte aligned as cuMemAlloc's", in.p)
	}
	// A partial last word: 2 bytes of it belong to the allocation.
	odd := SimAlloc(6)
	defer SimFree(odd)
	if err := launch("simtest_load_kernel", [3]uint32{1, 1, 1}, [3]uint32{32, 1, 1}, 0, []uint64{odd, 1, out.p}, "plp"); err == nil ||
		!strings.Contains(err.Error(), "0 bytes past the end of allocation") || !strings.Contains(err.Error(), "(6 bytes, kernel argument 0)") {
		t.Errorf("a 4-byte read of a 6-byte buffer at 4: err = %v", err)
	}
	freed := SimAlloc(16)
	SimFree(freed)
	err := launch("simtest_load_kernel", [3]uint32{1, 1, 1}, [3]uint32{32, 1, 1}, 0, []uint64{freed, 0, out.p}, "plp")
	wantErr(t, "a freed buffer", err, "memcheck", "global memory: freed allocation")
}

// memcheck, alignment: 8- and 16-byte accesses at addresses that are not
// multiples of their size fail, as on the GPU; aligned ones pass.
func TestSimMisaligned(t *testing.T) {
	needChecks(t)
	buf, out := alloc(t, 64), alloc(t, 1)
	SimHtoD(buf.p, make([]float32, 64))
	for _, c := range []struct {
		mode, off int
		bad       bool
		what      string
	}{
		{0, 1, true, "misaligned 8-byte vector access to global memory: allocation"},
		{0, 2, false, ""},
		{1, 2, true, "misaligned 16-byte vector access to global memory"},
		{1, 4, false, ""},
		{2, 1, true, "misaligned 8-byte read of global memory"},
		{3, 3, true, "misaligned 8-byte write of global memory"},
		{4, 2, true, "misaligned 16-byte vector access to __shared__ simtest_misaligned_kernel::s + 8"},
		{4, 4, false, ""},
	} {
		err := launch("simtest_misaligned_kernel", [3]uint32{1, 1, 1}, [3]uint32{32, 1, 1}, 0,
			[]uint64{buf.p, uint64(c.off), uint64(c.mode), out.p}, "piip")
		if c.bad {
			wantErr(t, fmt.Sprintf("mode %d at +%d floats", c.mode, c.off), err, "memcheck", c.what)
		} else if err != nil {
			t.Errorf("mode %d at +%d floats: %v", c.mode, c.off, err)
		}
	}
}

// racecheck, shared memory: accesses of one word by two threads in one
// barrier interval, one a write, are reported with the array and both
// threads; barriers, __syncwarp between a warp's lanes, and atomics are
// not races.
func TestSimRacecheckShared(t *testing.T) {
	needChecks(t)
	out := alloc(t, 2*256)
	for _, c := range []struct {
		mode int
		race bool
	}{{0, true}, {1, true}, {2, false}, {3, false}, {4, true}, {5, false}} {
		for _, o := range []SimOrder{SimForward, SimReverse, SimShuffle} {
			var err error
			withOrder(t, o, func() {
				err = launch("simtest_shared_race_kernel", [3]uint32{2, 1, 1}, [3]uint32{256, 1, 1}, 0,
					[]uint64{out.p, uint64(c.mode)}, "pi")
			})
			what := fmt.Sprintf("mode %d, order %d", c.mode, o)
			if !c.race {
				if err != nil {
					t.Errorf("%s: %v", what, err)
				}
				continue
			}
			wantErr(t, what, err, "racecheck: __shared__ simtest_shared_race_kernel::s +", "races with a", "by thread (", "in the same barrier interval")
		}
	}
	got := out.get()
	if got[0] != 256 || got[511] != 256 {
		t.Errorf("mode 5: count %v, %v, want 256", got[0], got[511])
	}
}

// racecheck, global memory: within a block as for shared memory; between
// blocks, any two accesses of a word, one a write (blocks are unordered).
func TestSimRacecheckGlobal(t *testing.T) {
	needChecks(t)
	const blocks, threads = 4, 64
	buf := alloc(t, (blocks+1)*threads)
	for _, c := range []struct {
		mode   int
		race   bool
		blocks string
	}{{0, true, "in the same barrier interval"}, {1, true, "(blocks are unordered)"}, {2, true, "in the same barrier interval"},
		{3, false, ""}, {4, true, "(blocks are unordered)"}, {5, false, ""}} {
		SimHtoD(buf.p, make([]float32, buf.n))
		for _, threadsOS := range []int{1, 3} {
			SimConfig(threadsOS, SimShuffle, 7, SimAllChecks)
			err := launch("simtest_global_race_kernel", [3]uint32{blocks, 1, 1}, [3]uint32{threads, 1, 1}, 0,
				[]uint64{buf.p, uint64(c.mode)}, "pi")
			defaultConfig()
			what := fmt.Sprintf("mode %d, %d OS threads", c.mode, threadsOS)
			if !c.race {
				if err != nil {
					t.Errorf("%s: %v", what, err)
				}
				continue
			}
			wantErr(t, what, err, "racecheck: global memory: allocation", "kernel argument 0", "races with a", c.blocks)
		}
	}
	if got := buf.get()[0]; got != 2*blocks*threads {
		t.Errorf("mode 5: buf[0] = %v after two launches of atomic increments, want %d", got, 2*blocks*threads)
	}
}

// racecheck across blocks ordered by __threadfence: the one-pass
// reductions' last block reads the other blocks' partials after their
// fences and its own after its count (common.cuh, last_block_of); without
// the fences, with a partial written after its block's fence, or without
// the last block's fence after its count, the read is a race.
func TestSimRacecheckFence(t *testing.T) {
	needChecks(t)
	const blocks, threads = 6, 64
	part, out := alloc(t, blocks), alloc(t, 1)
	counter := alloc(t, 1)
	for _, c := range []struct {
		mode int
		race bool
	}{{0, false}, {1, true}, {2, true}, {3, true}} {
		for _, threadsOS := range []int{1, 3} {
			SimHtoD(counter.p, []float32{0})
			SimHtoD(out.p, []float32{0})
			SimConfig(threadsOS, SimShuffle, 3, SimAllChecks)
			err := launch("simtest_last_block_kernel", [3]uint32{blocks, 1, 1}, [3]uint32{threads, 1, 1}, 0,
				[]uint64{part.p, counter.p, out.p, uint64(c.mode)}, "pppi")
			defaultConfig()
			what := fmt.Sprintf("mode %d, %d OS threads", c.mode, threadsOS)
			if c.race {
				wantErr(t, what, err, "racecheck: global memory: allocation", "kernel argument 0", "(blocks are unordered)")
				continue
			}
			if err != nil {
				t.Errorf("%s: %v", what, err)
			} else if got := out.get()[0]; got != blocks*(blocks+1)/2 {
				t.Errorf("%s: the last block's sum %v, want %d", what, got, blocks*(blocks+1)/2)
			}
		}
	}
}

// initcheck: static shared memory is poisoned at every block start (the
// harness used to keep the previous block's values); reading it before any
// thread of the block wrote it is an error.
func TestSimInitcheck(t *testing.T) {
	out := alloc(t, 2*256)
	SimConfig(1, SimShuffle, 1, SimRacecheck) // one OS thread: block 1 reuses block 0's copy
	err := launch("simtest_uninit_shared_kernel", [3]uint32{2, 1, 1}, [3]uint32{256, 1, 1}, 0, []uint64{out.p}, "p")
	defaultConfig()
	if err != nil {
		t.Fatal(err)
	}
	got := out.get()
	if got[0] != 1 || !math.IsNaN(float64(got[256])) || !math.IsNaN(float64(got[511])) {
		t.Errorf("block 0 reads %v (want 1), block 1 reads %v, %v (want NaN)", got[0], got[256], got[511])
	}
	if !SimChecksAvailable() {
		return
	}
	SimConfig(1, SimShuffle, 1, SimAllChecks)
	err = launch("simtest_uninit_shared_kernel", [3]uint32{2, 1, 1}, [3]uint32{256, 1, 1}, 0, []uint64{out.p}, "p")
	defaultConfig()
	wantErr(t, "uninitialised shared read", err, "block (1,0,0)", "initcheck", "__shared__ simtest_uninit_shared_kernel::s +",
		"which no thread of the block has written")
}

// synccheck: the lanes of a warp operation's mask must all arrive at it,
// with the same mask, and exist; a lane reads only lanes of its mask.
func TestSimSynccheck(t *testing.T) {
	out := alloc(t, 64)
	for _, c := range []struct {
		mode    int
		threads uint32
		want    []string
	}{
		{0, 32, []string{"__shfl_sync with mask 0x0000ffff in thread (", "which is not in the mask"}},
		{1, 32, []string{"__shfl_xor_sync with mask 0xffffffff", "of the mask has returned"}},
		{2, 32, nil},
		{3, 32, []string{"__shfl_sync: thread (3,0,0) (lane 3 of warp 0) reads lane 20, which is not in the mask 0x0000ffff"}},
		{4, 48, []string{"warp 1 has 16 lanes (the block has 48 threads)"}},
		{5, 32, []string{"wait at different warp operations", "__syncwarp with mask 0xffffffff", "__shfl_xor_sync with mask 0xffffffff"}},
	} {
		err := launch("simtest_mask_kernel", [3]uint32{1, 1, 1}, [3]uint32{c.threads, 1, 1}, 0, []uint64{out.p, uint64(c.mode)}, "pi")
		what := fmt.Sprintf("mode %d", c.mode)
		if c.want == nil {
			if err != nil {
				t.Errorf("%s: %v", what, err)
			}
			continue
		}
		wantErr(t, what, err, append([]string{"synccheck"}, c.want...)...)
	}
	// Mode 2's values: lane l < 16 reads lane 15 - l.
	SimConfig(0, SimShuffle, 3, SimAllChecks)
	defer defaultConfig()
	if err := launch("simtest_mask_kernel", [3]uint32{1, 1, 1}, [3]uint32{32, 1, 1}, 0, []uint64{out.p, 2}, "pi"); err != nil {
		t.Fatal(err)
	}
	got := out.get()
	for l := 0; l < 32; l++ {
		want := l
		if l < 16 {
			want = 15 - l
		}
		if g := int32(math.Float32bits(got[l])); g != int32(want) {
			t.Errorf("lane %d: %d, want %d", l, g, want)
		}
	}
}

func TestSimVotes(t *testing.T) {
	const n = 64
	pred, ballot, anyv, allv, up := alloc(t, n), alloc(t, n), alloc(t, n), alloc(t, n), alloc(t, n)
	host := make([]float32, n)
	var want [2]uint32
	for i := range host {
		p := uint32(0)
		if i < 32 && i%3 == 0 {
			p = 1
		}
		if i >= 32 {
			p = 1 // warp 1: every lane
		}
		host[i] = math.Float32frombits(p)
		want[i/32] |= p << (i % 32)
	}
	SimHtoD(pred.p, host)
	if err := launch("simtest_vote_kernel", [3]uint32{1, 1, 1}, [3]uint32{n, 1, 1}, 0,
		[]uint64{pred.p, ballot.p, anyv.p, allv.p, up.p}, "ppppp"); err != nil {
		t.Fatal(err)
	}
	b, a, al, u := ballot.get(), anyv.get(), allv.get(), up.get()
	for i := 0; i < n; i++ {
		w, l := i/32, i%32
		wantUp := l
		if l >= 2 {
			wantUp = l - 2
		}
		wantAll := uint32(0)
		if w == 1 {
			wantAll = 1
		}
		if math.Float32bits(b[i]) != want[w] || math.Float32bits(a[i]) != 1 || math.Float32bits(al[i]) != wantAll ||
			math.Float32bits(u[i]) != uint32(wantUp) {
			t.Fatalf("lane %d of warp %d: ballot %#x any %d all %d up %d, want %#x 1 %d %d", l, w, math.Float32bits(b[i]),
				math.Float32bits(a[i]), math.Float32bits(al[i]), math.Float32bits(u[i]), want[w], wantAll, wantUp)
		}
	}
}

// Resource checks: a launch must fit the registers and shared memory of
// the GPUs the fatbin targets, with the kernel's figures from the ptxas
// report (here a planted one for the self-test kernels).
func TestSimResources(t *testing.T) {
	defer func() {
		if err := SimLoadPtxasReport(PtxasReport); err != nil {
			t.Fatal(err)
		}
	}()
	report := `ptxas info    : Compiling entry function 'simtest_index_kernel' for 'sm_90'
ptxas info    : Function properties for simtest_index_kernel
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 72 registers, 384 bytes cmem[0]
ptxas info    : Compiling entry function 'simtest_dynamic_smem_kernel' for 'sm_80'
ptxas info    : Used 16 registers, 40960 bytes smem, 384 bytes cmem[0]
ptxas info    : Compiling entry function 'simtest_dynamic_smem_kernel' for 'sm_90'
ptxas info    : Used 16 registers, 40960 bytes smem, 384 bytes cmem[0]
`
	if err := SimLoadPtxasReport([]byte(report)); err != nil {
		t.Fatal(err)
	}
	out := alloc(t, 29*32)
	// 72 registers: 2304 a warp; 28 warps fit in 65536, 29 do not.
	if err := launch("simtest_index_kernel", [3]uint32{1, 1, 1}, [3]uint32{28 * 32, 1, 1}, 0, []uint64{out.p}, "p"); err != nil {
		t.Errorf("28 warps of 72 registers: %v", err)
	}
	err := launch("simtest_index_kernel", [3]uint32{1, 1, 1}, [3]uint32{29 * 32, 1, 1}, 0, []uint64{out.p}, "p")
	wantErr(t, "29 warps of 72 registers", err, "resources: simtest_index_kernel: 72 registers x 928 threads need 66816 registers per block", "sm_90's 65536")
	withChecks(SimRacecheck, func() { // the kernel reads its dynamic shared memory before writing it
		if err := launch("simtest_dynamic_smem_kernel", [3]uint32{1, 1, 1}, [3]uint32{256, 1, 1}, 4096, []uint64{out.p, out.p}, "pp"); err != nil {
			t.Errorf("40 KiB static and 4 KiB dynamic: %v", err)
		}
	})
	err = launch("simtest_dynamic_smem_kernel", [3]uint32{1, 1, 1}, [3]uint32{256, 1, 1}, 8192+4, []uint64{out.p, out.p}, "pp")
	wantErr(t, "40 KiB static and 8 KiB dynamic", err, "resources: simtest_dynamic_smem_kernel: 40960 bytes of static and 8196 of dynamic shared memory, above sm_80's 49152 per block without the opt-in attribute")
	// A kernel of the fatbin that the report lacks cannot launch.
	err = launch("fill_forward_kernel", [3]uint32{1, 1, 1}, [3]uint32{32, 1, 1}, 0, []uint64{out.p, 0, 1}, "pfi")
	wantErr(t, "a kernel missing from the report", err, "fill_forward_kernel is not in ptxas-report.txt")
}

// Sampling: with SimSampling(first, every), launches of one configuration
// after the first `first` are checked one in `every`; a changed grid is
// another configuration.
func TestSimSampling(t *testing.T) {
	needChecks(t)
	defer SimSampling(0, 1)
	out := alloc(t, 4*256)
	race := func(blocks uint32) error {
		return launch("simtest_shared_race_kernel", [3]uint32{blocks, 1, 1}, [3]uint32{256, 1, 1}, 0, []uint64{out.p, 1}, "pi")
	}
	SimSampling(2, 3)
	var got []bool
	for i := 0; i < 8; i++ {
		got = append(got, race(2) != nil)
	}
	want := []bool{true, true, true, false, false, true, false, false} // launches 0, 1, then 2, 5, ...
	if !slices.Equal(got, want) {
		t.Errorf("checked launches %v, want %v", got, want)
	}
	if race(3) == nil {
		t.Error("the first launch of another grid went unchecked")
	}
	SimSampling(0, 0)
	if err := race(4); err != nil {
		t.Errorf("SimSampling(0, 0) checked a launch: %v", err)
	}
}
