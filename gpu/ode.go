package gpu

import "fmt"

// ODE are the batched updates of the ODE solvers (sampler): the Euler step,
// the Runge-Kutta and Dopri5 stage combinations, Dopri5's error norm, and
// the divergence of the likelihood ODE.
type ODE interface {
	// Axpy is y += alpha x (the Euler step x <- x + h v) over x.Len()
	// elements.
	Axpy(alpha float32, x, y Buffer)
	// LinComb is dst = x + h sum_i coef[i] ks[i] over n = x.Len() elements
	// and len(ks) <= MaxStages stage buffers (the RK and Dopri5 stage
	// updates); dst may alias x. A zero coefficient skips its buffer.
	LinComb(dst, x Buffer, h float32, coef []float32, ks []Buffer)
	// ErrorNorm writes into out[0] sum_i (e_i / (atol + rtol max(|x_i|,
	// |xNew_i|)))^2 with e = h sum_j coef[j] ks[j]: Dopri5's error estimate
	// before the root mean square.
	ErrorNorm(x, xNew Buffer, h float32, coef []float32, ks []Buffer, rtol, atol float32, out Buffer)
	// RowDot is out[r] = beta out[r] + alpha sum_c a[r, c] b[r, c] for rows x
	// cols a and b (the divergence accumulation of the likelihood ODE);
	// beta = 0 means out is not read.
	RowDot(rows, cols int, alpha float32, a, b Buffer, beta float32, out Buffer)
	// UnitColumn sets e (rows x cols) to zero with ones in column j,
	// 0 <= j < cols (the probes of the exact divergence).
	UnitColumn(rows, cols, j int, e Buffer)
}

// MaxStages is the most stage buffers LinComb and ErrorNorm take (Dopri5
// has seven).
const MaxStages = 7

// checkAxpy returns x.Len().
func checkAxpy(x, y Buffer) int {
	n := lenOf(x)
	need("Axpy", "y", y, n)
	return n
}

// checkStages checks the stage buffers of LinComb and ErrorNorm: those with
// a non-zero coefficient hold n elements.
func checkStages(op string, coef []float32, ks []Buffer, n int) {
	if len(ks) > MaxStages || len(coef) != len(ks) {
		panic(fmt.Sprintf("gpu: %s: %d stage buffers with %d coefficients (at most %d)", op, len(ks), len(coef), MaxStages))
	}
	for i, k := range ks {
		if coef[i] != 0 {
			need(op, "stage buffer", k, n)
		}
	}
}

// checkLinComb returns x.Len().
func checkLinComb(dst, x Buffer, coef []float32, ks []Buffer) int {
	n := lenOf(x)
	need("LinComb", "dst", dst, n)
	checkStages("LinComb", coef, ks, n)
	return n
}

// checkErrorNorm returns x.Len().
func checkErrorNorm(x, xNew Buffer, coef []float32, ks []Buffer, out Buffer) int {
	n := lenOf(x)
	need("ErrorNorm", "xNew", xNew, n)
	need("ErrorNorm", "out", out, 1)
	checkStages("ErrorNorm", coef, ks, n)
	return n
}

// checkRowDot returns rows x cols.
func checkRowDot(rows, cols int, a, b, out Buffer) int {
	n := count2("RowDot", rows, cols)
	need("RowDot", "a", a, n)
	need("RowDot", "b", b, n)
	need("RowDot", "out", out, rows)
	return n
}

// checkUnitColumn returns rows x cols.
func checkUnitColumn(rows, cols, j int, e Buffer) int {
	n := count2("UnitColumn", rows, cols)
	if rows > 0 && (j < 0 || j >= cols) {
		panic(fmt.Sprintf("gpu: UnitColumn: column %d of %d", j, cols))
	}
	need("UnitColumn", "e", e, n)
	return n
}
