package gpu

import (
	"fmt"
	"math"
)

// The helpers of the argument checks. Each op has one check, in its
// family's file, that every backend calls before anything else; these are
// its pieces. The principle: an operand must hold the elements the op reads
// or writes, and no more is asked of it (an operand the op does not touch,
// because a size is zero, may be short or nil). A failed check panics with
// a message naming the op.
//
// None of them allocates unless it panics: the checks run on every call of
// every op, and a training step's ops allocate nothing.

// lenOf is b's length; a nil Buffer holds nothing.
func lenOf(b Buffer) int {
	if b == nil {
		return 0
	}
	return b.Len()
}

// need panics unless b holds at least n elements.
func need(op, name string, b Buffer, n int) {
	if l := lenOf(b); l < n {
		panic(fmt.Sprintf("gpu: %s: %s has %d elements, need %d", op, name, l, n))
	}
}

// mul is a b for sizes, panicking on a negative factor or an overflow.
func mul(op string, a, b int) int {
	if a < 0 || b < 0 {
		panic(fmt.Sprintf("gpu: %s: negative size (%d, %d)", op, a, b))
	}
	if a != 0 && b > math.MaxInt/a {
		panic(fmt.Sprintf("gpu: %s: size %d x %d overflows", op, a, b))
	}
	return a * b
}

// count2 .. count4 are element counts: the product of non-negative sizes.
func count2(op string, a, b int) int       { return mul(op, a, b) }
func count3(op string, a, b, c int) int    { return mul(op, mul(op, a, b), c) }
func count4(op string, a, b, c, d int) int { return mul(op, mul(op, mul(op, a, b), c), d) }

// matrixLen is the least length of a rows x cols matrix with row stride
// ld (0 for an empty matrix).
func matrixLen(op string, rows, cols, ld int) int {
	if rows == 0 || cols == 0 {
		return 0
	}
	return mul(op, rows-1, ld) + cols
}

// batchedLen is the least length of batch matrices of matrixLen l, one
// every stride elements.
func batchedLen(op string, batch, l, stride int) int {
	if batch == 0 || l == 0 {
		return 0
	}
	return mul(op, batch-1, stride) + l
}

// checkLd panics unless the row stride ld of a matrix of cols columns is
// at least max(1, cols).
func checkLd(op, name string, ld, cols int) {
	if ld < max(1, cols) {
		panic(fmt.Sprintf("gpu: %s: %s = %d < max(1, %d)", op, name, ld, cols))
	}
}

// StoredShape is how an operand op(X) of rows x cols lies in memory: X is
// rows x cols, or cols x rows when trans (the product reads X^T). The row
// stride of X counts storedCols at least.
func StoredShape(trans bool, rows, cols int) (storedRows, storedCols int) {
	if trans {
		return cols, rows
	}
	return rows, cols
}

// checkAct panics on an activation no backend knows.
func checkAct(op string, act Act) {
	if act != ActNone && act != ActSiLU {
		panic(fmt.Sprintf("gpu: %s: unknown activation %d", op, act))
	}
}
