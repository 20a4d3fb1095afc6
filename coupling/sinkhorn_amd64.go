//go:build !noasm

package coupling

// Sinkhorn's products in AVX-512 where the CPU has it (assignAVX512), over
// the whole blocks of 32 columns, the rest in Go; the results are
// matVecGo's and matTVecGo's bit for bit.

func matVec(out, k, x []float64, n int) {
	n32 := n &^ 31
	if !assignAVX512 || n32 == 0 {
		matVecGo(out, k, x, n)
		return
	}
	_, _, _ = out[n-1], k[n*n-1], x[n-1]
	matVecAVX512(&out[0], &k[0], &x[0], n, n32)
	matVecTail(out, k, x, n, n32)
}

func matTVec(out, k, x []float64, n int) {
	n32 := n &^ 31
	if !assignAVX512 || n32 == 0 {
		matTVecGo(out, k, x, n)
		return
	}
	_, _, _ = out[n-1], k[n*n-1], x[n-1]
	matTVecAVX512(&out[0], &k[0], &x[0], n, n32)
	matTVecColumns(out, k, x, n, n32)
}
