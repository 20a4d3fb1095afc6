package gpu

import (
	"fmt"
	"math"
	"testing"
)

// The U-Net's ops allocate nothing in steady state: their tasks live in
// the backend and their scratch buffers are kept between calls.
func TestCPUOpsAllocs(t *testing.T) {
	c := NewCPU(0)
	defer c.Close()
	buf := func(n int) Buffer {
		b := c.Alloc(n)
		d := host(b)
		for i := range d {
			d[i] = float32(i%7) - 3
		}
		return b
	}
	const batch, ch, h, w = 4, 16, 14, 14
	x, y, dy := buf(batch*ch*h*w), buf(batch*ch*h*w), buf(batch*ch*h*w)
	big := buf(4 * batch * ch * h * w)
	gamma, beta, bias := buf(ch), buf(ch), buf(batch*ch)
	stats, stats2 := buf(batch*4), buf(batch*4)
	labels := buf(100)
	gn := GroupNormShape{Batch: batch, C: ch, HW: h * w, Groups: 4, Eps: 1e-5}
	ops := map[string]func(){
		"GroupNorm":          func() { c.GroupNorm(gn, x, gamma, beta, y, stats, stats2) },
		"GroupNormBackward":  func() { c.GroupNormBackward(gn, dy, x, gamma, stats, stats2, y, gamma, beta) },
		"Activate":           func() { c.Activate(ActSiLU, x, y) },
		"AddChannelBias":     func() { c.AddChannelBias(batch, ch, h*w, x, bias, y) },
		"ChannelSum":         func() { c.ChannelSum(batch, ch, h*w, x, bias) },
		"Upsample2x":         func() { c.Upsample2x(batch, ch, h, w, x, big) },
		"Upsample2xBackward": func() { c.Upsample2xBackward(batch, ch, h, w, big, x) },
		"CopyChannels":       func() { c.CopyChannels(batch, h*w, ch/2, x, ch, 0, y, ch, ch/2) },
		"GemmBatched":        func() { c.GemmBatched(true, false, batch, 49, 49, ch, 1, x, 49, ch*49, dy, 49, ch*49, 0, y, 49, 49*49) },
		"Softmax":            func() { c.Softmax(batch*49, 49, x, y) },
		"SoftmaxBackward":    func() { c.SoftmaxBackward(batch*49, 49, y, dy, x) },
		"Transpose":          func() { c.Transpose(batch, ch, h*w, x, y) },
		"OneHot":             func() { c.OneHot(batch*4, 10, labels, y) },
		"DrawLabels":         func() { c.DrawLabels(BatchDraw{Seed: 1, Step: 2}, labels, 100, 1000, 0.1, 10, y) },
	}
	for _, s := range []ConvShape{
		{Batch: batch, InC: ch, H: h, W: w, OutC: ch, K: 3, Stride: 1, Pad: 1},
		{Batch: batch, InC: ch, H: h, W: w, OutC: ch, K: 3, Stride: 2, Pad: 1},
		{Batch: batch, InC: 3, H: h, W: w, OutC: ch, K: 3, Stride: 1, Pad: 1},
		{Batch: batch, InC: ch, H: h, W: w, OutC: ch, K: 1, Stride: 1, Pad: 0},
		{Batch: batch, InC: ch, H: 4, W: 4, OutC: ch, K: 3, Stride: 1, Pad: 1},
	} {
		wt := buf(s.OutC * s.InC * s.K * s.K)
		name := fmt.Sprintf("%+v", s)
		ops["Conv2D"+name] = func() { c.Conv2D(s, x, wt, gamma, y) }
		ops["Conv2DBackwardData"+name] = func() { c.Conv2DBackwardData(s, dy, wt, x) }
		ops["Conv2DBackwardFilter"+name] = func() { c.Conv2DBackwardFilter(s, x, dy, wt, gamma) }
	}
	for name, op := range ops {
		op() // scratch grows on first use
		if n := testing.AllocsPerRun(10, op); n != 0 {
			t.Errorf("%s: %v allocations per call", name, n)
		}
	}
}

// The U-Net's ops give bit-identical results on 1 and 3 workers: every
// output element, sums included, is computed by one thread in a fixed
// order.
func TestCPUOpsThreadIndependent(t *testing.T) {
	var outs [2][][]float32
	for k, threads := range []int{1, 3} {
		c := NewCPU(threads)
		buf := func(n int) Buffer {
			b := c.Alloc(n)
			d := host(b)
			for i := range d {
				// deterministic values of both signs and varied magnitude
				d[i] = float32((i*7919)%1013-506) / 97
			}
			return b
		}
		const batch, ch, h, w = 5, 12, 14, 14
		n := batch * ch * h * w
		x, dy := buf(n), buf(n)
		gamma, beta := buf(ch), buf(ch)
		s3 := ConvShape{Batch: batch, InC: ch, H: h, W: w, OutC: ch, K: 3, Stride: 1, Pad: 1}
		s2 := ConvShape{Batch: batch, InC: ch, H: h, W: w, OutC: ch, K: 3, Stride: 2, Pad: 1}
		wt := buf(ch * ch * 9)
		gn := GroupNormShape{Batch: batch, C: ch, HW: h * w, Groups: 3, Eps: 1e-5}
		var res [][]float32
		keep := func(bs ...Buffer) {
			for _, b := range bs {
				res = append(res, append([]float32(nil), host(b)...))
			}
		}
		y, dx, dw, db := c.Alloc(n), c.Alloc(n), c.Alloc(ch*ch*9), c.Alloc(ch)
		for _, s := range []ConvShape{s3, s2} {
			c.Conv2D(s, x, wt, gamma, y)
			c.Conv2DBackwardData(s, y, wt, dx)
			c.Conv2DBackwardFilter(s, x, y, dw, db)
			keep(y, dx, dw, db)
		}
		m, r, dg, dbt := c.Alloc(batch*3), c.Alloc(batch*3), c.Alloc(ch), c.Alloc(ch)
		c.GroupNorm(gn, x, gamma, beta, y, m, r)
		c.GroupNormBackward(gn, dy, x, gamma, m, r, dx, dg, dbt)
		keep(y, m, r, dx, dg, dbt)
		cs := c.Alloc(batch * ch)
		c.ChannelSum(batch, ch, h*w, x, cs)
		c.Softmax(batch*ch, h*w, x, y)
		c.SoftmaxBackward(batch*ch, h*w, y, dy, dx)
		keep(cs, y, dx)
		outs[k] = res
		c.Close()
	}
	for i := range outs[0] {
		a, b := outs[0][i], outs[1][i]
		for j := range a {
			if math.Float32bits(a[j]) != math.Float32bits(b[j]) {
				t.Errorf("output %d differs at %d: %v on 1 worker, %v on 3", i, j, a[j], b[j])
				break
			}
		}
	}
}
