package data

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
)

// The .npy format, version 1.0 to 3.0
// (https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html):
// the magic "\x93NUMPY", a major and a minor version byte, the header length
// (uint16 little-endian in 1.0, uint32 in 2.0 and 3.0), then the header, a
// Python dict literal with the keys 'descr', 'fortran_order' and 'shape',
// and then the raw array.

const npyMagic = "\x93NUMPY"

// maxNPYHeader bounds the header we are willing to read. Version 2.0 allows
// 4 GiB; our three-key header never needs more than a few dozen bytes, and
// numpy itself refuses headers over 10000 bytes by default.
const maxNPYHeader = 1 << 16

// chunkBytes is the unit of the streaming decode and encode.
const chunkBytes = 1 << 16

type npyHeader struct {
	descr   string
	fortran bool
	shape   []int64
}

// LoadNPY reads a .npy file; see ReadNPY.
func LoadNPY(path string) (*Dataset, error) {
	f, size, err := openData(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadNPY(f, size, path)
}

// openData opens path for reading and returns its size, or -1 when it is not
// a regular file (a pipe, /dev/stdin) and the size is unknown.
func openData(path string) (*os.File, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, fileErr(path, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fileErr(path, err)
	}
	if st.IsDir() {
		f.Close()
		return nil, 0, errorf(path, "is a directory, not a data file")
	}
	if !st.Mode().IsRegular() {
		return f, -1, nil
	}
	return f, st.Size(), nil
}

// ReadNPY reads a 1-D or 2-D C-order array of float32 or float64, either byte
// order, from r, which holds exactly size bytes (the whole file, header
// included); a negative size means unknown. A 1-D array of length N is read
// as N x 1. float64 values are rounded to float32. The header's shape is
// checked against size before anything is allocated, so a tiny file that
// declares a huge shape costs nothing; with an unknown size the array grows
// only as bytes arrive. Bytes after the array are an error (a sign of a
// misread header or a concatenated file). NaN and infinite values are
// rejected with their index. name appears in every error.
func ReadNPY(r io.Reader, size int64, name string) (*Dataset, error) {
	var pre [12]byte
	if _, err := io.ReadFull(r, pre[:8]); err != nil {
		if isEOF(err) {
			return nil, errorf(name, "not a .npy file: shorter than the 8-byte preamble")
		}
		return nil, readErr(name, err)
	}
	if string(pre[:6]) != npyMagic {
		return nil, errorf(name, "not a .npy file: bad magic %q, want %q", pre[:6], npyMagic)
	}
	major, minor := pre[6], pre[7]
	var hlen, preLen int64
	switch {
	case major == 1 && minor == 0:
		preLen = 10
	case (major == 2 || major == 3) && minor == 0:
		preLen = 12
	default:
		return nil, errorf(name, "unsupported .npy version %d.%d (want 1.0, 2.0 or 3.0)", major, minor)
	}
	if _, err := io.ReadFull(r, pre[8:preLen]); err != nil {
		if isEOF(err) {
			return nil, errorf(name, "truncated .npy preamble")
		}
		return nil, readErr(name, err)
	}
	if preLen == 10 {
		hlen = int64(binary.LittleEndian.Uint16(pre[8:10]))
	} else {
		hlen = int64(binary.LittleEndian.Uint32(pre[8:12]))
	}
	if hlen > maxNPYHeader {
		return nil, errorf(name, ".npy header length %d exceeds the %d-byte limit", hlen, maxNPYHeader)
	}
	if size >= 0 && preLen+hlen > size {
		return nil, errorf(name, "truncated .npy header: declares %d bytes, file has %d after the preamble", hlen, max(size-preLen, 0))
	}
	hbuf := make([]byte, hlen)
	if _, err := io.ReadFull(r, hbuf); err != nil {
		if isEOF(err) {
			return nil, errorf(name, "truncated .npy header: declares %d bytes", hlen)
		}
		return nil, readErr(name, err)
	}
	h, err := parseNPYHeader(string(hbuf))
	if err != nil {
		return nil, errorf(name, ".npy header: %v", err)
	}

	var bigEndian bool
	var item int64
	switch h.descr {
	case "<f4":
		item = 4
	case "<f8":
		item = 8
	case ">f4":
		item, bigEndian = 4, true
	case ">f8":
		item, bigEndian = 8, true
	default:
		return nil, errorf(name, "dtype %s not supported: want float32 or float64 ('<f4', '<f8', '>f4' or '>f8')", quote(h.descr))
	}
	if h.fortran {
		// numpy writes True only for arrays that are not also C-contiguous,
		// so True always means a transposed layout.
		return nil, errorf(name, "fortran_order True is not supported: save with np.save(path, np.ascontiguousarray(x))")
	}
	n, d, err := npyShape(h.shape)
	if err != nil {
		return nil, errorf(name, "%v", err)
	}
	// npyShape bounds n*d*8 by MaxInt64, so this cannot overflow.
	dataLen := n * d * item
	if size >= 0 {
		have := size - preLen - hlen
		if have < dataLen {
			return nil, errorf(name, "truncated .npy data: shape %s of %s needs %d bytes, file has %d", shapeString(h.shape), h.descr, dataLen, have)
		}
		if have > dataLen {
			return nil, errorf(name, "%d trailing bytes after the .npy data of shape %s", have-dataLen, shapeString(h.shape))
		}
	}

	total := int(n * d)
	var x []float32
	if size >= 0 {
		x = make([]float32, 0, total)
	} else {
		x = make([]float32, 0, min(total, chunkBytes/4))
	}
	buf := make([]byte, min(dataLen, chunkBytes))
	for len(x) < total {
		k := min(int64(total-len(x))*item, int64(len(buf)))
		if _, err := io.ReadFull(r, buf[:k]); err != nil {
			if isEOF(err) {
				return nil, errorf(name, "truncated .npy data: shape %s of %s needs %d bytes", shapeString(h.shape), h.descr, dataLen)
			}
			return nil, readErr(name, err)
		}
		for off := int64(0); off < k; off += item {
			var v float64
			b := buf[off : off+item]
			switch {
			case item == 4 && !bigEndian:
				v = float64(math.Float32frombits(binary.LittleEndian.Uint32(b)))
			case item == 4:
				v = float64(math.Float32frombits(binary.BigEndian.Uint32(b)))
			case !bigEndian:
				v = math.Float64frombits(binary.LittleEndian.Uint64(b))
			default:
				v = math.Float64frombits(binary.BigEndian.Uint64(b))
			}
			f := float32(v)
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return nil, errorf(name, "%s is %v: data must be finite", npyIndex(len(x), int(d), len(h.shape)), v)
			}
			if math.IsInf(float64(f), 0) {
				return nil, errorf(name, "%s = %g is outside the float32 range", npyIndex(len(x), int(d), len(h.shape)), v)
			}
			x = append(x, f)
		}
	}
	if size < 0 {
		var one [1]byte
		if k, _ := io.ReadFull(r, one[:]); k > 0 {
			return nil, errorf(name, "trailing bytes after the .npy data of shape %s", shapeString(h.shape))
		}
	}
	return &Dataset{Name: name, X: x, N: int(n), D: int(d)}, nil
}

// npyShape turns a 1-D or 2-D shape into rows and columns, refusing what
// would be empty or would overflow the byte count of float64 data.
func npyShape(shape []int64) (n, d int64, err error) {
	s := shapeString(shape)
	switch len(shape) {
	case 0:
		return 0, 0, fmt.Errorf("shape () is a scalar: want a 1-D or 2-D array")
	case 1:
		n, d = shape[0], 1
	case 2:
		n, d = shape[0], shape[1]
	default:
		return 0, 0, fmt.Errorf("shape %s has %d dimensions: want 1 or 2 (reshape to (N, D))", s, len(shape))
	}
	for _, v := range shape {
		if v < 0 {
			return 0, 0, fmt.Errorf("shape %s has a negative dimension", s)
		}
	}
	if n == 0 || d == 0 {
		return 0, 0, fmt.Errorf("shape %s is empty: no data", s)
	}
	if n > math.MaxInt/8/d {
		return 0, 0, fmt.Errorf("shape %s is too large", s)
	}
	return n, d, nil
}

func shapeString(shape []int64) string {
	var b strings.Builder
	b.WriteByte('(')
	for i, v := range shape {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.FormatInt(v, 10))
	}
	if len(shape) == 1 {
		b.WriteByte(',')
	}
	b.WriteByte(')')
	return b.String()
}

// npyIndex names element k of an (N, D) array the way numpy would index it.
func npyIndex(k, d, ndim int) string {
	if ndim == 1 {
		return fmt.Sprintf("x[%d]", k)
	}
	return fmt.Sprintf("x[%d, %d]", k/d, k%d)
}

// WriteNPY writes x, rows x cols row-major, as a version 1.0 '<f4' C-order
// .npy file, byte for byte what np.save writes for the same float32 array:
// the header is padded with spaces and a final newline so that the array
// starts at a multiple of 64 bytes. Non-finite values are written as they
// are (the format holds them), though ReadNPY will refuse them.
func WriteNPY(w io.Writer, x []float32, rows, cols int) error {
	if err := checkMatrix(len(x), rows, cols); err != nil {
		return fmt.Errorf("write npy: %w", err)
	}
	return WriteNPYShape(w, x, []int{rows, cols})
}

// WriteNPYShape is WriteNPY for an array of any shape (a sampling
// trajectory is steps x n x D); the product of shape must be len(x).
func WriteNPYShape(w io.Writer, x []float32, shape []int) error {
	n := 1
	dims := make([]string, len(shape))
	for i, s := range shape {
		if s <= 0 {
			return fmt.Errorf("write npy: shape %v: every dimension must be positive", shape)
		}
		n *= s
		dims[i] = fmt.Sprint(s)
	}
	if n != len(x) || len(shape) == 0 {
		return fmt.Errorf("write npy: len(x) = %d does not match shape %v", len(x), shape)
	}
	tuple := strings.Join(dims, ", ")
	if len(shape) == 1 {
		tuple += ","
	}
	h := fmt.Sprintf("{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }", tuple)
	// numpy's _wrap_header: always 1 to 64 spaces, then the newline.
	pad := 64 - (len(npyMagic)+4+len(h)+1)%64
	h += strings.Repeat(" ", pad) + "\n"
	pre := make([]byte, 0, 10+len(h))
	pre = append(pre, npyMagic...)
	pre = append(pre, 1, 0)
	pre = binary.LittleEndian.AppendUint16(pre, uint16(len(h)))
	pre = append(pre, h...)
	if _, err := w.Write(pre); err != nil {
		return fmt.Errorf("write npy: %w", err)
	}
	buf := make([]byte, 0, min(4*len(x), chunkBytes))
	for i, v := range x {
		buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(v))
		if len(buf) == cap(buf) || i == len(x)-1 {
			if _, err := w.Write(buf); err != nil {
				return fmt.Errorf("write npy: %w", err)
			}
			buf = buf[:0]
		}
	}
	return nil
}

// checkMatrix validates a rows x cols shape for a slice of length n.
func checkMatrix(n, rows, cols int) error {
	if rows <= 0 || cols <= 0 {
		return fmt.Errorf("shape (%d, %d): rows and columns must be positive", rows, cols)
	}
	if n%cols != 0 || n/cols != rows {
		return fmt.Errorf("len(x) = %d does not match shape (%d, %d)", n, rows, cols)
	}
	return nil
}
