package gpu

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/fmgpu/fmgpu/flow"
)

// recLauncher records what the device backend asks of a launcher, without
// running anything: the Go side's grids, arguments and error handling are
// checked here in every build (the kernels themselves in the kernelsim
// build, gpu/kernelsim_test.go).
type recLauncher struct {
	next     devPtr
	calls    []kernelCall
	failNext error // returned by the next launch
	// asyncErr is returned by the next call that waits, with its result:
	// the failure of a kernel queued earlier, as a GPU reports it.
	asyncErr error
	freed    []devPtr
}

func (r *recLauncher) info() DeviceInfo { return DeviceInfo{Backend: "rec"} }
func (r *recLauncher) alloc(bytes int) (devPtr, error) {
	r.next += 1 << 32
	err := r.asyncErr
	r.asyncErr = nil
	return r.next, err
}
func (r *recLauncher) free(p devPtr) error                { r.freed = append(r.freed, p); return nil }
func (r *recLauncher) upload(devPtr, []float32) error     { return nil }
func (r *recLauncher) download([]float32, devPtr) error   { return nil }
func (r *recLauncher) copyDtoD(devPtr, devPtr, int) error { return nil }
func (r *recLauncher) memset32(devPtr, uint32, int) error { return nil }
func (r *recLauncher) sync() error                        { return nil }
func (r *recLauncher) close() error                       { return nil }
func (r *recLauncher) launch(k *kernelCall) error {
	if err := r.failNext; err != nil {
		r.failNext = nil
		return err
	}
	r.calls = append(r.calls, *k)
	return nil
}

func newRec() (*DeviceBackend, *recLauncher) {
	r := &recLauncher{}
	return newDeviceBackend(r), r
}

// Arguments sit in the low bytes of their 8-byte slots, little-endian, as
// the kernels (and cuLaunchKernel) read them.
func TestKernelCallSlots(t *testing.T) {
	var k kernelCall
	k.name = "k"
	k.i32(-1).f32(1.5).f64(-2).u64(1<<63 | 5).ptr(0xdeadbeef00)
	want := []uint64{0xffffffff, uint64(math.Float32bits(1.5)), math.Float64bits(-2), 1<<63 | 5, 0xdeadbeef00}
	for i, w := range want {
		if k.slots[i] != w {
			t.Errorf("slot %d = %#x, want %#x", i, k.slots[i], w)
		}
	}
	if k.signature() != "ifdLp" {
		t.Errorf("signature %q", k.signature())
	}
	defer func() {
		if recover() == nil {
			t.Error("an int beyond int32 was accepted")
		}
	}()
	k.i32(1 << 31)
}

// A view's pointer is its parent's plus the offset in bytes, through views
// of views.
func TestDeviceViews(t *testing.T) {
	d, r := newRec()
	b := d.Alloc(100)
	v := b.Slice(10, 50).Slice(3, 20)
	d.Fill(v, 1)
	if len(r.calls) != 1 {
		t.Fatalf("%d launches", len(r.calls))
	}
	base := d.buf(b).a.ptr
	if got := devPtr(r.calls[0].slots[0]); got != base+4*13 {
		t.Errorf("view pointer %#x, want %#x", got, base+4*13)
	}
	if n := int32(r.calls[0].slots[2]); n != 20 {
		t.Errorf("count %d, want 20", n)
	}
}

// Errors are sticky: a failed launch skips later ops until Sync returns
// the error (naming the kernel) and clears it.
func TestDeviceStickyErrors(t *testing.T) {
	d, r := newRec()
	x, y := d.Alloc(10), d.Alloc(10)
	r.failNext = errors.New("boom")
	d.Axpy(1, x, y)
	d.Fill(y, 2)
	d.Axpy(1, x, y)
	if len(r.calls) != 0 {
		t.Errorf("%d launches after an error", len(r.calls))
	}
	err := d.Sync()
	if err == nil || !strings.Contains(err.Error(), "axpy_update_kernel") || !strings.Contains(err.Error(), "boom") {
		t.Errorf("Sync() = %v", err)
	}
	if err := d.Sync(); err != nil {
		t.Errorf("second Sync() = %v", err)
	}
	d.Fill(y, 2)
	if len(r.calls) != 1 {
		t.Errorf("%d launches after Sync cleared the error", len(r.calls))
	}
}

// Empty operands launch nothing (CUDA rejects a grid of size 0), except
// where an op must still write (a reduction's 0, Adam's status).
func TestDeviceEmptyOps(t *testing.T) {
	d, r := newRec()
	z, one := d.Alloc(0), d.Alloc(1)
	d.Fill(z, 1)
	d.Axpy(1, z, z)
	d.RandNormal(z, 1, 2, 1)
	d.RandRademacher(z, 1, 2)
	d.Gemm(false, false, 0, 3, 3, 1, z, 3, z, 3, 0, z, 3)
	d.Linear(0, 3, 3, z, 3, z, z, ActSiLU, nil, z)
	d.PathTarget(flow.DefaultSpec(flow.KindOT), 0, 2, z, z, z, z, z)
	d.RowDot(0, 3, 1, z, z, 0, z)
	d.UnitColumn(0, 3, 0, z)
	d.LinComb(z, z, 1, []float32{1}, []Buffer{z})
	if len(r.calls) != 0 {
		t.Errorf("%d launches for empty operands: %s", len(r.calls), r.calls[0].name)
	}
	d.SumSquares(z, one)
	d.MSELoss(z, z, 1, z, one)
	d.AdamEMA(AdamStep{Step: 1}, z, z, z, z, nil, one, one)
	var names []string
	for _, c := range r.calls {
		names = append(names, c.name)
	}
	if got := strings.Join(names, " "); got != "sum_squares_reduce_kernel mse_loss_backward_kernel adam_ema_update_kernel" {
		t.Errorf("launches %s", got)
	}
}

// Every launch of a training step's ops has a valid shape, and describing
// the calls allocates (almost) nothing: the step's Go overhead stays small
// next to the GPU's work.
func TestDeviceStepShapesAndAllocs(t *testing.T) {
	d, r := newRec()
	const rows, in, hid, dim = 4096, 3, 256, 2
	data := d.Alloc(1000 * dim)
	x0, x1, tt, xt, ut := d.Alloc(rows*dim), d.Alloc(rows*dim), d.Alloc(rows), d.Alloc(rows*dim), d.Alloc(rows*dim)
	inp := d.Alloc(rows * in)
	w1, b1, pre, h := d.Alloc(hid*in), d.Alloc(hid), d.Alloc(rows*hid), d.Alloc(rows*hid)
	grad, loss, gss, st := d.Alloc(rows*hid), d.Alloc(1), d.Alloc(1), d.Alloc(1)
	m, v, ema := d.Alloc(hid*in), d.Alloc(hid*in), d.Alloc(hid*in)
	dr := BatchDraw{Path: flow.DefaultSpec(flow.KindOT), Time: flow.DefaultTimeSampler(flow.TimeUniform), Seed: 1, Step: 2}
	s := AdamStep{LR: 1e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, BiasCorr1: 0.1, BiasCorr2: 0.001, EMADecay: 0.999, Step: 1}
	step := func() {
		d.DrawBatch(dr, data, 1000, dim, rows, nil, nil, tt, xt, ut)
		d.EmbedInput(rows, dim, xt, tt, TimeEmbedding{}, inp)
		d.Linear(rows, in, hid, inp, in, w1, b1, ActSiLU, pre, h)
		d.MSELoss(h, pre, 1.0/rows, grad, loss)
		d.BiasActBackward(ActSiLU, rows, hid, grad, pre, grad, b1)
		d.Gemm(true, false, hid, in, rows, 1, grad, hid, inp, in, 0, m, in)
		d.SumSquares(m, gss)
		d.AdamEMA(s, w1, m, m, v, ema, gss, st)
		d.Axpy(0.1, x0, x1)
	}
	step()
	for _, c := range r.calls {
		g, b := c.grid, c.block
		if g.x == 0 || g.y == 0 || g.z == 0 || g.y > 65535 || g.z > 65535 || b.x*b.y*b.z == 0 || b.x*b.y*b.z > 256 {
			t.Errorf("%s: grid %v block %v", c.name, g, b)
		}
	}
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
	// DrawBatch keeps the flow.Path it built for the last Spec: a step
	// allocates nothing.
	if a := testing.AllocsPerRun(20, step); a > 0 {
		t.Errorf("%.0f allocations per training step's ops", a)
	}
}

// A launcher reports a queued kernel's failure at its next call: when that
// call is an allocation that itself succeeded, the allocation is kept (Free
// and Close release it) and the error names the kernels queued before, not
// the allocation.
func TestDeviceAllocAfterAKernelFailed(t *testing.T) {
	d, r := newRec()
	x := d.Alloc(10)
	d.Fill(x, 1)
	r.asyncErr = errors.New("illegal address")
	y := d.Alloc(20)
	p := d.buf(y).a.ptr
	if p == 0 {
		t.Fatal("the allocation was dropped")
	}
	err := d.Sync()
	if err == nil || !strings.Contains(err.Error(), "a kernel queued before allocating 20 floats") || !strings.Contains(err.Error(), "illegal address") {
		t.Errorf("Sync() = %v", err)
	}
	d.Free(y)
	if len(r.freed) != 1 || r.freed[0] != p {
		t.Errorf("freed %#x, want %#x", r.freed, p)
	}
	// kept until Close otherwise
	z := d.Alloc(30)
	r.asyncErr = errors.New("illegal address")
	d.Alloc(40)
	if err := d.Sync(); err == nil {
		t.Error("no error")
	}
	r.freed = nil
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if len(r.freed) != 3 { // x, z and the one allocated with the error
		t.Errorf("Close freed %d allocations, want 3", len(r.freed))
	}
	_ = z
}

// A failed allocation with kernels queued since the last wait may be one
// of theirs: the error says so, and only then.
func TestDeviceAllocErrorAfterQueuedKernels(t *testing.T) {
	d, r := newRec()
	x := d.Alloc(10)
	d.Fill(x, 1)
	d.l = failingAlloc{r}
	d.Alloc(10)
	if err := d.Sync(); err == nil || !strings.Contains(err.Error(), "allocate 10 floats (or a kernel queued before it): out of memory") {
		t.Errorf("after a launch: Sync() = %v", err)
	}
	d.Alloc(10)
	if err := d.Sync(); err == nil || strings.Contains(err.Error(), "queued") {
		t.Errorf("after a Sync: Sync() = %v, want the allocation's error only", err)
	}
}

// failingAlloc is a recLauncher whose allocations fail.
type failingAlloc struct{ *recLauncher }

func (f failingAlloc) alloc(int) (devPtr, error) { return 0, errors.New("out of memory") }
