package gpu_test

import (
	"errors"
	"testing"

	"github.com/fmgpu/fmgpu/gpu"
)

// Capture through the real launcher (the fake libcuda records the capture
// and replays it): a replay computes what the ops do, the values read from
// device memory change between replays, ops that are not kernels are
// refused while recording without breaking the backend, and a graph over a
// freed buffer is stale. Backends without graphs return nil.
func TestCUDACapture(t *testing.T) {
	if g, err := gpu.Capture(gpu.NewCPU(1), func() { t.Error("f called on the CPU backend") }); g != nil || err != nil {
		t.Errorf("Capture on the CPU = %v, %v", g, err)
	}
	be := newCUDA(t)
	defer be.Close()
	d, ok := be.(*gpu.DeviceBackend)
	if !ok {
		t.Fatalf("%T", be)
	}
	const n = 1000
	x, y, sum := be.Alloc(n), be.Alloc(n), be.Alloc(1)
	be.Fill(x, 2)
	ops := func() {
		be.Axpy(0.5, x, y)    // y += x / 2
		be.SumSquares(y, sum) // a one-pass reduction: its counter must be reset for the replay
	}
	ops() // sizes the scratch space: y = 1
	if err := be.Sync(); err != nil {
		t.Fatal(err)
	}
	launches := d.Launches()
	g, err := gpu.Capture(be, ops)
	if err != nil || g == nil {
		if *cudaSync {
			t.Skip("graphs are off with -cuda.sync")
		}
		t.Fatalf("Capture = %v, %v", g, err)
	}
	defer g.Close()
	if d.Launches() != launches || g.Kernels() != 2 {
		t.Errorf("recording launched %d kernels; a replay runs %d, want 2", d.Launches()-launches, g.Kernels())
	}
	for i := 0; i < 3; i++ {
		if err := g.Launch(); err != nil {
			t.Fatal(err)
		}
	}
	got := make([]float32, 1)
	be.Download(got, sum)
	if err := be.Sync(); err != nil {
		t.Fatal(err)
	}
	// y = 1 + 3 replays of 1 = 4: sum of squares 16 n
	if want := float32(16 * n); got[0] != want {
		t.Errorf("after three replays sum y^2 = %g, want %g", got[0], want)
	}
	if d.GraphLaunches() != 3 || d.Launches() != launches+6 {
		t.Errorf("%d graph launches, %d kernels; want 3, %d", d.GraphLaunches(), d.Launches(), launches+6)
	}

	// An allocation while recording fails the capture, not the backend.
	g2, err := gpu.Capture(be, func() { be.Free(be.Alloc(4)) })
	if g2 != nil || err == nil {
		t.Errorf("Capture of an allocation = %v, %v", g2, err)
	}
	be.Fill(x, 1)
	be.Download(got, x)
	if err := be.Sync(); err != nil || got[0] != 1 {
		t.Errorf("after a failed capture: %v, x[0] = %g", err, got[0])
	}

	// A freed buffer makes every graph stale.
	be.Free(be.Alloc(3))
	if err := g.Launch(); !errors.Is(err, gpu.ErrGraphStale) {
		t.Errorf("Launch after a Free = %v, want ErrGraphStale", err)
	}
}
