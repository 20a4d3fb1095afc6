package gputest

import (
	"fmt"
	"math"
	"testing"

	"github.com/fmgpu/fmgpu/gpu"
)

// The Random family (gpu/random.go). The Philox streams (gpu/philox.go):
// element i of stream (seed, purpose, stream) is lane i % 4 of
// gpu.PhiloxBlock(seed, purpose, stream, i / 4). Normals: lanes (0, 1) and
// (2, 3) of a block are Box-Muller pairs over u = gpu.Uniform01 of the two
// words, z_even = sqrt(-2 ln u_even) cos(2 pi u_odd), z_odd =
// sqrt(-2 ln u_even) sin(2 pi u_odd).

// word is element i of a Philox stream.
func word(seed uint64, purpose uint32, stream uint64, i int) uint32 {
	return gpu.PhiloxBlock(seed, purpose, stream, uint32(i/4))[i%4]
}

// normal64 is element i of the normal stream, Box-Muller in float64.
func normal64(seed uint64, purpose uint32, stream uint64, i int) float64 {
	w := gpu.PhiloxBlock(seed, purpose, stream, uint32(i/4))
	lane := i % 4
	u0 := float64(gpu.Uniform01(w[lane&^1]))
	u1 := float64(gpu.Uniform01(w[lane|1]))
	r := math.Sqrt(-2 * math.Log(u0))
	if lane%2 == 0 {
		return r * math.Cos(2*math.Pi*u1)
	}
	return r * math.Sin(2*math.Pi*u1)
}

// normalTol bounds a float32 Box-Muller draw z against the float64 one:
// the angle 2 pi u rounded to float32 is off by up to about 4e-7 rad,
// times r <= sqrt(-2 ln 2^-24) = 5.8 gives 2.3e-6 absolute; logf, sqrtf,
// sinf and cosf add a few ulp relative. Hence 1e-5 + 2e-5 |z|.
func normalTol(z float64) float64 { return 1e-5 + rtolTrans*math.Abs(z) }

// streamCases are (seed, stream) pairs with both halves of each word used.
var streamCases = [][2]uint64{
	{0, 0}, {1, 7}, {42, 1<<32 + 3}, {0xDEADBEEFCAFEF00D, 0x0123456789ABCDEF},
	{7, math.MaxUint64}, {1 << 40, 1}, {0xFFFFFFFF, 2},
}

// RandNormal matches the documented normal stream element by element
// (scaled by std, into views at offsets), and 2^18 draws have the moments
// of N(0, std^2).
func testRandNormal(e *env) {
	sizes := []int{1, 3, 17, 255, 257, 1000, 4097}
	stds := []float32{1, 0.5, 10, 1, 2, 1, 0.1}
	for ci, n := range sizes {
		seed, stream := streamCases[ci][0], streamCases[ci][1]
		std := stds[ci]
		p := e.viewOf(filled(n, sentinel), ci%4, 2)
		e.be.RandNormal(p.view, seed, stream, std)
		want := make([]float64, n)
		tol := make([]float64, n)
		for i := range want {
			z := normal64(seed, gpu.PurposeGeneric, stream, i)
			want[i], tol[i] = float64(std)*z, float64(std)*normalTol(z)
		}
		name := fmt.Sprintf("RandNormal(n=%d, seed=%#x, stream=%#x, std=%g)", n, seed, stream, std)
		checkTol(e.t, name, e.download(p.view), want, tol, 0)
		e.checkOutside(name, p)
	}

	// Moments over n = 2^18 draws with std 2: the standard error of the
	// mean is std/512, of the variance about std^2 sqrt(2)/512, of the
	// fourth standardized moment sqrt(96/n) = 0.019; allow 5 of each.
	const n = 1 << 18
	const std = 2
	b := e.be.Alloc(n)
	e.be.RandNormal(b, 99, 5, std)
	var s1, s2, s4 float64
	for _, v := range e.download(b) {
		z := float64(v)
		s1 += z
		s2 += z * z
		s4 += z * z * z * z
	}
	mean := s1 / n
	vr := s2/n - mean*mean
	kurt := s4 / n / (std * std * std * std)
	if math.Abs(mean) > 5*std/512.0 || math.Abs(vr-std*std) > 5*std*std*math.Sqrt2/512 || math.Abs(kurt-3) > 5*math.Sqrt(96.0/n) {
		e.t.Errorf("RandNormal moments over %d draws: mean %.4g (want 0), variance %.4g (want %g), E z^4/std^4 %.4g (want 3)", n, mean, vr, float64(std*std), kurt)
	}
}

// RandRademacher: element i is -1 when the top bit of word i of the
// generic stream is set, else +1 (the CPU backend's definition; the
// interface documents only "+-1 of the stream"); nothing but +-1; and the
// mean of 2^16 draws is within 5 standard errors of 0.
func testRandRademacher(e *env) {
	for ci, n := range []int{1, 3, 17, 255, 257, 1000, 4097} {
		seed, stream := streamCases[ci][0], streamCases[ci][1]
		p := e.viewOf(filled(n, sentinel), 1+ci%3, 1)
		e.be.RandRademacher(p.view, seed, stream)
		got := e.download(p.view)
		want := make([]float32, n)
		for i := range want {
			want[i] = 1
			if word(seed, gpu.PurposeGeneric, stream, i)>>31 != 0 {
				want[i] = -1
			}
		}
		name := fmt.Sprintf("RandRademacher(n=%d, seed=%#x, stream=%#x)", n, seed, stream)
		for i, v := range got {
			if v != 1 && v != -1 {
				e.t.Errorf("%s[%d] = %v, want +-1", name, i, v)
				break
			}
		}
		checkBits(e.t, name, got, want, nil)
		e.checkOutside(name, p)
	}
	const n = 1 << 16
	b := e.be.Alloc(n)
	e.be.RandRademacher(b, 3, 11)
	s := 0.0
	for _, v := range e.download(b) {
		s += float64(v)
	}
	if math.Abs(s/n) > 5/math.Sqrt(n) {
		e.t.Errorf("RandRademacher mean over %d draws %.4g, want 0 within %.3g", n, s/n, 5/math.Sqrt(n))
	}
}

// benchRandom times a normal fill of a batch of MNIST images.
func benchRandom(b *testing.B, newBackend func(b *testing.B) gpu.Backend) {
	b.Run("RandNormal", func(b *testing.B) {
		const n = 4096 * 784
		bench(b, fmt.Sprintf("n=%d", n), newBackend, func(w *workload) (float64, float64, func()) {
			x := w.alloc(n)
			stream := uint64(0)
			return 4 * n, 0, func() { stream++; w.be.RandNormal(x, 1, stream, 1) }
		})
	})
}

// Dropout: y[i] = 0 where Uniform01(word i of stream (seed, PurposeDropout
// | layer << 8, step)) < p, else x[i] / (1 - p) in float64 within rtolElem
// (two roundings: the scale's and the product's); into views at offsets,
// in place, with the step in device memory (a wrong Step beside it). The
// layers' masks differ, the same draw gives the same mask (the backward
// pass relies on it), and over 2^16 elements the dropped fraction is
// within 5 standard errors of p.
func testDropout(e *env) {
	cases := []struct {
		n     int
		p     float32
		layer uint32
	}{
		{1, 0.5, 0}, {3, 0.1, 1}, {17, 0, 2}, {255, 0.9, 3}, {1000, 0.1, 1<<24 - 1}, {4097, 0.3, 77}, {64, 0.999, 5},
	}
	for ci, c := range cases {
		seed, step := streamCases[ci][0], streamCases[ci][1]
		dr := gpu.DropoutDraw{Seed: seed, Layer: c.layer, Step: step}
		if ci%2 == 1 {
			w := gpu.StepWords(step)
			dr.StepFrom = e.upload(w[:])
			dr.Step ^= 0x5a5a
		}
		x := normals(e.rng, c.n, 1)
		px := e.viewOf(x, ci%3, 1)
		py := e.viewOf(filled(c.n, sentinel), 1+ci%2, 2)
		e.be.Dropout(dr, c.p, px.view, py.view)
		want, tol := make([]float64, c.n), make([]float64, c.n)
		purpose := gpu.PurposeDropout | c.layer<<8
		for i := range want {
			if gpu.Uniform01(word(seed, purpose, step, i)) >= c.p {
				want[i] = float64(x[i]) / (1 - float64(c.p))
				tol[i] = rtolElem * math.Abs(want[i])
			}
		}
		name := fmt.Sprintf("Dropout(n=%d, p=%g, seed=%#x, layer=%d, step=%#x)", c.n, c.p, seed, c.layer, step)
		got := e.download(py.view)
		checkTol(e.t, name, got, want, tol, 0)
		e.checkOutside(name, py)
		checkBits(e.t, name+": x", e.download(px.parent), px.host, nil)
		// In place, and again: the same draw is the same mask.
		e.be.Dropout(dr, c.p, px.view, px.view)
		checkBits(e.t, name+" in place", e.download(px.view), got, nil)
		e.checkOutside(name+" in place", px)
	}

	const n = 1 << 16
	const p = 0.1
	x := e.upload(filled(n, 1))
	y0, y1 := e.be.Alloc(n), e.be.Alloc(n)
	e.be.Dropout(gpu.DropoutDraw{Seed: 5, Layer: 0, Step: 9}, p, x, y0)
	e.be.Dropout(gpu.DropoutDraw{Seed: 5, Layer: 1, Step: 9}, p, x, y1)
	a, b := e.download(y0), e.download(y1)
	dropped, both := 0, 0
	for i := range a {
		if a[i] == 0 {
			dropped++
			if b[i] == 0 {
				both++
			}
		}
	}
	se := math.Sqrt(p * (1 - p) / n)
	if f := float64(dropped) / n; math.Abs(f-p) > 5*se {
		e.t.Errorf("Dropout(p=%g) dropped %.4f of %d elements, want %g within %.2g", p, f, n, p, 5*se)
	}
	// Independent layers: both dropped about p^2 of the time.
	if f := float64(both) / n; math.Abs(f-p*p) > 5*math.Sqrt(p*p*(1-p*p)/n) {
		e.t.Errorf("Dropout layers 0 and 1 both dropped %.4f of %d elements, want about %g", f, n, p*p)
	}
}
