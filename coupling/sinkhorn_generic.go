//go:build !amd64 || noasm

package coupling

func matVec(out, k, x []float64, n int) { matVecGo(out, k, x, n) }

func matTVec(out, k, x []float64, n int) { matTVecGo(out, k, x, n) }
