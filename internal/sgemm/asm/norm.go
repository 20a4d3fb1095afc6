package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// The group-norm kernels (AVX-512), one pass each over a channel or a
// group: float64 sums of x and x^2 (forward statistics) or of dy and dy x
// (backward; float32 products are exact in float64), and the two affine
// maps y = (x - m) a + b and dx = A dy + B (x - m) + C in float32. The
// sums go to fixed lanes (element i of each 32 to lane i mod 32) added in
// a fixed order at the end: the result depends on the data only.
func normKernels() {
	normSums("normSums", false)
	normSums("normDotSums", true)
	normApply()
	normBackApply()
	vecAdd()
	siluTo()
	axpy()
}

// tailMask sets K1 to the first n&15 lanes (n in a register, clobbered
// into m).
func tailMask(n, m GPVirtual) {
	MOVQ(n, m)
	ANDQ(U8(15), m)
	t := GP64()
	MOVQ(U32(1), t)
	SHLXQ(m, t, t)
	DECQ(t)
	KMOVW(t.As32(), K1)
}

// normSums emits
//
//	normSums(n int, x *float32, out *float64)            out = sum x, sum x^2
//	normDotSums(n int, x *float32, y *float32, out *float64) out = sum x, sum x y
//
// in float64: four zmm accumulators of 8 lanes for each sum, 32 floats a
// step, a masked tail, then the accumulators and lanes added in a fixed
// order.
func normSums(name string, dot bool) {
	sig := "func(n int, x *float32, out *float64)"
	if dot {
		sig = "func(n int, x *float32, y *float32, out *float64)"
	}
	TEXT(name, NOSPLIT, sig)
	Pragma("noescape")
	if dot {
		Doc(name + " sets out[0] = sum x, out[1] = sum x y over n floats, in float64.")
	} else {
		Doc(name + " sets out[0] = sum x, out[1] = sum x^2 over n floats, in float64.")
	}
	n, x, out := GP64(), GP64(), GP64()
	Load(Param("n"), n)
	Load(Param("x"), x)
	Load(Param("out"), out)
	var y GPVirtual
	if dot {
		y = GP64()
		Load(Param("y"), y)
	}
	s := []VecPhysical{Z0, Z1, Z2, Z3}
	q := []VecPhysical{Z4, Z5, Z6, Z7}
	xv := []VecPhysical{Z8, Z9, Z10, Z11}
	yv := []VecPhysical{Z12, Z13, Z14, Z15}
	for i := 0; i < 4; i++ {
		VPXORQ(s[i], s[i], s[i])
		VPXORQ(q[i], q[i], q[i])
	}
	off := GP64()
	XORQ(off, off)
	rest := GP64()
	MOVQ(n, rest)
	// step adds 8 floats at off + disp bytes into accumulator pair i.
	step := func(i, disp int, masked bool) {
		m := Mem{Base: x, Index: off, Scale: 4}.Offset(disp)
		if masked {
			VMOVUPS_Z(m, K1, xv[i].AsY())
			VCVTPS2PD(xv[i].AsY(), xv[i])
		} else {
			VCVTPS2PD(m, xv[i])
		}
		VADDPD(xv[i], s[i], s[i])
		if dot {
			my := Mem{Base: y, Index: off, Scale: 4}.Offset(disp)
			if masked {
				VMOVUPS_Z(my, K1, yv[i].AsY())
				VCVTPS2PD(yv[i].AsY(), yv[i])
			} else {
				VCVTPS2PD(my, yv[i])
			}
			VFMADD231PD(yv[i], xv[i], q[i])
		} else {
			VFMADD231PD(xv[i], xv[i], q[i])
		}
	}
	Label(name + "_loop")
	CMPQ(rest, U8(32))
	JL(LabelRef(name + "_tail"))
	for i := 0; i < 4; i++ {
		step(i, 32*i, false)
	}
	ADDQ(U8(32), off)
	SUBQ(U8(32), rest)
	JMP(LabelRef(name + "_loop"))
	Label(name + "_tail")
	// Up to 31 floats: whole groups of 8 into accumulator pairs 0, 1, 2,
	// then the last n mod 8 masked.
	for i := 0; i < 4; i++ {
		CMPQ(rest, U8(8))
		JL(LabelRef(name + "_last"))
		step(i, 0, false)
		ADDQ(U8(8), off)
		SUBQ(U8(8), rest)
	}
	Label(name + "_last")
	TESTQ(rest, rest)
	JE(LabelRef(name + "_reduce"))
	{
		t := GP64()
		MOVQ(U32(1), t)
		SHLXQ(rest, t, t)
		DECQ(t)
		KMOVW(t.As32(), K1)
	}
	// The last n mod 8 floats, into accumulator pair 0.
	step(0, 0, true)
	Label(name + "_reduce")
	for _, a := range [][]VecPhysical{s, q} {
		VADDPD(a[1], a[0], a[0])
		VADDPD(a[3], a[2], a[2])
		VADDPD(a[2], a[0], a[0])
		VEXTRACTF64X4(U8(1), a[0], Y8)
		VADDPD(Y8, a[0].AsY(), a[0].AsY())
		VEXTRACTF128(U8(1), a[0].AsY(), X8)
		VADDPD(X8, a[0].AsX(), a[0].AsX())
		VPERMILPD(U8(1), a[0].AsX(), X8)
		VADDSD(X8, a[0].AsX(), a[0].AsX())
	}
	VMOVSD(s[0].AsX(), Mem{Base: out})
	VMOVSD(q[0].AsX(), Mem{Base: out}.Offset(8))
	VZEROUPPER()
	RET()
}

// normApply emits normApply(n int, x, y *float32, k *float32): y = (x -
// k[0]) k[1] + k[2] over n floats (the rounding of the subtraction, then
// one fused multiply-add).
func normApply() {
	TEXT("normApply", NOSPLIT, "func(n int, x *float32, y *float32, k *float32)")
	Pragma("noescape")
	Doc("normApply sets y = (x - k[0]) k[1] + k[2] over n floats.")
	n, x, y, k := GP64(), GP64(), GP64(), GP64()
	Load(Param("n"), n)
	Load(Param("x"), x)
	Load(Param("y"), y)
	Load(Param("k"), k)
	m, a, b := Z16, Z17, Z18
	VBROADCASTSS(Mem{Base: k}, m)
	VBROADCASTSS(Mem{Base: k}.Offset(4), a)
	VBROADCASTSS(Mem{Base: k}.Offset(8), b)
	off, rest := GP64(), GP64()
	XORQ(off, off)
	MOVQ(n, rest)
	v := []VecPhysical{Z0, Z1, Z2, Z3}
	Label("normApply_loop")
	CMPQ(rest, U8(64))
	JL(LabelRef("normApply_one"))
	for i := range v {
		VMOVUPS(Mem{Base: x, Index: off, Scale: 4}.Offset(64*i), v[i])
		VSUBPS(m, v[i], v[i])
	}
	for i := range v {
		VFMADD213PS(b, a, v[i])
		VMOVUPS(v[i], Mem{Base: y, Index: off, Scale: 4}.Offset(64*i))
	}
	ADDQ(U8(64), off)
	SUBQ(U8(64), rest)
	JMP(LabelRef("normApply_loop"))
	Label("normApply_one")
	CMPQ(rest, U8(16))
	JL(LabelRef("normApply_tail"))
	VMOVUPS(Mem{Base: x, Index: off, Scale: 4}, v[0])
	VSUBPS(m, v[0], v[0])
	VFMADD213PS(b, a, v[0])
	VMOVUPS(v[0], Mem{Base: y, Index: off, Scale: 4})
	ADDQ(U8(16), off)
	SUBQ(U8(16), rest)
	JMP(LabelRef("normApply_one"))
	Label("normApply_tail")
	TESTQ(rest, rest)
	JE(LabelRef("normApply_done"))
	tailMask(rest, GP64())
	VMOVUPS_Z(Mem{Base: x, Index: off, Scale: 4}, K1, v[0])
	VSUBPS(m, v[0], v[0])
	VFMADD213PS(b, a, v[0])
	VMOVUPS(v[0], K1, Mem{Base: y, Index: off, Scale: 4})
	Label("normApply_done")
	VZEROUPPER()
	RET()
}

// normBackApply emits normBackApply(n int, dy, x, dx *float32, k
// *float32): dx = k[0] dy + k[2] (x - k[1]) + k[3] over n floats.
func normBackApply() {
	TEXT("normBackApply", NOSPLIT, "func(n int, dy *float32, x *float32, dx *float32, k *float32)")
	Pragma("noescape")
	Doc("normBackApply sets dx = k[0] dy + k[2] (x - k[1]) + k[3] over n floats.")
	n, dy, x, dx, k := GP64(), GP64(), GP64(), GP64(), GP64()
	Load(Param("n"), n)
	Load(Param("dy"), dy)
	Load(Param("x"), x)
	Load(Param("dx"), dx)
	Load(Param("k"), k)
	ka, m, kb, kc := Z16, Z17, Z18, Z19
	VBROADCASTSS(Mem{Base: k}, ka)
	VBROADCASTSS(Mem{Base: k}.Offset(4), m)
	VBROADCASTSS(Mem{Base: k}.Offset(8), kb)
	VBROADCASTSS(Mem{Base: k}.Offset(12), kc)
	off, rest := GP64(), GP64()
	XORQ(off, off)
	MOVQ(n, rest)
	v, w := []VecPhysical{Z0, Z1, Z2, Z3}, []VecPhysical{Z4, Z5, Z6, Z7}
	body := func(cnt int, masked bool) {
		for i := 0; i < cnt; i++ {
			mx := Mem{Base: x, Index: off, Scale: 4}.Offset(64 * i)
			md := Mem{Base: dy, Index: off, Scale: 4}.Offset(64 * i)
			if masked {
				VMOVUPS_Z(mx, K1, v[i])
				VSUBPS(m, v[i], v[i])
				VMOVUPS_Z(md, K1, w[i])
			} else {
				VMOVUPS(mx, v[i])
				VSUBPS(m, v[i], v[i])
				VMOVUPS(md, w[i])
			}
			// dx = (x - m) B + C, then + A dy
			VFMADD213PS(kc, kb, v[i])
			VFMADD231PS(ka, w[i], v[i])
			if masked {
				VMOVUPS(v[i], K1, Mem{Base: dx, Index: off, Scale: 4}.Offset(64*i))
			} else {
				VMOVUPS(v[i], Mem{Base: dx, Index: off, Scale: 4}.Offset(64*i))
			}
		}
	}
	Label("normBackApply_loop")
	CMPQ(rest, U8(64))
	JL(LabelRef("normBackApply_one"))
	body(4, false)
	ADDQ(U8(64), off)
	SUBQ(U8(64), rest)
	JMP(LabelRef("normBackApply_loop"))
	Label("normBackApply_one")
	CMPQ(rest, U8(16))
	JL(LabelRef("normBackApply_tail"))
	body(1, false)
	ADDQ(U8(16), off)
	SUBQ(U8(16), rest)
	JMP(LabelRef("normBackApply_one"))
	Label("normBackApply_tail")
	TESTQ(rest, rest)
	JE(LabelRef("normBackApply_done"))
	tailMask(rest, GP64())
	body(1, true)
	Label("normBackApply_done")
	VZEROUPPER()
	RET()
}

// vecAdd emits convAdd(n int, dst, src *float32): dst += src over n
// floats (the filter gradient's sum over image groups).
func vecAdd() {
	TEXT("convAdd", NOSPLIT, "func(n int, dst *float32, src *float32)")
	Pragma("noescape")
	Doc("convAdd sets dst += src over n floats.")
	n, dst, src := GP64(), GP64(), GP64()
	Load(Param("n"), n)
	Load(Param("dst"), dst)
	Load(Param("src"), src)
	off := GP64()
	XORQ(off, off)
	v := []VecPhysical{Z0, Z1, Z2, Z3}
	Label("convAdd_loop")
	CMPQ(n, U8(64))
	JL(LabelRef("convAdd_one"))
	for i := range v {
		VMOVUPS(Mem{Base: dst, Index: off, Scale: 4}.Offset(64*i), v[i])
		VADDPS(Mem{Base: src, Index: off, Scale: 4}.Offset(64*i), v[i], v[i])
		VMOVUPS(v[i], Mem{Base: dst, Index: off, Scale: 4}.Offset(64*i))
	}
	ADDQ(U8(64), off)
	SUBQ(U8(64), n)
	JMP(LabelRef("convAdd_loop"))
	Label("convAdd_one")
	CMPQ(n, U8(16))
	JL(LabelRef("convAdd_tail"))
	VMOVUPS(Mem{Base: dst, Index: off, Scale: 4}, v[0])
	VADDPS(Mem{Base: src, Index: off, Scale: 4}, v[0], v[0])
	VMOVUPS(v[0], Mem{Base: dst, Index: off, Scale: 4})
	ADDQ(U8(16), off)
	SUBQ(U8(16), n)
	JMP(LabelRef("convAdd_one"))
	Label("convAdd_tail")
	TESTQ(n, n)
	JE(LabelRef("convAdd_done"))
	tailMask(n, GP64())
	VMOVUPS_Z(Mem{Base: dst, Index: off, Scale: 4}, K1, v[0])
	VMOVUPS_Z(Mem{Base: src, Index: off, Scale: 4}, K1, v[1])
	VADDPS(v[1], v[0], v[0])
	VMOVUPS(v[0], K1, Mem{Base: dst, Index: off, Scale: 4})
	Label("convAdd_done")
	VZEROUPPER()
	RET()
}

// siluTo emits siluTo(n int, x, y *float32): y = silu(x + 0) over n
// floats, the SiLU of the epilogue (epi512: expNeg, then a division), in
// one pass (the +0 as the epilogue's zero bias: silu(-0) = +0 there).
func siluTo() {
	TEXT("siluTo", NOSPLIT, "func(n int, x *float32, y *float32)")
	Pragma("noescape")
	Doc("siluTo sets y = silu(x) over n floats (as epi512 with a zero bias).")
	n, x, y := GP64(), GP64(), GP64()
	Load(Param("n"), n)
	Load(Param("x"), x)
	Load(Param("y"), y)
	vec := func(i int) VecPhysical { return zregs[i] }
	konst := make([]Op, len(epiConsts))
	for i := range epiConsts {
		r := vec(16 + i)
		VBROADCASTSS(epiTable.Offset(32*i), r)
		konst[i] = r
	}
	z, xx, t, e, tmp := vec(0), vec(1), vec(2), vec(3), vec(4)
	zero := vec(15)
	VXORPS(zero.AsY(), zero.AsY(), zero.AsY())
	off := GP64()
	XORQ(off, off)
	body := func(masked bool) {
		m := Mem{Base: x, Index: off, Scale: 4}
		if masked {
			VMOVUPS_Z(m, K1, z)
		} else {
			VMOVUPS(m, z)
		}
		VADDPS(zero, z, z)
		expNeg(true, konst, zero, z, xx, t, e, tmp)
		VADDPS(konst[5], e, e)
		VDIVPS(e, z, z)
		if masked {
			VMOVUPS(z, K1, Mem{Base: y, Index: off, Scale: 4})
		} else {
			VMOVUPS(z, Mem{Base: y, Index: off, Scale: 4})
		}
	}
	Label("siluTo_loop")
	CMPQ(n, U8(16))
	JL(LabelRef("siluTo_tail"))
	body(false)
	ADDQ(U8(16), off)
	SUBQ(U8(16), n)
	JMP(LabelRef("siluTo_loop"))
	Label("siluTo_tail")
	TESTQ(n, n)
	JE(LabelRef("siluTo_done"))
	tailMask(n, GP64())
	body(true)
	Label("siluTo_done")
	VZEROUPPER()
	RET()
}

// axpy emits axpy(n int, a float32, x, y *float32): y += a x over n
// floats, the product rounded before the sum (no fused multiply-add), as
// the plain Go loop y[i] += a * x[i] rounds.
func axpy() {
	TEXT("axpy", NOSPLIT, "func(n int, a float32, x *float32, y *float32)")
	Pragma("noescape")
	Doc("axpy sets y += a x over n floats (multiply, then add: no FMA).")
	n, x, y := GP64(), GP64(), GP64()
	Load(Param("n"), n)
	Load(Param("x"), x)
	Load(Param("y"), y)
	a := Z16
	VBROADCASTSS(NewParamAddr("a", 8), a)
	off := GP64()
	XORQ(off, off)
	v, w := []VecPhysical{Z0, Z1, Z2, Z3}, []VecPhysical{Z4, Z5, Z6, Z7}
	body := func(cnt int, masked bool) {
		for i := 0; i < cnt; i++ {
			mx := Mem{Base: x, Index: off, Scale: 4}.Offset(64 * i)
			my := Mem{Base: y, Index: off, Scale: 4}.Offset(64 * i)
			if masked {
				VMOVUPS_Z(mx, K1, v[i])
				VMOVUPS_Z(my, K1, w[i])
				VMULPS(a, v[i], v[i])
			} else {
				VMULPS(mx, a, v[i])
				VMOVUPS(my, w[i])
			}
			VADDPS(v[i], w[i], w[i])
			if masked {
				VMOVUPS(w[i], K1, my)
			} else {
				VMOVUPS(w[i], my)
			}
		}
	}
	Label("axpy_loop")
	CMPQ(n, U8(64))
	JL(LabelRef("axpy_one"))
	body(4, false)
	ADDQ(U8(64), off)
	SUBQ(U8(64), n)
	JMP(LabelRef("axpy_loop"))
	Label("axpy_one")
	CMPQ(n, U8(16))
	JL(LabelRef("axpy_tail"))
	body(1, false)
	ADDQ(U8(16), off)
	SUBQ(U8(16), n)
	JMP(LabelRef("axpy_one"))
	Label("axpy_tail")
	TESTQ(n, n)
	JE(LabelRef("axpy_done"))
	tailMask(n, GP64())
	body(1, true)
	Label("axpy_done")
	VZEROUPPER()
	RET()
}
