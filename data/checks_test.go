package data

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A built-in name wins over a directory of the same name in the working
// directory, which is still image data when written as a path.
func TestBuiltinNameWinsOverDirectory(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	writeFile(t, filepath.Join(dir, "moons", "a.png"), pngBytes(t, grayImage(2, 2, 1, 2, 3, 4)))
	if IsImageData("moons") {
		t.Error(`IsImageData("moons") with a ./moons directory: true, want the built-in set`)
	}
	if !IsImageData("./moons") || !IsImageData(filepath.Join(dir, "moons")) {
		t.Error("a path to the directory is not image data")
	}
	ds, err := Load("moons", 50, 1)
	if err != nil || ds.Image != nil || ds.D != 2 || ds.N != 50 {
		t.Errorf("Load(moons): %v, %+v", err, ds)
	}
	ds, err = Load("./moons", 0, 0)
	if err != nil || ds.Image == nil || ds.N != 1 {
		t.Errorf("Load(./moons): %v", err)
	}
}

// A folder holding a checkpoint, at its top or in a class folder, is a
// run's output and never image data.
func TestCheckpointFolderIsNotImageData(t *testing.T) {
	for _, sub := range []string{"", "run"} {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "cats", "a.png"), pngBytes(t, grayImage(2, 2, 1, 2, 3, 4)))
		ck := filepath.Join(dir, sub, "checkpoint.safetensors")
		writeFile(t, ck, []byte("x"))
		writeFile(t, filepath.Join(dir, sub, "samples.png"), pngBytes(t, grayImage(2, 2, 1, 2, 3, 4)))
		_, err := LoadImages(dir, ImageOptions{})
		want := filepath.Join(sub, "checkpoint.safetensors")
		if err == nil || !strings.Contains(err.Error(), "holds a checkpoint") || !strings.Contains(err.Error(), want) {
			t.Errorf("folder with %s: %v", want, err)
		}
	}
	// a checkpoint below a hidden folder is skipped, as the folder is
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "cats", "a.png"), pngBytes(t, grayImage(2, 2, 1, 2, 3, 4)))
	writeFile(t, filepath.Join(dir, ".cache", "checkpoint.safetensors"), []byte("x"))
	if _, err := LoadImages(dir, ImageOptions{}); err != nil {
		t.Errorf("checkpoint in a hidden folder: %v", err)
	}
}

// Other delimiters are read when declared and recognised with a hint when
// not; a header of numbers is skipped when declared.
func TestCSVDelimiterAndHeader(t *testing.T) {
	dir := t.TempDir()
	semi := filepath.Join(dir, "semi.csv")
	os.WriteFile(semi, []byte("x;y\n1;2\n3;4\n"), 0o644)
	tab := filepath.Join(dir, "tab.csv")
	os.WriteFile(tab, []byte("1\t2\n3\t4\n5\t6\n"), 0o644)
	for path, delim := range map[string]rune{semi: ';', tab: '\t'} {
		_, err := LoadCSV(path)
		var de *CSVDelimiterError
		if !errors.As(err, &de) || de.Seen != delim || !strings.Contains(err.Error(), "seem separated by") {
			t.Errorf("%s without a delimiter: %v", path, err)
		}
		ds, err := LoadWith(path, LoadOptions{CSV: CSVOptions{Delimiter: delim}})
		if err != nil || ds.D != 2 || ds.X[0] != 1 || ds.X[ds.N*2-1] == 0 {
			t.Errorf("%s with delimiter %q: %v %+v", path, delim, err, ds)
		}
	}
	num := filepath.Join(dir, "num.csv")
	os.WriteFile(num, []byte("0,1\n5,6\n7,8\n"), 0o644)
	ds, _ := LoadCSV(num)
	hd, err := LoadCSVWith(num, CSVOptions{Header: true})
	if ds.N != 3 || err != nil || hd.N != 2 || hd.X[0] != 5 {
		t.Errorf("numeric header: %d rows without --header, %d with (%v)", ds.N, hd.N, err)
	}
	for _, d := range []rune{'"', '\n', '1', '.', 'e', '-'} {
		if _, err := LoadCSVWith(num, CSVOptions{Delimiter: d}); err == nil {
			t.Errorf("delimiter %q accepted", d)
		}
	}
}

func TestChecksum(t *testing.T) {
	a, _ := Builtin("moons", 100, 1)
	b, _ := Builtin("moons", 100, 1)
	c, _ := Builtin("moons", 101, 1)
	d, _ := Builtin("moons", 100, 2)
	if Checksum(a) != Checksum(b) || len(Checksum(a)) != 64 {
		t.Error("the same data gave two checksums")
	}
	if Checksum(a) == Checksum(c) || Checksum(a) == Checksum(d) {
		t.Error("other data gave the same checksum")
	}
	b.Labels[0]++
	if Checksum(a) == Checksum(b) {
		t.Error("other labels gave the same checksum")
	}
}

func TestWarnings(t *testing.T) {
	one := &Dataset{Name: "one.csv", X: []float32{1, 2}, N: 1, D: 2}
	if w := Warnings(one); len(w) != 1 || !strings.Contains(w[0], "single row") {
		t.Errorf("single row: %q", w)
	}
	flat := &Dataset{Name: "flat.csv", X: []float32{1, 5, 2, 5, 3, 5}, N: 3, D: 2}
	if w := Warnings(flat); len(w) != 1 || !strings.Contains(w[0], "column 2 is constant (5)") {
		t.Errorf("constant column: %q", w)
	}
	fine := &Dataset{Name: "fine.csv", X: []float32{1, 5, 2, 6}, N: 2, D: 2}
	if w := Warnings(fine); len(w) != 0 {
		t.Errorf("varied data: %q", w)
	}
	// a map coordinate near 5e6 m with a spread of about 1 m: float32's
	// step there is 0.5 m; beside it a column near 100 with the same
	// spread (steps of 7.6e-6) is fine
	var x []float32
	for i := range 20 {
		x = append(x, float32(5e6+float64(i%4)*0.75), float32(100+float64(i%4)*0.75))
	}
	// pandas' index beside the data
	var idx []float32
	for i := range 12 {
		idx = append(idx, float32(i), float32(i%5)*0.5)
	}
	if w := Warnings(&Dataset{Name: "df.csv", X: idx, N: 12, D: 2}); len(w) != 1 || !strings.Contains(w[0], "df.csv: column 1 holds the row numbers (0, 1, 2, ...): a pandas index") {
		t.Errorf("row numbers: %q", w)
	}
	utm := &Dataset{Name: "utm.csv", X: x, N: 20, D: 2}
	if w := Warnings(utm); len(w) != 1 || !strings.Contains(w[0], "utm.csv: column 1 holds values up to 5.000002e+06") || !strings.Contains(w[0], "with a standard deviation of 0.74: float32, in which fmgpu reads, trains and writes, keeps steps of 0.5 there (68% of the deviation)") {
		t.Errorf("coarse column: %q", w)
	}
}
