//go:build cuda

package gpu

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"unsafe"

	"gorgonia.org/cu"

	"github.com/fmgpu/fmgpu/kernels"
)

// Flavor names the build: "cpu", "cuda" or "kernelsim".
const Flavor = "cuda"

// CUDAOptions configures NewCUDAWith.
type CUDAOptions struct {
	// Device is the CUDA device ordinal.
	Device int
	// SyncEachLaunch waits for every kernel to finish and checks its
	// error: slow, but a fault is reported at the kernel that caused it
	// rather than at the next Sync or Download.
	SyncEachLaunch bool
}

// NewCUDA returns the CUDA backend on device 0: DeviceBackend over the CUDA
// driver API (gorgonia.org/cu) with the kernels of kernels/fmgpu.fatbin.
func NewCUDA() (Backend, error) { return NewCUDAWith(CUDAOptions{}) }

// NewCUDAWith is NewCUDA with options.
func NewCUDAWith(o CUDAOptions) (Backend, error) {
	l, err := newCUDALauncher(o)
	if err != nil {
		return nil, err
	}
	return newDeviceBackend(l), nil
}

// ProbeCUDA reports what the CUDA build sees on device 0 (name, compute
// capability, memory, driver version) after creating a context and loading
// the kernels, for `fmgpu info`.
func ProbeCUDA() (DeviceInfo, error) {
	l, err := newCUDALauncher(CUDAOptions{})
	if err != nil {
		return DeviceInfo{Backend: "cuda"}, err
	}
	info := l.info()
	return info, l.close()
}

// cudaLauncher implements launcher with the CUDA driver API. A CUDA context
// is current on one OS thread, so every driver call runs on one goroutine
// locked to that thread, which serves a queue of requests in order. Kernel
// launches are queued without waiting (the caller goes on describing the
// next one while the driver goroutine launches); their errors are kept and
// returned by the next request that waits (sync, a copy, an allocation), as
// the Backend's sticky errors allow. All work goes to the legacy default
// stream, which runs it in order; cuMemcpyDtoH waits for it.
type cudaLauncher struct {
	mu       sync.Mutex // serializes requests that wait for their answer
	req      chan cudaReq
	resp     chan error
	ctx      cu.CUContext
	mod      cu.Module
	fns      map[string]cu.Function // driver goroutine only
	asyncErr error                  // driver goroutine only: first failed queued launch
	queued   bool                   // driver goroutine only: launches since the last synchronize
	inf      DeviceInfo
	syncEach bool
	closed   bool
}

// cudaReq is one request to the driver goroutine: a queued launch (k, no
// answer) or a function whose error is answered on resp.
type cudaReq struct {
	f func() error
	k kernelCall
}

// cudaQueue is how many launches may wait for the driver goroutine.
const cudaQueue = 1024

func newCUDALauncher(o CUDAOptions) (*cudaLauncher, error) {
	c := &cudaLauncher{req: make(chan cudaReq, cudaQueue), resp: make(chan error), fns: map[string]cu.Function{}, syncEach: o.SyncEachLaunch}
	go c.serve()
	err := c.do(func() error {
		n, err := cu.NumDevices()
		if err != nil {
			return fmt.Errorf("count CUDA devices: %w", err)
		}
		if o.Device < 0 || o.Device >= n {
			return fmt.Errorf("CUDA device %d requested, %d present", o.Device, n)
		}
		dev, err := cu.GetDevice(o.Device)
		if err != nil {
			return fmt.Errorf("get CUDA device %d: %w", o.Device, err)
		}
		if c.inf, err = deviceInfo(dev); err != nil {
			return err
		}
		// cuCtxCreate makes the new context current on this thread.
		if c.ctx, err = dev.MakeContext(cu.SchedAuto); err != nil {
			return fmt.Errorf("create a CUDA context on %s: %w", c.inf.Name, err)
		}
		if c.mod, err = cu.LoadData(string(kernels.Fatbin)); err != nil {
			c.ctx.Destroy()
			return fmt.Errorf("load the kernels (sm_80/sm_90 SASS, compute_90 PTX) on %s (compute capability %s): %w",
				c.inf.Name, c.inf.ComputeCapability, err)
		}
		return nil
	})
	if err != nil {
		c.shutdown()
		return nil, fmt.Errorf("cuda: %w", err)
	}
	return c, nil
}

// serve is the driver goroutine.
func (c *cudaLauncher) serve() {
	// Never unlocked: when serve returns, its thread (the only one the
	// context was current on) ends with it.
	runtime.LockOSThread()
	for r := range c.req {
		if r.f == nil {
			c.queued = true
			if err := c.launchNow(&r.k); err != nil && c.asyncErr == nil {
				c.asyncErr = err
			}
			continue
		}
		err := r.f()
		if c.asyncErr != nil {
			err, c.asyncErr = c.asyncErr, nil
		}
		c.resp <- err
	}
}

// do runs f on the driver goroutine after every queued launch and returns
// the first error of those launches, else f's.
func (c *cudaLauncher) do(f func() error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return errors.New("cuda: backend closed")
	}
	c.req <- cudaReq{f: f}
	return <-c.resp
}

func (c *cudaLauncher) shutdown() {
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		close(c.req)
	}
	c.mu.Unlock()
}

func deviceInfo(dev cu.Device) (DeviceInfo, error) {
	inf := DeviceInfo{Backend: "cuda"}
	name, err := dev.Name()
	if err != nil {
		return inf, fmt.Errorf("device name: %w", err)
	}
	major, minor, err := dev.ComputeCapability()
	if err != nil {
		return inf, fmt.Errorf("compute capability: %w", err)
	}
	mem, err := dev.TotalMem()
	if err != nil {
		return inf, fmt.Errorf("device memory: %w", err)
	}
	sms, err := dev.Attribute(cu.MultiprocessorCount)
	if err != nil {
		return inf, fmt.Errorf("multiprocessor count: %w", err)
	}
	inf.Name = fmt.Sprintf("%s (%d SMs)", name, sms)
	inf.ComputeCapability = fmt.Sprintf("%d.%d", major, minor)
	inf.MemoryBytes = mem
	if v := cu.Version(); v > 0 {
		inf.Driver = fmt.Sprintf("CUDA driver API %d.%d", v/1000, v%1000/10)
	}
	return inf, nil
}

func (c *cudaLauncher) info() DeviceInfo { return c.inf }

func (c *cudaLauncher) alloc(bytes int) (devPtr, error) {
	var p cu.DevicePtr
	err := c.do(func() (err error) {
		p, err = cu.MemAlloc(int64(bytes))
		return err
	})
	return devPtr(p), err
}

// free waits for queued kernels first: one of them may still use p.
func (c *cudaLauncher) free(p devPtr) error {
	return c.do(func() error {
		if c.queued {
			if err := cu.Synchronize(); err != nil {
				return err
			}
			c.queued = false
		}
		return cu.MemFree(cu.DevicePtr(p))
	})
}

func (c *cudaLauncher) upload(dst devPtr, src []float32) error {
	return c.do(func() error {
		return cu.MemcpyHtoD(cu.DevicePtr(dst), unsafe.Pointer(&src[0]), int64(4*len(src)))
	})
}

func (c *cudaLauncher) download(dst []float32, src devPtr) error {
	return c.do(func() error {
		return cu.MemcpyDtoH(unsafe.Pointer(&dst[0]), cu.DevicePtr(src), int64(4*len(dst)))
	})
}

func (c *cudaLauncher) copyDtoD(dst, src devPtr, bytes int) error {
	return c.do(func() error { return cu.MemcpyDtoD(cu.DevicePtr(dst), cu.DevicePtr(src), int64(bytes)) })
}

func (c *cudaLauncher) memset32(dst devPtr, v uint32, n int) error {
	return c.do(func() error { return cu.MemsetD32(cu.DevicePtr(dst), v, int64(n)) })
}

// launch queues the launch (a copy of k) for the driver goroutine, or
// with SyncEachLaunch runs it and waits for the kernel to finish.
func (c *cudaLauncher) launch(k *kernelCall) error {
	if c.syncEach {
		return c.do(func() error {
			if err := c.launchNow(k); err != nil {
				return err
			}
			if err := cu.Synchronize(); err != nil {
				return fmt.Errorf("kernel %s: %w", k.name, err)
			}
			return nil
		})
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return errors.New("cuda: backend closed")
	}
	c.req <- cudaReq{k: *k}
	return nil
}

// launchNow launches k on the driver goroutine. Each argument is passed as
// a pointer to its 8-byte slot: cu's Launch copies 8 bytes from every
// pointer into the parameter buffer, and the driver reads each parameter's
// own size from its low bytes.
func (c *cudaLauncher) launchNow(k *kernelCall) error {
	fn, ok := c.fns[k.name]
	if !ok {
		var err error
		if fn, err = c.mod.Function(k.name); err != nil {
			return fmt.Errorf("kernel %s: %w", k.name, err)
		}
		c.fns[k.name] = fn
	}
	var params [maxKernelArgs]unsafe.Pointer
	for i := 0; i < k.n; i++ {
		params[i] = unsafe.Pointer(&k.slots[i])
	}
	if err := fn.Launch(int(k.grid.x), int(k.grid.y), int(k.grid.z), int(k.block.x), int(k.block.y), int(k.block.z),
		k.shared, cu.NoStream, params[:k.n]); err != nil {
		return fmt.Errorf("launch %s grid (%d,%d,%d) block (%d,%d,%d) args (%s): %w", k.name,
			k.grid.x, k.grid.y, k.grid.z, k.block.x, k.block.y, k.block.z, k.signature(), err)
	}
	return nil
}

func (c *cudaLauncher) sync() error {
	return c.do(func() error {
		c.queued = false
		return cu.Synchronize()
	})
}

func (c *cudaLauncher) close() error {
	err := c.do(func() error {
		errU := c.mod.Unload()
		errD := c.ctx.Destroy()
		return errors.Join(errU, errD)
	})
	c.shutdown()
	return err
}
