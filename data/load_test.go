package data

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	var npy bytes.Buffer
	if err := WriteNPY(&npy, numpyA, 3, 2); err != nil {
		t.Fatal(err)
	}
	var csv bytes.Buffer
	if err := WriteCSV(&csv, numpyA, 2, 3, []string{"a", "b", "c"}); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{"a.npy": npy.Bytes(), "B.NPY": npy.Bytes(), "c.csv": csv.Bytes(), "D.Csv": csv.Bytes()}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name := range files {
		p := filepath.Join(dir, name)
		ds, err := Load(p, 99, 7) // n and seed are ignored for files
		if err != nil {
			t.Errorf("Load(%s): %v", name, err)
			continue
		}
		checkDataset(t, ds)
		if ds.N*ds.D != 6 || !sameBits(ds.X, numpyA) || ds.Name != p {
			t.Errorf("Load(%s) = %q %dx%d %v", name, ds.Name, ds.N, ds.D, ds.X)
		}
	}

	ds, err := Load("spirals", 64, 3)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := Builtin("spirals", 64, 3)
	if ds.N != 64 || !sameBits(ds.X, want.X) {
		t.Error("Load of a built-in name differs from Builtin")
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	txt := filepath.Join(dir, "x.txt")
	os.WriteFile(txt, []byte("1,2\n"), 0o644)
	missing := filepath.Join(dir, "gone.npy")
	bad := filepath.Join(dir, "bad.csv")
	os.WriteFile(bad, []byte("1,2\n3\n"), 0o644)
	cases := []struct {
		arg, name, want string
	}{
		{txt, txt, `unknown data file type ".txt": want .npy or .csv, or a built-in set (8gaussians, checkerboard, circles, gaussian, moons, spirals)`},
		{"moonz", "moonz", "not a built-in data set (8gaussians, checkerboard, circles, gaussian, moons, spirals), an image set (mnist, mnist:test, fashion-mnist, fashion-mnist:test, cifar10, cifar10:test), a folder of images, nor a .npy or .csv file"},
		{filepath.Join(dir, "no-such-folder"), filepath.Join(dir, "no-such-folder"), "no such file or directory (want a folder of images"},
		{"Moons", "Moons", "not a built-in data set"},
		{missing, missing, "no such file or directory"},
		{bad, bad, "line 2 has 1 field, want 2 as on line 1"},
		{"a\nb.csv", `"a\nb.csv"`, "no such file"},
	}
	for _, c := range cases {
		ds, err := Load(c.arg, 10, 0)
		if ds != nil {
			t.Errorf("Load(%q) returned a dataset with the error", c.arg)
		}
		checkLoadErr(t, err, c.name, c.want)
	}
	if _, err := Load(missing, 1, 0); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v is not fs.ErrNotExist", err)
	}
	_, err := Load("moons", 0, 0)
	checkLoadErr(t, err, "moons", "n = 0 points")
}
