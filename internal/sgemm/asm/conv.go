package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// The direct convolution kernels (AVX-512). The convolutions run on
// channels-last (NHWC) blocks that the driver packs from and unpacks to
// the NCHW planes: a position's C channels are contiguous, so the
// channels run along the vector lanes and a 3x3 tap is a shift of whole
// positions (internal/sgemm/conv.go describes the layouts).

// convMaxMR: positions per forward tile (14 x 2 zmm = 28 accumulators).
const convMaxMR = 14

func convKernels() {
	for _, nvec := range []int{2, 1} {
		for mr := 1; mr <= convMaxMR; mr++ {
			convForward(nvec, mr, mr)
		}
		for seg := 1; 2*seg <= convMaxMR; seg++ {
			convForward(nvec, 2*seg, seg)
		}
		convFilter(4, nvec)
		convFilter(1, nvec)
	}
	convPack()
	convUnpack()
	convPrefetch()
	for rows := 1; rows <= 4; rows++ {
		convThinForward(rows)
	}
	convThinFilter()
}

// convPrefetch emits convPrefetch(p *float32, n int): a prefetch into L2
// of the n cache lines from p, so that a unit's next operands arrive
// while its products run.
func convPrefetch() {
	TEXT("convPrefetch", NOSPLIT, "func(p *float32, n int)")
	Pragma("noescape")
	Doc("convPrefetch prefetches the n cache lines from p into L2.")
	p, n := GP64(), GP64()
	Load(Param("p"), p)
	Load(Param("n"), n)
	Label("convPrefetch_loop4")
	CMPQ(n, U8(4))
	JL(LabelRef("convPrefetch_one"))
	for i := 0; i < 4; i++ {
		PREFETCHT1(Mem{Base: p}.Offset(64 * i))
	}
	ADDQ(U32(256), p)
	SUBQ(U8(4), n)
	JMP(LabelRef("convPrefetch_loop4"))
	Label("convPrefetch_one")
	TESTQ(n, n)
	JE(LabelRef("convPrefetch_done"))
	PREFETCHT1(Mem{Base: p})
	ADDQ(U8(64), p)
	DECQ(n)
	JMP(LabelRef("convPrefetch_one"))
	Label("convPrefetch_done")
	RET()
}

var zregs = []VecPhysical{Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z7, Z8, Z9, Z10, Z11, Z12, Z13, Z14, Z15,
	Z16, Z17, Z18, Z19, Z20, Z21, Z22, Z23, Z24, Z25, Z26, Z27, Z28, Z29, Z30, Z31}

// convForward emits convF{mr}x{16 nvec}s{seg}:
//
//	func(ntap int, tap *int, kc int, a *float32, sa int, srow int, b *float32, c *float32, ldc int)
//
// an mr x 16nvec tile of C = sum over taps t < ntap, channels k < kc of
// A_t(i, k) B(t kc + k, j): output positions i (rows of C, ldc bytes
// apart) and output channels j. Position i lies in segment i / seg at
// index i % seg: A_t(i, k) is at a + tap[t] + (i / seg) srow +
// (i % seg) sa + 4k (strides in bytes), so that a tile covers seg
// positions of one output row (seg = mr) or of two (mr = 2 seg, for
// images narrower than a tile). B is the packed filter panel, 16nvec
// floats per (tap, channel), contiguous. C is overwritten.
func convForward(nvec, mr, seg int) {
	name := fmt.Sprintf("convF%dx%ds%d", mr, 16*nvec, seg)
	TEXT(name, NOSPLIT, "func(ntap int, tap *int, kc int, a *float32, sa int, srow int, b *float32, c *float32, ldc int)")
	Pragma("noescape")
	Doc(fmt.Sprintf("%s computes a %d x %d direct-convolution tile (see conv.go in asm).", name, mr, 16*nvec))
	acc := func(i, v int) VecPhysical { return zregs[i*nvec+v] }
	bv := func(v int) VecPhysical { return zregs[31-v] }
	bc := zregs[31-nvec]

	ntap, tapp, a, sa, b := GP64(), GP64(), GP64(), GP64(), GP64()
	Load(Param("ntap"), ntap)
	Load(Param("tap"), tapp)
	Load(Param("a"), a)
	Load(Param("sa"), sa)
	Load(Param("b"), b)
	for i := 0; i < mr; i++ {
		for v := 0; v < nvec; v++ {
			VPXORD(acc(i, v), acc(i, v), acc(i, v))
		}
	}
	sa3 := GP64()
	LEAQ(Mem{Base: sa, Index: sa, Scale: 2}, sa3)
	// Row groups: positions 4g..4g+3 of each segment from one base.
	type group struct{ seg, first, n int }
	var groups []group
	for s := 0; s < mr/seg; s++ {
		for f := 0; f < seg; f += 4 {
			groups = append(groups, group{s, f, min(4, seg-f)})
		}
	}
	bases := make([]GPVirtual, len(groups))
	for g := range bases {
		bases[g] = GP64()
	}
	rowOf := func(i int) (GPVirtual, int) { // base register and index within its group
		s, f := i/seg, i%seg
		for g, gr := range groups {
			if gr.seg == s && f >= gr.first && f < gr.first+gr.n {
				return bases[g], f - gr.first
			}
		}
		panic("convForward: row")
	}
	aMem := func(i, u int) Mem {
		base, j := rowOf(i)
		var m Mem
		switch j {
		case 0:
			m = Mem{Base: base}
		case 1:
			m = Mem{Base: base, Index: sa, Scale: 1}
		case 2:
			m = Mem{Base: base, Index: sa, Scale: 2}
		default:
			m = Mem{Base: base, Index: sa3, Scale: 1}
		}
		return m.Offset(4 * u)
	}
	nr := 16 * nvec
	step := func(u int) {
		for v := 0; v < nvec; v++ {
			VMOVUPS(Mem{Base: b}.Offset(4*nr*u+64*v), bv(v))
		}
		for i := 0; i < mr; i++ {
			VBROADCASTSS(aMem(i, u), bc)
			for v := 0; v < nvec; v++ {
				VFMADD231PS(bv(v), bc, acc(i, v))
			}
		}
	}
	kc := GP64()
	Label(name + "_tap")
	// This tap's bases.
	{
		t := GP64()
		MOVQ(Mem{Base: tapp}, t)
		ADDQ(a, t)
		var srow GPVirtual
		if mr > seg {
			srow = GP64()
			Load(Param("srow"), srow)
		}
		for g, gr := range groups {
			switch {
			case gr.seg == 0 && gr.first == 0:
				MOVQ(t, bases[g])
			case gr.first == 0:
				LEAQ(Mem{Base: t, Index: srow, Scale: 1}, bases[g])
			default:
				LEAQ(Mem{Base: bases[g-1], Index: sa, Scale: 4}, bases[g])
			}
		}
	}
	Load(Param("kc"), kc)
	Label(name + "_loop4")
	CMPQ(kc, U8(4))
	JL(LabelRef(name + "_tail"))
	for u := 0; u < 4; u++ {
		step(u)
	}
	for _, r := range bases {
		ADDQ(U8(16), r)
	}
	ADDQ(U32(16*nr), b)
	SUBQ(U8(4), kc)
	JMP(LabelRef(name + "_loop4"))
	Label(name + "_tail")
	TESTQ(kc, kc)
	JE(LabelRef(name + "_next"))
	step(0)
	for _, r := range bases {
		ADDQ(U8(4), r)
	}
	ADDQ(U32(4*nr), b)
	DECQ(kc)
	JMP(LabelRef(name + "_tail"))
	Label(name + "_next")
	ADDQ(U8(8), tapp)
	DECQ(ntap)
	JNE(LabelRef(name + "_tap"))

	c, ldc := GP64(), GP64()
	Load(Param("c"), c)
	Load(Param("ldc"), ldc)
	for i := 0; i < mr; i++ {
		for v := 0; v < nvec; v++ {
			VMOVUPS(acc(i, v), Mem{Base: c}.Offset(64*v))
		}
		if i+1 < mr {
			ADDQ(ldc, c)
		}
	}
	VZEROUPPER()
	RET()
}

// convFilter emits convW{rows}x{16 nvec}:
//
//	func(nimg, rows, cols int, a *float32, sa int, aimg int, b *float32, sp int, st int, brow int, bimg int, c *float32, ldc int, beta float32)
//
// the filter gradient of mr output channels o (rows of A, sa bytes apart)
// for 3 horizontal taps v = 0, 1, 2 and 16 nvec input channels j: C(o, v,
// j) = sum over positions p of A(o, p) B(p, v, j) (+ C when beta != 0).
// The positions run over nimg images of rows x cols: A(o, p) is at a +
// o sa + 4p, plus aimg bytes more after each image; B(p, v, j) at b +
// p sp + v st + 4j, plus brow bytes more after each row and bimg more
// after each image (the padding, and the stride, of an NHWC block).
// C(o, v, j) is at c + o ldc + v st + 4j.
func convFilter(mr, nvec int) {
	name := fmt.Sprintf("convW%dx%d", mr, 16*nvec)
	TEXT(name, NOSPLIT, "func(nimg int, rows int, cols int, a *float32, sa int, aimg int, b *float32, sp int, st int, brow int, bimg int, c *float32, ldc int, beta float32)")
	Pragma("noescape")
	Doc(fmt.Sprintf("%s accumulates a %d x 3 x %d filter-gradient tile (see conv.go in asm).", name, mr, 16*nvec))
	acc := func(o, v, w int) VecPhysical { return zregs[(o*3+v)*nvec+w] }
	bv := func(v, w int) VecPhysical { return zregs[31-v*nvec-w] }
	bc := zregs[31-3*nvec]
	for o := 0; o < mr; o++ {
		for v := 0; v < 3; v++ {
			for w := 0; w < nvec; w++ {
				VPXORD(acc(o, v, w), acc(o, v, w), acc(o, v, w))
			}
		}
	}
	nimg, a, sa, b, sp, st := GP64(), GP64(), GP64(), GP64(), GP64(), GP64()
	Load(Param("nimg"), nimg)
	Load(Param("a"), a)
	Load(Param("sa"), sa)
	Load(Param("b"), b)
	Load(Param("sp"), sp)
	Load(Param("st"), st)
	sa3 := GP64()
	LEAQ(Mem{Base: sa, Index: sa, Scale: 2}, sa3)
	brow, rows, cols := GP64(), GP64(), GP64()
	Load(Param("brow"), brow)
	aRow := func(o int) Mem {
		switch o {
		case 0:
			return Mem{Base: a}
		case 1:
			return Mem{Base: a, Index: sa, Scale: 1}
		case 2:
			return Mem{Base: a, Index: sa, Scale: 2}
		}
		return Mem{Base: a, Index: sa3, Scale: 1}
	}
	tap := func(base GPVirtual, v int) Mem {
		switch v {
		case 0:
			return Mem{Base: base}
		case 1:
			return Mem{Base: base, Index: st, Scale: 1}
		}
		return Mem{Base: base, Index: st, Scale: 2}
	}
	Label(name + "_img")
	Load(Param("rows"), rows)
	Label(name + "_row")
	Load(Param("cols"), cols)
	Label(name + "_col")
	for v := 0; v < 3; v++ {
		for w := 0; w < nvec; w++ {
			VMOVUPS(tap(b, v).Offset(64*w), bv(v, w))
		}
	}
	for o := 0; o < mr; o++ {
		VBROADCASTSS(aRow(o), bc)
		for v := 0; v < 3; v++ {
			for w := 0; w < nvec; w++ {
				VFMADD231PS(bv(v, w), bc, acc(o, v, w))
			}
		}
	}
	ADDQ(U8(4), a)
	ADDQ(sp, b)
	DECQ(cols)
	JNE(LabelRef(name + "_col"))
	ADDQ(brow, b)
	DECQ(rows)
	JNE(LabelRef(name + "_row"))
	{
		t := GP64()
		Load(Param("aimg"), t)
		ADDQ(t, a)
		Load(Param("bimg"), t)
		ADDQ(t, b)
	}
	DECQ(nimg)
	JNE(LabelRef(name + "_img"))

	c, ldc := GP64(), GP64()
	Load(Param("c"), c)
	Load(Param("ldc"), ldc)
	cMem := func(v, w int) Mem { return tap(c, v).Offset(64 * w) }
	bbits := GP32()
	MOVL(NewParamAddr("beta", 104), bbits)
	ANDL(U32(0x7fffffff), bbits)
	JE(LabelRef(name + "_store"))
	for o := 0; o < mr; o++ {
		for v := 0; v < 3; v++ {
			for w := 0; w < nvec; w++ {
				VADDPS(cMem(v, w), acc(o, v, w), acc(o, v, w))
			}
		}
		if o < mr-1 {
			ADDQ(ldc, c)
		}
	}
	Load(Param("c"), c)
	Label(name + "_store")
	for o := 0; o < mr; o++ {
		for v := 0; v < 3; v++ {
			for w := 0; w < nvec; w++ {
				VMOVUPS(acc(o, v, w), cMem(v, w))
			}
		}
		if o < mr-1 {
			ADDQ(ldc, c)
		}
	}
	VZEROUPPER()
	RET()
}

// transpose16 transposes r (16 zmm, r[i] lane j = M(i, j)) in place into
// r[j] lane i = M(i, j), with t as scratch: unpacks of 32- and 64-bit
// elements within 128-bit lanes, then two 128-bit shuffles.
func transpose16(r, t []VecPhysical) {
	for i := 0; i < 16; i += 2 {
		VUNPCKLPS(r[i+1], r[i], t[i])
		VUNPCKHPS(r[i+1], r[i], t[i+1])
	}
	for i := 0; i < 16; i += 4 {
		VUNPCKLPD(t[i+2], t[i], r[i])
		VUNPCKHPD(t[i+2], t[i], r[i+1])
		VUNPCKLPD(t[i+3], t[i+1], r[i+2])
		VUNPCKHPD(t[i+3], t[i+1], r[i+3])
	}
	for h := 0; h < 16; h += 8 {
		for k := 0; k < 4; k++ {
			VSHUFF32X4(U8(0x88), r[h+4+k], r[h+k], t[h+k])
			VSHUFF32X4(U8(0xdd), r[h+4+k], r[h+k], t[h+4+k])
		}
	}
	for k := 0; k < 8; k++ {
		VSHUFF32X4(U8(0x88), t[8+k], t[k], r[k])
		VSHUFF32X4(U8(0xdd), t[8+k], t[k], r[8+k])
	}
}

// strided returns the memory operands base + i*stride for i < 16, using
// p as a moving pointer: every fourth row it advances p by 4 strides.
type strided struct {
	base, stride, stride3, p GPVirtual
}

func newStrided(base, stride GPVirtual) strided {
	s := strided{base: base, stride: stride, stride3: GP64(), p: GP64()}
	LEAQ(Mem{Base: stride, Index: stride, Scale: 2}, s.stride3)
	return s
}

// at returns row i's operand; call it for i = 0, 1, 2, ... in order.
func (s strided) at(i int) Mem {
	if i%4 == 0 {
		if i == 0 {
			MOVQ(s.base, s.p)
		} else {
			LEAQ(Mem{Base: s.p, Index: s.stride, Scale: 4}, s.p)
		}
	}
	switch i % 4 {
	case 0:
		return Mem{Base: s.p}
	case 1:
		return Mem{Base: s.p, Index: s.stride, Scale: 1}
	case 2:
		return Mem{Base: s.p, Index: s.stride, Scale: 2}
	}
	return Mem{Base: s.p, Index: s.stride3, Scale: 1}
}

// convPack emits convPack16:
//
//	func(src *float32, cstride int, n int, dst *float32, pstride int)
//
// the transposition of 16 channels of n positions each (channel k at src
// + k cstride, floats contiguous) into n positions of 16 channels each
// (position p at dst + p pstride): NCHW to NHWC.
func convPack() {
	TEXT("convPack16", NOSPLIT, "func(src *float32, cstride int, n int, dst *float32, pstride int)")
	Pragma("noescape")
	Doc("convPack16 transposes 16 channels of n positions (stride cstride bytes) into n positions of 16 channels (stride pstride).")
	src, cs, n, dst, ps := GP64(), GP64(), GP64(), GP64(), GP64()
	Load(Param("src"), src)
	Load(Param("cstride"), cs)
	Load(Param("n"), n)
	Load(Param("dst"), dst)
	Load(Param("pstride"), ps)
	rs, ws := newStrided(src, cs), newStrided(dst, ps)
	r, t := zregs[:16], zregs[16:]
	Label("convPack16_block")
	CMPQ(n, U8(16))
	JL(LabelRef("convPack16_tail"))
	for k := 0; k < 16; k++ {
		VMOVUPS(rs.at(k), r[k])
	}
	transpose16(r, t)
	for p := 0; p < 16; p++ {
		VMOVUPS(r[p], ws.at(p))
	}
	ADDQ(U8(64), src)
	LEAQ(Mem{Base: ws.p, Index: ps, Scale: 4}, dst)
	SUBQ(U8(16), n)
	JMP(LabelRef("convPack16_block"))
	Label("convPack16_tail")
	TESTQ(n, n)
	JE(LabelRef("convPack16_done"))
	// K1: the first n lanes (masked loads do not fault past them).
	{
		m := GP64()
		MOVQ(U32(1), m)
		SHLXQ(n, m, m)
		DECQ(m)
		KMOVW(m.As32(), K1)
	}
	for k := 0; k < 16; k++ {
		VMOVUPS_Z(rs.at(k), K1, r[k])
	}
	transpose16(r, t)
	for p := 0; p < 16; p++ {
		m := ws.at(p)
		if p > 0 {
			CMPQ(n, U8(p))
			JLE(LabelRef("convPack16_done"))
		}
		VMOVUPS(r[p], m)
	}
	Label("convPack16_done")
	VZEROUPPER()
	RET()
}

// convUnpack emits convUnpack16:
//
//	func(src *float32, pstride int, n int, dst *float32, cstride int, bias *float32)
//
// the transposition of n positions of 16 channels each (position p at src
// + p pstride) into 16 channels of n positions each (channel k at dst +
// k cstride), plus bias[k] when bias is not nil: NHWC to NCHW. It reads
// whole blocks of 16 positions: src must hold 16 ceil(n / 16) positions.
func convUnpack() {
	TEXT("convUnpack16", NOSPLIT, "func(src *float32, pstride int, n int, dst *float32, cstride int, bias *float32)")
	Pragma("noescape")
	Doc("convUnpack16 transposes n positions of 16 channels (stride pstride bytes) into 16 channels of n positions (stride cstride), adding bias.")
	src, ps, n, dst, cs, bias := GP64(), GP64(), GP64(), GP64(), GP64(), GP64()
	Load(Param("src"), src)
	Load(Param("pstride"), ps)
	Load(Param("n"), n)
	Load(Param("dst"), dst)
	Load(Param("cstride"), cs)
	Load(Param("bias"), bias)
	rs, ws := newStrided(src, ps), newStrided(dst, cs)
	r, t := zregs[:16], zregs[16:]
	m := GP64()
	MOVQ(U32(0xffff), m)
	KMOVW(m.As32(), K1)
	Label("convUnpack16_block")
	TESTQ(n, n)
	JE(LabelRef("convUnpack16_done"))
	CMPQ(n, U8(16))
	JGE(LabelRef("convUnpack16_full"))
	MOVQ(U32(1), m)
	SHLXQ(n, m, m)
	DECQ(m)
	KMOVW(m.As32(), K1)
	Label("convUnpack16_full")
	for p := 0; p < 16; p++ {
		VMOVUPS(rs.at(p), r[p])
	}
	transpose16(r, t)
	TESTQ(bias, bias)
	JE(LabelRef("convUnpack16_store"))
	for k := 0; k < 16; k++ {
		VADDPS_BCST(Mem{Base: bias}.Offset(4*k), r[k], r[k])
	}
	Label("convUnpack16_store")
	for k := 0; k < 16; k++ {
		VMOVUPS(r[k], K1, ws.at(k))
	}
	LEAQ(Mem{Base: rs.p, Index: ps, Scale: 4}, src)
	ADDQ(U8(64), dst)
	SUBQ(U8(16), n)
	JGE(LabelRef("convUnpack16_block"))
	Label("convUnpack16_done")
	VZEROUPPER()
	RET()
}

// The thin convolutions: a 3 x 3 convolution to or from a few channels
// (a network's output and input layers), whose channels-last tiles would
// pad the few channels to 16. Their vectors run along positions instead,
// over planes with a zero border, and every output keeps the forward
// tiles' order of multiply-adds (taps, then channels), so that the
// results are the same bits.

// convThinForward emits convThinF{rows}:
//
//	func(ntap int, tap *int, kc int, x *float32, cs int, rs int, w *float32, y *float32, ys int, mask int)
//
// rows x 32 outputs of one output channel: Y(r, q) = sum over taps t <
// ntap, channels c < kc of w[t kc + c] X_t(c, r, q), with X_t(c, r, q) at
// x + tap[t] + c cs + r rs + 4q (strides in bytes; the plane has a zero
// border and room to read 32 floats past any row). Y(r, q) is stored at
// y + r ys + 4q for the q whose bit is set in mask (bit q of 32).
func convThinForward(rows int) {
	name := fmt.Sprintf("convThinF%d", rows)
	TEXT(name, NOSPLIT, "func(ntap int, tap *int, kc int, x *float32, cs int, rs int, w *float32, y *float32, ys int, mask int)")
	Pragma("noescape")
	Doc(fmt.Sprintf("%s computes %d rows of 32 outputs of a thin convolution (see conv.go in asm).", name, rows))
	acc := func(r, v int) VecPhysical { return zregs[2*r+v] }
	wb := zregs[31]
	for r := 0; r < rows; r++ {
		for v := 0; v < 2; v++ {
			VPXORD(acc(r, v), acc(r, v), acc(r, v))
		}
	}
	ntap, tapp, x, cs, rs, w := GP64(), GP64(), GP64(), GP64(), GP64(), GP64()
	Load(Param("ntap"), ntap)
	Load(Param("tap"), tapp)
	Load(Param("x"), x)
	Load(Param("cs"), cs)
	Load(Param("rs"), rs)
	Load(Param("w"), w)
	rs3 := GP64()
	LEAQ(Mem{Base: rs, Index: rs, Scale: 2}, rs3)
	row := func(p GPVirtual, r, v int) Mem {
		var m Mem
		switch r {
		case 0:
			m = Mem{Base: p}
		case 1:
			m = Mem{Base: p, Index: rs, Scale: 1}
		case 2:
			m = Mem{Base: p, Index: rs, Scale: 2}
		default:
			m = Mem{Base: p, Index: rs3, Scale: 1}
		}
		return m.Offset(64 * v)
	}
	p, kc := GP64(), GP64()
	Label(name + "_tap")
	MOVQ(Mem{Base: tapp}, p)
	ADDQ(x, p)
	Load(Param("kc"), kc)
	Label(name + "_c")
	VBROADCASTSS(Mem{Base: w}, wb)
	for r := 0; r < rows; r++ {
		for v := 0; v < 2; v++ {
			VFMADD231PS(row(p, r, v), wb, acc(r, v))
		}
	}
	ADDQ(cs, p)
	ADDQ(U8(4), w)
	DECQ(kc)
	JNE(LabelRef(name + "_c"))
	ADDQ(U8(8), tapp)
	DECQ(ntap)
	JNE(LabelRef(name + "_tap"))

	y, ys, m := GP64(), GP64(), GP64()
	Load(Param("y"), y)
	Load(Param("ys"), ys)
	Load(Param("mask"), m)
	KMOVW(m.As32(), K1)
	SHRQ(U8(16), m)
	KMOVW(m.As32(), K2)
	for r := 0; r < rows; r++ {
		VMOVUPS(acc(r, 0), K1, Mem{Base: y})
		VMOVUPS(acc(r, 1), K2, Mem{Base: y}.Offset(64))
		if r+1 < rows {
			ADDQ(ys, y)
		}
	}
	VZEROUPPER()
	RET()
}

// convThinFilter emits convThinW:
//
//	func(nimg int, rows int, cols int, x *float32, rsx int, brow int, bimg int, dy *float32, c *float32)
//
// the filter gradient of a thin input, one channel, to 32 output
// channels: C(t, o) = sum over positions p of X(p + s_t) DY(p, o) for the
// 9 taps t = 3u + v (s_t = u rows and v columns), p over nimg images of
// rows x cols. X(p) is a float of a plane with a zero border: from x, 4
// bytes a column, rsx bytes a row (u), brow bytes more after each row and
// bimg after each image. DY(p, o) is 32 floats a position, contiguous. C
// is 9 rows of 32 floats at c, overwritten.
func convThinFilter() {
	name := "convThinW"
	TEXT(name, NOSPLIT, "func(nimg int, rows int, cols int, x *float32, rsx int, brow int, bimg int, dy *float32, c *float32)")
	Pragma("noescape")
	Doc(name + " accumulates a thin filter-gradient tile of 9 taps x 32 output channels (see conv.go in asm).")
	acc := func(t, v int) VecPhysical { return zregs[2*t+v] }
	d0, d1, xb := zregs[18], zregs[19], zregs[20]
	for t := 0; t < 9; t++ {
		for v := 0; v < 2; v++ {
			VPXORD(acc(t, v), acc(t, v), acc(t, v))
		}
	}
	nimg, rows, cols, x, rsx, dy := GP64(), GP64(), GP64(), GP64(), GP64(), GP64()
	Load(Param("nimg"), nimg)
	Load(Param("x"), x)
	Load(Param("rsx"), rsx)
	Load(Param("dy"), dy)
	Label(name + "_img")
	Load(Param("rows"), rows)
	Label(name + "_row")
	Load(Param("cols"), cols)
	Label(name + "_col")
	VMOVUPS(Mem{Base: dy}, d0)
	VMOVUPS(Mem{Base: dy}.Offset(64), d1)
	for u := 0; u < 3; u++ {
		for v := 0; v < 3; v++ {
			var m Mem
			switch u {
			case 0:
				m = Mem{Base: x}
			case 1:
				m = Mem{Base: x, Index: rsx, Scale: 1}
			default:
				m = Mem{Base: x, Index: rsx, Scale: 2}
			}
			VBROADCASTSS(m.Offset(4*v), xb)
			VFMADD231PS(d0, xb, acc(3*u+v, 0))
			VFMADD231PS(d1, xb, acc(3*u+v, 1))
		}
	}
	ADDQ(U8(4), x)
	ADDQ(U32(128), dy)
	DECQ(cols)
	JNE(LabelRef(name + "_col"))
	{
		t := GP64()
		Load(Param("brow"), t)
		ADDQ(t, x)
	}
	DECQ(rows)
	JNE(LabelRef(name + "_row"))
	{
		t := GP64()
		Load(Param("bimg"), t)
		ADDQ(t, x)
	}
	DECQ(nimg)
	JNE(LabelRef(name + "_img"))
	c := GP64()
	Load(Param("c"), c)
	for t := 0; t < 9; t++ {
		for v := 0; v < 2; v++ {
			VMOVUPS(acc(t, v), Mem{Base: c}.Offset(128*t+64*v))
		}
	}
	VZEROUPPER()
	RET()
}
