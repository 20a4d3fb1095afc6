package gpu

import "fmt"

// Memory is the backend's storage and its life cycle: buffers, copies
// between the host and the backend, fills, and the wait for queued work.
type Memory interface {
	Info() DeviceInfo

	// Alloc returns a zeroed buffer of n elements. A backend that cannot
	// hold n elements records an error (sticky, like any failed op) and
	// returns a buffer no op may touch.
	Alloc(n int) Buffer
	// Free releases a buffer made by Alloc; freeing a view, nil, or a
	// buffer twice does nothing.
	Free(b Buffer)
	// Upload copies src into dst[0:len(src)]; the caller may reuse src
	// when it returns.
	Upload(dst Buffer, src []float32)
	// Download waits for queued work, then copies src[0:len(dst)] into dst.
	Download(dst []float32, src Buffer)
	// Copy copies src into dst[0:src.Len()].
	Copy(dst, src Buffer)
	// Fill sets every element of dst to v.
	Fill(dst Buffer, v float32)
	// Sync waits for queued work and returns the first error since the last
	// Sync, clearing it.
	Sync() error
	// Close frees what the backend holds and releases its device.
	Close() error
}

func checkAlloc(n int) {
	if n < 0 {
		panic(fmt.Sprintf("gpu: Alloc of %d elements", n))
	}
}

func checkUpload(dst Buffer, src []float32) { need("Upload", "destination", dst, len(src)) }

func checkDownload(dst []float32, src Buffer) { need("Download", "source", src, len(dst)) }

func checkCopy(dst, src Buffer) { need("Copy", "destination", dst, lenOf(src)) }
