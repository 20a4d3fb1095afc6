package collective

import (
	"os"
	"runtime"
	"testing"
	"unsafe"

	"github.com/fmgpu/fmgpu/internal/cudadriver"
)

// deviceTestEnv, set on a GPU host, runs TestNCCLDevice: the NCCL engine
// through the NVIDIA driver and a real libnccl.so.2 (FMGPU_LIBNCCL names
// it if the loader does not find it, e.g. PyTorch's
// site-packages/nvidia/nccl/lib/libnccl.so.2), as one rank.
const deviceTestEnv = "FMGPU_NCCL_DEVICE_TEST"

// Parameter counts of the workloads docs/distributed.md discusses.
var workloadParams = []struct {
	name string
	n    int
}{
	{"mlp256", 133_000}, {"mlp512x4", 790_000}, {"unet-mnist", 1_047_137},
}

func TestNCCLDevice(t *testing.T) {
	if os.Getenv(deviceTestEnv) == "" {
		t.Skipf("set %s=1 on a GPU host with libnccl.so.2", deviceTestEnv)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	drv, err := cudadriver.Open("")
	must(t, err)
	must(t, drv.Init())
	dev, err := drv.Device(0)
	must(t, err)
	ctx, err := drv.PrimaryCtxRetain(dev)
	must(t, err)
	must(t, drv.CtxSetCurrent(ctx))
	name, _ := drv.DeviceName(dev)
	c, err := Open(EngineNCCL, Options{Force: true, Launch: &Launch{Launcher: LaunchSingle, Size: 1}})
	must(t, err)
	t.Logf("%s on %s", Describe(c), name)
	stream, err := drv.StreamCreate(1)
	must(t, err)
	start, err := drv.EventCreate(0)
	must(t, err)
	end, err := drv.EventCreate(0)
	must(t, err)
	for _, w := range workloadParams {
		x := rankData(7, 0, w.n)
		want := append([]float32(nil), x...)
		d, err := drv.MemAlloc(4 * w.n)
		must(t, err)
		must(t, drv.MemcpyHtoD(d, unsafe.Pointer(&x[0]), 4*w.n))
		buf := Device(uint64(d), w.n, uintptr(stream))
		for range 10 { // warm-up
			must(t, c.AllReduceSum(buf))
		}
		const reps = 200
		must(t, drv.EventRecord(start, stream))
		for range reps {
			must(t, c.AllReduceSum(buf))
		}
		must(t, drv.EventRecord(end, stream))
		must(t, drv.EventSynchronize(end))
		ms, err := drv.EventElapsedMs(start, end)
		must(t, err)
		must(t, c.Broadcast(buf))
		must(t, drv.StreamSynchronize(stream))
		must(t, drv.MemcpyDtoH(unsafe.Pointer(&x[0]), d, 4*w.n))
		for i := range x { // the sum over one rank is the buffer itself
			if x[i] != want[i] {
				t.Fatalf("%s: element %d changed from %g to %g", w.name, i, want[i], x[i])
			}
		}
		h := rankData(8, 0, w.n)
		must(t, c.AllReduceSum(Host(h)))
		checkSum(t, h, 8, 1)
		t.Logf("%s: %d floats (%.2f MB): ncclAllReduce, 1 rank, %.2f us per call on the stream", w.name, w.n, float64(4*w.n)/1e6, 1e3*float64(ms)/reps)
		must(t, drv.MemFree(d))
	}
	must(t, c.Barrier())
	must(t, c.Close())
}
