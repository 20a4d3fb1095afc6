// Command asm generates the amd64 assembly of package sgemm with avo: the
// micro-kernels (AVX-512 zmm 12x32, AVX-512VL ymm 6x32, AVX2 6x16, for
// every row count and both A layouts), the dot kernels for tiny n, the
// transposing B packer, the fused bias/SiLU epilogue, and the FMA loops
// that measure the clock and the FMA throughput.
//
// Run it through go generate in internal/sgemm (see gen.go there).
package main

import (
	"fmt"
	"math"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// Register-tile geometry. These must agree with the constants in
// internal/sgemm/dispatch_amd64.go and, for the ymm kernels,
// kernels_ymm_amd64_test.go (TestKernelGeometry checks them).
const (
	mr512  = 12 // rows of C per AVX-512 micro-tile (12 x 2 zmm accumulators)
	nr512  = 32 // columns of C per AVX-512 micro-tile (two zmm)
	mr512y = 6  // rows of C per AVX-512VL ymm micro-tile (6 x 4 ymm accumulators)
	nr512y = 32 // columns of C per AVX-512VL ymm micro-tile (four ymm)
	mr256  = 6  // rows of C per AVX2 micro-tile (6 x 2 ymm accumulators)
	nr256  = 16 // columns of C per AVX2 micro-tile (two ymm)
	unroll = 4  // k-loop unrolling
)

// dotMaxN: the dot kernels cover n = 1 .. dotMaxN-1 columns of C.
const dotMaxN = 8

// dotRows is the number of rows of C per dot-kernel call for n columns,
// so that the n*rows accumulators, n B vectors and one A vector fit in 16
// registers (the AVX2 bound; AVX-512 uses the same shapes).
func dotRows(n int) int {
	switch {
	case n <= 2:
		return 4
	case n == 3:
		return 3
	case n == 4:
		return 2
	}
	return 1
}

const kernSig = "func(kc int, a *float32, sa int, b *float32, sb int, c *float32, ldc int, alpha float32, beta float32)"

func main() {
	ConstraintExpr("!noasm")
	for mr := 1; mr <= mr512; mr++ {
		kernel(true, false, false, mr)
		kernel(true, false, true, mr)
	}
	for mr := 1; mr <= mr512y; mr++ {
		kernel(true, true, false, mr)
		kernel(true, true, true, mr)
	}
	for mr := 1; mr <= mr256; mr++ {
		kernel(false, false, false, mr)
		kernel(false, false, true, mr)
	}
	epiConstTable()
	epilogue(true)
	epilogue(false)
	siluGrad(true)
	siluGrad(false)
	colSum(true)
	colSum(false)
	adam(true)
	adam(false)
	sumSquares(true)
	sumSquares(false)
	packBT8()
	maskTable()
	for n := 1; n < dotMaxN; n++ {
		for _, avx512 := range []bool{true, false} {
			dot(avx512, n, 1)
			if r := dotRows(n); r > 1 {
				dot(avx512, n, r)
			}
		}
	}
	fmaLatency()
	fmaThroughput(true)
	fmaThroughput(false)
	addChain()
	loadProbes()
	convKernels()
	winogradKernels()
	normKernels()
	Generate()
}

// kernel emits one micro-kernel computing an mr x NR tile of
//
//	C = alpha * A*B + beta*C     (C is not read when beta == 0)
//
// over kc steps. B(p, j) is at b + p*sb + 4j (sb in bytes). For the "C"
// (column-panel) variant A(i, p) is at a + 4i + p*sa, which covers a packed
// panel (sa = 4*MR) and a transposed A read in place (sa = 4*lda). For the
// "R" (row) variant A(i, p) is at a + i*sa + 4p: a row-major A read in
// place. C(i, j) is at c + i*ldc + 4j, ldc in bytes.
//
// avx512 selects EVEX code (32 registers, A broadcast by the FMA); with
// ymm it runs on 256-bit registers Y0-Y31 (AVX-512VL), to compare zmm and
// ymm at the same register budget.
func kernel(avx512, ymm, rowA bool, mr int) {
	var isa string
	var nvec, width int
	switch {
	case avx512 && ymm:
		isa, nvec, width = "512y", nr512y/8, 32
	case avx512:
		isa, nvec, width = "512", nr512/16, 64
	default:
		isa, nvec, width = "256", nr256/8, 32
	}
	variant := "C"
	if rowA {
		variant = "R"
	}
	name := fmt.Sprintf("kern%s%s%d", isa, variant, mr)
	TEXT(name, NOSPLIT, kernSig)
	Doc(fmt.Sprintf("%s computes a %d x %d tile of C = alpha*A*B + beta*C (%s A layout, see gen.go).", name, mr, nvec*width/4, variant))

	vec := func(i int) VecPhysical {
		if avx512 && ymm {
			return []VecPhysical{Y0, Y1, Y2, Y3, Y4, Y5, Y6, Y7, Y8, Y9, Y10, Y11, Y12, Y13, Y14, Y15,
				Y16, Y17, Y18, Y19, Y20, Y21, Y22, Y23, Y24, Y25, Y26, Y27, Y28, Y29, Y30, Y31}[i]
		}
		if avx512 {
			return []VecPhysical{Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z7, Z8, Z9, Z10, Z11, Z12, Z13, Z14, Z15,
				Z16, Z17, Z18, Z19, Z20, Z21, Z22, Z23, Z24, Z25, Z26, Z27, Z28, Z29, Z30, Z31}[i]
		}
		return []VecPhysical{Y0, Y1, Y2, Y3, Y4, Y5, Y6, Y7, Y8, Y9, Y10, Y11, Y12, Y13, Y14, Y15}[i]
	}
	// Accumulators acc[i][v] = vec(i*nvec+v); B vectors and the broadcast
	// register take the top registers.
	acc := make([][]VecPhysical, mr)
	for i := range acc {
		acc[i] = make([]VecPhysical, nvec)
		for v := range acc[i] {
			acc[i][v] = vec(i*nvec + v)
		}
	}
	var top int
	if avx512 {
		top = 31
	} else {
		top = 15
	}
	bv := make([]VecPhysical, nvec)
	for v := range bv {
		bv[v] = vec(top - v)
	}
	bc := vec(top - nvec) // broadcast register of the ymm kernels

	kc := GP64()
	Load(Param("kc"), kc)
	a := GP64()
	Load(Param("a"), a)
	sa := GP64()
	Load(Param("sa"), sa)
	b := GP64()
	Load(Param("b"), b)
	sb := GP64()
	Load(Param("sb"), sb)

	for i := range acc {
		for _, r := range acc[i] {
			if avx512 {
				VPXORD(r, r, r)
			} else {
				VXORPS(r, r, r)
			}
		}
	}

	// Prefetch the C tile so that the stores at the end do not wait for
	// memory (C is usually cold: written once per kc block).
	{
		pc := GP64()
		Load(Param("c"), pc)
		pldc := GP64()
		Load(Param("ldc"), pldc)
		for i := 0; i < mr; i++ {
			PREFETCHT0(Mem{Base: pc})
			PREFETCHT0(Mem{Base: pc}.Offset(nvec*width - 4))
			if i+1 < mr {
				ADDQ(pldc, pc)
			}
		}
	}

	sb3 := GP64()
	LEAQ(Mem{Base: sb, Index: sb, Scale: 2}, sb3)
	sa3 := GP64()
	LEAQ(Mem{Base: sa, Index: sa, Scale: 2}, sa3)

	// Row bases for the R variant: rows 4q..4q+3 are at base[q] + {0, sa, 2sa, 3sa}.
	var bases []GPVirtual
	if rowA {
		nb := (mr + 3) / 4
		bases = make([]GPVirtual, nb)
		bases[0] = a
		for q := 1; q < nb; q++ {
			bases[q] = GP64()
			LEAQ(Mem{Base: bases[q-1], Index: sa, Scale: 4}, bases[q])
		}
	}
	// stepOff returns base+index for unrolled step u relative to ptr with stride s, s3.
	stepMem := func(ptr, s, s3 GPVirtual, u int) Mem {
		switch u {
		case 0:
			return Mem{Base: ptr}
		case 1:
			return Mem{Base: ptr, Index: s, Scale: 1}
		case 2:
			return Mem{Base: ptr, Index: s, Scale: 2}
		default:
			return Mem{Base: ptr, Index: s3, Scale: 1}
		}
	}
	aMem := func(i, u int) Mem {
		if rowA {
			m := stepMem(bases[i/4], sa, sa3, i%4)
			return m.Offset(4 * u)
		}
		return stepMem(a, sa, sa3, u).Offset(4 * i)
	}
	// Software prefetch of A, pfDist bytes (row variant) or pfSteps
	// k-steps (column variant) ahead: A is read in place and often cold.
	var pa GPVirtual
	if !rowA {
		pa = GP64()
		LEAQ(Mem{Base: a, Index: sa, Scale: 8}, pa)
	}
	// Row variant: prefetch the rows of the next MR-row panel (the driver
	// walks panels downwards) at the current k position; the first call
	// on a panel thus loads the next one while computing.
	var nbases []GPVirtual
	if rowA {
		nbases = make([]GPVirtual, len(bases))
		for q := range nbases {
			nbases[q] = GP64()
			if q == 0 {
				// bases[0] + 12*sa: the next panel for AVX-512 (MR = 12),
				// the one after it for AVX2 (MR = 6).
				LEAQ(Mem{Base: a, Index: sa, Scale: 8}, nbases[0])
				LEAQ(Mem{Base: nbases[0], Index: sa, Scale: 4}, nbases[0])
			} else {
				LEAQ(Mem{Base: nbases[q-1], Index: sa, Scale: 4}, nbases[q])
			}
		}
	}
	prefetchA := func(g, u int) {
		if rowA {
			// One line per row every 16 steps: rows 3g..3g+2 in group g.
			if u != 0 {
				return
			}
			for i := 3 * g; i < 3*g+3 && i < mr; i++ {
				m := stepMem(nbases[i/4], sa, sa3, i%4)
				PREFETCHT0(m)
			}
			return
		}
		m := stepMem(pa, sa, sa3, u)
		PREFETCHT0(m)
		if mr > 1 && avx512 {
			// The AVX2 kernel has no load slots to spare: it prefetches
			// only the first line of A (and of B) per step.
			PREFETCHT0(m.Offset(4*mr - 4))
		}
	}
	// B rows are prefetched pfStepsB k-steps ahead: a B block read in
	// place comes from memory on its first pass.
	pb := GP64()
	LEAQ(Mem{Base: b, Index: sb, Scale: 8}, pb)
	LEAQ(Mem{Base: pb, Index: sb, Scale: 8}, pb)
	prefetchB := func(u int) {
		m := stepMem(pb, sb, sb3, u)
		PREFETCHT0(m)
		if avx512 {
			PREFETCHT0(m.Offset(nvec*width - 4))
		}
	}
	step := func(u int) {
		bm := stepMem(b, sb, sb3, u)
		for v := range bv {
			VMOVUPS(bm.Offset(v*width), bv[v])
		}
		for i := 0; i < mr; i++ {
			// One broadcast per A value, then register FMAs. (Broadcasting
			// inside each FMA, as this kernel did for Zen 4, costs a load per
			// FMA: 26 loads a step for 24 FMAs, and Zen 5 runs two loads
			// and two zmm FMAs a cycle, so that step was load-bound;
			// TestClock measures both rates.)
			{
				VBROADCASTSS(aMem(i, u), bc)
				for v := range bv {
					VFMADD231PS(bv[v], bc, acc[i][v])
				}
			}
		}
	}
	advance := func(n int) {
		switch n {
		case 1:
			ADDQ(sb, b)
			ADDQ(sb, pb)
		case unroll:
			LEAQ(Mem{Base: b, Index: sb, Scale: 4}, b)
			LEAQ(Mem{Base: pb, Index: sb, Scale: 4}, pb)
		}
		if rowA {
			for _, r := range bases {
				ADDQ(U32(4*n), r)
			}
			for _, r := range nbases {
				ADDQ(U32(4*n), r)
			}
		} else {
			switch n {
			case 1:
				ADDQ(sa, a)
				ADDQ(sa, pa)
			case unroll:
				LEAQ(Mem{Base: a, Index: sa, Scale: 4}, a)
				LEAQ(Mem{Base: pa, Index: sa, Scale: 4}, pa)
			}
		}
	}

	Label(name + "_loop16")
	CMPQ(kc, U32(4*unroll))
	JL(LabelRef(name + "_loop"))
	for g := 0; g < 4; g++ {
		for u := 0; u < unroll; u++ {
			prefetchA(g, u)
			prefetchB(u)
			step(u)
		}
		advance(unroll)
	}
	SUBQ(U32(4*unroll), kc)
	JMP(LabelRef(name + "_loop16"))

	Label(name + "_loop")
	CMPQ(kc, U32(unroll))
	JL(LabelRef(name + "_tail"))
	for u := 0; u < unroll; u++ {
		step(u)
	}
	advance(unroll)
	SUBQ(U32(unroll), kc)
	JMP(LabelRef(name + "_loop"))

	Label(name + "_tail")
	TESTQ(kc, kc)
	JE(LabelRef(name + "_store"))
	step(0)
	advance(1)
	DECQ(kc)
	JMP(LabelRef(name + "_tail"))

	Label(name + "_store")
	c := GP64()
	Load(Param("c"), c)
	ldc := GP64()
	Load(Param("ldc"), ldc)
	alpha := bv[0]
	beta := bv[len(bv)-1]
	if !avx512 {
		beta = bc
	}
	VBROADCASTSS(NewParamAddr("alpha", 56), alpha)
	for i := range acc {
		for _, r := range acc[i] {
			VMULPS(alpha, r, r)
		}
	}
	bbits := GP32()
	MOVL(NewParamAddr("beta", 60), bbits)
	ANDL(U32(0x7fffffff), bbits)
	JE(LabelRef(name + "_beta0"))
	VBROADCASTSS(NewParamAddr("beta", 60), beta)
	for i := range acc {
		cm := Mem{Base: c}
		for v, r := range acc[i] {
			VFMADD231PS(cm.Offset(v*width), beta, r)
			VMOVUPS(r, cm.Offset(v*width))
		}
		if i+1 < len(acc) {
			ADDQ(ldc, c)
		}
	}
	VZEROUPPER()
	RET()

	Label(name + "_beta0")
	for i := range acc {
		cm := Mem{Base: c}
		for v, r := range acc[i] {
			VMOVUPS(r, cm.Offset(v*width))
		}
		if i+1 < len(acc) {
			ADDQ(ldc, c)
		}
	}
	VZEROUPPER()
	RET()
}

// packBT8 emits packBT8(dst, dstStride, src, ldb, groups, kblocks):
// transposes groups x 8 rows of src (row stride ldb bytes) times
// kblocks x 8 columns into dst, where dst row p (stride dstStride bytes)
// receives column p of the 8*groups rows. 8x8 blocks go through the usual
// unpack / shuffle / 128-bit permute sequence on ymm registers (AVX).
func packBT8() {
	TEXT("packBT8", NOSPLIT, "func(dst *float32, dstStride int, src *float32, ldb int, groups int, kblocks int)")
	Doc("packBT8 packs a transposed panel: dst[p][j] = src[j][p] for j < 8*groups, p < 8*kblocks (strides in bytes).")
	dst, ds, src, ldb, groups, kblocks := GP64(), GP64(), GP64(), GP64(), GP64(), GP64()
	Load(Param("dst"), dst)
	Load(Param("dstStride"), ds)
	Load(Param("src"), src)
	Load(Param("ldb"), ldb)
	Load(Param("groups"), groups)
	Load(Param("kblocks"), kblocks)
	ldb3, ds3 := GP64(), GP64()
	LEAQ(Mem{Base: ldb, Index: ldb, Scale: 2}, ldb3)
	LEAQ(Mem{Base: ds, Index: ds, Scale: 2}, ds3)
	r := []VecPhysical{Y0, Y1, Y2, Y3, Y4, Y5, Y6, Y7}
	t := []VecPhysical{Y8, Y9, Y10, Y11, Y12, Y13, Y14, Y15}
	row := func(base GPVirtual, i int) Mem {
		switch i {
		case 0:
			return Mem{Base: base}
		case 1:
			return Mem{Base: base, Index: ldb, Scale: 1}
		case 2:
			return Mem{Base: base, Index: ldb, Scale: 2}
		}
		return Mem{Base: base, Index: ldb3, Scale: 1}
	}
	drow := func(base GPVirtual, i int) Mem {
		switch i {
		case 0:
			return Mem{Base: base}
		case 1:
			return Mem{Base: base, Index: ds, Scale: 1}
		case 2:
			return Mem{Base: base, Index: ds, Scale: 2}
		}
		return Mem{Base: base, Index: ds3, Scale: 1}
	}
	g := GP64()
	Label("packBT8_group")
	TESTQ(groups, groups)
	JE(LabelRef("packBT8_done"))
	s0, s4, d0, d4 := GP64(), GP64(), GP64(), GP64()
	MOVQ(src, s0)
	LEAQ(Mem{Base: src, Index: ldb, Scale: 4}, s4)
	MOVQ(dst, d0)
	LEAQ(Mem{Base: dst, Index: ds, Scale: 4}, d4)
	MOVQ(kblocks, g)
	Label("packBT8_k")
	TESTQ(g, g)
	JE(LabelRef("packBT8_next"))
	for i := 0; i < 4; i++ {
		VMOVUPS(row(s0, i), r[i])
		VMOVUPS(row(s4, i), r[4+i])
	}
	for i := 0; i < 8; i += 2 {
		VUNPCKLPS(r[i+1], r[i], t[i])
		VUNPCKHPS(r[i+1], r[i], t[i+1])
	}
	// t0=(a0 b0 a1 b1|a4 b4 a5 b5) t1=(a2 b2 a3 b3|..) t2,t3 for c,d; t4..t7 for e..h
	for h := 0; h < 2; h++ {
		VSHUFPS(U8(0x44), t[4*h+2], t[4*h], r[4*h])   // (a0 b0 c0 d0|a4 ..)
		VSHUFPS(U8(0xEE), t[4*h+2], t[4*h], r[4*h+1]) // (a1 b1 c1 d1|a5 ..)
		VSHUFPS(U8(0x44), t[4*h+3], t[4*h+1], r[4*h+2])
		VSHUFPS(U8(0xEE), t[4*h+3], t[4*h+1], r[4*h+3])
	}
	for k := 0; k < 4; k++ {
		VPERM2F128(U8(0x20), r[4+k], r[k], t[k])
		VPERM2F128(U8(0x31), r[4+k], r[k], t[4+k])
	}
	for k := 0; k < 4; k++ {
		VMOVUPS(t[k], drow(d0, k))
		VMOVUPS(t[4+k], drow(d4, k))
	}
	ADDQ(U32(32), s0)
	ADDQ(U32(32), s4)
	LEAQ(Mem{Base: d0, Index: ds, Scale: 8}, d0)
	LEAQ(Mem{Base: d4, Index: ds, Scale: 8}, d4)
	DECQ(g)
	JMP(LabelRef("packBT8_k"))
	Label("packBT8_next")
	LEAQ(Mem{Base: src, Index: ldb, Scale: 8}, src)
	ADDQ(U32(32), dst)
	DECQ(groups)
	JMP(LabelRef("packBT8_group"))
	Label("packBT8_done")
	VZEROUPPER()
	RET()
}

var masks, masks16 Mem

// maskTable emits 8 words of -1 followed by 8 zeros: loading 8 words at
// masks + 4*(8-r) gives a VMASKMOVPS mask for the first r lanes.
func maskTable() {
	masks = GLOBL("dotmasks", RODATA|NOPTR)
	for i := 0; i < 16; i++ {
		v := uint32(0)
		if i < 8 {
			v = 0xffffffff
		}
		DATA(4*i, U32(v))
	}
	masks16 = GLOBL("dotmasks16", RODATA|NOPTR)
	for r := 0; r < 16; r++ {
		DATA(2*r, U16(uint16(1<<r-1)))
	}
}

// dot emits dot{512,256}N{n}R{rows}:
//
//	func(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32)
//
// C(i, j) = alpha * sum_p A(i, p) B(j, p) + beta*C(i, j) for i < rows,
// j < n, with A(i, p) at a + i*lda + 4p and B(j, p) at b + j*ldb + 4p
// (strides in bytes): a product whose n is tiny and whose operands are
// both contiguous along k (an output layer Y = X W^T). The vectors run
// along k; a masked load covers k mod width; horizontal sums finish.
func dot(avx512 bool, n, rows int) {
	isa, width := "256", 8
	vec := func(i int) VecPhysical {
		return []VecPhysical{Y0, Y1, Y2, Y3, Y4, Y5, Y6, Y7, Y8, Y9, Y10, Y11, Y12, Y13, Y14, Y15}[i]
	}
	if avx512 {
		isa, width = "512", 16
		vec = func(i int) VecPhysical {
			return []VecPhysical{Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z7, Z8, Z9, Z10, Z11, Z12, Z13, Z14, Z15}[i]
		}
	}
	name := fmt.Sprintf("dot%sN%dR%d", isa, n, rows)
	TEXT(name, NOSPLIT, "func(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha float32, beta float32)")
	Doc(fmt.Sprintf("%s computes a %d x %d block of C = alpha*A*B^T + beta*C with A and B contiguous along k.", name, rows, n))
	k, a, lda, b, ldb := GP64(), GP64(), GP64(), GP64(), GP64()
	Load(Param("k"), k)
	Load(Param("a"), a)
	Load(Param("lda"), lda)
	Load(Param("b"), b)
	Load(Param("ldb"), ldb)
	pa := make([]GPVirtual, rows)
	pb := make([]GPVirtual, n)
	for i := range pa {
		if i == 0 {
			pa[i] = a
		} else {
			pa[i] = GP64()
			LEAQ(Mem{Base: pa[i-1], Index: lda, Scale: 1}, pa[i])
		}
	}
	for j := range pb {
		if j == 0 {
			pb[j] = b
		} else {
			pb[j] = GP64()
			LEAQ(Mem{Base: pb[j-1], Index: ldb, Scale: 1}, pb[j])
		}
	}
	acc := func(i, j int) VecPhysical { return vec(i*n + j) }
	bv := func(j int) VecPhysical { return vec(rows*n + j) }
	av := vec(rows*n + n)
	if rows*n+n+1 > 16 {
		panic("dot: too many registers")
	}
	for i := 0; i < rows; i++ {
		for j := 0; j < n; j++ {
			VXORPS(acc(i, j).AsY(), acc(i, j).AsY(), acc(i, j).AsY())
		}
	}
	off := GP64()
	XORQ(off, off)
	body := func(load func(m Mem, dst VecPhysical)) {
		for j := 0; j < n; j++ {
			load(Mem{Base: pb[j], Index: off, Scale: 1}, bv(j))
		}
		for i := 0; i < rows; i++ {
			load(Mem{Base: pa[i], Index: off, Scale: 1}, av)
			for j := 0; j < n; j++ {
				VFMADD231PS(bv(j), av, acc(i, j))
			}
		}
	}
	Label(name + "_loop")
	CMPQ(k, U32(width))
	JL(LabelRef(name + "_tail"))
	body(func(m Mem, dst VecPhysical) { VMOVUPS(m, dst) })
	ADDQ(U32(4*width), off)
	SUBQ(U32(width), k)
	JMP(LabelRef(name + "_loop"))

	Label(name + "_tail")
	TESTQ(k, k)
	JE(LabelRef(name + "_reduce"))
	if avx512 {
		// K1 = (1 << k) - 1, from the table of 16-bit masks.
		tb := GP64()
		LEAQ(masks16, tb)
		KMOVW(Mem{Base: tb, Index: k, Scale: 2}, K1)
		body(func(m Mem, dst VecPhysical) { VMOVUPS_Z(m, K1, dst) })
	} else {
		mask := vec(15)
		if rows*n+n+1 > 15 { // accumulators, B vectors, A vector
			panic("dot: no register for the mask")
		}
		t := GP64()
		MOVQ(U32(8), t)
		SUBQ(k, t)
		tb := GP64()
		LEAQ(masks, tb)
		VMOVUPS(Mem{Base: tb, Index: t, Scale: 4}, mask)
		body(func(m Mem, dst VecPhysical) { VMASKMOVPS(m, mask, dst) })
	}

	Label(name + "_reduce")
	// Horizontal sums into the low lane of each accumulator.
	tmp := vec(15)
	if avx512 {
		tmp = vec(rows*n + n + 1)
	}
	for i := 0; i < rows; i++ {
		for j := 0; j < n; j++ {
			r := acc(i, j)
			if avx512 {
				VEXTRACTF64X4(U8(1), r, tmp.AsY())
				VADDPS(tmp.AsY(), r.AsY(), r.AsY())
			}
			VEXTRACTF128(U8(1), r.AsY(), tmp.AsX())
			VADDPS(tmp.AsX(), r.AsX(), r.AsX())
			VHADDPS(r.AsX(), r.AsX(), r.AsX())
			VHADDPS(r.AsX(), r.AsX(), r.AsX())
		}
	}
	c, ldc := GP64(), GP64()
	Load(Param("c"), c)
	Load(Param("ldc"), ldc)
	// The B and A registers are free now; accumulators use the first rows*n.
	var alpha, beta Register = X14, X15
	if rows*n > 14 {
		panic("dot: no registers for alpha, beta")
	}
	VMOVSS(NewParamAddr("alpha", 56), alpha)
	for i := 0; i < rows; i++ {
		for j := 0; j < n; j++ {
			VMULSS(alpha, acc(i, j).AsX(), acc(i, j).AsX())
		}
	}
	bbits := GP32()
	MOVL(NewParamAddr("beta", 60), bbits)
	ANDL(U32(0x7fffffff), bbits)
	JE(LabelRef(name + "_beta0"))
	VMOVSS(NewParamAddr("beta", 60), beta)
	cr := GP64()
	MOVQ(c, cr)
	for i := 0; i < rows; i++ {
		for j := 0; j < n; j++ {
			VFMADD231SS(Mem{Base: cr}.Offset(4*j), beta, acc(i, j).AsX())
			VMOVSS(acc(i, j).AsX(), Mem{Base: cr}.Offset(4*j))
		}
		ADDQ(ldc, cr)
	}
	VZEROUPPER()
	RET()
	Label(name + "_beta0")
	for i := 0; i < rows; i++ {
		for j := 0; j < n; j++ {
			VMOVSS(acc(i, j).AsX(), Mem{Base: c}.Offset(4*j))
		}
		ADDQ(ldc, c)
	}
	VZEROUPPER()
	RET()
}

func f32bits(f float32) U32 { return U32(math.Float32bits(f)) }

// SiLU constants: each replicated 8 times (32 bytes) so that AVX2 code can
// use them as memory operands; AVX-512 code broadcasts the first lane.
var epiConsts = []float32{
	-87.0,               // 0: clamp low for exp argument
	88.0,                // 1: clamp high
	1.44269504088896341, // 2: log2(e)
	0.693359375,         // 3: ln2 high part
	-2.12194440e-4,      // 4: ln2 low part
	1.0,                 // 5
	// 6..9: exp(r) = 1 + r(1 + r(c2 + r(c3 + r(c4 + r c5)))) on |r| <=
	// ln2/2, fitted for relative error (about 1.1e-7, 1.7e-7 after
	// float32 rounding; the Taylor coefficients would give 2.4e-6).
	0.008312525248868535, // 6: c5
	0.041890114300516944, // 7: c4
	0.1666711446529775,   // 8: c3
	0.49999231782972825,  // 9: c2
}

// Flags of the epilogue kernels: SiLU, and non-temporal stores of pre
// (aligned to the vector width).
const (
	epiSiLU  = 1
	epiNTPre = 2
)

// expNeg emits e = exp(-z) elementwise: x = -z clamped to [-87, 88], x =
// t ln2 + r with t = round(x log2 e), exp(r) by the polynomial of
// epiConsts, times 2^t. zero holds 0; x and t are clobbered; konst[i] is
// constant i (a register, or for AVX2 a memory operand).
func expNeg(avx512 bool, konst []Op, zero, z, x, t, e VecPhysical, tmp VecPhysical) {
	VSUBPS(z, zero, x)
	VMAXPS(konst[0], x, x)
	VMINPS(konst[1], x, x)
	VMULPS(konst[2], x, t)
	if avx512 {
		VRNDSCALEPS(U8(0), t, t)
	} else {
		VROUNDPS(U8(0), t, t)
	}
	VFNMADD231PS(konst[3], t, x)
	VFNMADD231PS(konst[4], t, x)
	// e = c4 + c5 r, then Horner down to 1 + r (...)
	if avx512 {
		VMOVAPS(konst[7], e)
	} else {
		VMOVUPS(konst[7], e)
	}
	VFMADD231PS(konst[6], x, e)
	VFMADD213PS(konst[8], x, e)
	VFMADD213PS(konst[9], x, e)
	VFMADD213PS(konst[5], x, e)
	VFMADD213PS(konst[5], x, e)
	if avx512 {
		VSCALEFPS(t, e, e)
	} else {
		VCVTPS2DQ(t, tmp)
		VPSLLD(U8(23), tmp, tmp)
		VPADDD(tmp, e, e)
	}
}

var epiTable Mem

func epiConstTable() {
	epiTable = GLOBL("epiconst", RODATA|NOPTR)
	for i, f := range epiConsts {
		for l := 0; l < 8; l++ {
			DATA(32*i+4*l, U32(math.Float32bits(f)))
		}
	}
}

// epilogue emits epi512/epi256:
//
//	func(rows, n int, c *float32, ldc int, bias, pre *float32, ldpre int, silu bool)
//
// For each of rows rows (strides ldc and ldpre in bytes) and j < n (n a
// multiple of the vector width): z = c[j] + bias[j]; pre[j] = z when
// pre != nil; c[j] = silu ? z/(1+exp(-z)) : z, exp by expNeg (relative
// error about 2e-7).
func epilogue(avx512 bool) {
	name, width := "epi256", 8
	vec := func(i int) VecPhysical {
		return []VecPhysical{Y0, Y1, Y2, Y3, Y4, Y5, Y6, Y7, Y8, Y9, Y10, Y11, Y12, Y13, Y14, Y15}[i]
	}
	if avx512 {
		name, width = "epi512", 16
		vec = func(i int) VecPhysical {
			return []VecPhysical{Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z7, Z8, Z9, Z10, Z11, Z12, Z13, Z14, Z15,
				Z16, Z17, Z18, Z19, Z20, Z21, Z22, Z23, Z24, Z25, Z26, Z27, Z28, Z29, Z30, Z31}[i]
		}
	}
	TEXT(name, NOSPLIT, "func(rows int, n int, c *float32, ldc int, bias *float32, pre *float32, ldpre int, flags int)")
	Doc(fmt.Sprintf("%s applies c = act(c + bias), pre = c + bias, to rows x n floats (n a multiple of %d).", name, width))
	rows, n, c, ldc, bias, pre, ldpre := GP64(), GP64(), GP64(), GP64(), GP64(), GP64(), GP64()
	Load(Param("rows"), rows)
	Load(Param("n"), n)
	Load(Param("c"), c)
	Load(Param("ldc"), ldc)
	Load(Param("bias"), bias)
	Load(Param("pre"), pre)
	Load(Param("ldpre"), ldpre)
	flags := GP64()
	Load(Param("flags"), flags)

	// Constant k: a register (AVX-512) or a memory operand (AVX2).
	konst := make([]Op, len(epiConsts))
	for i := range epiConsts {
		if avx512 {
			r := vec(16 + i)
			VBROADCASTSS(epiTable.Offset(32*i), r)
			konst[i] = r
		} else {
			konst[i] = epiTable.Offset(32 * i)
		}
	}
	z, x, t, e, tmp := vec(0), vec(1), vec(2), vec(3), vec(4)
	zero := vec(15)
	VXORPS(zero.AsY(), zero.AsY(), zero.AsY())
	off := GP64()
	Label(name + "_row")
	TESTQ(rows, rows)
	JE(LabelRef(name + "_done"))
	XORQ(off, off)
	Label(name + "_loop")
	CMPQ(off, n)
	JGE(LabelRef(name + "_nextrow"))
	cm := Mem{Base: c, Index: off, Scale: 4}
	VMOVUPS(cm, z)
	VADDPS(Mem{Base: bias, Index: off, Scale: 4}, z, z)
	TESTQ(pre, pre)
	JE(LabelRef(name + "_nopre"))
	TESTQ(U32(epiNTPre), flags)
	JNE(LabelRef(name + "_ntpre"))
	VMOVUPS(z, Mem{Base: pre, Index: off, Scale: 4})
	JMP(LabelRef(name + "_nopre"))
	Label(name + "_ntpre")
	VMOVNTPS(z, Mem{Base: pre, Index: off, Scale: 4})
	Label(name + "_nopre")
	TESTQ(U32(epiSiLU), flags)
	JE(LabelRef(name + "_store"))
	expNeg(avx512, konst, zero, z, x, t, e, tmp)
	VADDPS(konst[5], e, e)
	VDIVPS(e, z, z)
	Label(name + "_store")
	VMOVUPS(z, cm)
	ADDQ(U32(width), off)
	JMP(LabelRef(name + "_loop"))
	Label(name + "_nextrow")
	ADDQ(ldc, c)
	TESTQ(pre, pre)
	JE(LabelRef(name + "_prenil"))
	ADDQ(ldpre, pre)
	Label(name + "_prenil")
	DECQ(rows)
	JMP(LabelRef(name + "_row"))
	Label(name + "_done")
	TESTQ(U32(epiNTPre), flags)
	JE(LabelRef(name + "_ret"))
	SFENCE()
	Label(name + "_ret")
	VZEROUPPER()
	RET()
}

// siluGrad emits siluGrad512/siluGrad256:
//
//	func(n int, dy, z, dz *float32)
//
// dz[i] = dy[i] * silu'(z[i]) for i < n (n a multiple of the vector
// width), with silu'(z) = s (1 + z (1 - s)), s = 1/(1 + e), e = exp(-z)
// by expNeg (argument clamped to [-87, 88]), and
// 1 - s taken as e*s, which keeps its relative accuracy where s is near 1.
// dz may alias dy or z.
func siluGrad(avx512 bool) {
	name, width := "siluGrad256", 8
	vec := func(i int) VecPhysical {
		return []VecPhysical{Y0, Y1, Y2, Y3, Y4, Y5, Y6, Y7, Y8, Y9, Y10, Y11, Y12, Y13, Y14, Y15}[i]
	}
	if avx512 {
		name, width = "siluGrad512", 16
		vec = func(i int) VecPhysical {
			return []VecPhysical{Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z7, Z8, Z9, Z10, Z11, Z12, Z13, Z14, Z15,
				Z16, Z17, Z18, Z19, Z20, Z21, Z22, Z23, Z24, Z25, Z26, Z27, Z28, Z29, Z30, Z31}[i]
		}
	}
	TEXT(name, NOSPLIT, "func(n int, dy *float32, z *float32, dz *float32)")
	Doc(fmt.Sprintf("%s sets dz = dy * silu'(z) elementwise over n floats (n a multiple of %d).", name, width))
	n, dy, zp, dz := GP64(), GP64(), GP64(), GP64()
	Load(Param("n"), n)
	Load(Param("dy"), dy)
	Load(Param("z"), zp)
	Load(Param("dz"), dz)
	konst := make([]Op, len(epiConsts))
	for i := range epiConsts {
		if avx512 {
			r := vec(16 + i)
			VBROADCASTSS(epiTable.Offset(32*i), r)
			konst[i] = r
		} else {
			konst[i] = epiTable.Offset(32 * i)
		}
	}
	one, zero := vec(15), vec(14)
	VBROADCASTSS(epiTable.Offset(32*5), one)
	VXORPS(zero.AsY(), zero.AsY(), zero.AsY())
	z, x, t, e, tmp, d := vec(0), vec(1), vec(2), vec(3), vec(4), vec(5)
	off := GP64()
	XORQ(off, off)
	Label(name + "_loop")
	CMPQ(off, n)
	JGE(LabelRef(name + "_done"))
	VMOVUPS(Mem{Base: zp, Index: off, Scale: 4}, z)
	expNeg(avx512, konst, zero, z, x, t, e, tmp)
	// s = 1/(1 + e) (in d); 1 - s = e*s (in e); tmp = s (1 + z (1 - s))
	VADDPS(one, e, d)
	VDIVPS(d, one, d)
	VMULPS(d, e, e)
	VFMADD213PS(one, z, e)
	VMULPS(d, e, e)
	VMULPS(Mem{Base: dy, Index: off, Scale: 4}, e, e)
	VMOVUPS(e, Mem{Base: dz, Index: off, Scale: 4})
	ADDQ(U32(width), off)
	JMP(LabelRef(name + "_loop"))
	Label(name + "_done")
	VZEROUPPER()
	RET()
}

// colSum emits colSum512/colSum256:
//
//	func(rows, cols int, x *float32, ldx int, acc *float64)
//
// acc[j] += sum over i < rows of x[i*ldx/4 + j] for j < cols (cols a
// multiple of 8 for AVX-512, 4 for AVX2; ldx in bytes), summed in float64
// in row order, so the result equals a plain sequential float64 loop.
// Columns go in groups of 8 (AVX-512) or 4 (AVX2) vector accumulators.
func colSum(avx512 bool) {
	name, lanes, group := "colSum256", 4, 4
	vec := func(i int) VecPhysical {
		return []VecPhysical{Y0, Y1, Y2, Y3, Y4, Y5, Y6, Y7, Y8, Y9, Y10, Y11, Y12, Y13, Y14, Y15}[i]
	}
	if avx512 {
		name, lanes, group = "colSum512", 8, 8
		vec = func(i int) VecPhysical {
			return []VecPhysical{Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z7, Z8, Z9, Z10, Z11, Z12, Z13, Z14, Z15}[i]
		}
	}
	TEXT(name, NOSPLIT, "func(rows int, cols int, x *float32, ldx int, acc *float64)")
	Doc(fmt.Sprintf("%s adds the float64 column sums of a rows x cols block of x (cols a multiple of %d, ldx in bytes) to acc.", name, lanes))
	rows, cols, x, ldx, acc := GP64(), GP64(), GP64(), GP64(), GP64()
	Load(Param("rows"), rows)
	Load(Param("cols"), cols)
	Load(Param("x"), x)
	Load(Param("ldx"), ldx)
	Load(Param("acc"), acc)
	p, r := GP64(), GP64()
	// block emits the loop over rows for w vector accumulators.
	block := func(label string, w int) {
		Label(name + "_" + label)
		CMPQ(cols, U32(w*lanes))
		if w == 1 {
			JL(LabelRef(name + "_done"))
		} else {
			JL(LabelRef(name + "_one"))
		}
		for v := 0; v < w; v++ {
			VMOVUPD(Mem{Base: acc}.Offset(8*lanes*v), vec(v))
		}
		MOVQ(x, p)
		MOVQ(rows, r)
		Label(name + "_" + label + "_row")
		TESTQ(r, r)
		JE(LabelRef(name + "_" + label + "_store"))
		for v := 0; v < w; v++ {
			VCVTPS2PD(Mem{Base: p}.Offset(4*lanes*v), vec(group+v))
			VADDPD(vec(group+v), vec(v), vec(v))
		}
		ADDQ(ldx, p)
		DECQ(r)
		JMP(LabelRef(name + "_" + label + "_row"))
		Label(name + "_" + label + "_store")
		for v := 0; v < w; v++ {
			VMOVUPD(vec(v), Mem{Base: acc}.Offset(8*lanes*v))
		}
		ADDQ(U32(4*lanes*w), x)
		ADDQ(U32(8*lanes*w), acc)
		SUBQ(U32(lanes*w), cols)
		JMP(LabelRef(name + "_" + label))
	}
	block("wide", group)
	block("one", 1)
	Label(name + "_done")
	VZEROUPPER()
	RET()
}

// Indices of the constants adam reads (internal/sgemm/elementwise.go's
// adamConsts must match).
const (
	adClip = iota
	adWDL2
	adB1
	adOneMinusB1
	adB2
	adOneMinusB2
	adIB1
	adIB2
	adEps
	adLR
	adWDDecoupled
	adEMA
	adOneMinusEMA
	adFlags // bit 0: L2 weight decay, 1: decoupled weight decay, 2: EMA
	adCount
)

// adam emits adam512/adam256:
//
//	func(n int, p, g, m, v, ema *float32, k *float32)
//
// one Adam (+ EMA) step over n parameters (n a multiple of the vector
// width), k the constants above. It performs the float32 operations of
// elementwise.go's adamGo in the same order, with no fused multiply-add
// and correctly rounded sqrt and division, so that its results are
// bit-identical to the Go loop's.
func adam(avx512 bool) {
	name, width := "adam256", 8
	vec := func(i int) VecPhysical {
		return []VecPhysical{Y0, Y1, Y2, Y3, Y4, Y5, Y6, Y7, Y8, Y9, Y10, Y11, Y12, Y13, Y14, Y15}[i]
	}
	if avx512 {
		name, width = "adam512", 16
		vec = func(i int) VecPhysical {
			return []VecPhysical{Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z7, Z8, Z9, Z10, Z11, Z12, Z13, Z14, Z15,
				Z16, Z17, Z18, Z19, Z20, Z21, Z22, Z23, Z24, Z25, Z26, Z27, Z28, Z29, Z30, Z31}[i]
		}
	}
	TEXT(name, NOSPLIT, "func(n int, p *float32, grad *float32, m *float32, v *float32, ema *float32, k *float32)")
	Pragma("noescape")
	Doc(fmt.Sprintf("%s runs one Adam + EMA step over n parameters (n a multiple of %d); k holds the constants (see gen.go).", name, width))
	n, p, g, m, v, ema, k := GP64(), GP64(), GP64(), GP64(), GP64(), GP64(), GP64()
	Load(Param("n"), n)
	Load(Param("p"), p)
	Load(Param("grad"), g)
	Load(Param("m"), m)
	Load(Param("v"), v)
	Load(Param("ema"), ema)
	Load(Param("k"), k)
	flags := GP32()
	MOVL(Mem{Base: k}.Offset(4*adFlags), flags)
	// Constants: registers 16.. for AVX-512; for AVX2 registers 8..15 hold
	// the most used, the rest are broadcast from memory when needed.
	konst := make([]Op, adFlags)
	for i := 0; i < adFlags; i++ {
		switch {
		case avx512:
			konst[i] = vec(16 + i)
			VBROADCASTSS(Mem{Base: k}.Offset(4*i), vec(16+i))
		case i < 8:
			konst[i] = vec(8 + i)
			VBROADCASTSS(Mem{Base: k}.Offset(4*i), vec(8+i))
		}
	}
	// kon returns constant i in a register (loading it into tmp if needed).
	kon := func(i int, tmp VecPhysical) VecPhysical {
		if konst[i] != nil {
			return konst[i].(VecPhysical)
		}
		VBROADCASTSS(Mem{Base: k}.Offset(4*i), tmp)
		return tmp
	}
	gi, mi, vi, t, pv, st := vec(0), vec(1), vec(2), vec(3), vec(4), vec(5)
	tk := vec(6) // scratch for constants (AVX2)
	ev := vec(7)
	off := GP64()
	XORQ(off, off)
	at := func(base GPVirtual) Mem { return Mem{Base: base, Index: off, Scale: 4} }
	Label(name + "_loop")
	CMPQ(off, n)
	JGE(LabelRef(name + "_done"))
	// All loads first: the arrays are usually allocated page-aligned, so
	// a load placed after a store to another array at the same index
	// would wait on the store (4 KiB aliasing): measured 25% slower.
	VMOVUPS(at(p), pv)
	VMOVUPS(at(v), vi)
	VMOVUPS(at(m), mi)
	TESTL(U32(4), flags)
	JE(LabelRef(name + "_noemaload"))
	VMOVUPS(at(ema), ev)
	Label(name + "_noemaload")
	// gi = clip*g (+ wd*p)
	VMULPS(at(g), kon(adClip, tk), gi)
	TESTL(U32(1), flags)
	JE(LabelRef(name + "_nol2"))
	VMULPS(pv, kon(adWDL2, tk), t)
	VADDPS(t, gi, gi)
	Label(name + "_nol2")
	// mi = b1*m + (1-b1)*gi
	VMULPS(mi, kon(adB1, tk), mi)
	VMULPS(gi, kon(adOneMinusB1, tk), t)
	VADDPS(t, mi, mi)
	VMOVUPS(mi, at(m))
	// vi = b2*v + ((1-b2)*gi)*gi
	VMULPS(vi, kon(adB2, tk), vi)
	VMULPS(gi, kon(adOneMinusB2, tk), t)
	VMULPS(gi, t, t)
	VADDPS(t, vi, vi)
	VMOVUPS(vi, at(v))
	// st = (mi*ib1) / (sqrt(vi*ib2) + eps)
	VMULPS(mi, kon(adIB1, tk), st)
	VMULPS(vi, kon(adIB2, tk), t)
	VSQRTPS(t, t)
	VADDPS(kon(adEps, tk), t, t)
	VDIVPS(t, st, st)
	TESTL(U32(2), flags)
	JE(LabelRef(name + "_nodec"))
	VMULPS(pv, kon(adWDDecoupled, tk), t)
	VADDPS(t, st, st)
	Label(name + "_nodec")
	// p = p - lr*st
	VMULPS(st, kon(adLR, tk), st)
	VSUBPS(st, pv, pv)
	VMOVUPS(pv, at(p))
	TESTL(U32(4), flags)
	JE(LabelRef(name + "_noema"))
	// ema = d*ema + (1-d)*p
	VMULPS(ev, kon(adEMA, tk), t)
	VMULPS(pv, kon(adOneMinusEMA, tk), pv)
	VADDPS(pv, t, t)
	VMOVUPS(t, at(ema))
	Label(name + "_noema")
	ADDQ(U32(width), off)
	JMP(LabelRef(name + "_loop"))
	Label(name + "_done")
	VZEROUPPER()
	RET()
}

// sumSquares emits sumSquares512/sumSquares256:
//
//	func(n int, x *float32) float64
//
// sum of x[i]^2 over n floats (n a multiple of 32 for AVX-512, 16 for
// AVX2) in float64: four vector accumulators of float64 lanes (element i
// goes to lane i mod (4 x lanes)), added pairwise at the end in a fixed
// order, so the result depends only on the data.
func sumSquares(avx512 bool) {
	name, lanes := "sumSquares256", 4
	vec := func(i int) VecPhysical {
		return []VecPhysical{Y0, Y1, Y2, Y3, Y4, Y5, Y6, Y7}[i]
	}
	if avx512 {
		name, lanes = "sumSquares512", 8
		vec = func(i int) VecPhysical {
			return []VecPhysical{Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z7}[i]
		}
	}
	TEXT(name, NOSPLIT, "func(n int, x *float32) float64")
	Doc(fmt.Sprintf("%s returns the float64 sum of squares of n floats (n a multiple of %d).", name, 4*lanes))
	n, x := GP64(), GP64()
	Load(Param("n"), n)
	Load(Param("x"), x)
	for i := 0; i < 4; i++ {
		if avx512 {
			VPXORQ(vec(i), vec(i), vec(i))
		} else {
			VXORPD(vec(i), vec(i), vec(i))
		}
	}
	off := GP64()
	XORQ(off, off)
	Label(name + "_loop")
	CMPQ(off, n)
	JGE(LabelRef(name + "_reduce"))
	for i := 0; i < 4; i++ {
		VCVTPS2PD(Mem{Base: x, Index: off, Scale: 4}.Offset(4*lanes*i), vec(4+i))
		VFMADD231PD(vec(4+i), vec(4+i), vec(i))
	}
	ADDQ(U32(4*lanes), off)
	JMP(LabelRef(name + "_loop"))
	Label(name + "_reduce")
	VADDPD(vec(1), vec(0), vec(0))
	VADDPD(vec(3), vec(2), vec(2))
	VADDPD(vec(2), vec(0), vec(0))
	if avx512 {
		VEXTRACTF64X4(U8(1), vec(0), Y1)
		VADDPD(Y1, Y0, Y0)
	}
	VEXTRACTF128(U8(1), Y0, X1)
	VADDPD(X1, X0, X0)
	VHADDPD(X0, X0, X0)
	VZEROUPPER()
	Store(X0, ReturnIndex(0))
	RET()
}

// fmaLatency emits fmaLatency(n int): n iterations of 8 dependent
// VFMADD231PS on xmm registers. At 4 cycles latency per FMA (Zen 4, Intel
// since Skylake) it runs 32n cycles, so 32n/seconds is the core clock.
func fmaLatency() {
	TEXT("fmaLatency", NOSPLIT, "func(n int)")
	Doc("fmaLatency runs n x 8 dependent FMAs (32n cycles at 4-cycle latency).")
	n := GP64()
	Load(Param("n"), n)
	VXORPS(X0, X0, X0)
	VXORPS(X1, X1, X1)
	VXORPS(X2, X2, X2)
	Label("fmalat_loop")
	for i := 0; i < 8; i++ {
		VFMADD231PS(X1, X2, X0)
	}
	DECQ(n)
	JNE(LabelRef("fmalat_loop"))
	VZEROUPPER()
	RET()
}

// fmaThroughput emits fmaThroughput512/256(n int): n iterations of 24
// independent FMAs; the achieved FLOP/s is the per-core peak.
func fmaThroughput(avx512 bool) {
	name := "fmaThroughput256"
	regs := []VecPhysical{Y0, Y1, Y2, Y3, Y4, Y5, Y6, Y7, Y8, Y9, Y10, Y11, Y12, Y13}
	src := []VecPhysical{Y14, Y15}
	if avx512 {
		name = "fmaThroughput512"
		regs = []VecPhysical{Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z7, Z8, Z9, Z10, Z11, Z12, Z13, Z14, Z15, Z16, Z17, Z18, Z19, Z20, Z21, Z22, Z23}
		src = []VecPhysical{Z30, Z31}
	}
	TEXT(name, NOSPLIT, "func(n int)")
	Doc(fmt.Sprintf("%s runs n x %d independent FMAs.", name, 2*len(regs)))
	n := GP64()
	Load(Param("n"), n)
	for _, r := range append(regs, src...) {
		if avx512 {
			VPXORD(r, r, r)
		} else {
			VXORPS(r, r, r)
		}
	}
	Label(name + "_loop")
	for rep := 0; rep < 2; rep++ {
		for _, r := range regs {
			VFMADD231PS(src[0], src[1], r)
		}
	}
	DECQ(n)
	JNE(LabelRef(name + "_loop"))
	VZEROUPPER()
	RET()
}

// addChain emits addChain(n int): n iterations of 32 dependent integer
// adds. An integer add has had 1 cycle of latency on every x86 core since
// the Pentium 4, so 32n/seconds is the core clock; the other probes are
// converted to cycles with it.
func addChain() {
	TEXT("addChain", NOSPLIT, "func(n int)")
	Doc("addChain runs n x 32 dependent integer adds (32n cycles).")
	n := GP64()
	Load(Param("n"), n)
	x := GP64()
	XORQ(x, x)
	Label("addchain_loop")
	for i := 0; i < 32; i++ {
		ADDQ(U8(1), x)
	}
	DECQ(n)
	JNE(LabelRef("addchain_loop"))
	RET()
}

// loadProbes emits the loops that measure the load ports as the
// micro-kernels use them, each n iterations over a 4 KiB buffer in L1:
//
//	loadZMM(n, p):     16 aligned 64-byte loads
//	loadZMMSplit(n, p): 16 64-byte loads each crossing a cache line
//	loadBcast(n, p):   16 VBROADCASTSS (4-byte loads broadcast to zmm)
//	fmaBcast(n, p):    24 independent FMAs, each broadcasting its A from
//	                   memory (the AVX-512 kernel's step before Zen 5)
func loadProbes() {
	sig := "func(n int, p *float32)"
	body := func(name, doc string, emit func(p GPVirtual)) {
		TEXT(name, NOSPLIT, sig)
		Doc(doc)
		n, p := GP64(), GP64()
		Load(Param("n"), n)
		Load(Param("p"), p)
		Label(name + "_loop")
		emit(p)
		DECQ(n)
		JNE(LabelRef(name + "_loop"))
		VZEROUPPER()
		RET()
	}
	z := []VecPhysical{Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z7, Z8, Z9, Z10, Z11, Z12, Z13, Z14, Z15,
		Z16, Z17, Z18, Z19, Z20, Z21, Z22, Z23, Z24, Z25, Z26, Z27, Z28, Z29, Z30, Z31}
	body("loadZMM", "loadZMM runs n x 16 aligned zmm loads from p (4 KiB).", func(p GPVirtual) {
		for i := 0; i < 16; i++ {
			VMOVUPS(Mem{Base: p}.Offset(64*i), z[i])
		}
	})
	body("loadZMMSplit", "loadZMMSplit runs n x 16 zmm loads from p, each crossing a cache line.", func(p GPVirtual) {
		for i := 0; i < 16; i++ {
			VMOVUPS(Mem{Base: p}.Offset(64*i+4), z[i])
		}
	})
	body("loadBcast", "loadBcast runs n x 16 VBROADCASTSS loads from p.", func(p GPVirtual) {
		for i := 0; i < 16; i++ {
			VBROADCASTSS(Mem{Base: p}.Offset(4*i), z[i])
		}
	})
	body("fmaBcast", "fmaBcast runs n x 24 independent FMAs with a broadcast memory operand.", func(p GPVirtual) {
		for i := 0; i < 24; i++ {
			VFMADD231PS_BCST(Mem{Base: p}.Offset(4*(i%8)), Z31, z[i])
		}
	})
}
