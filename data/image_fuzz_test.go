package data

import (
	"bytes"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The fuzzers decode under tighter limits than MaxImageSide and
// MaxImagePixels, so that an input declaring a large image costs
// milliseconds, not a 64 MP decode.
const (
	fuzzMaxSide   = 256
	fuzzMaxPixels = 1 << 16
)

// FuzzDecodeImage: no input panics; every error is one line naming the
// input; a decoded image has the size its header declares, within the
// limits, and resizes at any size, gray images to equal planes whose luma
// is the plane; its central square survives ImageFromRow, PNG encoding and
// a second decode bit for bit.
func FuzzDecodeImage(f *testing.F) {
	for _, b := range imageSeeds(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeImage(b, "fuzz.img", fuzzMaxSide, fuzzMaxPixels)
		if err != nil {
			checkLoadErr(t, err, "fuzz.img", "")
			return
		}
		bd := m.Bounds()
		w, h := bd.Dx(), bd.Dy()
		if w < 1 || h < 1 || w > fuzzMaxSide || h > fuzzMaxSide || w*h > fuzzMaxPixels {
			t.Fatalf("decoded %d x %d past the limits", w, h)
		}
		gray := m.ColorModel() == color.GrayModel || m.ColorModel() == color.Gray16Model
		native := min(w, h)
		for _, size := range []int{1, 3, native, native + 1} {
			plane := size * size
			rgb := make([]uint8, 3*plane)
			imageToPlanes(m, size, 3, rgb)
			luma := make([]uint8, plane)
			imageToPlanes(m, size, 1, luma)
			if gray && (!bytes.Equal(rgb[:plane], rgb[plane:2*plane]) || !bytes.Equal(rgb[:plane], rgb[2*plane:]) || !bytes.Equal(rgb[:plane], luma)) {
				t.Fatalf("gray %T at size %d: planes differ", m, size)
			}
		}
		rgb := make([]uint8, 3*native*native)
		imageToPlanes(m, native, 3, rgb)
		x := make([]float32, len(rgb))
		for i, p := range rgb {
			x[i] = PixelToFloat(p)
		}
		back, err := ImageFromRow(x, 3, native, native)
		if err != nil {
			t.Fatal(err)
		}
		var enc bytes.Buffer
		if err := png.Encode(&enc, back); err != nil {
			t.Fatal(err)
		}
		m2, err := decodeImage(enc.Bytes(), "back.png", fuzzMaxSide, fuzzMaxPixels)
		if err != nil {
			t.Fatal(err)
		}
		rgb2 := make([]uint8, len(rgb))
		imageToPlanes(m2, native, 3, rgb2)
		if !bytes.Equal(rgb, rgb2) {
			t.Fatal("central square changed through ImageFromRow and PNG")
		}
	})
}

// imageSeeds are the seed corpus of FuzzDecodeImage: each kind of PNG and
// JPEG the decoders return, and each way of being wrong. The encoders'
// output may change with the Go release, so the committed files, not
// these bytes, are the corpus (see TestImageFuzzSeedCorpus).
func imageSeeds(t testing.TB) map[string][]byte {
	enc := func(m image.Image, jpg bool) []byte {
		var b bytes.Buffer
		var err error
		if jpg {
			err = jpeg.Encode(&b, m, &jpeg.Options{Quality: 90})
		} else {
			err = png.Encode(&b, m)
		}
		if err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	g := grayImage(5, 3, 0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120, 130, 255)
	n := image.NewNRGBA(image.Rect(0, 0, 3, 4))
	g16 := image.NewGray16(image.Rect(0, 0, 2, 3))
	pal := image.NewPaletted(image.Rect(0, 0, 4, 2), color.Palette{color.RGBA{255, 0, 0, 255}, color.RGBA{0, 0, 255, 128}})
	col := image.NewRGBA(image.Rect(0, 0, 16, 8))
	for i := range n.Pix {
		n.Pix[i] = uint8(i * 23)
	}
	for i := range g16.Pix {
		g16.Pix[i] = uint8(i * 41)
	}
	for i := range pal.Pix {
		pal.Pix[i] = uint8(i % 2)
	}
	for i := range col.Pix {
		col.Pix[i] = uint8(i * 7)
		if i%4 == 3 {
			col.Pix[i] = 255
		}
	}
	png1 := enc(g, false)
	jpg := enc(col, true)
	badCRC := slices.Clone(png1)
	badCRC[len(badCRC)-1] ^= 0xff // the IEND chunk's CRC
	// The JPEG's SOF0 segment: FF C0, length, precision, height, width.
	jpgHuge := slices.Clone(jpg)
	if k := bytes.Index(jpgHuge, []byte{0xff, 0xc0}); k >= 0 {
		copy(jpgHuge[k+5:], []byte{0xff, 0xdc, 0xff, 0xdc}) // 65500 x 65500
	}
	return map[string][]byte{
		"valid_png_gray":     png1,
		"valid_png_nrgba":    enc(n, false),
		"valid_png_gray16":   enc(g16, false),
		"valid_png_paletted": enc(pal, false),
		"valid_jpeg_gray":    enc(grayImage(8, 8, bytes.Repeat([]byte{10, 200}, 32)...), true),
		"valid_jpeg_color":   jpg,
		"empty":              nil,
		"text":               []byte("not an image at all"),
		"gif":                []byte("GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"),
		"png_header_only":    pngHeader(4, 4),
		"png_huge":           pngHeader(20000, 10),
		"png_huge_area":      pngHeader(10000, 10000),
		"png_zero":           pngHeader(0, 5),
		"png_truncated":      png1[:len(png1)-20],
		"png_bad_crc":        badCRC,
		"jpeg_truncated":     jpg[:len(jpg)/2],
		"jpeg_huge":          jpgHuge,
	}
}

// FuzzReadIDX: no input panics; every error is one line naming the input;
// known and unknown sizes agree; a success has positive dimensions whose
// product is the data's length, and survives being written back plain.
func FuzzReadIDX(f *testing.F) {
	for _, b := range idxSeeds() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		idx, err := ReadIDX(bytes.NewReader(b), int64(len(b)), "fuzz.idx")
		idx2, err2 := ReadIDX(&halfReader{b}, -1, "fuzz.idx")
		if (err == nil) != (err2 == nil) {
			t.Fatalf("known size: %v; unknown size: %v", err, err2)
		}
		if err != nil {
			checkLoadErr(t, err, "fuzz.idx", "")
			checkLoadErr(t, err2, "fuzz.idx", "")
			return
		}
		n := 1
		for _, d := range idx.Dims {
			if d < 1 {
				t.Fatalf("dims %v", idx.Dims)
			}
			n *= d
		}
		if n != len(idx.Data) || !slices.Equal(idx.Dims, idx2.Dims) || !bytes.Equal(idx.Data, idx2.Data) {
			t.Fatalf("dims %v, %d bytes; unknown size: %v, %d bytes", idx.Dims, len(idx.Data), idx2.Dims, len(idx2.Data))
		}
		w := idxBytes(idx.Dims, idx.Data)
		back, err := ReadIDX(bytes.NewReader(w), int64(len(w)), "back.idx")
		if err != nil || !slices.Equal(back.Dims, idx.Dims) || !bytes.Equal(back.Data, idx.Data) {
			t.Fatalf("rewrite: %v", err)
		}
	})
}

// halfReader reads at most half of what is asked (at least one byte), like
// iotest.HalfReader but without its allocation per call.
type halfReader struct{ b []byte }

func (r *halfReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:max(len(p)/2, 1)], r.b)
	r.b = r.b[n:]
	return n, nil
}

func idxSeeds() map[string][]byte {
	img := idxBytes([]int{2, 3, 3}, seq(18))
	lab := idxBytes([]int{4}, []byte{0, 9, 3, 3})
	gz := gzipBytes(img)
	badCRC := slices.Clone(gz)
	badCRC[len(badCRC)-8] ^= 1 // the CRC-32, first of the 8-byte trailer
	return map[string][]byte{
		"valid_images":     img,
		"valid_labels":     lab,
		"valid_gzip":       gz,
		"valid_gzip_multi": append(gzipBytes(lab[:5]), gzipBytes(lab[5:])...),
		"valid_4d":         idxBytes([]int{1, 2, 1, 2}, []byte{1, 2, 3, 4}),
		"empty":            nil,
		"bad_magic":        append([]byte{0, 1}, img[2:]...),
		"bad_type":         append([]byte{0, 0, 0x0d}, img[3:]...),
		"zero_ndim":        []byte{0, 0, 8, 0, 1, 2},
		"truncated_header": img[:9],
		"truncated_data":   img[:len(img)-1],
		"trailing":         append(slices.Clone(img), 0),
		"lying_header":     idxBytes([]int{60000, 28, 28}, seq(10)),
		"huge_dims":        idxBytes([]int{-1, -1, -1, -1}, nil), // 0xffffffff each
		"zero_dim":         idxBytes([]int{3, 0}, nil),
		"gzip_truncated":   gz[:len(gz)-10],
		"gzip_bad_crc":     badCRC,
		"gzip_lying":       gzipBytes(idxBytes([]int{1 << 15, 1 << 15}, seq(100))),
		"gzip_trailing":    gzipBytes(append(slices.Clone(lab), 7)),
		"gzip_header_only": gz[:10],
	}
}

// TestImageFuzzSeedCorpus keeps testdata/fuzz/FuzzDecodeImage and
// FuzzReadIDX in step with imageSeeds and idxSeeds: every seed has its
// file, and every file loads if and only if its name starts with "valid".
// The files are the corpus: encoders may change their output between Go
// releases, so the bytes are compared only for hand-made idx seeds.
// go test -run ImageFuzzSeedCorpus -update rewrites them.
func TestImageFuzzSeedCorpus(t *testing.T) {
	for fuzz, seeds := range map[string]map[string][]byte{"FuzzDecodeImage": imageSeeds(t), "FuzzReadIDX": idxSeeds()} {
		dir := filepath.Join("testdata", "fuzz", fuzz)
		if *update {
			os.RemoveAll(dir)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			for name, b := range seeds {
				body := "go test fuzz v1\n[]byte(" + strconv.Quote(string(b)) + ")\n"
				if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			continue
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatalf("%v (run go test ./data -run ImageFuzzSeedCorpus -update)", err)
		}
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		var want []string
		for name := range seeds {
			want = append(want, name)
		}
		slices.Sort(want)
		if !slices.Equal(names, want) {
			t.Errorf("%s holds %v, want %v (run go test ./data -run ImageFuzzSeedCorpus -update)", dir, names, want)
		}
		for _, name := range names {
			got, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			body := strings.TrimSuffix(strings.TrimPrefix(string(got), "go test fuzz v1\n[]byte("), ")\n")
			s, err := strconv.Unquote(body)
			if err != nil {
				t.Errorf("%s/%s: not a []byte corpus entry: %v", dir, name, err)
				continue
			}
			b := []byte(s)
			if fuzz == "FuzzReadIDX" && seeds[name] != nil && !bytes.Equal(b, seeds[name]) && !strings.Contains(name, "gzip") {
				t.Errorf("%s/%s is stale (run go test ./data -run ImageFuzzSeedCorpus -update)", dir, name)
			}
			var lerr error
			if fuzz == "FuzzReadIDX" {
				_, lerr = ReadIDX(bytes.NewReader(b), int64(len(b)), name)
			} else {
				_, lerr = decodeImage(b, name, fuzzMaxSide, fuzzMaxPixels)
				if _, err := DecodeImage(b, name); (err == nil) != (lerr == nil) {
					t.Errorf("%s/%s: fuzz limits %v, real limits %v", dir, name, lerr, err)
				}
			}
			if valid := strings.HasPrefix(name, "valid"); valid != (lerr == nil) {
				t.Errorf("%s seed %s: error %v", fuzz, name, lerr)
			}
		}
	}
}
