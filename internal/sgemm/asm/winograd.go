package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// The transforms of the Winograd convolution F(2x2, 3x3)
// (internal/sgemm/winograd.go): a 2x2 output tile from a 4x4 input tile
// with 16 products per channel pair instead of 36. Each transform works on
// 16 channels of a channels-last block at once, one zmm per position; the
// products between them are the direct forward tiles with one tap.

func winogradKernels() {
	winogradInput()
	winogradOutput()
	winogradGrad()
}

// winogradInput emits wgInput16:
//
//	func(n int, src *float32, sa int, srow int, dst *float32, st int, sx int)
//
// for n tiles j: with d(r, c) the 16 channels at src + r srow + (2j + c)
// sa (r, c < 4), V = B^T d B, where B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0;
// 0 1 0 -1]; V(a, b) is stored at dst + (4a + b) sx + j st.
func winogradInput() {
	TEXT("wgInput16", NOSPLIT, "func(n int, src *float32, sa int, srow int, dst *float32, st int, sx int)")
	Pragma("noescape")
	Doc("wgInput16 computes the Winograd F(2x2, 3x3) input transform of n tiles of 16 channels (see winograd.go in asm).")
	n, src, sa, srow, dst, st, sx := GP64(), GP64(), GP64(), GP64(), GP64(), GP64(), GP64()
	Load(Param("n"), n)
	Load(Param("src"), src)
	Load(Param("sa"), sa)
	Load(Param("srow"), srow)
	Load(Param("dst"), dst)
	Load(Param("st"), st)
	Load(Param("sx"), sx)
	sa3 := GP64()
	LEAQ(Mem{Base: sa, Index: sa, Scale: 2}, sa3)
	d := func(r, c int) VecPhysical { return zregs[4*r+c] }
	t := func(r, c int) VecPhysical { return zregs[16+4*r+c] }
	TESTQ(n, n)
	JE(LabelRef("wgInput16_done"))
	Label("wgInput16_tile")
	rows := []GPVirtual{src, GP64(), GP64(), GP64()}
	LEAQ(Mem{Base: src, Index: srow, Scale: 1}, rows[1])
	LEAQ(Mem{Base: src, Index: srow, Scale: 2}, rows[2])
	LEAQ(Mem{Base: rows[1], Index: srow, Scale: 2}, rows[3])
	for r := 0; r < 4; r++ {
		for c := 0; c < 4; c++ {
			var m Mem
			switch c {
			case 0:
				m = Mem{Base: rows[r]}
			case 1:
				m = Mem{Base: rows[r], Index: sa, Scale: 1}
			case 2:
				m = Mem{Base: rows[r], Index: sa, Scale: 2}
			default:
				m = Mem{Base: rows[r], Index: sa3, Scale: 1}
			}
			VMOVUPS(m, d(r, c))
		}
	}
	// t = B^T d, down the columns.
	for c := 0; c < 4; c++ {
		VSUBPS(d(2, c), d(0, c), t(0, c))
		VADDPS(d(2, c), d(1, c), t(1, c))
		VSUBPS(d(1, c), d(2, c), t(2, c))
		VSUBPS(d(3, c), d(1, c), t(3, c))
	}
	// V = t B, along the rows (into d).
	for a := 0; a < 4; a++ {
		VSUBPS(t(a, 2), t(a, 0), d(a, 0))
		VADDPS(t(a, 2), t(a, 1), d(a, 1))
		VSUBPS(t(a, 1), t(a, 2), d(a, 2))
		VSUBPS(t(a, 3), t(a, 1), d(a, 3))
	}
	out := newStrided(dst, sx)
	for x := 0; x < 16; x++ {
		VMOVUPS(d(x/4, x%4), out.at(x))
	}
	ADDQ(sa, src)
	ADDQ(sa, src)
	ADDQ(st, dst)
	DECQ(n)
	JNE(LabelRef("wgInput16_tile"))
	Label("wgInput16_done")
	VZEROUPPER()
	RET()
}

// winogradOutput emits wgOutput16:
//
//	func(n int, src *float32, st int, sx int, dst *float32, sa int, srow int)
//
// for n tiles j: with M(a, b) the 16 channels at src + (4a + b) sx + j st,
// Y = A^T M A, where A^T = [1 1 1 0; 0 1 -1 -1]; Y(r, c) (r, c < 2) is
// stored at dst + r srow + (2j + c) sa.
func winogradOutput() {
	TEXT("wgOutput16", NOSPLIT, "func(n int, src *float32, st int, sx int, dst *float32, sa int, srow int)")
	Pragma("noescape")
	Doc("wgOutput16 computes the Winograd F(2x2, 3x3) output transform of n tiles of 16 channels (see winograd.go in asm).")
	n, src, st, sx, dst, sa, srow := GP64(), GP64(), GP64(), GP64(), GP64(), GP64(), GP64()
	Load(Param("n"), n)
	Load(Param("src"), src)
	Load(Param("st"), st)
	Load(Param("sx"), sx)
	Load(Param("dst"), dst)
	Load(Param("sa"), sa)
	Load(Param("srow"), srow)
	m := func(a, b int) VecPhysical { return zregs[4*a+b] }
	u := func(r, b int) VecPhysical { return zregs[16+4*r+b] }
	TESTQ(n, n)
	JE(LabelRef("wgOutput16_done"))
	Label("wgOutput16_tile")
	in := newStrided(src, sx)
	for x := 0; x < 16; x++ {
		VMOVUPS(in.at(x), m(x/4, x%4))
	}
	// u = A^T M, down the columns.
	for b := 0; b < 4; b++ {
		VADDPS(m(1, b), m(0, b), u(0, b))
		VADDPS(m(2, b), u(0, b), u(0, b))
		VSUBPS(m(2, b), m(1, b), u(1, b))
		VSUBPS(m(3, b), u(1, b), u(1, b))
	}
	// Y = u A, along the rows.
	row1 := GP64()
	LEAQ(Mem{Base: dst, Index: srow, Scale: 1}, row1)
	for r, base := range []GPVirtual{dst, row1} {
		y0, y1 := m(r, 0), m(r, 1)
		VADDPS(u(r, 1), u(r, 0), y0)
		VADDPS(u(r, 2), y0, y0)
		VSUBPS(u(r, 2), u(r, 1), y1)
		VSUBPS(u(r, 3), y1, y1)
		VMOVUPS(y0, Mem{Base: base})
		VMOVUPS(y1, Mem{Base: base, Index: sa, Scale: 1})
	}
	ADDQ(st, src)
	ADDQ(sa, dst)
	ADDQ(sa, dst)
	DECQ(n)
	JNE(LabelRef("wgOutput16_tile"))
	Label("wgOutput16_done")
	VZEROUPPER()
	RET()
}

// winogradGrad emits wgGrad16:
//
//	func(src0 *float32, src1 *float32, cmask int, dst *float32, sx int)
//
// the transform of the output gradient for the filter gradient, along a
// row of tiles of one channel (NCHW): for 16 tiles j, dy(r, c) = src_r[2j
// + c] (r, c < 2; of the 32 floats from src_r, those whose bit is set in
// cmask, the others zero), Z = A dy A^T, where A^T = [1 1 1 0; 0 1 -1
// -1]; Z(a, b) of tile j is stored at dst + (4a + b) sx + 4j. The stores
// are whole zmm, unmasked, whatever the row's length: the caller leaves
// room for 16 tiles and writes the tiles after a short row afterwards.
func winogradGrad() {
	deint := GLOBL("wgdeint", RODATA|NOPTR)
	for i := 0; i < 32; i++ { // the even indices, then the odd ones
		DATA(4*i, U32(2*(i%16)+i/16))
	}
	TEXT("wgGrad16", NOSPLIT, "func(src0 *float32, src1 *float32, cmask int, dst *float32, sx int)")
	Pragma("noescape")
	Doc("wgGrad16 computes the Winograd F(2x2, 3x3) transform of the output gradient along a row of 16 tiles of one channel (see winograd.go in asm).")
	src0, src1, cmask, dst, sx := GP64(), GP64(), GP64(), GP64(), GP64()
	Load(Param("src0"), src0)
	Load(Param("src1"), src1)
	Load(Param("cmask"), cmask)
	Load(Param("dst"), dst)
	Load(Param("sx"), sx)
	KMOVW(cmask.As32(), K1)
	SHRQ(U8(16), cmask)
	KMOVW(cmask.As32(), K2)
	// The index vectors live in z's registers until z is written, zero
	// in a loaded row's after the deinterleave.
	idxE, idxO, zero := zregs[24], zregs[25], zregs[0]
	VMOVUPS(deint.Offset(0), idxE)
	VMOVUPS(deint.Offset(64), idxO)
	// e[r], o[r]: the even and odd columns of row r (the tiles' dy(r, 0)
	// and dy(r, 1)).
	var e, o [2]VecPhysical
	for r, src := range []GPVirtual{src0, src1} {
		lo, hi := zregs[4*r], zregs[4*r+1]
		e[r], o[r] = zregs[4*r+2], zregs[4*r+3]
		VMOVUPS_Z(Mem{Base: src}, K1, lo)
		VMOVUPS_Z(Mem{Base: src}.Offset(64), K2, hi)
		VMOVAPS(idxE, e[r])
		VPERMI2PS(hi, lo, e[r])
		VMOVAPS(idxO, o[r])
		VPERMI2PS(hi, lo, o[r])
	}
	VPXORD(zero, zero, zero)
	// t(r, b) = (dy A^T)(r, b): e, e + o, e - o, -o.
	t := func(r, b int) VecPhysical { return zregs[8+4*r+b] }
	for r := 0; r < 2; r++ {
		VMOVAPS(e[r], t(r, 0))
		VADDPS(o[r], e[r], t(r, 1))
		VSUBPS(o[r], e[r], t(r, 2))
		VSUBPS(o[r], zero, t(r, 3))
	}
	// Z(a, b) = (A t)(a, b): t0, t0 + t1, t0 - t1, -t1.
	z := func(a, b int) VecPhysical { return zregs[16+4*a+b] }
	for b := 0; b < 4; b++ {
		VMOVAPS(t(0, b), z(0, b))
		VADDPS(t(1, b), t(0, b), z(1, b))
		VSUBPS(t(1, b), t(0, b), z(2, b))
		VSUBPS(t(1, b), zero, z(3, b))
	}
	out := newStrided(dst, sx)
	for x := 0; x < 16; x++ {
		VMOVUPS(z(x/4, x%4), out.at(x))
	}
	VZEROUPPER()
	RET()
}
