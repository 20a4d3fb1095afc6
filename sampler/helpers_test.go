package sampler

import (
	"testing"

	"github.com/fmgpu/fmgpu/gpu"
)

// newCPU returns a CPU backend closed at the end of the test.
func newCPU(tb testing.TB) *gpu.CPU {
	b := gpu.NewCPU(0)
	tb.Cleanup(func() { b.Close() })
	return b
}

// hostOf is the storage of a CPU buffer.
func hostOf(buf gpu.Buffer) []float32 {
	h, ok := gpu.HostData(buf)
	if !ok {
		panic("not a CPU buffer")
	}
	return h
}

// upload allocates a buffer holding v.
func upload(b gpu.Backend, v []float32) gpu.Buffer {
	buf := b.Alloc(len(v))
	b.Upload(buf, v)
	return buf
}

// download copies a buffer to the host.
func download(b gpu.Backend, buf gpu.Buffer) []float32 {
	h := make([]float32, buf.Len())
	b.Download(h, buf)
	return h
}

// polyField is v(t, x) = 3 t^2 in every component, built from backend ops
// only; it records the times it is called at.
type polyField struct {
	b     gpu.Backend
	d     int
	times []float64
}

func (f *polyField) Dim() int { return f.d }
func (f *polyField) Velocity(t float64, rows int, x, v gpu.Buffer) {
	f.times = append(f.times, t)
	f.b.Fill(v, float32(3*t*t))
}

// linearField is v(t, x) = (a + c t) x with its VJP w = (a + c t) e and
// divergence (a + c t) D, from backend ops only.
type linearField struct {
	b     gpu.Backend
	d     int
	a, c  float64
	calls int
}

func (f *linearField) rate(t float64) float32 { return float32(f.a + f.c*t) }
func (f *linearField) Dim() int               { return f.d }
func (f *linearField) Velocity(t float64, rows int, x, v gpu.Buffer) {
	f.calls++
	f.b.Fill(v, 0)
	f.b.Axpy(f.rate(t), x.Slice(0, rows*f.d), v)
}
func (f *linearField) VJP(t float64, rows int, x, e, v, w gpu.Buffer) {
	f.Velocity(t, rows, x, v)
	f.b.Fill(w, 0)
	f.b.Axpy(f.rate(t), e.Slice(0, rows*f.d), w)
}
func (f *linearField) Divergence(t float64, rows int, x, v, div gpu.Buffer) {
	f.Velocity(t, rows, x, v)
	f.b.Fill(div, f.rate(t)*float32(f.d))
}

// velocityOnly hides every method of a field but Velocity.
type velocityOnly struct{ f Field }

func (v velocityOnly) Dim() int { return v.f.Dim() }
func (v velocityOnly) Velocity(t float64, rows int, x, out gpu.Buffer) {
	v.f.Velocity(t, rows, x, out)
}

// vjpOnly hides a field's Divergence, so that the likelihood takes the
// divergence from VJPs.
type vjpOnly struct{ f VJPField }

func (v vjpOnly) Dim() int { return v.f.Dim() }
func (v vjpOnly) Velocity(t float64, rows int, x, out gpu.Buffer) {
	v.f.Velocity(t, rows, x, out)
}
func (v vjpOnly) VJP(t float64, rows int, x, e, out, w gpu.Buffer) {
	v.f.VJP(t, rows, x, e, out, w)
}

// hostField evaluates fn row by row on a CPU backend's storage, for
// nonlinear test problems.
type hostField struct {
	d     int
	fn    func(t float64, x, v []float32)
	calls int
}

func (f *hostField) Dim() int { return f.d }
func (f *hostField) Velocity(t float64, rows int, x, v gpu.Buffer) {
	f.calls++
	xs, vs := hostOf(x), hostOf(v)
	for r := 0; r < rows; r++ {
		f.fn(t, xs[r*f.d:r*f.d+f.d], vs[r*f.d:r*f.d+f.d])
	}
}
