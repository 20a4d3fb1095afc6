package gpu

import "fmt"

// The device backend's Memory ops: the launcher's allocations and copies,
// and memory.cu's fill.

func (d *DeviceBackend) Info() DeviceInfo { return d.l.info() }

func (d *DeviceBackend) Alloc(n int) Buffer {
	checkAlloc(n)
	a := &devAlloc{n: n}
	b := &devBuffer{d: d, a: a, n: n}
	if n == 0 || d.err != nil {
		return b
	}
	what := fmt.Sprintf("%d floats", n)
	if !d.outsideCapture("allocate " + what) {
		return b
	}
	if n > maxDeviceElems {
		d.fail("allocate "+what, fmt.Errorf("the device backend's buffers hold at most %d elements", maxDeviceElems))
		return b
	}
	p, err := d.l.alloc(4 * n)
	if p != 0 {
		// The allocation is live even when err reports the failure of an
		// earlier kernel: keep it, so that Free or Close releases it.
		a.ptr = p
		d.live[a] = struct{}{}
	}
	if err != nil {
		d.failAlloc(what, p, err)
		return b
	}
	d.failAt("zero a new buffer", d.l.memset32(p, 0, n))
	return b
}

func (d *DeviceBackend) Free(b Buffer) {
	db := d.bufAny(b)
	if db == nil || db.a.freed || db.off != 0 || db.n != db.a.n {
		return
	}
	if !d.outsideCapture("free") {
		return
	}
	db.a.freed = true
	d.gen++
	if db.a.ptr != 0 {
		delete(d.live, db.a)
		d.failAt("free", d.l.free(db.a.ptr))
	}
}

func (d *DeviceBackend) Upload(dst Buffer, src []float32) {
	checkUpload(dst, src)
	if len(src) == 0 || !d.usable(dst) || !d.outsideCapture("upload") {
		return
	}
	d.failAt("upload", d.l.upload(d.ptr(dst), src))
}

func (d *DeviceBackend) Download(dst []float32, src Buffer) {
	checkDownload(dst, src)
	if len(dst) == 0 || !d.usable(src) || !d.outsideCapture("download") {
		return
	}
	d.failAt("download", d.l.download(dst, d.ptr(src)))
	d.queued = false
}

func (d *DeviceBackend) Copy(dst, src Buffer) {
	checkCopy(dst, src)
	n := lenOf(src)
	if n == 0 || !d.usable(dst, src) || !d.outsideCapture("copy") {
		return
	}
	d.failAt("copy", d.l.copyDtoD(d.ptr(dst), d.ptr(src), 4*n))
}

func (d *DeviceBackend) Fill(dst Buffer, v float32) {
	n := lenOf(dst)
	if n == 0 || !d.usable(dst) {
		return
	}
	d.launch(d.call("fill_forward_kernel", blocks1D(n), elemBlock).ptr(d.ptr(dst)).f32(v).i32(n))
}

func (d *DeviceBackend) Sync() error {
	if d.capturing {
		d.fail("sync", errCapture)
		return d.err // kept: Capture reports it
	}
	if !d.closed {
		d.failAt("sync", d.l.sync())
		d.queued = false
	}
	err := d.err
	d.err = nil
	return err
}

// Close frees every buffer still allocated and releases the device.
func (d *DeviceBackend) Close() error {
	if d.closed {
		return nil
	}
	err := d.Sync()
	for a := range d.live {
		a.freed = true
		if e := d.l.free(a.ptr); err == nil && e != nil {
			err = fmt.Errorf("gpu: free: %w", e)
		}
	}
	d.live = nil
	if d.scratch != 0 {
		if e := d.l.free(d.scratch); err == nil && e != nil {
			err = fmt.Errorf("gpu: free scratch: %w", e)
		}
	}
	if d.counters != 0 {
		if e := d.l.free(d.counters); err == nil && e != nil {
			err = fmt.Errorf("gpu: free counters: %w", e)
		}
	}
	d.closed = true
	if e := d.l.close(); err == nil && e != nil {
		err = fmt.Errorf("gpu: close: %w", e)
	}
	return err
}
