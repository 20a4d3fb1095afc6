package data

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
)

// The idx format of MNIST (http://yann.lecun.com/exdb/mnist/): two zero
// bytes, a type byte (0x08 for unsigned bytes), the number of dimensions,
// then each dimension as a big-endian uint32, then the array in row-major
// order. The files usually come gzip-compressed.

// IDX is an idx array of unsigned bytes.
type IDX struct {
	Dims []int  // at least one dimension, each positive
	Data []byte // the product of Dims bytes, row-major
}

// maxIDXBytes bounds the array ReadIDX accepts: the MNIST training images
// are 47 MB, and anything beyond 4 GiB is a lying header, not a data set.
const maxIDXBytes = 1 << 32

// maxInflate is a bound on deflate's compression ratio (1032:1 at best,
// for runs of one byte), with room for the gzip header: a gzip stream of c
// bytes cannot inflate to more than maxInflate*c + maxInflateSlack bytes.
const (
	maxInflate      = 1032
	maxInflateSlack = 1 << 10
)

// idxTypes names the idx element types, for errors.
var idxTypes = map[byte]string{0x08: "unsigned byte", 0x09: "signed byte", 0x0B: "short", 0x0C: "int", 0x0D: "float", 0x0E: "double"}

// LoadIDX reads an idx file, gzip-compressed or plain; see ReadIDX.
func LoadIDX(path string) (*IDX, error) {
	f, size, err := openData(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadIDX(f, size, path)
}

// ReadIDX reads an idx array of unsigned bytes (type 0x08) from r, which
// holds exactly size bytes (a negative size means unknown). A stream that
// starts with the gzip magic is inflated first; size is then the
// compressed size. The header's dimensions are checked against size before
// anything is allocated: exactly for a plain file, and for gzip against
// deflate's largest possible ratio, the array then growing only as bytes
// arrive, so a small file that declares a huge array costs nothing. Bytes
// after the array, a zero dimension and other element types are errors,
// and so is a gzip stream whose checksum fails. name appears in every
// error.
func ReadIDX(r io.Reader, size int64, name string) (*IDX, error) {
	br := bufio.NewReader(r)
	magic, err := br.Peek(2)
	if err != nil && !isEOF(err) {
		return nil, readErr(name, err)
	}
	gz := len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b
	var src io.Reader = br
	if gz {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, errorf(name, "gzip: %v", err)
		}
		zr.Multistream(true)
		src = zr
	}
	idx, err := readIDX(src, size, gz)
	if err != nil {
		return nil, errorf(name, "%s", oneLine(err.Error()))
	}
	return idx, nil
}

func readIDX(r io.Reader, size int64, gz bool) (*IDX, error) {
	what := "idx"
	if gz {
		what = "gzip idx"
	}
	var pre [4]byte
	if _, err := io.ReadFull(r, pre[:]); err != nil {
		if isEOF(err) {
			return nil, fmt.Errorf("not an idx file: shorter than the 4-byte magic")
		}
		return nil, fmt.Errorf("read %s: %v", what, err)
	}
	if pre[0] != 0 || pre[1] != 0 {
		return nil, fmt.Errorf("not an idx file: magic %02x %02x %02x %02x does not start with two zero bytes", pre[0], pre[1], pre[2], pre[3])
	}
	if pre[2] != 0x08 {
		t, ok := idxTypes[pre[2]]
		if !ok {
			t = "unknown"
		}
		return nil, fmt.Errorf("idx element type 0x%02X (%s) not supported: want 0x08 (unsigned byte)", pre[2], t)
	}
	ndim := int(pre[3])
	if ndim == 0 {
		return nil, fmt.Errorf("idx header declares 0 dimensions")
	}
	hdr := make([]byte, 4*ndim)
	if _, err := io.ReadFull(r, hdr); err != nil {
		if isEOF(err) {
			return nil, fmt.Errorf("truncated idx header: %d dimensions need %d bytes", ndim, 4+4*ndim)
		}
		return nil, fmt.Errorf("read %s: %v", what, err)
	}
	dims := make([]int, ndim)
	total := int64(1)
	for i := range dims {
		d := int64(binary.BigEndian.Uint32(hdr[4*i:]))
		dims[i] = int(d)
		if d == 0 {
			return nil, fmt.Errorf("idx shape %s is empty: no data", idxShape(dims[:i+1]))
		}
		if total > maxIDXBytes/d {
			return nil, fmt.Errorf("idx shape %s exceeds the %d-byte limit", idxShape(dims[:i+1]), int64(maxIDXBytes))
		}
		total *= d
	}
	head := int64(4 + 4*ndim)
	if size >= 0 && !gz {
		have := size - head
		if have < total {
			return nil, fmt.Errorf("truncated idx data: shape %s needs %d bytes, file has %d", idxShape(dims), total, have)
		}
		if have > total {
			return nil, fmt.Errorf("%d trailing bytes after the idx data of shape %s", have-total, idxShape(dims))
		}
	}
	if size >= 0 && gz && total+head > maxInflate*size+maxInflateSlack {
		return nil, fmt.Errorf("idx shape %s needs %d bytes, more than %d compressed bytes can inflate to", idxShape(dims), total, size)
	}
	// With the size known and checked, allocate once; otherwise grow as
	// bytes arrive.
	var data []byte
	if size >= 0 && !gz {
		data = make([]byte, 0, total)
	} else {
		data = make([]byte, 0, min(total, chunkBytes))
	}
	for int64(len(data)) < total {
		if len(data) == cap(data) {
			data = append(data, 0)[:len(data)]
		}
		k := min(total-int64(len(data)), int64(cap(data)-len(data)))
		got, err := io.ReadFull(r, data[len(data):len(data)+int(k)])
		data = data[:len(data)+got]
		if err != nil {
			if isEOF(err) {
				return nil, fmt.Errorf("truncated idx data: shape %s needs %d bytes, got %d", idxShape(dims), total, len(data))
			}
			return nil, fmt.Errorf("read %s: %v", what, err)
		}
	}
	// Read on to the end: it finds trailing bytes and makes gzip verify its
	// checksum.
	var one [1]byte
	k, err := io.ReadFull(r, one[:])
	if k > 0 {
		return nil, fmt.Errorf("trailing bytes after the idx data of shape %s", idxShape(dims))
	}
	switch {
	case err == nil || err == io.EOF:
	case err == io.ErrUnexpectedEOF: // from gzip: the stream ends early
		return nil, fmt.Errorf("truncated gzip stream after the idx data")
	default:
		return nil, fmt.Errorf("read %s: %v", what, err)
	}
	return &IDX{Dims: dims, Data: data}, nil
}

// idxShape writes dims as a Python tuple, like shapeString.
func idxShape(dims []int) string {
	s := make([]int64, len(dims))
	for i, d := range dims {
		s[i] = int64(d)
	}
	return shapeString(s)
}

// oneLine keeps an error from a library (gzip, image decoders) on one
// line: control characters become spaces and the text is cut short.
func oneLine(s string) string {
	const show = 200
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == '\u2028' || r == '\u2029' || r == 0x85 {
			return ' '
		}
		return r
	}, s)
	if len(s) > show {
		s = s[:show] + "..."
	}
	return s
}
