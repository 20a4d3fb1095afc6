//go:build !noasm

package coupling

// Sinkhorn's kernel rows and products in AVX-512 where the CPU has it
// (assignAVX512; the kernel rows need avx512DQ), over the whole blocks of
// 8 columns (kernel rows) or 32 (products), the rest in Go; the results
// are expKernelRowGo's, matVecGo's and matTVecGo's bit for bit.

func expKernelRow(k []float64, c []float32, fi float64, g []float64, eps float64) {
	n := len(k)
	n8 := n &^ 7
	if !avx512DQ || n8 == 0 {
		expKernelRowGo(k, c, fi, g, eps)
		return
	}
	_, _ = c[n-1], g[n-1]
	expKernelRowAVX512(&k[0], &c[0], &g[0], n8, fi, eps)
	expKernelRowGo(k[n8:], c[n8:], fi, g[n8:], eps)
}

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
