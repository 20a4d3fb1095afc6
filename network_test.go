package fmgpu_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/fmgpu/fmgpu/gpu"
	"github.com/fmgpu/fmgpu/model"
)

// The custom network of the example is only an example if its backward
// pass is right: its parameter gradient and input VJP match central
// differences of L = sum r . v(t, x) within 1e-3 (float32 forward passes,
// step 1e-2: the differences' truncation error is ~1e-5 here, their
// rounding ~1e-5).
func TestResMLPGradients(t *testing.T) {
	b := gpu.NewCPU(1)
	defer b.Close()
	const rows, d = 5, 3
	c := model.Config{Kind: resMLPKind, Dim: d, Hidden: []int{8, 8}, TimeEmbed: gpu.TimeEmbedding{Freqs: 2, Scale: 1, MaxPeriod: 100}}
	net, err := model.New(b, c)
	if err != nil {
		t.Fatal(err)
	}
	defer net.Release()
	net.Init(4)
	rng := rand.New(rand.NewPCG(1, 1))
	host := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
		return v
	}
	xh, rh, th := host(rows*d), host(rows*d), []float32{0.1, 0.3, 0.5, 0.7, 0.9}
	up := func(v []float32) gpu.Buffer { buf := b.Alloc(len(v)); b.Upload(buf, v); return buf }
	x, r, tb, out := up(xh), up(rh), up(th), b.Alloc(rows*d)
	params := make([]float32, net.NumParams())
	b.Download(params, net.Params())
	loss := func(p, xv []float32) float64 {
		b.Upload(net.Params(), p)
		b.Upload(x, xv)
		net.Forward(rows, tb, x, out)
		v := make([]float32, rows*d)
		b.Download(v, out)
		s := 0.0
		for i := range v {
			s += float64(v[i]) * float64(rh[i])
		}
		return s
	}
	loss(params, xh)
	grads, w := b.Alloc(net.NumParams()), b.Alloc(rows*d)
	net.Backward(r, grads)
	g := make([]float32, net.NumParams())
	b.Download(g, grads)
	net.InputVJP(r, w)
	wh := make([]float32, rows*d)
	b.Download(wh, w)
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	const eps, tol = 1e-2, 1e-3
	for i := range params {
		p := append([]float32(nil), params...)
		p[i] += eps
		lp := loss(p, xh)
		p[i] -= 2 * eps
		fd := (lp - loss(p, xh)) / (2 * eps)
		if math.Abs(fd-float64(g[i])) > tol*math.Max(1, math.Abs(fd)) {
			t.Fatalf("parameter %d: gradient %g, central difference %g", i, g[i], fd)
		}
	}
	for i := range xh {
		xv := append([]float32(nil), xh...)
		xv[i] += eps
		lp := loss(params, xv)
		xv[i] -= 2 * eps
		fd := (lp - loss(params, xv)) / (2 * eps)
		if math.Abs(fd-float64(wh[i])) > tol*math.Max(1, math.Abs(fd)) {
			t.Fatalf("input %d: VJP %g, central difference %g", i, wh[i], fd)
		}
	}
}
