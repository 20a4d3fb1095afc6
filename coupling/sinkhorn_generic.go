//go:build !amd64 || noasm

package coupling

func expKernelRow(k []float64, c []float32, fi float64, g []float64, eps float64) {
	expKernelRowGo(k, c, fi, g, eps)
}

func matVec(out, k, x []float64, n int) { matVecGo(out, k, x, n) }

func matTVec(out, k, x []float64, n int) { matTVecGo(out, k, x, n) }
