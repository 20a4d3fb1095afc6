package data

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"math"
	"strings"
	"testing"
)

// gridValues are n images of c x h x w whose pixel values are all
// different enough to catch a misplaced one: value k of the whole slice is
// pixel level (37 k) mod 256.
func gridValues(n, c, h, w int) []float32 {
	x := make([]float32, n*c*h*w)
	for k := range x {
		x[k] = PixelToFloat(uint8(37 * k))
	}
	return x
}

func TestWriteGrid(t *testing.T) {
	for _, c := range []int{1, 3} {
		const n, h, w, cols = 5, 3, 4, 2 // 3 rows, the last one short
		x := gridValues(n, c, h, w)
		var buf bytes.Buffer
		if err := WriteGrid(&buf, x, n, c, h, w, cols); err != nil {
			t.Fatal(err)
		}
		m, err := png.Decode(&buf)
		if err != nil {
			t.Fatal(err)
		}
		// 2 columns of 4 + 2 pad each, plus 2: 14 wide; 3 rows of 3 + 2,
		// plus 2: 17 high.
		if b := m.Bounds(); b.Dx() != cols*(w+GridPad)+GridPad || b.Dy() != 3*(h+GridPad)+GridPad {
			t.Fatalf("c=%d: grid is %v", c, b)
		}
		if _, gray := m.(*image.Gray); gray != (c == 1) {
			t.Errorf("c=%d: decoded as %T", c, m)
		}
		// Every pixel: which image and position it shows, or padding.
		b := m.Bounds()
		for gy := range b.Dy() {
			for gx := range b.Dx() {
				r, g, bl, a := m.At(gx, gy).RGBA()
				got := [3]uint8{uint8(r >> 8), uint8(g >> 8), uint8(bl >> 8)}
				if a != 0xffff {
					t.Fatalf("c=%d (%d, %d): alpha %d", c, gx, gy, a)
				}
				want := [3]uint8{GridPadValue, GridPadValue, GridPadValue}
				col, ox := (gx-GridPad)/(w+GridPad), (gx-GridPad)%(w+GridPad)
				row, oy := (gy-GridPad)/(h+GridPad), (gy-GridPad)%(h+GridPad)
				i := row*cols + col
				if gx >= GridPad && gy >= GridPad && ox < w && oy < h && i < n {
					for ch := range 3 {
						k := i*c*h*w + (ch%c)*h*w + oy*w + ox
						want[ch] = uint8(37 * k)
					}
				}
				if got != want {
					t.Fatalf("c=%d (%d, %d): %v, want %v", c, gx, gy, got, want)
				}
			}
		}
	}
}

func TestImageFromRow(t *testing.T) {
	x := []float32{-1, 1, 0, float32(math.NaN()), -5, 7, 0.5, -0.5, 1, 1, 1, 1}
	m, err := ImageFromRow(x, 3, 2, 2)
	if err != nil {
		t.Fatal(err)
	}
	// Pixel (1, 0): red x[1] = 1, green x[5] = 7 (clamped), blue x[9] = 1.
	if got := m.At(1, 0).(color.RGBA); got != (color.RGBA{255, 255, 255, 255}) {
		t.Errorf("(1, 0) = %v", got)
	}
	// Pixel (1, 1): NaN is black, -0.5 is 64 (63.75 rounded), 1 is 255.
	if got := m.At(1, 1).(color.RGBA); got != (color.RGBA{0, 64, 255, 255}) {
		t.Errorf("(1, 1) = %v", got)
	}
	g, err := ImageFromRow(x[:4], 1, 1, 4)
	if err != nil {
		t.Fatal(err)
	}
	if px := g.(*image.Gray).Pix; !bytes.Equal(px, []uint8{0, 255, 128, 0}) {
		t.Errorf("gray %v", px)
	}
}

func TestWriteGridErrors(t *testing.T) {
	x := make([]float32, 12)
	cases := []struct {
		n, c, h, w, cols int
		want             string
	}{
		{1, 2, 2, 3, 1, "2 channels: want 1 or 3"},
		{0, 1, 2, 3, 1, "0 images of 2 x 3"},
		{2, 1, 2, 0, 1, "2 images of 2 x 0"},
		{3, 1, 2, 3, 1, "12 values do not hold 3 images of 1 x 2 x 3"},
		{2, 1, 2, 3, 0, "0 columns"},
		{1, 3, 2, 2, -1, "-1 columns"},
		{1, 1, 1 << 40, 1 << 40, 1, "sides 1 to 16384"},
	}
	for _, c := range cases {
		err := WriteGrid(&bytes.Buffer{}, x, c.n, c.c, c.h, c.w, c.cols)
		if err == nil || !strings.HasPrefix(err.Error(), "write grid: ") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c, err, c.want)
		}
	}
	// More columns than images: one row, as wide as the images.
	m, err := GridImage(x, 2, 1, 2, 3, 10)
	if err != nil || m.Bounds().Dx() != 2*(3+GridPad)+GridPad {
		t.Errorf("cols > n: %v %v", m.Bounds(), err)
	}
	// A grid over the pixel limit is refused before the values are
	// looked at: 2 images of 16384 x 16384 side by side.
	if _, err := GridImage(nil, 2, 1, 16384, 16384, 2); err == nil || !strings.Contains(err.Error(), "32774 x 16388 pixels: over the 256 MP limit") {
		t.Errorf("huge grid: %v", err)
	}
	if _, err := ImageFromRow(x, 1, 3, 3); err == nil || !strings.HasPrefix(err.Error(), "image from row: ") {
		t.Errorf("ImageFromRow: %v", err)
	}
}
