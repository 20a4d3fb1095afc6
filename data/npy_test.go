package data

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
)

// The values gen.py writes into most files in testdata/numpy.
var numpyA = []float32{0.5, -1.25, 3.0, 1e-3, -7.0, 2.5e6}

func TestReadNPYNumpyFiles(t *testing.T) {
	cases := []struct {
		file string
		n, d int
		want []float32
		err  string
	}{
		{file: "f4.npy", n: 3, d: 2, want: numpyA},
		{file: "f4_be.npy", n: 3, d: 2, want: numpyA},
		{file: "f4_v2.npy", n: 3, d: 2, want: numpyA},
		{file: "f4_v3.npy", n: 3, d: 2, want: numpyA},
		// float64 rounds to float32; 1e-300 underflows to 0, which is fine.
		{file: "f8.npy", n: 2, d: 2, want: []float32{0.1, -2, 0, 3.5}},
		{file: "f8_be.npy", n: 3, d: 2, want: numpyA},
		{file: "vec.npy", n: 3, d: 1, want: []float32{1.5, -2.5, 4}},
		{file: "fortran.npy", err: "fortran_order True is not supported"},
		{file: "int32.npy", err: `dtype "<i4" not supported`},
		{file: "3d.npy", err: "shape (2, 2, 2) has 3 dimensions"},
		{file: "empty.npy", err: "shape (0, 2) is empty"},
		{file: "scalar.npy", err: "shape () is a scalar"},
		{file: "nan.npy", err: "x[1, 0] is NaN"},
		{file: "f8_range.npy", err: "x[2, 1] = 1e+300 is outside the float32 range"},
	}
	for _, c := range cases {
		path := filepath.Join("testdata", "numpy", c.file)
		ds, err := LoadNPY(path)
		if c.err != "" {
			checkLoadErr(t, err, path, c.err)
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.file, err)
			continue
		}
		checkDataset(t, ds)
		if ds.N != c.n || ds.D != c.d || !sameBits(ds.X, c.want) || ds.Name != path {
			t.Errorf("%s: got %q %dx%d %v, want %dx%d %v", c.file, ds.Name, ds.N, ds.D, ds.X, c.n, c.d, c.want)
		}
	}
}

func TestWriteNPYMatchesNumpy(t *testing.T) {
	want, err := os.ReadFile(filepath.Join("testdata", "numpy", "f4.npy"))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := WriteNPY(&b, numpyA, 3, 2); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b.Bytes(), want) {
		t.Errorf("WriteNPY differs from np.save:\n got %q\nwant %q", b.Bytes(), want)
	}
}

func TestWriteNPYRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	special := []float32{0, float32(math.Copysign(0, -1)), math.MaxFloat32, -math.MaxFloat32,
		math.SmallestNonzeroFloat32, 1e-40 /* subnormal */, 1, -1}
	// 20000 x 3 spans several 64 KiB write chunks.
	for _, sh := range [][2]int{{1, 1}, {1, 5}, {8, 1}, {7, 3}, {20000, 3}} {
		x := make([]float32, sh[0]*sh[1])
		for i := range x {
			if i < len(special) {
				x[i] = special[i]
			} else {
				x[i] = float32(rng.NormFloat64() * 100)
			}
		}
		var b bytes.Buffer
		if err := WriteNPY(&b, x, sh[0], sh[1]); err != nil {
			t.Fatal(err)
		}
		raw := b.Bytes()
		hl := int(raw[8]) | int(raw[9])<<8
		if (10+hl)%64 != 0 || raw[10+hl-1] != '\n' || len(raw) != 10+hl+4*len(x) {
			t.Errorf("%v: header length %d, file %d bytes", sh, hl, len(raw))
		}
		for _, size := range []int64{int64(len(raw)), -1} {
			ds, err := ReadNPY(bytes.NewReader(raw), size, "rt.npy")
			if err != nil {
				t.Fatalf("%v: %v", sh, err)
			}
			if ds.N != sh[0] || ds.D != sh[1] || !sameBits(ds.X, x) {
				t.Errorf("%v (size %d): round trip gave %dx%d, values equal %v", sh, size, ds.N, ds.D, sameBits(ds.X, x))
			}
		}
	}
}

func TestWriteNPYErrors(t *testing.T) {
	cases := []struct {
		x          []float32
		rows, cols int
		want       string
	}{
		{nil, 0, 2, "rows and columns must be positive"},
		{[]float32{1}, 1, 0, "rows and columns must be positive"},
		{[]float32{1}, -1, -1, "rows and columns must be positive"},
		{[]float32{1, 2, 3}, 2, 2, "len(x) = 3 does not match shape (2, 2)"},
		{[]float32{1, 2, 3, 4}, 1, 2, "len(x) = 4 does not match shape (1, 2)"},
	}
	for _, c := range cases {
		err := WriteNPY(&bytes.Buffer{}, c.x, c.rows, c.cols)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("WriteNPY(len %d, %d, %d) = %v, want %q", len(c.x), c.rows, c.cols, err, c.want)
		}
	}
	// A failing writer's error comes back, wrapped.
	for _, limit := range []int{64, 1000, 70000} { // in the header; the first data chunk; the second
		x := make([]float32, 2*20000)
		if err := WriteNPY(&failWriter{limit: limit}, x, 20000, 2); !errors.Is(err, errBoom) {
			t.Errorf("failing after %d bytes gave %v", limit, err)
		}
	}
}

// failWriter accepts limit bytes in all, then fails.
type failWriter struct{ limit int }

func (w *failWriter) Write(p []byte) (int, error) {
	if len(p) > w.limit {
		return 0, errBoom
	}
	w.limit -= len(p)
	return len(p), nil
}

// TestWriteNPYNumpyReads has numpy load what WriteNPY wrote, when a python3
// with numpy is at hand (Debian: apt-get install python3-numpy).
func TestWriteNPYNumpyReads(t *testing.T) {
	py := ""
	for _, c := range []string{"python3", "/usr/bin/python3"} {
		if p, err := exec.LookPath(c); err == nil && exec.Command(p, "-c", "import numpy").Run() == nil {
			py = p
			break
		}
	}
	if py == "" {
		t.Skip("no python3 with numpy")
	}
	x := []float32{1.5, -2, 3.25, 1e-3, 7, -1e30, 0.1, 42}
	path := filepath.Join(t.TempDir(), "w.npy")
	var b bytes.Buffer
	if err := WriteNPY(&b, x, 4, 2); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	script := `import sys, numpy as np
a = np.load(sys.argv[1])
assert a.dtype == np.float32 and a.shape == (4, 2) and a.flags.c_contiguous, (a.dtype, a.shape)
print(" ".join(repr(float(v)) for v in a.ravel()))`
	out, err := exec.Command(py, "-c", script, path).CombinedOutput()
	if err != nil {
		t.Fatalf("numpy: %v\n%s", err, out)
	}
	var want []string
	for _, v := range x {
		want = append(want, fmt.Sprint(float64(v)))
	}
	got := strings.Fields(string(out))
	for i := range want {
		if i >= len(got) || !sameFloatText(got[i], want[i]) {
			t.Fatalf("numpy read %v, want %v", got, want)
		}
	}
}

// sameFloatText compares Python's and Go's renderings of one float64.
func sameFloatText(py, goText string) bool {
	var a, b float64
	_, e1 := fmt.Sscan(py, &a)
	_, e2 := fmt.Sscan(goText, &b)
	return e1 == nil && e2 == nil && a == b
}

func TestReadNPYHeaderVariants(t *testing.T) {
	data := f4le(1, 2, 3, 4, 5, 6)
	headers := []string{
		"{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }",
		"{'shape': (3, 2), 'fortran_order': False, 'descr': '<f4'}",
		`{"descr":"<f4","fortran_order":False,"shape":(3,2)}`,
		"{ 'descr' : '<f4' ,\t'fortran_order' :False , 'shape' : ( 3 , 2 , ) , }",
		"{'descr': '<f4', 'fortran_order': False, 'shape': (3L, 2L)}", // Python 2
		"{'descr': '<f4', 'fortran_order': False, 'shape': [3, 2]}",
		"{'descr': '<f4',\n 'fortran_order': False,\n 'shape': (3, 2)}",
	}
	for _, h := range headers {
		for _, major := range []byte{1, 2, 3} {
			f := npyFile(major, h, data)
			ds, err := ReadNPY(bytes.NewReader(f), int64(len(f)), "v.npy")
			if err != nil {
				t.Errorf("v%d %q: %v", major, h, err)
				continue
			}
			if ds.N != 3 || ds.D != 2 || !sameBits(ds.X, []float32{1, 2, 3, 4, 5, 6}) {
				t.Errorf("v%d %q: %dx%d %v", major, h, ds.N, ds.D, ds.X)
			}
		}
	}
	// A header without padding or the final newline is accepted too.
	h := npyHeaderFor("<f4", "(6,)")
	f := append([]byte(npyMagic), 1, 0, byte(len(h)), 0)
	f = append(append(f, h...), data...)
	ds, err := ReadNPY(bytes.NewReader(f), int64(len(f)), "bare.npy")
	if err != nil || ds.N != 6 || ds.D != 1 {
		t.Errorf("unpadded header: %v, %+v", err, ds)
	}
}

func TestReadNPYRejects(t *testing.T) {
	good := npyHeaderFor("<f4", "(3, 2)")
	data := f4le(1, 2, 3, 4, 5, 6)
	hdr := func(h string) []byte { return npyFile(1, h, data) }
	v2 := append([]byte(npyMagic), 2, 0)
	cases := []struct {
		what string
		file []byte
		want string
	}{
		{"empty", nil, "not a .npy file: shorter than the 8-byte preamble"},
		{"short", []byte("\x93NUM"), "shorter than the 8-byte preamble"},
		{"bad magic", []byte("PK\x03\x04xxxxxxxxxxxx"), `not a .npy file: bad magic "PK\x03\x04xx"`},
		{"version 4", append([]byte(npyMagic), 4, 0, 0, 0), "unsupported .npy version 4.0"},
		{"version 1.1", append([]byte(npyMagic), 1, 1, 0, 0), "unsupported .npy version 1.1"},
		{"short preamble", append(v2[:8:8], 5, 0), "truncated .npy preamble"},
		{"header too long", append(v2[:8:8], 0, 0, 0x10, 0), "header length 1048576 exceeds the 65536-byte limit"},
		{"header past end", append([]byte(npyMagic), 1, 0, 100, 0, '{'), "truncated .npy header: declares 100 bytes, file has 1"},
		{"not a dict", hdr("('<f4', False, (3, 2))"), "not a dict"},
		{"missing shape", hdr("{'descr': '<f4', 'fortran_order': False}"), "missing key 'shape'"},
		{"missing descr", hdr("{'shape': (3, 2), 'fortran_order': False}"), "missing key 'descr'"},
		{"duplicate key", hdr("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (3, 2)}"), `duplicate key "descr"`},
		{"extra key", hdr("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), 'x': 1}"), `unexpected key "x"`},
		{"key not a string", hdr("{1: 2}"), "dict key is not a string"},
		{"no colon", hdr("{'descr' '<f4'}"), `want ':' after key "descr"`},
		{"no comma", hdr("{'descr': '<f4' 'shape': (3, 2)}"), "want ',' or '}' in dict"},
		{"text after", hdr(good + " x"), `unexpected "x" after the dict`},
		{"unterminated", hdr("{'descr': '<f4}"), "unterminated string"},
		{"unexpected end", hdr("{'descr': "), "unexpected end"},
		{"nested", hdr("{'descr': '<f4', 'fortran_order': False, 'shape': ((((((((((3,),),),),),),),),),)}"), "nested too deeply"},
		{"structured", hdr("{'descr': [('x', '<f4')], 'fortran_order': False, 'shape': (3,)}"), "structured dtype not supported"},
		{"descr not a string", hdr("{'descr': 4, 'fortran_order': False, 'shape': (3, 2)}"), "'descr' is not a string"},
		{"no byte order", hdr(npyHeaderFor("|f4", "(3, 2)")), `dtype "|f4" not supported`},
		{"int", hdr(npyHeaderFor("<i8", "(3, 2)")), `dtype "<i8" not supported`},
		{"half", hdr(npyHeaderFor("<f2", "(3, 2)")), `dtype "<f2" not supported`},
		{"fortran", hdr("{'descr': '<f4', 'fortran_order': True, 'shape': (3, 2)}"), "fortran_order True is not supported"},
		{"fortran text", hdr("{'descr': '<f4', 'fortran_order': 'no', 'shape': (3, 2)}"), "'fortran_order' is not True or False"},
		{"shape int", hdr("{'descr': '<f4', 'fortran_order': False, 'shape': (6)}"), "'shape' is not a tuple"},
		{"shape float", hdr(npyHeaderFor("<f4", "(3.0, 2)")), `unexpected "3.0"`},
		{"shape str", hdr(npyHeaderFor("<f4", "('3', 2)")), "'shape' holds a non-integer"},
		{"negative", hdr(npyHeaderFor("<f4", "(-3, -2)")), "shape (-3, -2) has a negative dimension"},
		{"zero", hdr(npyHeaderFor("<f4", "(3, 0)")), "shape (3, 0) is empty"},
		{"3-D", hdr(npyHeaderFor("<f4", "(1, 3, 2)")), "has 3 dimensions: want 1 or 2"},
		{"scalar", hdr(npyHeaderFor("<f4", "()")), "shape () is a scalar"},
		{"overflow", hdr(npyHeaderFor("<f4", "(9223372036854775807, 2)")), "shape (9223372036854775807, 2) is too large"},
		{"int64 overflow", hdr(npyHeaderFor("<f4", "(99999999999999999999,)")), `"99999999999999999999": integer out of range`},
		{"truncated data", npyFile(1, good, data[:20]), "truncated .npy data: shape (3, 2) of <f4 needs 24 bytes, file has 20"},
		{"huge shape", npyFile(1, npyHeaderFor("<f8", "(1000000000, 1000000)"), data), "needs 8000000000000000 bytes, file has 24"},
		{"trailing", npyFile(1, good, append(data, 0, 0)), "2 trailing bytes after the .npy data of shape (3, 2)"},
		{"NaN", npyFile(1, good, f4le(1, 2, 3, float32(math.NaN()), 5, 6)), "x[1, 1] is NaN: data must be finite"},
		{"+Inf", npyFile(1, good, f4le(1, 2, 3, 4, float32(math.Inf(1)), 6)), "x[2, 0] is +Inf"},
		{"-Inf vector", npyFile(1, npyHeaderFor("<f4", "(6,)"), f4le(1, 2, float32(math.Inf(-1)), 4, 5, 6)), "x[2] is -Inf"},
		{"f8 NaN", npyFile(1, npyHeaderFor("<f8", "(1, 2)"), f8le(1, math.NaN())), "x[0, 1] is NaN"},
		{"f8 range", npyFile(1, npyHeaderFor("<f8", "(2, 1)"), f8le(1, -1e39)), "x[1, 0] = -1e+39 is outside the float32 range"},
	}
	for _, c := range cases {
		t.Run(c.what, func(t *testing.T) {
			ds, err := ReadNPY(bytes.NewReader(c.file), int64(len(c.file)), "bad.npy")
			if ds != nil {
				t.Errorf("got a dataset with the error")
			}
			checkLoadErr(t, err, "bad.npy", c.want)
			// With the size unknown the same files fail, if not always with
			// the same words (a truncation is found by reading, not by size).
			ds, err = ReadNPY(iotest.HalfReader(bytes.NewReader(c.file)), -1, "bad.npy")
			if err == nil || ds != nil {
				t.Errorf("unknown size: got %v, %v", ds, err)
			} else {
				checkLoadErr(t, err, "bad.npy", "")
			}
		})
	}
}

func TestReadNPYUnknownSizeMessages(t *testing.T) {
	good := npyHeaderFor("<f4", "(3, 2)")
	data := f4le(1, 2, 3, 4, 5, 6)
	cases := []struct {
		what string
		file []byte
		want string
	}{
		{"truncated header", []byte(npyMagic + "\x01\x00\x64\x00{"), "truncated .npy header: declares 100 bytes"},
		{"truncated data", npyFile(1, good, data[:21]), "truncated .npy data: shape (3, 2) of <f4 needs 24 bytes"},
		{"trailing", npyFile(1, good, append(data, 7)), "trailing bytes after the .npy data of shape (3, 2)"},
	}
	for _, c := range cases {
		_, err := ReadNPY(bytes.NewReader(c.file), -1, "u.npy")
		checkLoadErr(t, err, "u.npy", c.want)
	}
}

// A reader that delivers fewer bytes than the size it was announced with.
func TestReadNPYSizeLies(t *testing.T) {
	f := npyFile(1, npyHeaderFor("<f4", "(3, 2)"), f4le(1, 2, 3, 4, 5, 6))
	_, err := ReadNPY(bytes.NewReader(f[:len(f)-4]), int64(len(f)), "lie.npy")
	checkLoadErr(t, err, "lie.npy", "truncated .npy data")
}

func TestReadNPYReaderError(t *testing.T) {
	f := npyFile(1, npyHeaderFor("<f4", "(3, 2)"), f4le(1, 2, 3, 4, 5, 6))
	for _, cut := range []int{0, 4, 9, 40, len(f) - 3} { // preamble, version, length, header, data
		_, err := ReadNPY(&errReader{b: f[:cut]}, int64(len(f)), "r.npy")
		checkLoadErr(t, err, "r.npy", "read: boom")
		if !errors.Is(err, errBoom) {
			t.Errorf("cut %d: %v does not wrap the reader's error", cut, err)
		}
	}
}

// A huge declared shape in a tiny file must fail without allocating for it,
// whether or not the size is known.
func TestReadNPYHugeShapeAllocatesLittle(t *testing.T) {
	f := npyFile(2, npyHeaderFor("<f4", "(1000000000, 1000)"), f4le(1, 2))
	for _, size := range []int64{int64(len(f)), -1} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := ReadNPY(bytes.NewReader(f), size, "huge.npy")
		runtime.ReadMemStats(&after)
		checkLoadErr(t, err, "huge.npy", "needs 4000000000000 bytes")
		// One 64 KiB chunk buffer and its float32 counterpart, plus change.
		if got := after.TotalAlloc - before.TotalAlloc; got > 1<<20 {
			t.Errorf("size %d: allocated %d bytes", size, got)
		}
	}
}

func TestLoadNPYErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.npy")
	_, err := LoadNPY(missing)
	checkLoadErr(t, err, missing, "no such file or directory")
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%v is not os.ErrNotExist", err)
	}
	if strings.Count(err.Error(), missing) != 1 {
		t.Errorf("%q names the file more than once", err)
	}
	d := filepath.Join(dir, "d.npy")
	os.Mkdir(d, 0o755)
	_, err = LoadNPY(d)
	checkLoadErr(t, err, d, "is a directory")
}

func TestLoadNPYPipe(t *testing.T) {
	// A pipe has no size: the streaming path reads it.
	r, w, err := os.Pipe()
	if err != nil {
		t.Skip(err)
	}
	go func() {
		WriteNPY(w, numpyA, 2, 3)
		w.Close()
	}()
	path := fmt.Sprintf("/dev/fd/%d", r.Fd())
	if _, err := os.Stat(path); err != nil {
		r.Close()
		t.Skip("no /dev/fd")
	}
	ds, err := LoadNPY(path)
	r.Close()
	if err != nil {
		t.Fatal(err)
	}
	if ds.N != 2 || ds.D != 3 || !sameBits(ds.X, numpyA) {
		t.Errorf("pipe: %dx%d %v", ds.N, ds.D, ds.X)
	}
}

// A 3-D array carries its full shape in the header; the bytes after the
// header are the same as the 2-D writer's for the same data.
func TestWriteNPYShape(t *testing.T) {
	x := []float32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	var b3, b2 bytes.Buffer
	if err := WriteNPYShape(&b3, x, []int{2, 3, 2}); err != nil {
		t.Fatal(err)
	}
	if err := WriteNPY(&b2, x, 6, 2); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b3.Bytes(), []byte("'shape': (2, 3, 2), }")) {
		t.Errorf("header %q", b3.Bytes()[:80])
	}
	if b3.Len()%64 != 48 || !bytes.Equal(b3.Bytes()[b3.Len()-48:], b2.Bytes()[b2.Len()-48:]) {
		t.Errorf("data section differs or header not padded to 64 bytes")
	}
	if err := WriteNPYShape(&b3, x, []int{5, 3}); err == nil {
		t.Error("mismatched shape accepted")
	}
}
