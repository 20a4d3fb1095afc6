package data

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"slices"
	"strings"
)

// Checksum is the SHA-256 of the data as fmgpu trains on it: N, D, every
// value of X as little-endian float32 bits and the labels, in hex. Two
// loads give the same checksum exactly when they give the same points in
// the same order with the same labels.
func Checksum(ds *Dataset) string {
	h := sha256.New()
	var buf [8]byte
	binary.LittleEndian.PutUint32(buf[:4], uint32(ds.N))
	binary.LittleEndian.PutUint32(buf[4:], uint32(ds.D))
	h.Write(buf[:])
	b := make([]byte, 0, 4096)
	flush := func() {
		h.Write(b)
		b = b[:0]
	}
	for _, v := range ds.X {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
		if len(b) == cap(b) {
			flush()
		}
	}
	flush()
	for _, l := range ds.Labels {
		b = binary.LittleEndian.AppendUint32(b, uint32(l))
		if len(b) == cap(b) {
			flush()
		}
	}
	flush()
	return hex.EncodeToString(h.Sum(nil))
}

// Warnings lists what makes ds a degenerate sample of a density, in one
// line each: a single row, or columns that hold one value (standardized
// to 0, a point mass whose log-density is unbounded). Image data, whose
// border pixels are often constant, are not checked for constant columns.
func Warnings(ds *Dataset) []string {
	var out []string
	if ds.N == 1 {
		out = append(out, fmt.Sprintf("%s has a single row: a model of it can only learn that point", displayName(ds.Name)))
		return out
	}
	if ds.Image != nil && len(ds.Image.Classes) > 0 && ds.Labels != nil {
		// --n-data keeps a folder's first files in path order, class by
		// class: a class past them gets no image at all
		seen := make([]bool, len(ds.Image.Classes))
		for _, l := range ds.Labels {
			if l >= 0 && int(l) < len(seen) {
				seen[l] = true
			}
		}
		var empty []string
		for k, ok := range seen {
			if !ok {
				empty = append(empty, ds.Image.Classes[k])
			}
		}
		if len(empty) > 0 {
			why := "the set's first images, in its files' order, up to --n-data; raise it"
			if IsImageDir(ds.Name) {
				why = "a folder's images are read in path order, class by class, up to --n-data"
			}
			out = append(out, fmt.Sprintf("%s: %d of %d classes have no image among the %d read (%s): %s",
				displayName(ds.Name), len(empty), len(seen), ds.N, strings.Join(empty, ", "), why))
		}
	}
	if ds.Image != nil || ds.N == 0 {
		return out
	}
	var constant []int
	first := ds.Row(0)
	for j := range ds.D {
		same := true
		for i := 1; i < ds.N && same; i++ {
			same = ds.X[i*ds.D+j] == first[j]
		}
		if same {
			constant = append(constant, j+1)
		}
	}
	out = append(out, coarseColumns(ds, constant)...)
	if rowNumbers(ds) {
		out = append(out, fmt.Sprintf("%s: column 1 holds the row numbers (%g, %g, %g, ...): a pandas index, which DataFrame.to_csv writes unless index=False? It is read as data: drop the column if it is only an index", displayName(ds.Name), ds.X[0], ds.X[ds.D], ds.X[2*ds.D]))
	}
	switch {
	case len(constant) == 1:
		out = append(out, fmt.Sprintf("%s: column %d is constant (%g): its density is a point mass, and log-likelihoods are dominated by it", displayName(ds.Name), constant[0], first[constant[0]-1]))
	case len(constant) > 1:
		out = append(out, fmt.Sprintf("%s: columns %v are constant: their density is a point mass, and log-likelihoods are dominated by them", displayName(ds.Name), constant))
	}
	return out
}

// coarseColumns warns of the columns whose values float32 cannot resolve
// at the scale of their spread: a large offset (timestamps, map
// coordinates, identifiers) leaves steps of a sizeable fraction of the
// standard deviation, a grid that the data as read, the samples and the
// likelihoods inherit. The columns listed in constant are skipped.
func coarseColumns(ds *Dataset, constant []int) []string {
	st := Fit(ds)
	var out []string
	for j := range ds.D {
		if slices.Contains(constant, j+1) {
			continue
		}
		var big float32
		for i := range ds.N {
			big = max(big, float32(math.Abs(float64(ds.X[i*ds.D+j]))))
		}
		step := float64(math.Nextafter32(big, float32(math.Inf(1))) - big)
		if step > 0.01*st.Std[j] {
			out = append(out, fmt.Sprintf("%s: column %d holds values up to %g with a standard deviation of %.3g: float32, in which fmgpu reads, trains and writes, keeps steps of %g there (%.0f%% of the deviation), so the data, a model's samples and their likelihoods are on that grid; subtract an offset (such as the column's mean) from the column",
				displayName(ds.Name), j+1, big, st.Std[j], step, 100*step/st.Std[j]))
		}
	}
	return out
}

// rowNumbers reports a first column that counts the rows from 0 or 1 (of
// 10 rows or more, beside other columns): an index written with the data.
func rowNumbers(ds *Dataset) bool {
	if ds.N < 10 || ds.D < 2 {
		return false
	}
	first := ds.X[0]
	if first != 0 && first != 1 {
		return false
	}
	for i := range ds.N {
		if ds.X[i*ds.D] != first+float32(i) {
			return false
		}
	}
	return true
}
