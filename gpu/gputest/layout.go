package gputest

import (
	"fmt"
	"math"
)

// The Layout family (gpu/layout.go): copies bit for bit, sums against
// float64.

// imageShapes are (batch, channels, hw) of the per-channel ops.
var imageShapes = [][3]int{{1, 1, 1}, {3, 3, 7}, {1, 5, 49}, {3, 8, 784}, {2, 1, 196}, {5, 3, 1}, {1, 16, 3}}

// AddChannelBias: y[b,c,p] = x[b,c,p] + bias[b,c], y aliasing x or not.
func testAddChannelBias(e *env) {
	for ci, sh := range imageShapes {
		batch, c, hw := sh[0], sh[1], sh[2]
		n := batch * c * hw
		alias := ci%2 == 1
		x, bias := normals(e.rng, n, 1), normals(e.rng, batch*c, 2)
		px, pb := e.viewOf(x, ci%3, 1), e.viewOf(bias, 1, 2)
		py := px
		if !alias {
			py = e.viewOf(filled(n, sentinel), 2, 1)
		}
		e.be.AddChannelBias(batch, c, hw, px.view, pb.view, py.view)
		want, tol := make([]float64, n), make([]float64, n)
		for i, v := range x {
			bv := float64(bias[i/hw])
			want[i] = float64(v) + bv
			// one rounded sum, relative to its terms
			tol[i] = rtolElem*(math.Abs(float64(v))+math.Abs(bv)) + tiny
		}
		name := fmt.Sprintf("AddChannelBias(batch=%d, c=%d, hw=%d, y aliases x=%v)", batch, c, hw, alias)
		checkTol(e.t, name, e.download(py.view), want, tol, hw)
		e.checkOutside(name, py)
		checkBits(e.t, name+": bias", e.download(pb.parent), pb.host, nil)
		if !alias {
			checkBits(e.t, name+": x", e.download(px.parent), px.host, nil)
		}
	}
}

// ChannelSum: out[b,c] = sum_p x[b,c,p] (out starts as NaN).
func testChannelSum(e *env) {
	for ci, sh := range append(imageShapes, [3]int{2, 3, 4097}) {
		batch, c, hw := sh[0], sh[1], sh[2]
		x := normals(e.rng, batch*c*hw, 1)
		px := e.viewOf(x, ci%3, 2)
		po := e.viewOf(filled(batch*c, sentinel), 1+ci%2, 1)
		e.be.ChannelSum(batch, c, hw, px.view, po.view)
		want, tol := make([]float64, batch*c), make([]float64, batch*c)
		for i, v := range x {
			want[i/hw] += float64(v)
			// a sum: 1e-4 of sum |x|
			tol[i/hw] += rtolRed * math.Abs(float64(v))
		}
		for i := range tol {
			tol[i] += tiny
		}
		name := fmt.Sprintf("ChannelSum(batch=%d, c=%d, hw=%d)", batch, c, hw)
		checkTol(e.t, name, e.download(po.view), want, tol, c)
		e.checkOutside(name, po)
		checkBits(e.t, name+": x", e.download(px.parent), px.host, nil)
	}
}

// upsampleShapes are (batch, c, h, w).
var upsampleShapes = [][4]int{{1, 1, 1, 1}, {3, 3, 7, 7}, {1, 5, 14, 14}, {2, 1, 3, 5}, {1, 2, 2, 1}, {3, 8, 1, 4}, {3, 33, 14, 14}}

// Upsample2x: every element of the 2 x 2 block is a bit-exact copy.
func testUpsample2x(e *env) {
	for ci, sh := range upsampleShapes {
		batch, c, h, w := sh[0], sh[1], sh[2], sh[3]
		x := normals(e.rng, batch*c*h*w, 1)
		px := e.viewOf(x, ci%3, 1)
		py := e.viewOf(filled(4*len(x), sentinel), 1+ci%2, 2)
		e.be.Upsample2x(batch, c, h, w, px.view, py.view)
		want := make([]float32, 4*len(x))
		for pl := 0; pl < batch*c; pl++ {
			for i := 0; i < 2*h; i++ {
				for j := 0; j < 2*w; j++ {
					want[(pl*2*h+i)*2*w+j] = x[(pl*h+i/2)*w+j/2]
				}
			}
		}
		name := fmt.Sprintf("Upsample2x(batch=%d, c=%d, h=%d, w=%d)", batch, c, h, w)
		checkBits(e.t, name, e.download(py.view), want, nil)
		e.checkOutside(name, py)
		checkBits(e.t, name+": x", e.download(px.parent), px.host, nil)
	}
}

// Upsample2xBackward: dx is the sum of dy over the 2 x 2 block (dx starts
// as NaN).
func testUpsample2xBackward(e *env) {
	for ci, sh := range upsampleShapes {
		batch, c, h, w := sh[0], sh[1], sh[2], sh[3]
		n := batch * c * h * w
		dy := normals(e.rng, 4*n, 1)
		pdy := e.viewOf(dy, 1+ci%2, 1)
		pdx := e.viewOf(filled(n, sentinel), ci%3, 2)
		e.be.Upsample2xBackward(batch, c, h, w, pdy.view, pdx.view)
		want, tol := make([]float64, n), make([]float64, n)
		for pl := 0; pl < batch*c; pl++ {
			for i := 0; i < 2*h; i++ {
				for j := 0; j < 2*w; j++ {
					v := float64(dy[(pl*2*h+i)*2*w+j])
					k := (pl*h+i/2)*w + j/2
					want[k] += v
					// three rounded sums: 1e-5 of the terms
					tol[k] += rtolElem * math.Abs(v)
				}
			}
		}
		for i := range tol {
			tol[i] += tiny
		}
		name := fmt.Sprintf("Upsample2xBackward(batch=%d, c=%d, h=%d, w=%d)", batch, c, h, w)
		checkTol(e.t, name, e.download(pdx.view), want, tol, w)
		e.checkOutside(name, pdx)
		checkBits(e.t, name+": dy", e.download(pdy.parent), pdy.host, nil)
	}
}

// CopyChannels: the n channels land bit for bit at dstOff of every image;
// dst's other channels keep their values; nothing else changes.
func testCopyChannels(e *env) {
	cases := []struct{ batch, hw, n, srcC, srcOff, dstC, dstOff int }{
		{1, 1, 1, 1, 0, 1, 0},
		{3, 49, 3, 5, 2, 8, 5},
		{2, 784, 8, 8, 0, 16, 8},
		{3, 7, 2, 3, 1, 2, 0},
		{1, 4, 0, 3, 1, 3, 2},
		{2, 9, 5, 5, 0, 5, 0},
		{4, 3, 1, 7, 6, 9, 0},
	}
	for ci, c := range cases {
		src := normals(e.rng, c.batch*c.srcC*c.hw, 1)
		dst := normals(e.rng, c.batch*c.dstC*c.hw, 1)
		ps, pd := e.viewOf(src, ci%3, 1), e.viewOf(dst, 1+ci%2, 2)
		e.be.CopyChannels(c.batch, c.hw, c.n, ps.view, c.srcC, c.srcOff, pd.view, c.dstC, c.dstOff)
		want := append([]float32(nil), dst...)
		for b := 0; b < c.batch; b++ {
			for k := 0; k < c.n; k++ {
				for p := 0; p < c.hw; p++ {
					want[((b*c.dstC)+c.dstOff+k)*c.hw+p] = src[((b*c.srcC)+c.srcOff+k)*c.hw+p]
				}
			}
		}
		name := fmt.Sprintf("CopyChannels(%+v)", c)
		checkBits(e.t, name, e.download(pd.view), want, nil)
		e.checkOutside(name, pd)
		checkBits(e.t, name+": src", e.download(ps.parent), ps.host, nil)
	}
}

// Transpose: y_i = x_i^T bit for bit, sizes around the 32-wide tiles a
// transpose is blocked in.
func testTranspose(e *env) {
	for ci, sh := range [][3]int{{1, 1, 1}, {3, 1, 5}, {2, 17, 3}, {1, 33, 70}, {3, 49, 64}, {2, 64, 64}, {1, 257, 3}, {4, 31, 33}} {
		batch, rows, cols := sh[0], sh[1], sh[2]
		x := normals(e.rng, batch*rows*cols, 1)
		px := e.viewOf(x, ci%3, 1)
		py := e.viewOf(filled(len(x), sentinel), 1+ci%2, 2)
		e.be.Transpose(batch, rows, cols, px.view, py.view)
		want := make([]float32, len(x))
		for i := 0; i < batch; i++ {
			for r := 0; r < rows; r++ {
				for c := 0; c < cols; c++ {
					want[i*rows*cols+c*rows+r] = x[i*rows*cols+r*cols+c]
				}
			}
		}
		name := fmt.Sprintf("Transpose(batch=%d, rows=%d, cols=%d)", batch, rows, cols)
		checkBits(e.t, name, e.download(py.view), want, nil)
		e.checkOutside(name, py)
		checkBits(e.t, name+": x", e.download(px.parent), px.host, nil)
	}
}
