package gpu

import "fmt"

// Products are the general matrix products.
type Products interface {
	// Gemm is C = alpha op(A) op(B) + beta C: op(A) is m x k (A is stored
	// k x m when transA), op(B) is k x n (stored n x k when transB), with
	// row strides lda, ldb, ldc (each at least max(1, the stored columns)).
	// beta = 0 means C is not read; k = 0 gives C = beta C.
	Gemm(transA, transB bool, m, n, k int, alpha float32, a Buffer, lda int, b Buffer, ldb int, beta float32, c Buffer, ldc int)

	// GemmBatched is Gemm for i < batch over A_i = a[i strideA:],
	// B_i = b[i strideB:], C_i = c[i strideC:] (attention's per-image
	// products). Strides are non-negative (0 shares one matrix) and the
	// C_i do not overlap one another.
	GemmBatched(transA, transB bool, batch, m, n, k int, alpha float32, a Buffer, lda, strideA int, b Buffer, ldb, strideB int, beta float32, c Buffer, ldc, strideC int)
}

// gemmLens checks a product's sizes and strides and returns the least
// lengths of A, B and C; a and b are 0 when the product reads neither
// (m, n or k = 0), c is 0 when C is empty.
func gemmLens(op string, transA, transB bool, m, n, k, lda, ldb, ldc int) (la, lb, lc int) {
	if m < 0 || n < 0 || k < 0 {
		panic(fmt.Sprintf("gpu: %s with m, n, k = %d, %d, %d", op, m, n, k))
	}
	ar, ac := StoredShape(transA, m, k)
	br, bc := StoredShape(transB, k, n)
	checkLd(op, "lda", lda, ac)
	checkLd(op, "ldb", ldb, bc)
	checkLd(op, "ldc", ldc, n)
	if m == 0 || n == 0 {
		return 0, 0, 0
	}
	lc = matrixLen(op, m, n, ldc)
	if k == 0 {
		return 0, 0, lc
	}
	return matrixLen(op, ar, ac, lda), matrixLen(op, br, bc, ldb), lc
}

func checkGemm(transA, transB bool, m, n, k int, a Buffer, lda int, b Buffer, ldb int, c Buffer, ldc int) {
	la, lb, lc := gemmLens("Gemm", transA, transB, m, n, k, lda, ldb, ldc)
	need("Gemm", "A", a, la)
	need("Gemm", "B", b, lb)
	need("Gemm", "C", c, lc)
}

func checkGemmBatched(transA, transB bool, batch, m, n, k int, a Buffer, lda, strideA int, b Buffer, ldb, strideB int, c Buffer, ldc, strideC int) {
	const op = "GemmBatched"
	if batch < 0 || strideA < 0 || strideB < 0 || strideC < 0 {
		panic(fmt.Sprintf("gpu: %s with batch %d, strides %d, %d, %d", op, batch, strideA, strideB, strideC))
	}
	la, lb, lc := gemmLens(op, transA, transB, m, n, k, lda, ldb, ldc)
	if batch > 1 && strideC < lc {
		panic(fmt.Sprintf("gpu: %s: C stride %d < %d overlaps the outputs", op, strideC, lc))
	}
	need(op, "A", a, batchedLen(op, batch, la, strideA))
	need(op, "B", b, batchedLen(op, batch, lb, strideB))
	need(op, "C", c, batchedLen(op, batch, lc, strideC))
}
