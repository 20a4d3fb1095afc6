package data

import "math"

// Resizing to size x size: the central square of the source, side
// s = min(W, H), starting at ((W-s)/2, (H-s)/2) rounded down, is resampled
// to size x size, separably, rows first. Going down (size < s) each output
// pixel is the area average of the source pixels under it (a box filter
// with fractional coverage at its edges); going up (size > s) it is the
// bilinear interpolation at its centre, pixel centres at half-integers,
// clamped at the border; at size == s pixels are copied. This is resizing
// the short side to size and cropping the centre, with the crop taken
// before resampling so that it falls on whole source pixels. Values are
// rounded to the nearest integer (halves up) only at the end.

// taps are the source pixels (from start, len(w) of them) and weights that
// make one output pixel; the weights sum to 1.
type taps struct {
	start int
	w     []float32
}

// axisTaps resamples src source pixels, starting at off, to dst pixels.
func axisTaps(off, src, dst int) []taps {
	out := make([]taps, dst)
	switch {
	case src == dst:
		for j := range out {
			out[j] = taps{off + j, []float32{1}}
		}
	case dst < src: // area average
		r := float64(src) / float64(dst)
		for j := range out {
			a, b := float64(j)*r, float64(j+1)*r
			i0, i1 := int(math.Floor(a)), min(int(math.Ceil(b)), src)
			w := make([]float32, i1-i0)
			for i := i0; i < i1; i++ {
				w[i-i0] = float32((min(b, float64(i+1)) - max(a, float64(i))) / r)
			}
			out[j] = taps{off + i0, w}
		}
	default: // bilinear
		r := float64(src) / float64(dst)
		for j := range out {
			c := (float64(j)+0.5)*r - 0.5
			c = min(max(c, 0), float64(src-1))
			i0 := int(math.Floor(c))
			f := c - float64(i0)
			if i0 == src-1 || f == 0 {
				out[j] = taps{off + i0, []float32{1}}
				continue
			}
			out[j] = taps{off + i0, []float32{float32(1 - f), float32(f)}}
		}
	}
	return out
}

// resampler maps the central square of a w x h image to size x size, for
// up to 3 channels.
type resampler struct {
	w, h, size int
	x0, y0, s  int // the crop: s x s from (x0, y0)
	cols, rows []taps
	tmp        []float32    // channels x s rows x size
	lines      [3][]float32 // one source row per channel, cropped
}

func newResampler(w, h, size int) *resampler {
	s := min(w, h)
	r := &resampler{w: w, h: h, size: size, s: s, x0: (w - s) / 2, y0: (h - s) / 2}
	r.cols = axisTaps(0, s, size)
	r.rows = axisTaps(r.y0, s, size)
	r.tmp = make([]float32, 3*s*size)
	for c := range r.lines {
		r.lines[c] = make([]float32, s)
	}
	return r
}

// resample resizes nc channels (1 to 3): row(y, lines) fills lines[c]
// (len s) with channel c of source row y, columns x0 to x0+s; out receives
// nc planes of size*size, rounded and clamped to 0..255.
func (r *resampler) resample(nc int, row func(y int, lines [][]float32), out []uint8) {
	lines := r.lines[:nc]
	sz := r.size
	for y := 0; y < r.s; y++ {
		row(r.y0+y, lines)
		for c, line := range lines {
			t := r.tmp[(c*r.s+y)*sz : (c*r.s+y+1)*sz]
			for j, tp := range r.cols {
				var v float32
				for k, w := range tp.w {
					v += w * line[tp.start+k]
				}
				t[j] = v
			}
		}
	}
	for c := range nc {
		tmp := r.tmp[c*r.s*sz : (c+1)*r.s*sz]
		for i, tp := range r.rows {
			o := out[(c*sz+i)*sz : (c*sz+i+1)*sz]
			for j := range o {
				var v float32
				for k, w := range tp.w {
					v += w * tmp[(tp.start-r.y0+k)*sz+j]
				}
				o[j] = roundPixel(v)
			}
		}
	}
}

// roundPixel rounds v to the nearest of 0..255, halves up.
func roundPixel(v float32) uint8 {
	switch {
	case !(v > 0): // and NaN
		return 0
	case v >= 255:
		return 255
	}
	return uint8(v + 0.5)
}
