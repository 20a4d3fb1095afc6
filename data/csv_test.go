package data

import (
	"bytes"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
)

func TestReadCSV(t *testing.T) {
	cases := []struct {
		what, in string
		n, d     int
		want     []float32
	}{
		{"plain", "1,2\n3,4\n", 2, 2, []float32{1, 2, 3, 4}},
		{"no final newline", "1,2\n3,4", 2, 2, []float32{1, 2, 3, 4}},
		{"header", "x,y\n1,2\n3,4\n", 2, 2, []float32{1, 2, 3, 4}},
		{"header with one name", "1,y\n1,2\n", 1, 2, []float32{1, 2}},
		{"pandas index header", ",x,y\n0,1.5,2\n1,3,4\n", 2, 3, []float32{0, 1.5, 2, 1, 3, 4}},
		{"quoted header", "\"x\",\"y\"\n1,2\n", 1, 2, []float32{1, 2}},
		{"quoted values", "\"1\", \" 2 \"\n", 1, 2, []float32{1, 2}},
		{"quoted header with commas", "\"Height, cm\",\"Weight, kg\"\n170,60\n", 1, 2, []float32{170, 60}},
		{"quoted header with a quote", "\"a \"\"b\"\", c\",d\n1,2\n", 1, 2, []float32{1, 2}},
		{"CRLF", "x,y\r\n1,2\r\n3,4\r\n", 2, 2, []float32{1, 2, 3, 4}},
		{"CR CR LF (Python csv on Windows)", "x,y\r\r\n1,2\r\r\n\r\r\n3,4\r\r\n", 2, 2, []float32{1, 2, 3, 4}},
		{"BOM", "\ufeffx,y\n1,2\n", 1, 2, []float32{1, 2}},
		{"BOM no header", "\ufeff1,2\n", 1, 2, []float32{1, 2}},
		{"blank lines", "\n\n  \nx,y\n\n1,2\n \t \n3,4\n\n", 2, 2, []float32{1, 2, 3, 4}},
		{"spaces", "  1 ,\t2  \n3,  4\n", 2, 2, []float32{1, 2, 3, 4}},
		{"one column", "v\n1\n-2.5\n", 2, 1, []float32{1, -2.5}},
		{"notation", "1e3,-2.5E-2,+7,.5,0x1p-2\n", 1, 5, []float32{1000, -0.025, 7, 0.5, 0.25}},
		{"rounding", "0.1,16777217\n", 1, 2, []float32{0.1, 16777216}},
		{"underflow", "1e-400,-1e-50\n", 1, 2, []float32{0, float32(math.Copysign(0, -1))}},
	}
	for _, c := range cases {
		ds, err := ReadCSV(strings.NewReader(c.in), "t.csv")
		if err != nil {
			t.Errorf("%s: %v", c.what, err)
			continue
		}
		checkDataset(t, ds)
		if ds.Name != "t.csv" || ds.N != c.n || ds.D != c.d || !sameBits(ds.X, c.want) || ds.Labels != nil {
			t.Errorf("%s: got %q %dx%d %v, want %dx%d %v", c.what, ds.Name, ds.N, ds.D, ds.X, c.n, c.d, c.want)
		}
	}
}

func TestReadCSVRejects(t *testing.T) {
	cases := []struct {
		what, in, want string
	}{
		{"empty", "", "no data rows"},
		{"';' read as ','", "0.94;1.30\n2;3\n", `line 1, column 1: "0.94;1.30" is not a number: the fields seem separated by ';'`},
		{"CR CR LF, then CR alone", "1,2\r\r\n\r\n3,4\r5,6\n", "line 3 holds a carriage return (CR) inside it"},
		{"CR line ends", "1,2\r3,4\r5,6\r", "line 1 holds a carriage return (CR) inside it"},
		{"UTF-16", "\xff\xfe1\x00,\x002\x00\n\x00", "UTF-16 text"},
		{"blank", "\n \n\t\n", "no data rows"},
		{"header only", "x,y\n", "no data rows"},
		{"ragged", "1,2,3\n4,5,6\n7,8\n", "line 3 has 2 fields, want 3 as on line 1"},
		{"ragged long", "1,2\n\n3,4,5\n", "line 3 has 3 fields, want 2 as on line 1"},
		{"header mismatch", "x,y,z\n1,2\n", "line 2 has 2 fields, want 3 as in the header on line 1"},
		{"NaN", "1,2\nNaN,3\n", `line 2, column 1: "NaN" is not allowed: data must be finite`},
		{"NaN first row", "nan,1\n2,3\n", `line 1, column 1: "nan" is not allowed`},
		{"NA first row", "1,NA\n2,3\n", `line 1, column 2: "NA" is not a number`},
		{"null first row", "null,1\n2,3\n", `line 1, column 1: "null" is not a number`},
		{"dash first row", "1,-\n2,3\n", `line 1, column 2: "-" is not a number`},
		{"Inf", "x,y\n1,2\n3,-Inf\n", `line 3, column 2: "-Inf" is not allowed`},
		{"infinity", "1,2\n3,infinity\n", `line 2, column 2: "infinity" is not allowed`},
		{"not a number", "1,2\n3,abc\n", `line 2, column 2: "abc" is not a number`},
		{"second header", "x,y\nx,y\n", `line 2, column 1: "x" is not a number`},
		{"empty field", "1,,2\n", "line 1, column 2: empty field"},
		{"empty fields only", ",\n", "line 1, column 1: empty field"},
		{"trailing comma", "1,2,\n", "line 1, column 3: empty field"},
		{"float32 range", "1,2\n1e39,0\n", `line 2, column 1: "1e39" is outside the float32 range`},
		{"float64 range", "1,2\n3,-1e400\n", `line 2, column 2: "-1e400" is outside the float32 range`},
		{"semicolons", "1;2\n3;4\n", `line 1, column 1: "1;2" is not a number: the fields seem separated by ';'`},
		{"long field", "1,2\n" + strings.Repeat("9", 100) + "x,1\n", `column 1: "` + strings.Repeat("9", 40) + `"... is not a number`},
		{"control bytes", "1,2\n3,\x00\x1b[31m\n", `"\x00\x1b[31m" is not a number`},
	}
	for _, c := range cases {
		ds, err := ReadCSV(strings.NewReader(c.in), "bad.csv")
		if ds != nil {
			t.Errorf("%s: got a dataset with the error", c.what)
		}
		checkLoadErr(t, err, "bad.csv", c.want)
	}
}

func TestReadCSVLongLine(t *testing.T) {
	line := strings.Repeat("1,", maxCSVLine/2+10) + "1\n"
	_, err := ReadCSV(strings.NewReader("1\n\n"+line), "long.csv")
	checkLoadErr(t, err, "long.csv", "line 3 is longer than 16777216 bytes")
}

func TestReadCSVReaderError(t *testing.T) {
	_, err := ReadCSV(&errReader{b: []byte("1,2\n3,4\n")}, "r.csv")
	checkLoadErr(t, err, "r.csv", "read: boom")
	if !errors.Is(err, errBoom) {
		t.Errorf("%v does not wrap the reader's error", err)
	}
}

func TestWriteCSVRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	special := []float32{0, float32(math.Copysign(0, -1)), math.MaxFloat32, -math.MaxFloat32,
		math.SmallestNonzeroFloat32, 1e-40, 0.1, 1.0 / 3, 16777216}
	for _, sh := range [][2]int{{1, 1}, {3, 3}, {5000, 4}} { // the last spans several buffers
		x := make([]float32, sh[0]*sh[1])
		for i := range x {
			if i < len(special) {
				x[i] = special[i]
			} else {
				x[i] = float32(rng.NormFloat64() * math.Pow(10, float64(rng.IntN(20)-10)))
			}
		}
		for _, header := range [][]string{nil, make([]string, sh[1])} {
			for j := range header {
				header[j] = "c" + strings.Repeat("x", j)
			}
			var b bytes.Buffer
			if err := WriteCSV(&b, x, sh[0], sh[1], header); err != nil {
				t.Fatal(err)
			}
			// HalfReader makes the scanner refill mid-line.
			ds, err := ReadCSV(iotest.HalfReader(&b), "rt.csv")
			if err != nil {
				t.Fatalf("%v: %v", sh, err)
			}
			if ds.N != sh[0] || ds.D != sh[1] || !sameBits(ds.X, x) {
				t.Errorf("%v header %v: round trip %dx%d, equal %v", sh, header != nil, ds.N, ds.D, sameBits(ds.X, x))
			}
		}
	}
}

func TestWriteCSVFormat(t *testing.T) {
	var b bytes.Buffer
	x := []float32{1, -0.5, 0.1, 1e-7, float32(math.NaN()), float32(math.Inf(-1))}
	if err := WriteCSV(&b, x, 3, 2, []string{"x", "y"}); err != nil {
		t.Fatal(err)
	}
	// Non-finite values are written as they are, and then refused on reading.
	want := "x,y\n1,-0.5\n0.1,1e-07\nNaN,-Inf\n"
	if b.String() != want {
		t.Errorf("WriteCSV wrote %q, want %q", b.String(), want)
	}
}

func TestWriteCSVErrors(t *testing.T) {
	x := []float32{1, 2, 3, 4}
	cases := []struct {
		rows, cols int
		header     []string
		want       string
	}{
		{2, 3, nil, "len(x) = 4 does not match shape (2, 3)"},
		{0, 4, nil, "rows and columns must be positive"},
		{2, 2, []string{"a"}, "1 header names for 2 columns"},
		{2, 2, []string{"a,b", "c"}, `header name "a,b" holds a comma, quote or line break`},
		{2, 2, []string{"a", "b\n"}, `header name "b\n" holds`},
		{2, 2, []string{`"a"`, "b"}, "holds a comma, quote"},
		{2, 2, []string{"0", "1"}, `header "0,1" has no name that is not a number`},
		{2, 2, []string{"", " "}, "has no name that is not a number"},
		{2, 2, []string{"nan", "1"}, "has no name that is not a number"},
	}
	for _, c := range cases {
		err := WriteCSV(io.Discard, x, c.rows, c.cols, c.header)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("WriteCSV(%d, %d, %q) = %v, want %q", c.rows, c.cols, c.header, err, c.want)
		}
	}
	if err := WriteCSV(&failWriter{limit: 10}, make([]float32, 1<<16), 1<<15, 2, nil); !errors.Is(err, errBoom) {
		t.Errorf("failing writer gave %v", err)
	}
}

func TestLoadCSV(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.csv")
	if err := os.WriteFile(p, []byte("x,y\n1,2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ds, err := LoadCSV(p)
	if err != nil || ds.N != 1 || ds.D != 2 || ds.Name != p {
		t.Errorf("LoadCSV: %v %+v", err, ds)
	}
	missing := filepath.Join(dir, "none.csv")
	_, err = LoadCSV(missing)
	checkLoadErr(t, err, missing, "no such file or directory")
	_, err = LoadCSV(dir)
	checkLoadErr(t, err, dir, "is a directory")
}

// Decimal commas with --delimiter ';' (a European spreadsheet's CSV): the
// first line is data read the wrong way, not a header.
func TestReadCSVDecimalComma(t *testing.T) {
	_, err := ReadCSVWith(strings.NewReader("0,330;-1,303\n1,5;2\n"), "eu.csv", CSVOptions{Delimiter: ';'})
	if want := `eu.csv: line 1, column 1: "0,330" is not a number: fmgpu reads a decimal point, not a decimal comma`; err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
}
