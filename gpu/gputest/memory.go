package gputest

import (
	"fmt"

	"github.com/fmgpu/fmgpu/gpu"
)

func testInfo(e *env) {
	info := e.be.Info()
	switch info.Backend {
	case "cpu", "cuda", "kernelsim":
	default:
		e.t.Errorf("Info().Backend = %q, want cpu, cuda or kernelsim", info.Backend)
	}
	if info.Threads < 0 || info.MemoryBytes < 0 {
		e.t.Errorf("Info() = %+v: negative thread count or memory", info)
	}
	e.t.Logf("%+v", info)
}

// Alloc returns zeroed memory, also where a freed buffer of the same size
// (dirtied first) may be handed out again.
func testAlloc(e *env) {
	for _, n := range []int{1, 3, 17, 255, 257, 1000, 1<<20 + 3} {
		b := e.be.Alloc(n)
		if b.Len() != n {
			e.t.Fatalf("Alloc(%d).Len() = %d", n, b.Len())
		}
		checkBits(e.t, fmt.Sprintf("Alloc(%d)", n), e.download(b), make([]float32, n), nil)
		e.be.Fill(b, sentinel)
		e.be.Free(b)
		b = e.be.Alloc(n)
		checkBits(e.t, fmt.Sprintf("Alloc(%d) after a dirty Free", n), e.download(b), make([]float32, n), nil)
		e.be.Free(b)
	}
}

// Freeing some buffers leaves the others' contents alone, and allocations
// after it work.
func testFree(e *env) {
	host := make([][]float32, 10)
	dev := make([]gpu.Buffer, 10)
	for i := range dev {
		host[i] = normals(e.rng, 1000+i, 1)
		dev[i] = e.upload(host[i])
	}
	for i := 0; i < len(dev); i += 2 {
		e.be.Free(dev[i])
	}
	for i := 0; i < len(dev); i += 2 {
		host[i] = normals(e.rng, 1000+i, 1)
		dev[i] = e.upload(host[i])
	}
	for i := range dev {
		checkBits(e.t, fmt.Sprintf("buffer %d", i), e.download(dev[i]), host[i], nil)
	}
	for _, b := range dev {
		e.be.Free(b)
	}
}

// viewCases are (offset, length, tail) of views inside a parent.
var viewCases = [][3]int{{0, 1, 0}, {1, 3, 2}, {5, 17, 0}, {0, 255, 9}, {31, 257, 1}, {3, 1000, 64}}

// Upload into a view lands at its offset in the parent and nowhere else;
// a view of a view adds the offsets; Len of a view is its length.
func testUpload(e *env) {
	for _, c := range viewCases {
		off, n, tail := c[0], c[1], c[2]
		v := normals(e.rng, n, 1)
		p := e.viewOf(make([]float32, n), off, tail)
		if p.view.Len() != n {
			e.t.Errorf("Slice(%d, %d).Len() = %d", off, n, p.view.Len())
		}
		e.be.Upload(p.view, v)
		want := append([]float32(nil), p.host...)
		copy(want[off:], v)
		checkBits(e.t, fmt.Sprintf("parent after Upload into Slice(%d, %d)", off, n), e.download(p.parent), want, nil)
	}
	// nested: parent.Slice(100, 500).Slice(17, 255) is parent[117:372]
	p := e.viewOf(make([]float32, 500), 100, 50)
	inner := p.view.Slice(17, 255)
	if inner.Len() != 255 {
		e.t.Errorf("nested Slice Len = %d, want 255", inner.Len())
	}
	v := normals(e.rng, 255, 1)
	e.be.Upload(inner, v)
	want := append([]float32(nil), p.host...)
	copy(want[117:], v)
	checkBits(e.t, "parent after Upload into a nested Slice", e.download(p.parent), want, nil)
}

// Download from a view reads its elements only.
func testDownload(e *env) {
	for _, c := range viewCases {
		off, n, tail := c[0], c[1], c[2]
		v := normals(e.rng, n, 1)
		p := e.viewOf(v, off, tail)
		checkBits(e.t, fmt.Sprintf("Download(Slice(%d, %d))", off, n), e.download(p.view), v, nil)
	}
	p := e.viewOf(normals(e.rng, 500, 1), 7, 5)
	checkBits(e.t, "Download of a nested Slice", e.download(p.view.Slice(100, 257)), p.host[107:364], nil)
}

// Copy between views of different parents and between disjoint views of
// one parent.
func testCopy(e *env) {
	for _, c := range viewCases {
		off, n, tail := c[0], c[1], c[2]
		v := normals(e.rng, n, 1)
		src := e.viewOf(v, tail, off)
		dst := e.viewOf(make([]float32, n), off, tail)
		e.be.Copy(dst.view, src.view)
		name := fmt.Sprintf("Copy into Slice(%d, %d)", off, n)
		checkBits(e.t, name, e.download(dst.view), v, nil)
		e.checkOutside(name, dst)
		checkBits(e.t, name+": source", e.download(src.parent), src.host, nil)
	}
	// within one parent: [0, 300) -> [400, 700)
	host := normals(e.rng, 800, 1)
	p := e.upload(host)
	e.be.Copy(p.Slice(400, 300), p.Slice(0, 300))
	want := append([]float32(nil), host...)
	copy(want[400:700], host[:300])
	checkBits(e.t, "Copy between views of one buffer", e.download(p), want, nil)
}

// Fill sets a view and nothing else.
func testFill(e *env) {
	for i, c := range viewCases {
		off, n, tail := c[0], c[1], c[2]
		val := []float32{1.25, -7, 3e30, 0, -0.5, 1e-20}[i]
		p := e.viewOf(normals(e.rng, n, 1), off, tail)
		e.be.Fill(p.view, val)
		name := fmt.Sprintf("Fill(Slice(%d, %d), %g)", off, n, val)
		checkBits(e.t, name, e.download(p.view), filled(n, val), nil)
		e.checkOutside(name, p)
	}
}

// Sync returns nil after queued work with no error, and again after it.
func testSync(e *env) {
	b, x := e.be.Alloc(1<<16), e.be.Alloc(1<<16)
	e.be.Fill(b, 2)
	e.be.Fill(x, 4)
	e.be.Axpy(0.25, x, b)
	if err := e.be.Sync(); err != nil {
		e.t.Errorf("Sync after Fill and Axpy: %v", err)
	}
	if err := e.be.Sync(); err != nil {
		e.t.Errorf("second Sync: %v", err)
	}
	checkBits(e.t, "Fill then Axpy", e.download(b), filled(1<<16, 3), nil)
}
