//go:build !amd64 || noasm

package coupling

func widenCosts(dst []float64, src []float32) bool { return widenCostsGo(dst, src) }

func subtractRowMin(row []float64) { subtractRowMinGo(row) }

func columnMin(row, v []float64, best []int32, i int32) { columnMinGo(row, v, best, i) }

func rowTop2(row, v []float64) (float64, int, float64, int) { return rowTop2Go(row, v) }

func relaxMin(d, vs, r []float64, pred, colRow []int32, h float64, i int32) (float64, int) {
	return relaxMinGo(d, vs, r, pred, colRow, h, i)
}
