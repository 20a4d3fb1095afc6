package gpu

import (
	"errors"
	"fmt"
	"maps"
	"runtime"
	"sync"
	"unsafe"

	"github.com/fmgpu/fmgpu/internal/cudadriver"
	"github.com/fmgpu/fmgpu/kernels"
)

// CUDAOptions configures NewCUDAWith.
type CUDAOptions struct {
	// Device is the CUDA device ordinal.
	Device int
	// Library is the driver library to load; empty means FMGPU_LIBCUDA,
	// else libcuda.so.1 (the NVIDIA driver's).
	Library string
	// SyncEachLaunch waits for every kernel to finish and checks its
	// error: slow, but a fault is reported at the kernel that caused it
	// rather than at the next Sync or Download.
	SyncEachLaunch bool
	// Profile times every kernel with a pair of CUDA events (KernelStats):
	// for per-kernel breakdowns, not for timing whole steps (the events
	// add work between launches).
	Profile bool
	// NoGraphs turns CUDA graphs off: Capture returns nil and callers
	// launch every kernel themselves (graphs are also off with Profile or
	// SyncEachLaunch, and on a driver without them).
	NoGraphs bool
}

// NewCUDADriver returns the device backend over the CUDA driver, loaded at
// run time (internal/cudadriver), with the kernels of kernels/fmgpu.fatbin.
// Every build has it; on a machine without an NVIDIA driver or device it
// returns a *CUDAUnavailable error saying what is missing.
func NewCUDADriver(o CUDAOptions) (Backend, error) {
	l, err := newCUDALauncher(o)
	if err != nil {
		return nil, err
	}
	return newDeviceBackend(l), nil
}

// CUDAUnavailable says why the CUDA backend cannot start: Missing is what
// is absent or failing ("NVIDIA driver", "CUDA device", ...), Err the
// underlying error, Hint what the user can do.
type CUDAUnavailable struct {
	Missing string
	Hint    string
	Err     error
}

func (e *CUDAUnavailable) Error() string {
	s := "no usable CUDA GPU: " + e.Missing
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	if e.Hint != "" {
		s += " (" + e.Hint + ")"
	}
	return s
}

func (e *CUDAUnavailable) Unwrap() error { return e.Err }

// Brief is what is missing and the driver's word for it, without the
// hint: "no NVIDIA driver (libcuda.so.1 not found)", "no CUDA device
// (cuInit: CUDA_ERROR_NO_DEVICE)".
func (e *CUDAUnavailable) Brief() string {
	var le *cudadriver.LoadError
	var de *cudadriver.Error
	switch {
	case errors.As(e.Err, &le):
		return fmt.Sprintf("%s (%s not found)", e.Missing, le.Path)
	case errors.As(e.Err, &de) && de.Name != "":
		return fmt.Sprintf("%s (%s: %s)", e.Missing, de.Func, de.Name)
	}
	return e.Error()
}

// cudaUnavailable classifies a start-up failure of the driver.
func cudaUnavailable(stage string, err error) error {
	var de *cudadriver.Error
	switch {
	case cudadriver.ErrNoLibrary(err):
		return &CUDAUnavailable{Missing: "no NVIDIA driver", Err: err,
			Hint: "install the NVIDIA driver, which provides libcuda.so.1, or in a container run with --gpus all"}
	case errors.As(err, &de) && (de.Code == cudadriver.ErrorNoDevice || de.Code == cudadriver.ErrorInvalidDevice):
		return &CUDAUnavailable{Missing: "no CUDA device", Err: err,
			Hint: "check nvidia-smi and CUDA_VISIBLE_DEVICES"}
	case errors.As(err, &de) && (de.Code == cudadriver.ErrorNoBinaryForGPU || de.Code == cudadriver.ErrorUnsupportedPTX):
		return &CUDAUnavailable{Missing: "a GPU these kernels run on", Err: err,
			Hint: "fmgpu's kernels need compute capability 8.0 or newer (A100, H100 and later) and a driver for CUDA 11.8 or newer"}
	case errors.As(err, &de) && (de.Code == cudadriver.ErrorInsufficientDrv || de.Code == cudadriver.ErrorSystemDrvMismtch || de.Code == cudadriver.ErrorCompatNotSupp):
		return &CUDAUnavailable{Missing: "a working NVIDIA driver", Err: err,
			Hint: "the kernel module and libcuda.so.1 disagree or are too old; reinstall or update the driver"}
	}
	return &CUDAUnavailable{Missing: "a working CUDA " + stage, Err: err}
}

// ProbeCUDADriver reports what the driver sees on device o.Device after
// creating a context and loading the kernels, for `fmgpu info`.
func ProbeCUDADriver(o CUDAOptions) (DeviceInfo, error) {
	l, err := newCUDALauncher(o)
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
// the Backend's sticky errors allow. All work goes to one stream of the
// launcher's own (launches, copies, fills: in order), which stream capture
// can record into a graph (Capture); a copy to the host waits for it. On a
// driver without the stream-ordered copies it is the legacy default
// stream, and graphs are off.
type cudaLauncher struct {
	mu   sync.Mutex // serializes requests that wait for their answer
	req  chan cudaReq
	resp chan error
	drv  *cudadriver.Driver
	dev  cudadriver.Device
	ctx  cudadriver.Context
	mod  cudadriver.Module
	fns  map[string]cudadriver.Function // driver goroutine only
	// smem is each kernel's maximum dynamic shared memory attribute as set
	// (driver goroutine only; absent: the default 48 KiB).
	smem     map[string]int
	asyncErr error // driver goroutine only: first failed queued launch
	queued   bool  // driver goroutine only: launches since the last synchronize
	// params holds the kernel parameter array the driver reads at launch:
	// one pointer per argument, to that argument's 8-byte slot in slots.
	// Both live as long as the launcher (driver goroutine only).
	params   *[maxKernelArgs]unsafe.Pointer
	slots    *[maxKernelArgs]uint64
	inf      DeviceInfo
	syncEach bool
	closed   bool
	stream   cudadriver.Stream // 0: the legacy default stream
	graphs   bool              // capture allowed

	statsMu sync.Mutex
	stats   map[string]KernelStat
	profile bool
	timed   []timedLaunch      // driver goroutine only: launches whose events are not read yet
	events  []cudadriver.Event // driver goroutine only: free events
}

// timedLaunch is a launch between two recorded events.
type timedLaunch struct {
	name       string
	start, end cudadriver.Event
}

// cudaReq is one request to the driver goroutine: a queued launch (k, or
// the graph replay graph; no answer) or a function whose error is
// answered on resp.
type cudaReq struct {
	f     func() error
	k     kernelCall
	graph cudadriver.GraphExec
	x     cudaTransfer
}

// cudaTransfer is a copy, fill or synchronization a step makes, sent as
// values rather than a closure so that it allocates nothing.
type cudaTransfer struct {
	op       transferOp
	dst, src devPtr
	host     unsafe.Pointer // the host side of an upload or download
	n        int            // bytes; words for a fill
	val      uint32
}

type transferOp uint8

const (
	noTransfer transferOp = iota
	opUpload
	opDownload
	opCopy
	opFill
	opSync
)

// cudaQueue is how many launches may wait for the driver goroutine.
const cudaQueue = 1024

func newCUDALauncher(o CUDAOptions) (*cudaLauncher, error) {
	drv, err := cudadriver.Open(o.Library)
	if err != nil {
		return nil, cudaUnavailable("driver", err)
	}
	c := &cudaLauncher{drv: drv, req: make(chan cudaReq, cudaQueue), resp: make(chan error),
		fns: map[string]cudadriver.Function{}, smem: map[string]int{}, syncEach: o.SyncEachLaunch, profile: o.Profile, stats: map[string]KernelStat{},
		params: new([maxKernelArgs]unsafe.Pointer), slots: new([maxKernelArgs]uint64)}
	for i := range c.params {
		c.params[i] = unsafe.Pointer(&c.slots[i])
	}
	go c.serve()
	stage := "driver"
	err = c.do(func() error {
		if err := drv.Init(); err != nil {
			return err
		}
		n, err := drv.DeviceCount()
		if err != nil {
			return err
		}
		if n == 0 {
			return &cudadriver.Error{Func: "cuDeviceGetCount", Code: cudadriver.ErrorNoDevice, Name: "CUDA_ERROR_NO_DEVICE", Desc: "0 devices"}
		}
		if o.Device < 0 || o.Device >= n {
			return &cudadriver.Error{Func: "cuDeviceGet", Code: cudadriver.ErrorInvalidDevice, Name: "CUDA_ERROR_INVALID_DEVICE",
				Desc: fmt.Sprintf("device %d requested, %d present", o.Device, n)}
		}
		if c.dev, err = drv.Device(o.Device); err != nil {
			return err
		}
		if c.inf, err = cudaDeviceInfo(drv, c.dev); err != nil {
			return err
		}
		stage = "context"
		if c.ctx, err = drv.PrimaryCtxRetain(c.dev); err != nil {
			return err
		}
		if err = drv.CtxSetCurrent(c.ctx); err != nil {
			drv.PrimaryCtxRelease(c.dev)
			return err
		}
		if drv.HasAsync() {
			// Non-blocking: nothing else of the process's CUDA work (a
			// library on the legacy stream) orders against it.
			if c.stream, err = drv.StreamCreate(cudaStreamNonBlocking); err != nil {
				drv.CtxSetCurrent(0)
				drv.PrimaryCtxRelease(c.dev)
				return err
			}
			c.graphs = drv.HasGraphs() && !o.NoGraphs && !o.Profile && !o.SyncEachLaunch
		}
		stage = "kernel load"
		if c.mod, err = drv.ModuleLoadData(kernels.Fatbin); err != nil {
			if c.stream != 0 {
				drv.StreamDestroy(c.stream)
			}
			drv.CtxSetCurrent(0)
			drv.PrimaryCtxRelease(c.dev)
			return fmt.Errorf("load the kernels (sm_80/sm_90 SASS, compute_90 PTX) on %s (compute capability %s): %w",
				c.inf.Name, c.inf.ComputeCapability, err)
		}
		return nil
	})
	if err != nil {
		c.shutdown()
		return nil, cudaUnavailable(stage, err)
	}
	return c, nil
}

// serve is the driver goroutine.
func (c *cudaLauncher) serve() {
	// Never unlocked: when serve returns, its thread (the only one the
	// context was current on) ends with it.
	runtime.LockOSThread()
	for r := range c.req {
		if r.x.op != noTransfer {
			err := c.transfer(&r.x)
			if c.asyncErr != nil {
				err, c.asyncErr = c.asyncErr, nil
			}
			c.resp <- err
			continue
		}
		if r.f == nil {
			c.queued = true
			var err error
			if r.graph != 0 {
				err = c.drv.GraphLaunch(r.graph, c.stream)
			} else {
				err = c.launchNow(&r.k)
			}
			if err != nil && c.asyncErr == nil {
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

// doTransfer is do for a cudaTransfer.
func (c *cudaLauncher) doTransfer(x cudaTransfer) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return errors.New("cuda: backend closed")
	}
	c.req <- cudaReq{x: x}
	return <-c.resp
}

// transfer runs x on the driver goroutine: on the launcher's stream when
// it has one (stream-ordered after the queued kernels), else on the
// context's default stream. x.host came through the request channel, so
// it points into the heap, where the collector does not move it.
func (c *cudaLauncher) transfer(x *cudaTransfer) error {
	d, s := c.drv, c.stream
	switch x.op {
	case opUpload:
		// From pageable memory the driver stages the source before
		// returning, so the caller may reuse it at once.
		if s != 0 {
			return d.MemcpyHtoDAsync(cudadriver.DevicePtr(x.dst), x.host, x.n, s)
		}
		return d.MemcpyHtoD(cudadriver.DevicePtr(x.dst), x.host, x.n)
	case opDownload:
		c.queued = false // the copy waits for the queued kernels
		if s != 0 {
			if err := d.MemcpyDtoHAsync(x.host, cudadriver.DevicePtr(x.src), x.n, s); err != nil {
				return err
			}
			return d.StreamSynchronize(s)
		}
		return d.MemcpyDtoH(x.host, cudadriver.DevicePtr(x.src), x.n)
	case opCopy:
		if s != 0 {
			return d.MemcpyDtoDAsync(cudadriver.DevicePtr(x.dst), cudadriver.DevicePtr(x.src), x.n, s)
		}
		return d.MemcpyDtoD(cudadriver.DevicePtr(x.dst), cudadriver.DevicePtr(x.src), x.n)
	case opFill:
		if s != 0 {
			return d.MemsetD32Async(cudadriver.DevicePtr(x.dst), x.val, x.n, s)
		}
		return d.MemsetD32(cudadriver.DevicePtr(x.dst), x.val, x.n)
	case opSync:
		c.queued = false
		if err := d.CtxSynchronize(); err != nil {
			return err
		}
		return c.readTimes()
	}
	return fmt.Errorf("cuda: unknown transfer %d", x.op)
}

func (c *cudaLauncher) shutdown() {
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		close(c.req)
	}
	c.mu.Unlock()
}

func cudaDeviceInfo(drv *cudadriver.Driver, dev cudadriver.Device) (DeviceInfo, error) {
	inf := DeviceInfo{Backend: "cuda"}
	name, err := drv.DeviceName(dev)
	if err != nil {
		return inf, err
	}
	attr := func(a int) int {
		if err != nil {
			return 0
		}
		var v int
		v, err = drv.DeviceAttribute(dev, a)
		return v
	}
	major, minor := attr(cudadriver.AttrComputeCapabilityMajor), attr(cudadriver.AttrComputeCapabilityMinor)
	sms := attr(cudadriver.AttrMultiprocessorCount)
	clock := attr(cudadriver.AttrClockRateKHz)
	memClock, busWidth := attr(cudadriver.AttrMemoryClockRateKHz), attr(cudadriver.AttrGlobalMemoryBusWidth)
	if err != nil {
		return inf, err
	}
	mem, err := drv.DeviceTotalMem(dev)
	if err != nil {
		return inf, err
	}
	inf.Name = fmt.Sprintf("%s (%d SMs)", name, sms)
	inf.ComputeCapability = fmt.Sprintf("%d.%d", major, minor)
	inf.MemoryBytes = mem
	inf.Multiprocessors = sms
	inf.ClockKHz = clock
	inf.MemoryClockKHz = memClock
	inf.MemoryBusBits = busWidth
	if v, err := drv.Version(); err == nil && v > 0 {
		inf.Driver = fmt.Sprintf("CUDA driver API %d.%d", v/1000, v%1000/10)
	}
	return inf, nil
}

func (c *cudaLauncher) info() DeviceInfo { return c.inf }

func (c *cudaLauncher) alloc(bytes int) (devPtr, error) {
	var p cudadriver.DevicePtr
	err := c.do(func() (err error) {
		p, err = c.drv.MemAlloc(bytes)
		return err
	})
	return devPtr(p), err
}

// free waits for queued kernels first: one of them may still use p.
func (c *cudaLauncher) free(p devPtr) error {
	return c.do(func() error {
		if c.queued {
			if err := c.drv.CtxSynchronize(); err != nil {
				return err
			}
			c.queued = false
		}
		return c.drv.MemFree(cudadriver.DevicePtr(p))
	})
}

// cudaStreamNonBlocking is CU_STREAM_NON_BLOCKING.
const cudaStreamNonBlocking = 1

// upload queues the copy on the stream: from pageable memory the driver
// stages src before returning, so the caller may reuse it at once.
func (c *cudaLauncher) upload(dst devPtr, src []float32) error {
	return c.doTransfer(cudaTransfer{op: opUpload, dst: dst, host: unsafe.Pointer(&src[0]), n: 4 * len(src)})
}

func (c *cudaLauncher) download(dst []float32, src devPtr) error {
	return c.doTransfer(cudaTransfer{op: opDownload, src: src, host: unsafe.Pointer(&dst[0]), n: 4 * len(dst)})
}

func (c *cudaLauncher) copyDtoD(dst, src devPtr, bytes int) error {
	return c.doTransfer(cudaTransfer{op: opCopy, dst: dst, src: src, n: bytes})
}

func (c *cudaLauncher) memset32(dst devPtr, v uint32, n int) error {
	return c.doTransfer(cudaTransfer{op: opFill, dst: dst, val: v, n: n})
}

func (c *cudaLauncher) canCapture() bool { return c.graphs }

// beginCapture records the stream's work from now on; thread-local mode:
// only this launcher's driver thread is watched for calls a capture
// forbids.
func (c *cudaLauncher) beginCapture() error {
	return c.do(func() error { return c.drv.StreamBeginCapture(c.stream, cudadriver.CaptureModeThreadLocal) })
}

func (c *cudaLauncher) endCapture() (uint64, error) {
	var exec cudadriver.GraphExec
	err := c.do(func() error {
		c.queued = false // the launches were recorded, not queued
		g, err := c.drv.StreamEndCapture(c.stream)
		if err != nil {
			return err
		}
		exec, err = c.drv.GraphInstantiate(g)
		return errors.Join(err, c.drv.GraphDestroy(g))
	})
	return uint64(exec), err
}

// launchGraph queues one replay, as launch queues a kernel.
func (c *cudaLauncher) launchGraph(g uint64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return errors.New("cuda: backend closed")
	}
	c.req <- cudaReq{graph: cudadriver.GraphExec(g)}
	return nil
}

func (c *cudaLauncher) destroyGraph(g uint64) error {
	return c.do(func() error { return c.drv.GraphExecDestroy(cudadriver.GraphExec(g)) })
}

// launch queues the launch (a copy of k) for the driver goroutine, or
// with SyncEachLaunch runs it and waits for the kernel to finish.
func (c *cudaLauncher) launch(k *kernelCall) error {
	c.statsMu.Lock()
	st := c.stats[k.name]
	st.Launches++
	c.stats[k.name] = st
	c.statsMu.Unlock()
	if c.syncEach {
		return c.do(func() error {
			if err := c.launchNow(k); err != nil {
				return err
			}
			if err := c.drv.CtxSynchronize(); err != nil {
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
// a pointer to its 8-byte slot; the driver reads each parameter's own size
// from the slot's low bytes, which is where a little-endian value sits.
func (c *cudaLauncher) launchNow(k *kernelCall) error {
	fn, ok := c.fns[k.name]
	if !ok {
		var err error
		if fn, err = c.drv.ModuleGetFunction(c.mod, k.name); err != nil {
			return err
		}
		c.fns[k.name] = fn
	}
	if k.shared > maxDefaultSmem && c.smem[k.name] < k.shared {
		// Above 48 KiB a kernel's launch needs its opt-in maximum first.
		if err := c.drv.FuncSetAttribute(fn, cudadriver.FuncAttrMaxDynamicSharedBytes, k.shared); err != nil {
			return fmt.Errorf("%s: %d bytes of dynamic shared memory: %w", k.name, k.shared, err)
		}
		c.smem[k.name] = k.shared
	}
	copy(c.slots[:k.n], k.slots[:k.n])
	var params unsafe.Pointer
	if k.n > 0 {
		params = unsafe.Pointer(c.params)
	}
	var tl timedLaunch
	if c.profile {
		var err error
		if tl, err = c.startTimed(k.name); err != nil {
			return err
		}
	}
	if err := c.drv.LaunchKernel(fn, [3]uint32{k.grid.x, k.grid.y, k.grid.z}, [3]uint32{k.block.x, k.block.y, k.block.z},
		k.shared, c.stream, params); err != nil {
		return fmt.Errorf("launch %s grid (%d,%d,%d) block (%d,%d,%d) args (%s): %w", k.name,
			k.grid.x, k.grid.y, k.grid.z, k.block.x, k.block.y, k.block.z, k.signature(), err)
	}
	if c.profile {
		if err := c.drv.EventRecord(tl.end, c.stream); err != nil {
			return err
		}
		c.timed = append(c.timed, tl)
		if len(c.timed) >= maxTimedLaunches {
			return c.readTimes()
		}
	}
	return nil
}

// maxTimedLaunches bounds the events a profiling launcher keeps in flight.
const maxTimedLaunches = 2048

// startTimed records the start event of a profiled launch.
func (c *cudaLauncher) startTimed(name string) (timedLaunch, error) {
	tl := timedLaunch{name: name}
	for _, e := range []*cudadriver.Event{&tl.start, &tl.end} {
		if n := len(c.events); n > 0 {
			*e, c.events = c.events[n-1], c.events[:n-1]
			continue
		}
		var err error
		if *e, err = c.drv.EventCreate(0); err != nil {
			return tl, err
		}
	}
	return tl, c.drv.EventRecord(tl.start, c.stream)
}

// readTimes waits for the profiled launches and adds their times to the
// statistics (driver goroutine).
func (c *cudaLauncher) readTimes() error {
	if len(c.timed) == 0 {
		return nil
	}
	if err := c.drv.EventSynchronize(c.timed[len(c.timed)-1].end); err != nil {
		return err
	}
	c.statsMu.Lock()
	defer c.statsMu.Unlock()
	for _, tl := range c.timed {
		ms, err := c.drv.EventElapsedMs(tl.start, tl.end)
		if err != nil {
			return err
		}
		st := c.stats[tl.name]
		st.Millis += float64(ms)
		c.stats[tl.name] = st
		c.events = append(c.events, tl.start, tl.end)
	}
	c.timed = c.timed[:0]
	return nil
}

func (c *cudaLauncher) sync() error {
	return c.doTransfer(cudaTransfer{op: opSync})
}

func (c *cudaLauncher) close() error {
	err := c.do(func() error {
		errT := c.readTimes()
		for _, e := range c.events {
			c.drv.EventDestroy(e)
		}
		var errD error
		if c.stream != 0 {
			errD = c.drv.StreamDestroy(c.stream)
		}
		errU := c.drv.ModuleUnload(c.mod)
		errS := c.drv.CtxSetCurrent(0)
		errR := c.drv.PrimaryCtxRelease(c.dev)
		return errors.Join(errT, errD, errU, errS, errR)
	})
	c.shutdown()
	return err
}

// KernelStat is what a CUDA backend counted of one kernel: its launches
// and, with CUDAOptions.Profile, the device time between the events around
// them, summed.
type KernelStat struct {
	Launches int64
	Millis   float64
}

// KernelStats returns the per-kernel statistics of a CUDA backend since it
// started or since the last ResetKernelStats (times are complete after a
// Sync), the launch counts of a kernelsim backend, or nil for another
// backend.
func KernelStats(b Backend) map[string]KernelStat {
	if s := kernelStatsOf(b); s != nil {
		return s.kernelStats()
	}
	return nil
}

// kernelStatser is a launcher that counts its launches by kernel: the CUDA
// launcher, and the kernelsim launcher (launches only: no times).
type kernelStatser interface {
	kernelStats() map[string]KernelStat
	resetKernelStats()
}

func kernelStatsOf(b Backend) kernelStatser {
	d, ok := b.(*DeviceBackend)
	if !ok {
		return nil
	}
	s, _ := d.l.(kernelStatser)
	return s
}

func (c *cudaLauncher) kernelStats() map[string]KernelStat {
	c.statsMu.Lock()
	defer c.statsMu.Unlock()
	return maps.Clone(c.stats)
}

func (c *cudaLauncher) resetKernelStats() {
	c.statsMu.Lock()
	c.stats = map[string]KernelStat{}
	c.statsMu.Unlock()
}

// ResetKernelStats clears the statistics KernelStats returns (after a Sync,
// so that no profiled launch is still pending).
func ResetKernelStats(b Backend) {
	if s := kernelStatsOf(b); s != nil {
		s.resetKernelStats()
	}
}

func cudaLauncherOf(b Backend) *cudaLauncher {
	d, ok := b.(*DeviceBackend)
	if !ok {
		return nil
	}
	c, _ := d.l.(*cudaLauncher)
	return c
}
