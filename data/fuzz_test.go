package data

import (
	"bytes"
	"flag"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
)

var update = flag.Bool("update", false, "rewrite the seed corpora in testdata/fuzz")

// FuzzReadNPY: no input panics; every error is one line naming the input;
// a success is a consistent finite data set, the same whether the size is
// known or streamed, and it survives WriteNPY and a second read.
func FuzzReadNPY(f *testing.F) {
	for _, b := range npySeeds() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ds, err := ReadNPY(bytes.NewReader(b), int64(len(b)), "fuzz.npy")
		ds2, err2 := ReadNPY(iotest.HalfReader(bytes.NewReader(b)), -1, "fuzz.npy")
		if (err == nil) != (err2 == nil) {
			t.Fatalf("known size: %v; unknown size: %v", err, err2)
		}
		if err != nil {
			checkLoadErr(t, err, "fuzz.npy", "")
			checkLoadErr(t, err2, "fuzz.npy", "")
			return
		}
		checkDataset(t, ds)
		if ds.N != ds2.N || ds.D != ds2.D || !sameBits(ds.X, ds2.X) {
			t.Fatalf("known and unknown size disagree: %dx%d vs %dx%d", ds.N, ds.D, ds2.N, ds2.D)
		}
		var w bytes.Buffer
		if err := WriteNPY(&w, ds.X, ds.N, ds.D); err != nil {
			t.Fatal(err)
		}
		back, err := ReadNPY(bytes.NewReader(w.Bytes()), int64(w.Len()), "back.npy")
		if err != nil || back.N != ds.N || back.D != ds.D || !sameBits(back.X, ds.X) {
			t.Fatalf("rewrite: %v", err)
		}
	})
}

// FuzzReadCSV: no input panics; every error is one line naming the input;
// a success is a consistent finite data set that survives WriteCSV and a
// second read bit for bit.
func FuzzReadCSV(f *testing.F) {
	for _, b := range csvSeeds() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ds, err := ReadCSV(bytes.NewReader(b), "fuzz.csv")
		if err != nil {
			checkLoadErr(t, err, "fuzz.csv", "")
			return
		}
		checkDataset(t, ds)
		var w bytes.Buffer
		if err := WriteCSV(&w, ds.X, ds.N, ds.D, nil); err != nil {
			t.Fatal(err)
		}
		back, err := ReadCSV(&w, "back.csv")
		if err != nil || back.N != ds.N || back.D != ds.D || !sameBits(back.X, ds.X) {
			t.Fatalf("rewrite: %v", err)
		}
	})
}

// npySeeds are the committed seed corpus of FuzzReadNPY: valid files of each
// kind, and each way of being wrong.
func npySeeds() map[string][]byte {
	good := npyHeaderFor("<f4", "(2, 2)")
	d4 := f4le(1, -2, 0.5, 3)
	f := func(major byte, h string, d []byte) []byte { return npyFile(major, h, d) }
	var w bytes.Buffer
	WriteNPY(&w, []float32{1.5, -2, 0, 1e-3, 7, 3e38}, 3, 2)
	be := []byte{0x3f, 0x80, 0, 0, 0xc0, 0, 0, 0} // 1, -2 as '>f4'
	return map[string][]byte{
		"valid_writenpy":   w.Bytes(),
		"valid_f4":         f(1, good, d4),
		"valid_f8":         f(1, npyHeaderFor("<f8", "(2, 1)"), f8le(0.1, -1e30)),
		"valid_be_f4":      f(1, npyHeaderFor(">f4", "(1, 2)"), be),
		"valid_vector":     f(1, npyHeaderFor("<f4", "(4,)"), d4),
		"valid_v2":         f(2, good, d4),
		"valid_v3":         f(3, good, d4),
		"valid_messy":      f(1, `{ "shape":[2,2,],'fortran_order' :False,"descr":'<f4',}`, d4),
		"empty":            nil,
		"truncated_pre":    []byte(npyMagic + "\x01\x00\x76"),
		"truncated_header": f(1, good, d4)[:40],
		"truncated_data":   f(1, good, d4)[:len(f(1, good, d4))-3],
		"trailing":         f(1, good, append(d4, 1, 2, 3)),
		"huge_shape":       f(1, npyHeaderFor("<f4", "(1000000000000, 1000000)"), d4),
		"overflow_shape":   f(1, npyHeaderFor("<f8", "(9223372036854775807, 9223372036854775807)"), d4),
		"huge_header_len":  []byte(npyMagic + "\x02\x00\xff\xff\xff\xff{"),
		"negative_shape":   f(1, npyHeaderFor("<f4", "(-1, 4)"), d4),
		"zero_shape":       f(1, npyHeaderFor("<f4", "(0, 4)"), nil),
		"fortran_order":    f(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", d4),
		"bad_dtype_i4":     f(1, npyHeaderFor("<i4", "(2, 2)"), d4),
		"bad_dtype_struct": f(1, "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (4,), }", d4),
		"nan":              f(1, good, f4le(1, float32(math.NaN()), 0, 0)),
		"f8_range":         f(1, npyHeaderFor("<f8", "(1, 1)"), f8le(1e300)),
		"bad_magic":        append([]byte("\x93NUMPX\x01\x00"), good...),
		"bad_version":      append([]byte(npyMagic+"\x05\x00\x76\x00"), good...),
		"garbage_header":   f(1, "{'descr': ((((((((((", d4),
		"three_d":          f(1, npyHeaderFor("<f4", "(1, 2, 2)"), d4),
	}
}

func csvSeeds() map[string][]byte {
	return map[string][]byte{
		"valid":          []byte("1,2\n3,4\n"),
		"valid_header":   []byte("x,y\n1.5,-2e3\n0x1p-3,.5\n"),
		"valid_crlf_bom": []byte("\ufeff\"a\",\"b\"\r\n 1 , 2 \r\n\r\n3,4"),
		"ragged":         []byte("1,2,3\n4,5\n"),
		"nan":            []byte("1,2\nNaN,4\n"),
		"inf":            []byte("1,inf\n"),
		"empty_field":    []byte("1,,3\n"),
		"not_a_number":   []byte("1,2\n3,four\n"),
		"range":          []byte("1e39,1e-50\n"),
		"blank":          []byte("\n \n"),
		"header_only":    []byte("a,b,c\n"),
	}
}

// TestFuzzSeedCorpus keeps testdata/fuzz in step with npySeeds and
// csvSeeds; go test -run FuzzSeedCorpus -update rewrites it.
func TestFuzzSeedCorpus(t *testing.T) {
	for fuzz, seeds := range map[string]map[string][]byte{"FuzzReadNPY": npySeeds(), "FuzzReadCSV": csvSeeds()} {
		dir := filepath.Join("testdata", "fuzz", fuzz)
		for name, b := range seeds {
			path := filepath.Join(dir, name)
			want := "go test fuzz v1\n[]byte(" + strconv.Quote(string(b)) + ")\n"
			if *update {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Errorf("%v (run go test ./data -run FuzzSeedCorpus -update)", err)
				continue
			}
			if string(got) != want {
				t.Errorf("%s is stale (run go test ./data -run FuzzSeedCorpus -update)", path)
			}
			body := strings.TrimSuffix(strings.TrimPrefix(string(got), "go test fuzz v1\n[]byte("), ")\n")
			if s, err := strconv.Unquote(body); err != nil || s != string(b) {
				t.Errorf("%s does not decode to its seed: %v", path, err)
			}
			// A seed is what its name says: "valid..." loads, the rest fail.
			var err2 error
			if fuzz == "FuzzReadNPY" {
				_, err2 = ReadNPY(bytes.NewReader(b), int64(len(b)), name)
			} else {
				_, err2 = ReadCSV(bytes.NewReader(b), name)
			}
			if valid := strings.HasPrefix(name, "valid"); valid != (err2 == nil) {
				t.Errorf("%s seed %s: error %v", fuzz, name, err2)
			}
		}
	}
}
