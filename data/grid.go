package data

import (
	"fmt"
	"image"
	"image/png"
	"io"
)

// GridPad is the gap in pixels around and between the images of a grid,
// and GridPadValue its gray level.
const (
	GridPad      = 2
	GridPadValue = 128
)

// maxGridPixels bounds a grid's pixels (256 MP).
const maxGridPixels = 1 << 28

// ImageFromRow turns one image row, c x h x w NCHW values in [-1, 1] (c 1 or
// 3), into an *image.Gray or an *image.RGBA, each value to its nearest 8-bit
// level by FloatToPixel (out of range clamped, NaN black).
func ImageFromRow(row []float32, c, h, w int) (image.Image, error) {
	if err := checkImageShape(len(row), 1, c, h, w); err != nil {
		return nil, fmt.Errorf("image from row: %w", err)
	}
	if c == 1 {
		m := image.NewGray(image.Rect(0, 0, w, h))
		putImage(m, row, 0, 0, c, h, w)
		return m, nil
	}
	m := image.NewRGBA(image.Rect(0, 0, w, h))
	putImage(m, row, 0, 0, c, h, w)
	return m, nil
}

// GridImage lays out n images (x is n x c x h x w, NCHW, values in [-1, 1])
// in rows of cols, the last row possibly short, with GridPad pixels of
// GridPadValue around and between them: (cols(w+2)+2) x (rows(h+2)+2)
// pixels for a pad of 2. Gray for c = 1, RGB for c = 3; values as in
// ImageFromRow.
func GridImage(x []float32, n, c, h, w, cols int) (image.Image, error) {
	if err := checkImageShape(-1, n, c, h, w); err != nil {
		return nil, fmt.Errorf("grid: %w", err)
	}
	if cols < 1 {
		return nil, fmt.Errorf("grid: %d columns: want at least 1", cols)
	}
	cols = min(cols, n)
	rows := (n + cols - 1) / cols
	gw, gh := int64(cols)*int64(w+GridPad)+GridPad, int64(rows)*int64(h+GridPad)+GridPad
	if gw*gh > maxGridPixels {
		return nil, fmt.Errorf("grid: %d x %d pixels: over the %d MP limit", gw, gh, maxGridPixels>>20)
	}
	if err := checkImageShape(len(x), n, c, h, w); err != nil {
		return nil, fmt.Errorf("grid: %w", err)
	}
	r := image.Rect(0, 0, int(gw), int(gh))
	var m putter
	if c == 1 {
		g := image.NewGray(r)
		fill(g.Pix, GridPadValue)
		m = g
	} else {
		g := image.NewRGBA(r)
		fill(g.Pix, GridPadValue)
		for i := 3; i < len(g.Pix); i += 4 {
			g.Pix[i] = 255 // opaque
		}
		m = g
	}
	d := c * h * w
	for i := range n {
		x0 := GridPad + (i%cols)*(w+GridPad)
		y0 := GridPad + (i/cols)*(h+GridPad)
		putImage(m, x[i*d:(i+1)*d], x0, y0, c, h, w)
	}
	return m, nil
}

// WriteGrid writes GridImage(x, n, c, h, width, cols) to w as a PNG.
func WriteGrid(w io.Writer, x []float32, n, c, h, width int, cols int) error {
	m, err := GridImage(x, n, c, h, width, cols)
	if err != nil {
		return fmt.Errorf("write %w", err)
	}
	if err := png.Encode(w, m); err != nil {
		return fmt.Errorf("write grid: %w", err)
	}
	return nil
}

// checkImageShape validates n images of c x h x w in a slice of length l
// (not checked when l < 0).
func checkImageShape(l, n, c, h, w int) error {
	if c != 1 && c != 3 {
		return fmt.Errorf("%d channels: want 1 or 3", c)
	}
	if n < 1 || h < 1 || w < 1 || h > MaxImageSide || w > MaxImageSide {
		return fmt.Errorf("%d images of %d x %d: want at least one, sides 1 to %d", n, h, w, MaxImageSide)
	}
	if l >= 0 && int64(n)*int64(c)*int64(h)*int64(w) != int64(l) {
		return fmt.Errorf("%d values do not hold %d images of %d x %d x %d", l, n, c, h, w)
	}
	return nil
}

// putter is the two image types a grid is drawn on.
type putter interface {
	image.Image
	PixOffset(x, y int) int
}

// putImage draws one NCHW image with its top left corner at (x0, y0).
func putImage(m putter, v []float32, x0, y0, c, h, w int) {
	plane := h * w
	switch m := m.(type) {
	case *image.Gray:
		for y := range h {
			p := m.Pix[m.PixOffset(x0, y0+y):]
			for x := range w {
				p[x] = FloatToPixel(v[y*w+x])
			}
		}
	case *image.RGBA:
		for y := range h {
			p := m.Pix[m.PixOffset(x0, y0+y):]
			for x := range w {
				k := y*w + x
				p[4*x] = FloatToPixel(v[k])
				p[4*x+1] = FloatToPixel(v[plane+k])
				p[4*x+2] = FloatToPixel(v[2*plane+k])
				p[4*x+3] = 255
			}
		}
	}
}

func fill(b []uint8, v uint8) {
	for i := range b {
		b[i] = v
	}
}
