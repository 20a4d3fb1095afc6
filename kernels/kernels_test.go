//go:build kernelsim

package kernels

import (
	"math"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
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

func withOrder(t *testing.T, o SimOrder, fn func()) {
	SimConfig(0, o, 1, true)
	defer SimConfig(0, SimShuffle, 0x5eed, true)
	fn()
}

// A barrier makes a shared-memory exchange correct in every thread order;
// without it, an order that is not thread 0 first shows the race.
func TestSimBarrier(t *testing.T) {
	const blocks, threads = 5, 1024
	in := alloc(t, blocks*threads)
	out := alloc(t, blocks*threads)
	host := make([]float32, blocks*threads)
	for i := range host {
		host[i] = float32(i)
	}
	SimHtoD(in.p, host)
	for _, o := range []SimOrder{SimForward, SimReverse, SimShuffle} {
		for _, sync := range []uint64{1, 0} {
			withOrder(t, o, func() {
				if err := launch("simtest_reverse_kernel", [3]uint32{blocks, 1, 1}, [3]uint32{threads, 1, 1}, 0,
					[]uint64{in.p, out.p, sync}, "ppi"); err != nil {
					t.Fatal(err)
				}
			})
			got := out.get()
			bad := 0
			for i, v := range got {
				b, j := i/threads, i%threads
				if v != float32(b*threads+threads-1-j) {
					bad++
				}
			}
			switch {
			case sync == 1 && bad > 0:
				t.Errorf("order %d: %d wrong elements with the barrier", o, bad)
			case sync == 0 && o != SimForward && bad == 0:
				t.Errorf("order %d: the race without the barrier went unnoticed", o)
			}
		}
	}
}

func TestSimBarrierMisuse(t *testing.T) {
	out := alloc(t, 256)
	err := launch("simtest_early_exit_kernel", [3]uint32{2, 1, 1}, [3]uint32{256, 1, 1}, 0, []uint64{out.p}, "p")
	if err == nil || !strings.Contains(err.Error(), "after 128 threads of the block returned") {
		t.Errorf("barrier after an early return: err = %v", err)
	}
	err = launch("simtest_divergent_kernel", [3]uint32{1, 1, 1}, [3]uint32{256, 1, 1}, 0, []uint64{out.p}, "p")
	if err == nil || !strings.Contains(err.Error(), "deadlock") {
		t.Errorf("divergent barrier: err = %v", err)
	}
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

func TestSimDynamicSharedMemory(t *testing.T) {
	before, after := alloc(t, 256), alloc(t, 256)
	if err := launch("simtest_dynamic_smem_kernel", [3]uint32{3, 1, 1}, [3]uint32{256, 1, 1}, 4*256,
		[]uint64{before.p, after.p}, "pp"); err != nil {
		t.Fatal(err)
	}
	b, a := before.get(), after.get()
	for i := range b {
		if !math.IsNaN(float64(b[i])) || a[i] != float32(255-i) {
			t.Fatalf("thread %d: before %v (want NaN), after %v (want %d)", i, b[i], a[i], 255-i)
		}
	}
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

// A read one element past a buffer faults (the guard page), in a child
// process since the fault ends it.
func TestSimGuardPage(t *testing.T) {
	if os.Getenv("FMGPU_SIM_OVERRUN_CHILD") == "1" {
		SimConfig(1, SimForward, 0, true)
		in, out := SimAlloc(4*5), SimAlloc(4)
		_ = launch("simtest_overrun_kernel", [3]uint32{1, 1, 1}, [3]uint32{32, 1, 1}, 0, []uint64{in, out, 5}, "ppi")
		os.Exit(0) // not reached when the guard works
	}
	if testing.Short() {
		t.Skip("starts a child process")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestSimGuardPage$")
	cmd.Env = append(os.Environ(), "FMGPU_SIM_OVERRUN_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "SIGSEGV") {
		t.Errorf("reading past a buffer did not fault: err = %v, output:\n%s", err, out)
	}
}
