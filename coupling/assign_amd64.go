//go:build !noasm

package coupling

import "golang.org/x/sys/cpu"

// The assignment's passes in AVX-512 where the CPU has it, over the
// columns up to the last multiple of 8 (16 for the costs' conversion), the
// rest in Go. The results are the plain-Go references' bit for bit: each
// lane computes the same float64 expressions, and where lanes are merged
// the first column wins ties, as in the scalar passes.
var assignAVX512 = cpu.X86.HasAVX512F && cpu.X86.HasAVX512VL

// avx512DQ adds AVX-512DQ, which the costs' classification (VFPCLASSPS)
// and the kernel rows' conversions (VCVTTPD2QQ) need.
var avx512DQ = assignAVX512 && cpu.X86.HasAVX512DQ

func widenCosts(dst []float64, src []float32) bool {
	n := len(src)
	n16 := n &^ 15
	if !avx512DQ || n16 == 0 {
		return widenCostsGo(dst, src)
	}
	_ = dst[n-1]
	finite := widenCostsAVX512(&dst[0], &src[0], n16)
	return widenCostsGo(dst[n16:n], src[n16:]) && finite
}

func subtractRowMin(row []float64) {
	n := len(row)
	if !assignAVX512 || n == 0 || n%8 != 0 {
		subtractRowMinGo(row)
		return
	}
	rowMinSubAVX512(&row[0], n)
}

func columnMin(row, v []float64, best []int32, i int32) {
	n := len(row)
	n8 := n &^ 7
	if !assignAVX512 || n8 == 0 {
		columnMinGo(row, v, best, i)
		return
	}
	_, _ = v[n-1], best[n-1]
	columnMinAVX512(&row[0], &v[0], &best[0], n8, i)
	columnMinGo(row[n8:], v[n8:], best[n8:], i)
}

func rowTop2(row, v []float64) (u1 float64, j1 int, u2 float64, j2 int) {
	n := len(row)
	n8 := n &^ 7
	if !assignAVX512 || n8 == 0 {
		return rowTop2Go(row, v)
	}
	_ = v[n-1]
	var lu [16]float64
	var lj [16]int32
	rowTop2AVX512(&row[0], &v[0], n8, &lu, &lj)
	// The two smallest of the lanes' candidates (and the tail's) in the
	// order (value, column), which is the scalar pass's.
	u1, u2, j1, j2 = lu[0], lu[8], int(lj[0]), int(lj[8])
	take := func(u float64, j int) {
		if j < 0 {
			return
		}
		switch {
		case u < u1 || (u == u1 && j < j1):
			u2, j2 = u1, j1
			u1, j1 = u, j
		case u < u2 || (u == u2 && j < j2):
			u2, j2 = u, j
		}
	}
	for l := 1; l < 8; l++ {
		take(lu[l], int(lj[l]))
		take(lu[8+l], int(lj[8+l]))
	}
	if n8 < n {
		t1, k1, t2, k2 := rowTop2Go(row[n8:], v[n8:])
		take(t1, n8+k1)
		if k2 >= 0 {
			take(t2, n8+k2)
		}
	}
	return u1, j1, u2, j2
}

func relaxMin(d, vs, r []float64, pred, colRow []int32, h float64, i int32) (float64, int) {
	n := len(d)
	n8 := n &^ 15
	if !assignAVX512 || n8 == 0 {
		return relaxMinGo(d, vs, r, pred, colRow, h, i)
	}
	_, _, _, _ = vs[n-1], r[n-1], pred[n-1], colRow[n-1]
	best, jb, bestFree, jf := relaxMinAVX512(&d[0], &vs[0], &r[0], &pred[0], &colRow[0], n8, h, i)
	if n8 < n {
		b, j, bf, k := relaxMinGo4(d[n8:], vs[n8:], r[n8:n], pred[n8:], colRow[n8:n], h, i)
		if b < best {
			best, jb = b, n8+j
		}
		if k >= 0 && bf < bestFree {
			bestFree, jf = bf, n8+k
		}
	}
	return pickFree(best, jb, bestFree, jf)
}
