package sgemm

import (
	"math"
	"unsafe"
)

// Activation selects the elementwise function of an Epilogue.
type Activation int

const (
	ActNone Activation = 0 // identity
	ActSiLU Activation = 1 // silu(z) = z / (1 + exp(-z))
)

// Epilogue is applied to each finished tile of C while it is in cache:
// C = act(C + bias[col]); if Pre != nil, Pre (row stride LdPre) receives
// C + bias before the activation. A nil Bias adds nothing.
type Epilogue struct {
	Bias  []float32
	Act   Activation
	Pre   []float32
	LdPre int

	ntPre bool // set by GemmEpilogue: write Pre with non-temporal stores
}

// Flags of the epilogue kernels (asm/gen.go).
const (
	epiSiLU  = 1
	epiNTPre = 2
)

// ntPreBytes: a Pre matrix at least this large is written with
// non-temporal stores (when aligned), bypassing the caches: it is not read
// again before it would have been evicted anyway (an inference pass over
// many rows never reads it), and the stores then skip reading each line
// first.
const ntPreBytes = 16 << 20

// Gemm computes C = alpha*op(A)*op(B) + beta*C, all row-major; op(A) is m x k
// (A stored k x m when transA), op(B) is k x n (B stored n x k when transB);
// lda, ldb, ldc are row strides. beta == 0 means C is not read (NaNs in C
// ignored). It panics on inconsistent sizes, as BLAS implementations do.
func Gemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	GemmEpilogue(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, nil)
}

// GemmEpilogue is Gemm followed by the epilogue ep (nil: none), fused into
// the tile loop: each tile of C gets its bias and activation right after
// its last update.
func GemmEpilogue(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int, ep *Epilogue) {
	check(transA, transB, m, n, k, a, lda, b, ldb, c, ldc, ep)
	if m == 0 || n == 0 {
		return
	}
	if ep != nil && ep.Bias == nil && ep.Act == ActNone && ep.Pre == nil {
		ep = nil
	}
	kern := current.Load()
	if k == 0 || alpha == 0 {
		scaleC(m, n, beta, c, ldc)
		if ep != nil {
			epilogueBlock(kern, ep, c, ldc, 0, m, 0, n)
		}
		return
	}
	// Tiny products: a plain loop beats any setup.
	if m*n*k <= smallMNK {
		naive(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		if ep != nil {
			epilogueBlock(kern, ep, c, ldc, 0, m, 0, n)
		}
		return
	}
	j := getJob()
	defer putJob(j)
	// From here on use a copy in the job: the caller's Epilogue then does
	// not escape, so one built per call stays on its stack.
	var jep *Epilogue
	if ep != nil {
		j.ep = *ep
		jep = &j.ep
		jep.ntPre = false
		if ep.Pre != nil && 4*m*ep.LdPre >= ntPreBytes && kern.epi != nil &&
			uintptr(unsafe.Pointer(&ep.Pre[0]))%uintptr(4*kern.epiW) == 0 && ep.LdPre%kern.epiW == 0 {
			jep.ntPre = true
		}
	}
	if n < dotMaxN && !transA && kern.dot[n] != nil {
		// Tiny n with rows of A contiguous along k (an output layer): dot
		// products along k, B^T packed to n contiguous rows if needed.
		bt, ldbt := b, ldb
		if !transB {
			need := n * k
			if cap(j.tmp) < need {
				j.tmp = make([]float32, need)
			}
			bt, ldbt = j.tmp[:need], k
			for p := 0; p < k; p++ {
				for jj := 0; jj < n; jj++ {
					bt[jj*k+p] = b[p*ldb+jj]
				}
			}
		}
		j.run(&problem{kern: kern, dot: true, m: m, n: n, k: k,
			alpha: alpha, a: a, lda: lda, b: bt, ldb: ldbt, beta: beta, c: c, ldc: ldc, ep: jep})
		return
	}
	if n < swapN && m >= 2*n {
		// Tiny n (an output layer): compute C^T = op(B)^T op(A)^T into a
		// buffer, so the long dimension runs along the vector lanes.
		need := n * m
		if cap(j.tmp) < need {
			j.tmp = make([]float32, need)
		}
		t := j.tmp[:need]
		j.run(&problem{kern: kern, transA: !transB, transB: !transA, m: n, n: m, k: k,
			alpha: 1, a: b, lda: ldb, b: a, ldb: lda, beta: 0, c: t, ldc: m})
		for i := 0; i < m; i++ {
			cr := c[i*ldc : i*ldc+n]
			if beta == 0 {
				for jj := range cr {
					cr[jj] = alpha * t[jj*m+i]
				}
			} else {
				for jj := range cr {
					cr[jj] = alpha*t[jj*m+i] + beta*cr[jj]
				}
			}
		}
		if jep != nil {
			epilogueBlock(kern, jep, c, ldc, 0, m, 0, n)
		}
		return
	}
	j.run(&problem{kern: kern, transA: transA, transB: transB, m: m, n: n, k: k,
		alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc, ep: jep})
}

const (
	// smallMNK: products with m*n*k at most this run the naive loop.
	smallMNK = 4096
	// swapN: n below this (with m >= 2n) runs as the transposed product.
	swapN = 8
	// parallelMNK: products with m*n*k below this run on the calling
	// goroutine only (about 20 µs of work on one core).
	parallelMNK = 1 << 20
	// epiSiLUWork: the SiLU epilogue's cost per element in multiply-adds
	// of the product, for the parallel threshold (an input layer with
	// k = 3 is mostly epilogue).
	epiSiLUWork = 16
)

func check(transA, transB bool, m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int, ep *Epilogue) {
	if m < 0 || n < 0 || k < 0 {
		panic("sgemm: negative dimension")
	}
	ar, ac := m, k
	if transA {
		ar, ac = k, m
	}
	br, bc := k, n
	if transB {
		br, bc = n, k
	}
	if lda < max(1, ac) {
		panic("sgemm: bad lda")
	}
	if ldb < max(1, bc) {
		panic("sgemm: bad ldb")
	}
	if ldc < max(1, n) {
		panic("sgemm: bad ldc")
	}
	if ar > 0 && ac > 0 && len(a) < (ar-1)*lda+ac {
		panic("sgemm: short a")
	}
	if br > 0 && bc > 0 && len(b) < (br-1)*ldb+bc {
		panic("sgemm: short b")
	}
	if m > 0 && n > 0 && len(c) < (m-1)*ldc+n {
		panic("sgemm: short c")
	}
	if ep != nil && m > 0 && n > 0 {
		if ep.Bias != nil && len(ep.Bias) < n {
			panic("sgemm: short bias")
		}
		if ep.Pre != nil && (ep.LdPre < n || len(ep.Pre) < (m-1)*ep.LdPre+n) {
			panic("sgemm: bad Pre or LdPre")
		}
		if ep.Act != ActNone && ep.Act != ActSiLU {
			panic("sgemm: unknown activation")
		}
	}
}

func scaleC(m, n int, beta float32, c []float32, ldc int) {
	for i := 0; i < m; i++ {
		cr := c[i*ldc : i*ldc+n]
		if beta == 0 {
			clear(cr)
		} else if beta != 1 {
			for j := range cr {
				cr[j] *= beta
			}
		}
	}
}

// naive is the plain triple loop for tiny products.
func naive(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float32
			for p := 0; p < k; p++ {
				var av, bv float32
				if transA {
					av = a[p*lda+i]
				} else {
					av = a[i*lda+p]
				}
				if transB {
					bv = b[j*ldb+p]
				} else {
					bv = b[p*ldb+j]
				}
				s += av * bv
			}
			if beta == 0 {
				c[i*ldc+j] = alpha * s
			} else {
				c[i*ldc+j] = alpha*s + beta*c[i*ldc+j]
			}
		}
	}
}

var zeroBias [512]float32

// epilogueBlock applies ep to rows r0..r0+rows and columns c0..c0+n of C.
func epilogueBlock(kern *kernelImpl, ep *Epilogue, c []float32, ldc, r0, rows, c0, n int) {
	silu := ep.Act == ActSiLU
	done := 0
	if kern.epi != nil && n >= kern.epiW {
		flags := 0
		if silu {
			flags |= epiSiLU
		}
		if ep.Pre != nil && ep.ntPre && c0%kern.epiW == 0 {
			flags |= epiNTPre
		}
		done = n - n%kern.epiW
		for j := 0; j < done; j += len(zeroBias) {
			w := min(len(zeroBias), done-j)
			bp := &zeroBias[0]
			if ep.Bias != nil {
				bp = &ep.Bias[c0+j]
			}
			var pp *float32
			if ep.Pre != nil {
				pp = &ep.Pre[r0*ep.LdPre+c0+j]
			}
			kern.epi(rows, w, &c[r0*ldc+c0+j], 4*ldc, bp, pp, 4*ep.LdPre, flags)
		}
	}
	if done == n {
		return
	}
	for i := r0; i < r0+rows; i++ {
		for j := c0 + done; j < c0+n; j++ {
			z := c[i*ldc+j]
			if ep.Bias != nil {
				z += ep.Bias[j]
			}
			if ep.Pre != nil {
				ep.Pre[i*ep.LdPre+j] = z
			}
			if silu {
				z = float32(float64(z) / (1 + math.Exp(-float64(z))))
			}
			c[i*ldc+j] = z
		}
	}
}

// problem is one product handed to the blocked driver.
type problem struct {
	kern           *kernelImpl
	dot            bool // dot path: C = alpha*A*B^T + beta*C, B stored n x k
	transA, transB bool
	m, n, k        int
	alpha, beta    float32
	a              []float32
	lda            int
	b              []float32
	ldb            int
	c              []float32
	ldc            int
	ep             *Epilogue
}

// region computes rows [i0, i1) and columns [j0, j1) of C.
//
// Loop nest (BLIS order, adapted): jc over nc-wide blocks of B, pc over kc
// steps, then every MR-row panel of A (kept in L1 across the inner loop)
// against every NR-column panel of the kc x nc block of B (kept in L2).
// A is read in place: a row-major A by the row kernels, a transposed A by
// the column kernels (packed first in one case, see below). B is read in place when not
// transposed (panels of NR columns, stride ldb) unless many row panels
// reuse it; a transposed B, and the last partial panel, are packed into
// kc x NR panels.
func (pr *problem) region(buf *buffers, i0, i1, j0, j1 int) {
	K := pr.kern
	MR, NR := K.mr, K.nr
	for jc := j0; jc < j1; jc += K.nc {
		nb := min(K.nc, j1-jc)
		npan := (nb + NR - 1) / NR
		for pc := 0; pc < pr.k; pc += K.kc {
			kb := min(K.kc, pr.k-pc)
			beta := pr.beta
			if pc > 0 {
				beta = 1
			}
			last := pc+kb == pr.k
			// Prepare B panels.
			need := npan * kb * NR
			if cap(buf.b) < need {
				buf.b = make([]float32, need+need/4)
			}
			pb := buf.b[:need]
			full := nb / NR // panels with all NR columns
			// A non-transposed B is packed too when many row panels will
			// reuse it: its rows, ldb apart, fall into few L1 sets when ldb
			// is a multiple of 256 floats (measured 4096x512x512: 103 -> 110
			// GFLOP/s per core; with few panels the copy costs more).
			packed := pr.transB || i1-i0 >= packBPanels*MR
			if pr.transB {
				for q := 0; q < npan; q++ {
					packBT(pb[q*kb*NR:(q+1)*kb*NR], pr.b, pr.ldb, jc+q*NR, min(NR, nb-q*NR), pc, kb, NR)
				}
			} else if packed {
				for q := 0; q < npan; q++ {
					packBN(pb[q*kb*NR:(q+1)*kb*NR], pr.b, pr.ldb, jc+q*NR, min(NR, nb-q*NR), pc, kb, NR)
				}
			} else if full < npan {
				q := full
				packBN(pb[q*kb*NR:(q+1)*kb*NR], pr.b, pr.ldb, jc+q*NR, nb-q*NR, pc, kb, NR)
			}
			if cap(buf.tile) < MR*NR {
				buf.tile = make([]float32, MR*NR)
			}
			for ir := i0; ir < i1; ir += MR {
				mr := min(MR, i1-ir)
				var ap *float32
				var kern microKernel
				sa := 4 * pr.lda
				if pr.transA {
					ap = &pr.a[pc*pr.lda+ir]
					kern = K.colA[mr-1]
					if K.mr <= packAMaxMR && pr.lda%packAStride == 0 && npan >= 4 {
						// The panel's k-steps lie lda apart; at such strides
						// they share two L1 sets. Copying it (mr floats per
						// step) pays for the 6-row ymm kernels: the AVX2 dW
						// 512x512x4096 went from 53 to 84 GFLOP/s per core.
						// The 12-row zmm kernel lost 8% to the copy instead.
						need := kb * MR
						if cap(buf.a) < need {
							buf.a = make([]float32, need)
						}
						pa := buf.a[:need]
						for p := 0; p < kb; p++ {
							copy(pa[p*MR:p*MR+mr], pr.a[(pc+p)*pr.lda+ir:(pc+p)*pr.lda+ir+mr])
						}
						ap, sa = &pa[0], 4*MR
					}
				} else {
					ap = &pr.a[ir*pr.lda+pc]
					kern = K.rowA[mr-1]
				}
				for q := 0; q < npan; q++ {
					jr := jc + q*NR
					nr := min(NR, nb-q*NR)
					var bp *float32
					sb := 4 * NR
					if packed || q >= full {
						bp = &pb[q*kb*NR]
					} else {
						bp = &pr.b[pc*pr.ldb+jr]
						sb = 4 * pr.ldb
					}
					if nr == NR {
						kern(kb, ap, sa, bp, sb, &pr.c[ir*pr.ldc+jr], 4*pr.ldc, pr.alpha, beta)
					} else {
						t := buf.tile[:MR*NR]
						kern(kb, ap, sa, bp, sb, &t[0], 4*NR, pr.alpha, 0)
						for i := 0; i < mr; i++ {
							cr := pr.c[(ir+i)*pr.ldc+jr : (ir+i)*pr.ldc+jr+nr]
							tr := t[i*NR : i*NR+nr]
							if beta == 0 {
								copy(cr, tr)
							} else {
								for j := range cr {
									cr[j] = tr[j] + beta*cr[j]
								}
							}
						}
					}
				}
				if last && pr.ep != nil {
					// The mr x nb panel of C is finished and still in cache.
					epilogueBlock(K, pr.ep, pr.c, pr.ldc, ir, mr, jc, nb)
				}
			}
		}
	}
}

// dotRegion computes rows [i0, i1) of C on the dot path.
func (pr *problem) dotRegion(i0, i1 int) {
	K, n := pr.kern, pr.n
	R := K.dotRows[n]
	i := i0
	for ; i+R <= i1; i += R {
		K.dot[n](pr.k, &pr.a[i*pr.lda], 4*pr.lda, &pr.b[0], 4*pr.ldb, &pr.c[i*pr.ldc], 4*pr.ldc, pr.alpha, pr.beta)
	}
	for ; i < i1; i++ {
		K.dot1[n](pr.k, &pr.a[i*pr.lda], 4*pr.lda, &pr.b[0], 4*pr.ldb, &pr.c[i*pr.ldc], 4*pr.ldc, pr.alpha, pr.beta)
	}
	if pr.ep != nil {
		epilogueBlock(K, pr.ep, pr.c, pr.ldc, i0, i1-i0, 0, n)
	}
}

// packBT packs columns j0..j0+nr of op(B) = B^T (B stored n x k), rows
// p0..p0+kb, into dst as kb rows of NR floats, zero-padding columns nr..NR.
func packBT(dst, b []float32, ldb, j0, nr, p0, kb, NR int) {
	done := 0
	if nr == NR {
		done = packBTAsm(dst, NR, b, ldb, j0, p0, kb)
	}
	for jj := 0; jj < nr; jj++ {
		src := b[(j0+jj)*ldb+p0+done : (j0+jj)*ldb+p0+kb]
		for p, v := range src {
			dst[(done+p)*NR+jj] = v
		}
	}
	if nr < NR {
		for p := 0; p < kb; p++ {
			clear(dst[p*NR+nr : (p+1)*NR])
		}
	}
}

// packBN packs columns j0..j0+nr of a non-transposed B, rows p0..p0+kb,
// into dst as kb rows of NR floats, zero-padded.
func packBN(dst, b []float32, ldb, j0, nr, p0, kb, NR int) {
	for p := 0; p < kb; p++ {
		d := dst[p*NR : (p+1)*NR]
		copy(d, b[(p0+p)*ldb+j0:(p0+p)*ldb+j0+nr])
		clear(d[nr:])
	}
}

// packBPanels: regions of at least this many MR-row panels pack B even
// when it is not transposed.
var packBPanels = 32

var (
	// packAMaxMR, packAStride: a transposed A is packed for kernels with at
	// most packAMaxMR rows when lda is a multiple of packAStride floats.
	packAMaxMR  = 8
	packAStride = 512
)
