package gpu

import "fmt"

// What an external library (NCCL, through package collective) needs to
// work on a CUDA backend's buffers in place: their device addresses, the
// backend's stream and the thread its context is current on. (A CPU
// buffer's memory is HostData's.)

// streamLauncher is a launcher with a CUDA stream and context (the CUDA
// launcher; not kernelsim's).
type streamLauncher interface {
	onStream(f func(stream uintptr) error) error
}

// OnStream runs f on the goroutine whose OS thread holds the backend's
// CUDA context, after the launches queued before it, with the stream every
// op of the backend is queued on: work f queues there is ordered after the
// ops before and before the ops after, as an op of the backend would be.
// f must not call the backend. The error of a launch queued before f
// (the driver reports it at its next call) is returned in place of f's.
// It fails on a device backend without a CUDA stream (kernelsim), while
// recording a graph, and after an error that Sync has not yet reported.
func (d *DeviceBackend) OnStream(f func(stream uintptr) error) error {
	sl, ok := d.l.(streamLauncher)
	if !ok {
		return fmt.Errorf("gpu: the %s backend has no CUDA stream for an external library", d.Info().Backend)
	}
	if d.err != nil {
		return d.err
	}
	if d.capturing {
		return errCapture
	}
	d.queued = true
	return sl.onStream(f)
}

// DevicePointer is the device address (a CUdeviceptr) of b's first
// element, for a library called through OnStream.
func (d *DeviceBackend) DevicePointer(b Buffer) uint64 { return uint64(d.ptr(b)) }

func (c *cudaLauncher) onStream(f func(stream uintptr) error) error {
	return c.do(func() error {
		c.queued = true
		return f(uintptr(c.stream))
	})
}
