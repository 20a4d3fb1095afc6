package data

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// cifarRecords builds n records in the binary CIFAR-10 layout: record i
// of file f has label (f + i) % 10 and pixel k equal to (f*31 + i*7 + k) % 256.
func cifarRecords(f, n int) []byte {
	b := make([]byte, 0, n*cifarRecord)
	for i := range n {
		b = append(b, byte((f+i)%10))
		for k := range cifarImage {
			b = append(b, byte((f*31+i*7+k)%256))
		}
	}
	return b
}

// writeCIFAR writes the six batch files, with `per` records each, into dir.
func writeCIFAR(t *testing.T, dir string, per int) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for f, name := range append(append([]string(nil), cifarFiles["train"]...), cifarFiles["test"]...) {
		if err := os.WriteFile(filepath.Join(dir, name), cifarRecords(f, per), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestLoadCIFAR10(t *testing.T) {
	top := t.TempDir()
	dir := filepath.Join(top, cifarSubdir)
	writeCIFAR(t, dir, 3)
	for _, c := range []struct {
		spec, dir string
		max       int
		n         int
		firstFile int // the batch index that record 0 comes from
	}{
		{"cifar10", dir, 0, 15, 0},
		{"cifar10:train", top, 0, 15, 0}, // the folder above cifar-10-batches-bin
		{"cifar10:test", dir, 0, 3, 5},
		{"cifar10", dir, 7, 7, 0},
	} {
		is, err := LoadCIFAR10(c.spec, ImageOptions{Dir: c.dir, Max: c.max})
		if err != nil {
			t.Fatalf("%s: %v", c.spec, err)
		}
		checkDataset(t, is.Dataset)
		img := is.Image
		if is.N != c.n || is.D != 3072 || img.Channels != 3 || img.Height != 32 || img.Width != 32 || len(img.Classes) != 10 || is.Dataset.Image != img || is.Name != c.spec {
			t.Fatalf("%s: N=%d D=%d image %+v", c.spec, is.N, is.D, img)
		}
		for i := range is.N {
			f, r := c.firstFile+i/3, i%3
			if is.Labels[i] != int32((f+r)%10) {
				t.Errorf("%s: label %d = %d, want %d", c.spec, i, is.Labels[i], (f+r)%10)
			}
			// Pixel k of the record: red plane first, then green, blue;
			// x is 2p/255 - 1.
			for _, k := range []int{0, 1023, 1024, 2048, 3071} {
				p := byte((f*31 + r*7 + k) % 256)
				if img.Pixels[i*3072+k] != p || is.X[i*3072+k] != PixelToFloat(p) {
					t.Fatalf("%s: image %d pixel %d = %d (x %v), want %d", c.spec, i, k, img.Pixels[i*3072+k], is.X[i*3072+k], p)
				}
			}
		}
	}
	// The environment variable stands in for Dir.
	t.Setenv(EnvCIFAR10Dir, dir)
	if is, err := LoadCIFAR10("cifar10:test", ImageOptions{}); err != nil || is.N != 3 {
		t.Errorf("from %s: %v", EnvCIFAR10Dir, err)
	}
	if !IsCIFAR10("cifar10") || !IsCIFAR10("cifar10:test") || !IsCIFAR10("cifar10:x") || IsCIFAR10("cifar100") {
		t.Error("IsCIFAR10")
	}
}

func TestLoadCIFAR10Errors(t *testing.T) {
	dir := t.TempDir()
	writeCIFAR(t, dir, 2)
	t.Setenv(EnvCIFAR10Dir, "")
	empty := t.TempDir()
	for _, c := range []struct {
		spec string
		opts ImageOptions
		name string // the error's first word
		want string
	}{
		{"cifar10", ImageOptions{}, "cifar10", "no CIFAR-10 directory given (download " + CIFAR10URL},
		{"cifar10", ImageOptions{Dir: empty}, "cifar10", "data_batch_1.bin not found in " + empty + " (download " + CIFAR10URL},
		{"cifar10:test", ImageOptions{Dir: empty}, "cifar10:test", "test_batch.bin not found"},
		{"cifar10:valid", ImageOptions{Dir: dir}, "cifar10:valid", `unknown split "valid"`},
		{"cifar10", ImageOptions{Dir: dir, Size: 64}, "cifar10", "image size 64"},
		{"cifar10", ImageOptions{Dir: dir, Channels: 1}, "cifar10", "1 channels"},
		{"cifar10", ImageOptions{Dir: dir, Max: -1}, "cifar10", "max -1"},
		{"mnist", ImageOptions{Dir: dir}, "mnist", "not CIFAR-10"},
	} {
		_, err := LoadCIFAR10(c.spec, c.opts)
		checkLoadErr(t, err, c.name, c.want)
	}
	// Malformed files: the error names the file.
	bad := filepath.Join(dir, "data_batch_3.bin")
	if err := os.WriteFile(bad, cifarRecords(0, 2)[:2*cifarRecord-1], 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadCIFAR10("cifar10", ImageOptions{Dir: dir})
	checkLoadErr(t, err, bad, "6145 bytes is not a whole number of 3073-byte CIFAR-10 records")
	// Max stops before the bad file.
	if is, err := LoadCIFAR10("cifar10", ImageOptions{Dir: dir, Max: 4}); err != nil || is.N != 4 {
		t.Errorf("max 4 before the bad file: %v", err)
	}
	if err := os.WriteFile(bad, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = LoadCIFAR10("cifar10", ImageOptions{Dir: dir})
	checkLoadErr(t, err, bad, "0 bytes is not a whole number")
	rec := cifarRecords(0, 2)
	rec[cifarRecord] = 10 // the second record's label
	if err := os.WriteFile(bad, rec, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = LoadCIFAR10("cifar10", ImageOptions{Dir: dir})
	checkLoadErr(t, err, bad, "record 1 has label 10: want 0 to 9")
	if err := os.Remove(bad); err != nil {
		t.Fatal(err)
	}
	_, err = LoadCIFAR10("cifar10", ImageOptions{Dir: dir})
	checkLoadErr(t, err, bad, "no such file or directory")
	if !strings.Contains(CIFAR10URL, "cifar-10-binary.tar.gz") {
		t.Error(CIFAR10URL)
	}
}

// TestCIFAR10ThroughLoadImages: "cifar10" is image data that LoadImages
// and LoadWith read like MNIST, labels and all; a missing directory is
// LoadCIFAR10's error naming where to get the data.
func TestCIFAR10ThroughLoadImages(t *testing.T) {
	dir := t.TempDir()
	writeCIFAR(t, dir, 2)
	t.Setenv(EnvCIFAR10Dir, "")
	for _, spec := range []string{"cifar10", "cifar10:train", "cifar10:test"} {
		if !IsImageData(spec) {
			t.Errorf("IsImageData(%q) = false", spec)
		}
	}
	want, err := LoadCIFAR10("cifar10", ImageOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	is, err := LoadImages("cifar10", ImageOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if is.N != 10 || is.D != 3072 || len(is.Labels) != 10 || len(is.Image.Classes) != 10 || !slicesEqual(is.X, want.X) {
		t.Errorf("LoadImages(cifar10): N %d D %d, %d labels", is.N, is.D, len(is.Labels))
	}
	t.Setenv(EnvCIFAR10Dir, dir)
	ds, err := LoadWith("cifar10:test", LoadOptions{N: 1})
	if err != nil || ds.N != 1 || ds.Labels[0] != 5 {
		t.Errorf("LoadWith(cifar10:test, N 1): %v", err)
	}
	t.Setenv(EnvCIFAR10Dir, "")
	_, err = LoadImages("cifar10", ImageOptions{})
	checkLoadErr(t, err, "cifar10", "no CIFAR-10 directory given (download "+CIFAR10URL)
}

func slicesEqual(a, b []float32) bool {
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
