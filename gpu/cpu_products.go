package gpu

import "github.com/fmgpu/fmgpu/internal/sgemm"

// The CPU backend's Products: internal/sgemm's blocked products.

type productsState struct {
	batched gemmBatchTask
}

func (c *CPU) Gemm(transA, transB bool, m, n, k int, alpha float32, a Buffer, lda int, b Buffer, ldb int, beta float32, cb Buffer, ldc int) {
	checkGemm(transA, transB, m, n, k, a, lda, b, ldb, cb, ldc)
	if m == 0 || n == 0 {
		return
	}
	sgemm.Gemm(transA, transB, m, n, k, alpha, host(a), lda, host(b), ldb, beta, host(cb), ldc)
}

// gemmBatchTask runs products [lo, hi) of a GemmBatched call.
type gemmBatchTask struct {
	transA, transB            bool
	m, n, k                   int
	alpha, beta               float32
	a, b, c                   []float32
	lda, ldb, ldc             int
	strideA, strideB, strideC int
}

func (t *gemmBatchTask) run(lo, hi int) {
	for i := lo; i < hi; i++ {
		var a, b []float32 // not read when k = 0
		if t.k > 0 {
			a, b = t.a[i*t.strideA:], t.b[i*t.strideB:]
		}
		sgemm.Gemm(t.transA, t.transB, t.m, t.n, t.k, t.alpha, a, t.lda, b, t.ldb, t.beta, t.c[i*t.strideC:], t.ldc)
	}
}

func (c *CPU) GemmBatched(transA, transB bool, batch, m, n, k int, alpha float32, a Buffer, lda, strideA int, b Buffer, ldb, strideB int, beta float32, cb Buffer, ldc, strideC int) {
	checkGemmBatched(transA, transB, batch, m, n, k, a, lda, strideA, b, ldb, strideB, cb, ldc, strideC)
	if batch == 0 || m == 0 || n == 0 {
		return
	}
	t := &c.products.batched
	*t = gemmBatchTask{transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, beta: beta,
		a: host(a), b: host(b), c: host(cb), lda: lda, ldb: ldb, ldc: ldc, strideA: strideA, strideB: strideB, strideC: strideC}
	// Products sgemm keeps on one thread run side by side over the pool;
	// larger ones one after another, each split by sgemm.
	if m*n*k < 1<<20 {
		c.pool.do(t, batch, 2*m*n*max(k, 1))
		return
	}
	t.run(0, batch)
}
