package data

import (
	"bytes"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// grayImage builds a w x h gray image from row-major values.
func grayImage(w, h int, v ...uint8) *image.Gray {
	m := image.NewGray(image.Rect(0, 0, w, h))
	copy(m.Pix, v)
	return m
}

func pngBytes(t testing.TB, m image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, m); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestAxisTaps(t *testing.T) {
	type tp struct {
		start int
		w     []float64
	}
	cases := []struct {
		off, src, dst int
		want          []tp
	}{
		{0, 3, 3, []tp{{0, []float64{1}}, {1, []float64{1}}, {2, []float64{1}}}},
		{5, 2, 2, []tp{{5, []float64{1}}, {6, []float64{1}}}},
		// Area: 4 -> 2 averages pairs; 3 -> 2 splits the middle pixel.
		{0, 4, 2, []tp{{0, []float64{0.5, 0.5}}, {2, []float64{0.5, 0.5}}}},
		{1, 3, 2, []tp{{1, []float64{2.0 / 3, 1.0 / 3}}, {2, []float64{1.0 / 3, 2.0 / 3}}}},
		{0, 5, 1, []tp{{0, []float64{0.2, 0.2, 0.2, 0.2, 0.2}}}},
		// Bilinear: output centres (j+0.5)/2 - 0.5 = -0.25 (clamped to 0),
		// 0.25, 0.75, 1.25 (clamped to 1).
		{0, 2, 4, []tp{{0, []float64{1}}, {0, []float64{0.75, 0.25}}, {0, []float64{0.25, 0.75}}, {1, []float64{1}}}},
		// 1 -> 3: every output is the one pixel.
		{2, 1, 3, []tp{{2, []float64{1}}, {2, []float64{1}}, {2, []float64{1}}}},
	}
	for _, c := range cases {
		got := axisTaps(c.off, c.src, c.dst)
		if len(got) != len(c.want) {
			t.Fatalf("axisTaps(%d, %d, %d): %d taps", c.off, c.src, c.dst, len(got))
		}
		for j, g := range got {
			w := c.want[j]
			ok := g.start == w.start && len(g.w) == len(w.w)
			for k := 0; ok && k < len(g.w); k++ {
				ok = math.Abs(float64(g.w[k])-w.w[k]) < 1e-7 // float32 weights
			}
			if !ok {
				t.Errorf("axisTaps(%d, %d, %d)[%d] = %v, want %v", c.off, c.src, c.dst, j, g, w)
			}
		}
	}
	// Weights sum to 1 for every ratio, up and down.
	for src := 1; src <= 40; src++ {
		for dst := 1; dst <= 40; dst++ {
			for j, tp := range axisTaps(0, src, dst) {
				var s float64
				for _, w := range tp.w {
					s += float64(w)
					if !(w > 0) {
						t.Fatalf("%d -> %d, pixel %d: weight %v", src, dst, j, w)
					}
				}
				if math.Abs(s-1) > 1e-6 || tp.start < 0 || tp.start+len(tp.w) > src {
					t.Fatalf("%d -> %d, pixel %d: %+v sums to %v", src, dst, j, tp, s)
				}
			}
		}
	}
}

// resizeGray runs the directory pipeline on one gray image.
func resizeGray(m image.Image, size int) []uint8 {
	out := make([]uint8, size*size)
	imageToPlanes(m, size, 1, out)
	return out
}

func TestResizeCrop(t *testing.T) {
	cases := []struct {
		name string
		m    image.Image
		size int
		want []uint8
	}{
		// 4 x 4 -> 2 x 2: the means of the 2 x 2 blocks.
		{"down", grayImage(4, 4,
			0, 10, 100, 100,
			20, 30, 100, 100,
			200, 200, 1, 3,
			200, 200, 5, 7), 2, []uint8{15, 100, 200, 4}},
		// 6 x 4 (wide): the central 4 x 4, columns 1 to 4, then as above.
		{"wide", grayImage(6, 4,
			99, 0, 10, 100, 100, 99,
			99, 20, 30, 100, 100, 99,
			99, 200, 200, 1, 3, 99,
			99, 200, 200, 5, 7, 99), 2, []uint8{15, 100, 200, 4}},
		// 2 x 5 (tall): rows 1 and 2 (offset (5-2)/2 = 1), copied.
		{"tall", grayImage(2, 5, 9, 9, 1, 2, 3, 4, 9, 9, 9, 9), 2, []uint8{1, 2, 3, 4}},
		// 3 x 3 -> 2 x 2 on a single bright pixel in the centre: it is
		// split into four quarters of (1/3)^2 each: 255/9 = 28.3.
		{"split", grayImage(3, 3, 0, 0, 0, 0, 255, 0, 0, 0, 0), 2, []uint8{28, 28, 28, 28}},
		// 2 x 2 -> 4 x 4 bilinear: rows and columns go a, (3a+b)/4,
		// (a+3b)/4, b (see TestAxisTaps).
		{"up", grayImage(2, 2, 0, 200, 100, 40), 4, []uint8{
			0, 50, 150, 200, // source row 0: 0, (3*0+200)/4, (0+3*200)/4, 200
			25, 59, 126, 160, // .75 row 0 + .25 row 3 (58.75, 126.25 rounded)
			75, 76, 79, 80, // .25 row 0 + .75 row 3 (76.25, 78.75 rounded)
			100, 85, 55, 40}}, // source row 1
		// 3 x 1 -> 3 x 3: the middle pixel, stretched.
		{"line", grayImage(3, 1, 1, 77, 1), 3, []uint8{77, 77, 77, 77, 77, 77, 77, 77, 77}},
	}
	for _, c := range cases {
		got := resizeGray(c.m, c.size)
		if !bytes.Equal(got, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
	}
	// A constant image stays constant at any size.
	for _, sz := range [][2]int{{7, 5}, {1, 1}, {13, 40}, {3, 3}} {
		m := image.NewRGBA(image.Rect(0, 0, sz[0], sz[1]))
		for i := range m.Pix {
			m.Pix[i] = []uint8{201, 7, 99, 255}[i%4]
		}
		for _, size := range []int{1, 2, 3, 8, 17} {
			out := make([]uint8, 3*size*size)
			imageToPlanes(m, size, 3, out)
			for i, v := range out {
				if want := []uint8{201, 7, 99}[i/(size*size)]; v != want {
					t.Fatalf("%v -> %d: pixel %d = %d, want %d", sz, size, i, v, want)
				}
			}
		}
	}
}

func TestImageColor(t *testing.T) {
	// Pure red, green, blue and white in each row of a 4 x 4 image,
	// through each of rowRGB's paths: RGBA, RGBA with an origin off zero,
	// NRGBA and Paletted (the generic one).
	colors := []color.RGBA{{255, 0, 0, 255}, {0, 255, 0, 255}, {0, 0, 255, 255}, {255, 255, 255, 255}}
	rgba := image.NewRGBA(image.Rect(0, 0, 4, 4))
	off := image.NewRGBA(image.Rect(-3, 5, 3, 11))
	nrgba := image.NewNRGBA(image.Rect(0, 0, 4, 4))
	pal := image.NewPaletted(image.Rect(0, 0, 4, 4), color.Palette{colors[0], colors[1], colors[2], colors[3]})
	for y := range 4 {
		for x, c := range colors {
			rgba.Set(x, y, c)
			off.Set(x-2, y+6, c)
			nrgba.Set(x, y, c)
			pal.Set(x, y, c)
		}
	}
	for _, m := range []image.Image{rgba, off.SubImage(image.Rect(-2, 6, 2, 10)), nrgba, pal} {
		out := make([]uint8, 3*16)
		imageToPlanes(m, 4, 3, out)
		want := []uint8{255, 0, 0, 255, 0, 255, 0, 255, 0, 0, 255, 255}
		for c := range 3 {
			for y := range 4 {
				if got := out[c*16+4*y : c*16+4*y+4]; !bytes.Equal(got, want[c*4:c*4+4]) {
					t.Errorf("%T channel %d row %d: %v", m, c, y, got)
				}
			}
		}
		// Luma as color.GrayModel: red 76, green 150, blue 29, white 255.
		gray := make([]uint8, 16)
		imageToPlanes(m, 4, 1, gray)
		for i, v := range gray {
			if g := color.GrayModel.Convert(colors[i%4]).(color.Gray).Y; g != v {
				t.Errorf("%T luma %d = %d, color.GrayModel %d", m, i, v, g)
			}
		}
		if !bytes.Equal(gray[:4], []uint8{76, 150, 29, 255}) {
			t.Errorf("%T luma %v", m, gray[:4])
		}
	}
	// Alpha: transparent white is black; half-transparent white is gray.
	n := image.NewNRGBA(image.Rect(0, 0, 2, 2))
	copy(n.Pix, []uint8{255, 255, 255, 0, 255, 255, 255, 128, 255, 255, 255, 255, 10, 20, 30, 255})
	out := make([]uint8, 3*4)
	imageToPlanes(n, 2, 3, out)
	if want := []uint8{0, 128, 255, 10, 0, 128, 255, 20, 0, 128, 255, 30}; !bytes.Equal(out, want) {
		t.Errorf("alpha: %v, want %v", out, want)
	}
}

// imageTree writes a directory of tiny images: two classes, one of them
// with a nested folder and a JPEG, and files that are skipped.
func imageTree(t *testing.T) string {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "cats", "a.png"), pngBytes(t, grayImage(4, 4,
		0, 10, 100, 100, 20, 30, 100, 100, 200, 200, 1, 3, 200, 200, 5, 7)))
	// A flat JPEG decodes to its value within 1 (its one DC coefficient is
	// quantized by 1 at quality 100).
	var j bytes.Buffer
	jpeg.Encode(&j, grayImage(8, 8, bytes.Repeat([]byte{90}, 64)...), &jpeg.Options{Quality: 100})
	writeFile(t, filepath.Join(dir, "cats", "sub", "b.JPG"), j.Bytes())
	writeFile(t, filepath.Join(dir, "cats", "notes.txt"), []byte("not an image"))
	writeFile(t, filepath.Join(dir, "cats", ".hidden.png"), []byte("skipped"))
	writeFile(t, filepath.Join(dir, "cats", ".git", "x.png"), []byte("skipped"))
	writeFile(t, filepath.Join(dir, "dogs", "c.PNG"), pngBytes(t, grayImage(2, 2, 5, 6, 7, 8)))
	writeFile(t, filepath.Join(dir, "README"), []byte("skipped"))
	return dir
}

func TestLoadImageDir(t *testing.T) {
	dir := imageTree(t)
	is, err := LoadImages(dir, ImageOptions{Size: 2})
	if err != nil {
		t.Fatal(err)
	}
	checkImageSet(t, is, 3, 1, 2, 2)
	if strings.Join(is.Image.Classes, ",") != "cats,dogs" || !equalInt32(is.Labels, []int32{0, 0, 1}) || is.Skipped != 3 {
		t.Errorf("classes %v labels %v skipped %d", is.Image.Classes, is.Labels, is.Skipped)
	}
	if px := is.Image.Pixels; !bytes.Equal(px[:4], []uint8{15, 100, 200, 4}) || !bytes.Equal(px[8:], []uint8{5, 6, 7, 8}) {
		t.Errorf("pixels %v", px)
	}
	for _, v := range is.Image.Pixels[4:8] {
		if v < 89 || v > 91 {
			t.Errorf("JPEG pixels %v, want 90 +- 1", is.Image.Pixels[4:8])
		}
	}
	if is.Name != dir || !strings.Contains(is.String(), "3 images 1x2x2, 2 classes, 3 non-image files skipped") {
		t.Errorf("String: %s", is)
	}

	// Sizes differ: the default size. Forced RGB repeats the gray plane.
	is, err = LoadImages(dir, ImageOptions{Channels: 3, Max: 2})
	if err != nil {
		t.Fatal(err)
	}
	checkImageSet(t, is, 2, 3, DefaultImageSize, DefaultImageSize)
	plane := DefaultImageSize * DefaultImageSize
	if px := is.Image.Pixels; !bytes.Equal(px[:plane], px[plane:2*plane]) || !bytes.Equal(px[:plane], px[2*plane:3*plane]) {
		t.Error("forced RGB: channels differ")
	}

	// Unlabelled, all the same size: the native size; all gray: 1 channel
	// even though the files are RGB.
	flat := t.TempDir()
	for i, v := range []uint8{0, 128, 255} {
		m := image.NewRGBA(image.Rect(0, 0, 3, 5))
		for k := range m.Pix {
			m.Pix[k] = v
			if k%4 == 3 {
				m.Pix[k] = 255
			}
		}
		writeFile(t, filepath.Join(flat, string(rune('a'+i))+".png"), pngBytes(t, m))
	}
	is, err = LoadImages(flat, ImageOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkImageSet(t, is, 3, 1, 3, 3)
	if is.Labels != nil || is.Image.Classes != nil || is.Image.Pixels[9] != 128 || is.X[0] != -1 || is.X[26] != 1 {
		t.Errorf("unlabelled: labels %v classes %v pixels %v", is.Labels, is.Image.Classes, is.Image.Pixels)
	}
	// One colored image makes the auto count 3; Channels 1 forces luma.
	m := image.NewRGBA(image.Rect(0, 0, 3, 5))
	for k := range m.Pix {
		m.Pix[k] = []uint8{255, 0, 0, 255}[k%4]
	}
	writeFile(t, filepath.Join(flat, "red.png"), pngBytes(t, m))
	is, err = LoadImages(flat, ImageOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkImageSet(t, is, 4, 3, 3, 3)
	if px := is.Image.Pixels[3*27:]; px[0] != 255 || px[9] != 0 || px[18] != 0 {
		t.Errorf("red image planes %v", px)
	}
	is, err = LoadImages(flat, ImageOptions{Channels: 1})
	if err != nil {
		t.Fatal(err)
	}
	checkImageSet(t, is, 4, 1, 3, 3)
	if px := is.Image.Pixels[27:]; px[0] != 76 || px[8] != 76 {
		t.Errorf("red as gray: %v", px)
	}

	// Load reads a directory whole, n being for built-in sets.
	ds, err := Load(dir, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	if ds.N != 3 || ds.D != DefaultImageSize*DefaultImageSize { // sizes differ
		t.Errorf("Load(dir): %d x %d", ds.N, ds.D)
	}
}

// A link to a class folder is a class folder.
func TestLoadImageDirSymlink(t *testing.T) {
	dir := imageTree(t)
	linked := t.TempDir()
	if err := os.Symlink(filepath.Join(dir, "dogs"), filepath.Join(linked, "dogs")); err != nil {
		t.Skip(err)
	}
	writeFile(t, filepath.Join(linked, "cats", "x.png"), pngBytes(t, grayImage(2, 2, 1, 2, 3, 4)))
	is, err := LoadImages(linked, ImageOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkImageSet(t, is, 2, 1, 2, 2)
	if !equalInt32(is.Labels, []int32{0, 1}) || !bytes.Equal(is.Image.Pixels, []uint8{1, 2, 3, 4, 5, 6, 7, 8}) {
		t.Errorf("linked: labels %v pixels %v", is.Labels, is.Image.Pixels)
	}

}

func TestLoadImageDirErrors(t *testing.T) {
	good := pngBytes(t, grayImage(2, 2, 1, 2, 3, 4))
	mk := func(files map[string][]byte) string {
		dir := t.TempDir()
		for name, b := range files {
			if b == nil {
				os.MkdirAll(filepath.Join(dir, name), 0o755)
				continue
			}
			writeFile(t, filepath.Join(dir, name), b)
		}
		return dir
	}
	// A PNG header (signature and IHDR) of any size, enough for
	// DecodeConfig.
	huge := pngHeader(20000, 10)
	cases := []struct {
		files map[string][]byte
		bad   string // the path the error names, relative; "" for the directory
		want  string
	}{
		{map[string][]byte{"a.png": good, "b/c.png": good}, "", `holds both image files ("a.png") and subfolders ("b")`},
		{map[string][]byte{"a/x.png": good, "b/notes.txt": []byte("x")}, "b", "class folder holds no PNG or JPEG images"},
		{map[string][]byte{"a/x.png": good, "b": nil}, "b", "class folder holds no PNG or JPEG images"},
		{map[string][]byte{"notes.txt": []byte("x")}, "", "no PNG or JPEG images (.png, .jpg, .jpeg)"},
		{map[string][]byte{"a.png": good, "b.png": []byte("not a png")}, "b.png", "not a PNG or JPEG image"},
		{map[string][]byte{"a.png": good, "b.jpg": good[:len(good)-20]}, "b.jpg", "decode: "},
		{map[string][]byte{"a.png": huge}, "a.png", "image is 20000 x 10: sides over 16384 pixels are refused"},
		{map[string][]byte{"a.png": pngHeader(10000, 10000)}, "a.png", "image is 10000 x 10000: over 64 megapixels are refused"},
		{map[string][]byte{"a.png": []byte("GIF89a\x01\x00\x01\x00\x00\x00\x00")}, "a.png", "PNG or JPEG"},
	}
	for _, c := range cases {
		dir := mk(c.files)
		_, err := LoadImages(dir, ImageOptions{})
		name := dir
		if c.bad != "" {
			name = filepath.Join(dir, c.bad)
		}
		checkLoadErr(t, err, name, c.want)
	}
	dir := mk(map[string][]byte{"a.png": good})
	for _, c := range []struct {
		opts ImageOptions
		want string
	}{
		{ImageOptions{Size: -1}, "image size -1: want 1 to 1024"},
		{ImageOptions{Size: 1025}, "image size 1025"},
		{ImageOptions{Channels: 2}, "2 channels: want 1 (gray) or 3 (RGB)"},
		{ImageOptions{Max: -1}, "max -1 images"},
	} {
		_, err := LoadImages(dir, c.opts)
		checkLoadErr(t, err, dir, c.want)
	}
	file := filepath.Join(dir, "a.png")
	_, err := LoadImages(file, ImageOptions{})
	checkLoadErr(t, err, file, "not a directory of images, nor mnist or fashion-mnist")
	gone := filepath.Join(dir, "gone")
	_, err = LoadImages(gone, ImageOptions{})
	checkLoadErr(t, err, gone, "no such file or directory")
	if IsImageData(gone) || IsImageData(file) || !IsImageData(dir) || !IsImageData("mnist:x") || IsImageData("mnistx") {
		t.Error("IsImageData")
	}
}

// pngHeader is a PNG signature and an IHDR chunk declaring w x h 8-bit
// gray, with no image data: DecodeConfig reads it, Decode fails.
func pngHeader(w, h uint32) []byte {
	ihdr := []byte("IHDR")
	ihdr = append(ihdr, byte(w>>24), byte(w>>16), byte(w>>8), byte(w), byte(h>>24), byte(h>>16), byte(h>>8), byte(h), 8, 0, 0, 0, 0)
	b := []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\x0d")
	b = append(b, ihdr...)
	c := crc32.ChecksumIEEE(ihdr)
	return append(b, byte(c>>24), byte(c>>16), byte(c>>8), byte(c))
}

func TestPixelScaling(t *testing.T) {
	for p := range 256 {
		x := PixelToFloat(uint8(p))
		if want := 2*float64(p)/255 - 1; math.Abs(float64(x)-want) > 1e-7 {
			t.Errorf("PixelToFloat(%d) = %v, want %v", p, x, want)
		}
		if back := FloatToPixel(x); int(back) != p {
			t.Errorf("FloatToPixel(PixelToFloat(%d)) = %d", p, back)
		}
	}
	if PixelToFloat(0) != -1 || PixelToFloat(255) != 1 {
		t.Error("the ends are not -1 and 1 exactly")
	}
	for x, want := range map[float32]uint8{-2: 0, 3: 255, float32(math.NaN()): 0, float32(math.Inf(1)): 255, 0: 128} {
		if got := FloatToPixel(x); got != want {
			t.Errorf("FloatToPixel(%v) = %d, want %d", x, got, want)
		}
	}
}

func TestDequantize(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	pixels := make([]uint8, 256*200)
	for i := range pixels {
		pixels[i] = uint8(i)
	}
	x := make([]float32, len(pixels))
	Dequantize(x, pixels, rng)
	var sumU float64
	for i, p := range pixels {
		// x lies in p's bin [2p/256 - 1, 2(p+1)/256 - 1]; the upper end only
		// by float32 rounding.
		v := (float64(x[i]) + 1) * 128
		if v < float64(p) || v > float64(p)+1 {
			t.Fatalf("pixel %d -> %v, outside its bin", p, x[i])
		}
		sumU += v - float64(p)
	}
	// The mean of 51200 U[0,1) draws is 0.5 within 5 standard errors
	// (0.289/sqrt(51200) = 0.0013).
	if m := sumU / float64(len(pixels)); math.Abs(m-0.5) > 5*0.0013 {
		t.Errorf("mean offset %v, want 0.5", m)
	}
	// The uniform density on [-1, 1)^D, 2^-D, has -ln p = D ln 2; it is the
	// uniform distribution over the 256 levels: 8 bits per dimension.
	const d = 784
	if got := BitsPerDim(d*math.Ln2, d); math.Abs(got-8) > 1e-12 {
		t.Errorf("BitsPerDim of the uniform density = %v, want 8", got)
	}
	if BitsPerDimOffset != math.Log2(128) {
		t.Error("BitsPerDimOffset is not log2(128)")
	}
}
