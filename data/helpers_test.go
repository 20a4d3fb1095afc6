package data

import (
	"encoding/binary"
	"errors"
	"math"
	"strings"
	"testing"
)

// checkDataset asserts the invariants every successful load must give.
func checkDataset(t testing.TB, ds *Dataset) {
	t.Helper()
	if ds == nil {
		t.Fatal("nil dataset without an error")
	}
	if ds.N <= 0 || ds.D <= 0 || ds.N*ds.D != len(ds.X) {
		t.Fatalf("%s: N=%d D=%d len(X)=%d", ds.Name, ds.N, ds.D, len(ds.X))
	}
	if ds.Labels != nil && len(ds.Labels) != ds.N {
		t.Fatalf("%s: %d labels for %d points", ds.Name, len(ds.Labels), ds.N)
	}
	for i, v := range ds.X {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			t.Fatalf("%s: X[%d] = %v", ds.Name, i, v)
		}
	}
}

// checkLoadErr asserts the loaders' error contract: one line, starting with
// the name, containing want.
func checkLoadErr(t testing.TB, err error, name, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one containing %q", want)
	}
	msg := err.Error()
	if strings.ContainsAny(msg, "\n\r") {
		t.Errorf("error is not one line: %q", msg)
	}
	if !strings.HasPrefix(msg, name+": ") {
		t.Errorf("error %q does not start with %q", msg, name+": ")
	}
	if !strings.Contains(msg, want) {
		t.Errorf("error %q does not contain %q", msg, want)
	}
}

// npyFile assembles a .npy file from a header dict text, padding it like
// numpy does, with the given major version (1, 2 or 3).
func npyFile(major byte, header string, data []byte) []byte {
	pre := 10
	if major > 1 {
		pre = 12
	}
	header += strings.Repeat(" ", 63-(pre+len(header))%64) + "\n"
	b := []byte(npyMagic)
	b = append(b, major, 0)
	if major == 1 {
		b = binary.LittleEndian.AppendUint16(b, uint16(len(header)))
	} else {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(header)))
	}
	b = append(b, header...)
	return append(b, data...)
}

// npyHeaderFor is numpy's header text for a float array.
func npyHeaderFor(descr, shape string) string {
	return "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape + ", }"
}

func f4le(v ...float32) []byte {
	var b []byte
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	return b
}

func f8le(v ...float64) []byte {
	var b []byte
	for _, x := range v {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(x))
	}
	return b
}

// errReader fails after delivering its bytes.
type errReader struct {
	b []byte
}

var errBoom = errors.New("boom")

func (r *errReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, errBoom
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

// sameBits compares float32 slices bit for bit (so -0 differs from 0).
func sameBits(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}
