// Command asm generates the amd64 assembly of package coupling with avo:
// the kernel rows and matrix-vector products of Sinkhorn's iterations
// (coupling/sinkhorn.go, coupling/exp.go)
// and the AVX-512 passes of the exact assignment (coupling/assign.go): each
// row less its minimum, the column minima of the column reduction, a row's two smallest reduced
// costs for the augmenting row reduction, and the relaxation of the
// shortest-path search. Each has a plain-Go reference in assign.go that
// it matches bit for bit (assign_kernels_test.go).
//
// Run it through go generate in coupling (see gen.go there).
package main

import (
	"math"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// VCMPPD's predicates: the costs are finite, so no NaN reaches them.
const (
	cmpEQ = 0 // equal, ordered
	cmpLT = 1 // less than, ordered
)

var lanes Mem

func main() {
	ConstraintExpr("!noasm")
	// The lane numbers 0..7, then eight 8s (the second block's offset).
	lanes = GLOBL("couplinglanes", RODATA|NOPTR)
	for l := range 16 {
		DATA(4*l, U32(uint32(min(l, 8))))
	}
	widenCosts()
	rowMinSub()
	columnMin()
	rowTop2()
	relaxMin()
	matVec()
	matTVec()
	expKernelRow()
	Generate()
}

// broadcastInf sets z to +Inf in every lane.
func broadcastInf(z VecVirtual) {
	inf, x := GP64(), XMM()
	MOVQ(U64(math.Float64bits(math.Inf(1))), inf)
	MOVQ(inf, x)
	VBROADCASTSD(x, z)
}

// broadcast32 sets y's eight int32 lanes to v.
func broadcast32(y VecVirtual, v uint32) {
	r := GP32()
	MOVL(U32(v), r)
	VPBROADCASTD(r, y)
}

// widenCosts is widenCostsGo over n costs, n a multiple of 16: 16 float32
// a step converted to float64 in two halves, and VFPCLASSPS flagging
// NaNs and infinities into a mask kept across the steps.
func widenCosts() {
	TEXT("widenCostsAVX512", NOSPLIT, "func(dst *float64, src *float32, n int) bool")
	Pragma("noescape")
	Doc("widenCostsAVX512 converts src[0:n] (n a multiple of 16) to float64 in dst and reports whether every value is finite.")
	dst := Load(Param("dst"), GP64())
	src := Load(Param("src"), GP64())
	n := Load(Param("n"), GP64())
	bad, flags := GP32(), GP32()
	XORL(bad, bad)
	j := GP64()
	XORQ(j, j)
	Label("widen")
	lo, hi := ZMM(), ZMM()
	VCVTPS2PD(Mem{Base: src, Index: j, Scale: 4}, lo)
	VCVTPS2PD(Mem{Base: src, Index: j, Scale: 4, Disp: 32}, hi)
	VMOVUPD(lo, Mem{Base: dst, Index: j, Scale: 8})
	VMOVUPD(hi, Mem{Base: dst, Index: j, Scale: 8, Disp: 64})
	x := ZMM()
	VMOVUPS(Mem{Base: src, Index: j, Scale: 4}, x)
	// classes QNaN (0x01), +Inf (0x08), -Inf (0x10), SNaN (0x80)
	VFPCLASSPSZ(U8(0x99), x, K1)
	KMOVW(K1, flags)
	ORL(flags, bad)
	ADDQ(U8(16), j)
	CMPQ(j, n)
	JLT(LabelRef("widen"))
	TESTL(bad, bad)
	ok := GP8()
	SETEQ(ok)
	Store(ok, ReturnIndex(0))
	VZEROUPPER()
	RET()
}

// rowMinSub is subtractRowMinGo over a row of n values, n a multiple of
// 8: the minimum over four accumulators of 8 lanes, made +0 if a zero
// (so that the lanes' order does not decide its sign), then subtracted.
func rowMinSub() {
	TEXT("rowMinSubAVX512", NOSPLIT, "func(row *float64, n int)")
	Pragma("noescape")
	Doc("rowMinSubAVX512 subtracts from row[0:n] (n a multiple of 8) its smallest value (+0 for a zero).")
	row := Load(Param("row"), GP64())
	n := Load(Param("n"), GP64())
	acc := []VecVirtual{ZMM(), ZMM(), ZMM(), ZMM()}
	broadcastInf(acc[0])
	for k := 1; k < len(acc); k++ {
		VMOVAPD(acc[0], acc[k])
	}
	n32 := GP64()
	MOVQ(n, n32)
	ANDQ(I32(-32), n32)
	j := GP64()
	XORQ(j, j)
	Label("rowmin32")
	CMPQ(j, n32)
	JGE(LabelRef("rowmin8"))
	for k := range acc {
		VMINPD(Mem{Base: row, Index: j, Scale: 8, Disp: 64 * k}, acc[k], acc[k])
	}
	ADDQ(U8(32), j)
	JMP(LabelRef("rowmin32"))
	Label("rowmin8")
	CMPQ(j, n)
	JGE(LabelRef("rowminreduce"))
	VMINPD(Mem{Base: row, Index: j, Scale: 8}, acc[0], acc[0])
	ADDQ(U8(8), j)
	JMP(LabelRef("rowmin8"))
	Label("rowminreduce")
	VMINPD(acc[1], acc[0], acc[0])
	VMINPD(acc[3], acc[2], acc[2])
	VMINPD(acc[2], acc[0], acc[0])
	hi, m, x, zero := YMM(), ZMM(), XMM(), XMM()
	VEXTRACTF64X4(U8(1), acc[0], hi)
	VMINPD(hi, acc[0].AsY(), m.AsY())
	VEXTRACTF128(U8(1), m.AsY(), x)
	VMINPD(x, m.AsX(), m.AsX())
	VPERMILPD(U8(1), m.AsX(), x)
	VMINPD(x, m.AsX(), m.AsX())
	VXORPD(zero, zero, zero)
	VADDSD(zero, m.AsX(), m.AsX()) // -0 + 0 = +0
	VBROADCASTSD(m.AsX(), m)
	XORQ(j, j)
	Label("rowsub")
	v := ZMM()
	VMOVUPD(Mem{Base: row, Index: j, Scale: 8}, v)
	VSUBPD(m, v, v)
	VMOVUPD(v, Mem{Base: row, Index: j, Scale: 8})
	ADDQ(U8(8), j)
	CMPQ(j, n)
	JLT(LabelRef("rowsub"))
	VZEROUPPER()
	RET()
}

// columnMin is columnMinGo over columns [0, n), n a multiple of 8.
func columnMin() {
	TEXT("columnMinAVX512", NOSPLIT, "func(row, v *float64, best *int32, n int, i int32)")
	Pragma("noescape")
	Doc("columnMinAVX512 lowers v_j to row_j and sets best_j = i where row_j < v_j, for j < n (a multiple of 8).")
	row := Load(Param("row"), GP64())
	v := Load(Param("v"), GP64())
	best := Load(Param("best"), GP64())
	n := Load(Param("n"), GP64())
	iv := YMM()
	VPBROADCASTD(Load(Param("i"), GP32()), iv)
	j := GP64()
	XORQ(j, j)
	Label("colloop")
	x, vj := ZMM(), ZMM()
	VMOVUPD(Mem{Base: row, Index: j, Scale: 8}, x)
	VMOVUPD(Mem{Base: v, Index: j, Scale: 8}, vj)
	VCMPPD(U8(cmpLT), vj, x, K1) // K1: x < v_j
	VMOVUPD(x, K1, Mem{Base: v, Index: j, Scale: 8})
	VMOVDQU32(iv, K1, Mem{Base: best, Index: j, Scale: 4})
	ADDQ(U8(8), j)
	CMPQ(j, n)
	JLT(LabelRef("colloop"))
	VZEROUPPER()
	RET()
}

// rowTop2 is rowTop2Go over columns [0, n), n a multiple of 8, each lane
// on its own columns (every 8th): the caller merges the lanes.
func rowTop2() {
	TEXT("rowTop2AVX512", NOSPLIT, "func(row, v *float64, n int, u *[16]float64, js *[16]int32)")
	Pragma("noescape")
	Doc("rowTop2AVX512 writes each lane's smallest and second smallest row_j - v_j (u[0:8], u[8:16]) and their columns (js), the first column on ties.")
	row := Load(Param("row"), GP64())
	v := Load(Param("v"), GP64())
	n := Load(Param("n"), GP64())
	u1, u2 := ZMM(), ZMM()
	col, j1, j2, eight := YMM(), YMM(), YMM(), YMM()
	broadcastInf(u1)
	VMOVAPD(u1, u2)
	VMOVDQU32(lanes, col)
	VPCMPEQD(j1, j1, j1) // -1
	VMOVDQA32(j1, j2)
	broadcast32(eight, 8)
	j := GP64()
	XORQ(j, j)
	Label("toploop")
	h := ZMM()
	VMOVUPD(Mem{Base: row, Index: j, Scale: 8}, h)
	VSUBPD(Mem{Base: v, Index: j, Scale: 8}, h, h)
	VCMPPD(U8(cmpLT), u1, h, K1) // K1: h < u1
	VCMPPD(U8(cmpLT), u2, h, K2) // K2: h < u2
	VMOVAPD(h, K2, u2)
	VMOVDQA32(col, K2, j2)
	VMOVAPD(u1, K1, u2)
	VMOVDQA32(j1, K1, j2)
	VMOVAPD(h, K1, u1)
	VMOVDQA32(col, K1, j1)
	VPADDD(eight, col, col)
	ADDQ(U8(8), j)
	CMPQ(j, n)
	JLT(LabelRef("toploop"))
	up := Load(Param("u"), GP64())
	VMOVUPD(u1, Mem{Base: up})
	VMOVUPD(u2, Mem{Base: up, Disp: 64})
	jp := Load(Param("js"), GP64())
	VMOVDQU32(j1, Mem{Base: jp})
	VMOVDQU32(j2, Mem{Base: jp, Disp: 32})
	VZEROUPPER()
	RET()
}

// relaxMin is relaxMinGo over columns [0, n), n a multiple of 16. Each
// lane keeps its smallest distance and the first of its columns that has
// it, over all its columns and over its free ones (colRow_j < 0), in two
// sets of registers (the even and the odd blocks of 8 columns: one chain
// of compare and blend a block would bound the loop by its latency); the
// sets are merged lane by lane in the order (distance, column) and the
// lanes reduced in registers. A lane's columns start at -1 and only a
// finite distance replaces them, so a reduction over no finite distance
// gives +Inf and -1.
func relaxMin() {
	TEXT("relaxMinAVX512", NOSPLIT, "func(d, vs, r *float64, pred, colRow *int32, n int, h float64, i int32) (best float64, jb int, bestFree float64, jf int)")
	Pragma("noescape")
	Doc("relaxMinAVX512 is relaxMinGo over columns [0, n), n a multiple of 16, with the smallest distance over all and over the free columns.")
	d := Load(Param("d"), GP64())
	vs := Load(Param("vs"), GP64())
	r := Load(Param("r"), GP64())
	pred := Load(Param("pred"), GP64())
	colRow := Load(Param("colRow"), GP64())
	n := Load(Param("n"), GP64())
	hx := Load(Param("h"), XMM())
	h := ZMM()
	rowV, col, sixteen := YMM(), YMM(), YMM()
	VBROADCASTSD(hx, h)
	VPBROADCASTD(Load(Param("i"), GP32()), rowV)
	VMOVDQU32(lanes, col)
	broadcast32(sixteen, 16)
	var sets [2]minSet
	for k := range sets {
		sets[k] = newMinSet()
	}

	j := GP64()
	XORQ(j, j)
	Label("relaxloop")
	for k := range sets {
		at := func(base Register, scale uint8) Mem {
			return Mem{Base: base, Index: j, Scale: scale, Disp: 8 * k * int(scale)}
		}
		dj, old, owner := ZMM(), ZMM(), YMM()
		VMOVUPD(at(r, 8), dj)
		VSUBPD(at(vs, 8), dj, dj)
		VSUBPD(h, dj, dj)
		VMOVUPD(at(d, 8), old)
		VCMPPD(U8(cmpLT), old, dj, K1) // K1: dj < old
		VMOVAPD(dj, K1, old)
		VMOVUPD(old, at(d, 8))
		VMOVDQU32(rowV, K1, at(pred, 4))
		cols := col
		if k == 1 {
			cols = YMM()
			VPADDD(lanes.Offset(32), col, cols) // the first block's columns + 8
		}
		s := sets[k]
		VCMPPD(U8(cmpLT), s.allD, old, K2) // K2: old < the lane's best
		VMOVAPD(old, K2, s.allD)
		VMOVDQA32(cols, K2, s.allCol)
		VMOVDQU32(at(colRow, 4), owner)
		VPMOVD2M(owner, K3)                     // K3: free (colRow_j < 0)
		VCMPPD(U8(cmpLT), s.freeD, old, K3, K4) // K4: free and old < the lane's best free
		VMOVAPD(old, K4, s.freeD)
		VMOVDQA32(cols, K4, s.freeCol)
	}
	VPADDD(sixteen, col, col)
	ADDQ(U8(16), j)
	CMPQ(j, n)
	JLT(LabelRef("relaxloop"))

	mergeFirstMin(sets[0].allD, sets[0].allCol, sets[1].allD, sets[1].allCol)
	mergeFirstMin(sets[0].freeD, sets[0].freeCol, sets[1].freeD, sets[1].freeCol)
	reduceFirstMin(sets[0].allD, sets[0].allCol, 0)
	reduceFirstMin(sets[0].freeD, sets[0].freeCol, 2)
	VZEROUPPER()
	RET()
}

// minSet is one set of per-lane minima of relaxMin.
type minSet struct {
	allD, freeD     VecVirtual // zmm: the smallest distance, of all and of the free columns
	allCol, freeCol VecVirtual // ymm: its first column, -1 for none
}

func newMinSet() minSet {
	s := minSet{ZMM(), ZMM(), YMM(), YMM()}
	broadcastInf(s.allD)
	VMOVAPD(s.allD, s.freeD)
	VPCMPEQD(s.allCol, s.allCol, s.allCol) // -1
	VMOVDQA32(s.allCol, s.freeCol)
	return s
}

// mergeFirstMin sets each lane of (d, c) to the smaller of (d, c) and
// (d2, c2) in the order (distance, column).
func mergeFirstMin(d, c, d2, c2 VecVirtual) {
	VCMPPD(U8(cmpLT), d, d2, K1)     // K1: d2 < d
	VCMPPD(U8(cmpEQ), d, d2, K2)     // K2: d2 == d
	VPCMPD(U8(cmpLT), c, c2, K2, K2) // K2: d2 == d and c2 < c
	KORW(K1, K2, K1)
	VMOVAPD(d2, K1, d)
	VMOVDQA32(c2, K1, c)
}

// reduceFirstMin stores the smallest of the eight distances in vals and
// the first of the columns in cols that has it as results ret and ret+1.
func reduceFirstMin(vals, cols VecVirtual, ret int) {
	hi, m, x := YMM(), ZMM(), XMM()
	VEXTRACTF64X4(U8(1), vals, hi)
	VMINPD(hi, vals.AsY(), m.AsY())
	VEXTRACTF128(U8(1), m.AsY(), x)
	VMINPD(x, m.AsX(), m.AsX())
	VPERMILPD(U8(1), m.AsX(), x)
	VMINPD(x, m.AsX(), m.AsX())
	Store(m.AsX(), ReturnIndex(ret))
	VBROADCASTSD(m.AsX(), m)
	VCMPPD(U8(cmpEQ), m, vals, K5)
	cand := YMM()
	broadcast32(cand, math.MaxInt32)
	VMOVDQA32(cols, K5, cand)
	VEXTRACTI128(U8(1), cand, x)
	VPMINSD(x, cand.AsX(), cand.AsX())
	VPSHUFD(U8(0x4e), cand.AsX(), x)
	VPMINSD(x, cand.AsX(), cand.AsX())
	VPSHUFD(U8(0xb1), cand.AsX(), x)
	VPMINSD(x, cand.AsX(), cand.AsX())
	c32, c64 := GP32(), GP64()
	VMOVD(cand.AsX(), c32)
	MOVLQSX(c32, c64)
	Store(c64, ReturnIndex(ret+1))
}

// matVec is matVecGo's whole blocks of 32 columns: for each of the n rows,
// four accumulators of 8 lanes take the fused multiply-adds of columns j
// mod 32 (accumulator j mod 32 / 8, lane j mod 8), then add up as sum32
// does, and the row's sum is stored in out.
func matVec() {
	TEXT("matVecAVX512", NOSPLIT, "func(out, k, x *float64, n, n32 int)")
	Pragma("noescape")
	Doc("matVecAVX512 writes out_i = sum over j < n32 of k_ij x_j for i < n (k n x n row-major, n32 a multiple of 32 > 0), summed as matVecGo sums.")
	out, k, x, n, n32, stride := matArgs()
	i := GP64()
	XORQ(i, i)
	Label("mvrow")
	acc := zeroAccs()
	j := GP64()
	XORQ(j, j)
	Label("mvcol")
	for q, a := range acc {
		xv := ZMM()
		VMOVUPD(Mem{Base: x, Index: j, Scale: 8, Disp: 64 * q}, xv)
		VFMADD231PD(Mem{Base: k, Index: j, Scale: 8, Disp: 64 * q}, xv, a)
	}
	ADDQ(U8(32), j)
	CMPQ(j, n32)
	JLT(LabelRef("mvcol"))
	VADDPD(acc[1], acc[0], acc[0])
	VADDPD(acc[3], acc[2], acc[2])
	VADDPD(acc[2], acc[0], acc[0])
	hi, m, t := YMM(), YMM(), XMM()
	VEXTRACTF64X4(U8(1), acc[0], hi)
	VADDPD(hi, acc[0].AsY(), m)
	VEXTRACTF128(U8(1), m, t)
	VADDPD(t, m.AsX(), t)
	u := XMM()
	VPERMILPD(U8(1), t, u)
	VADDSD(u, t, t)
	VMOVSD(t, Mem{Base: out, Index: i, Scale: 8})
	ADDQ(stride, k)
	INCQ(i)
	CMPQ(i, n)
	JLT(LabelRef("mvrow"))
	VZEROUPPER()
	RET()
}

// matTVec is matTVecGo for the columns j < n32: 32 columns at a time in
// four accumulators, each lane a column's sum over the rows in order.
func matTVec() {
	TEXT("matTVecAVX512", NOSPLIT, "func(out, k, x *float64, n, n32 int)")
	Pragma("noescape")
	Doc("matTVecAVX512 writes out_j = sum over i < n of k_ij x_i for j < n32 (k n x n row-major, n32 a multiple of 32 > 0), summed as matTVecGo sums.")
	out, k, x, n, n32, stride := matArgs()
	jb := GP64()
	XORQ(jb, jb)
	Label("mtblock")
	acc := zeroAccs()
	p := GP64()
	LEAQ(Mem{Base: k, Index: jb, Scale: 8}, p)
	i := GP64()
	XORQ(i, i)
	Label("mtrow")
	xi := ZMM()
	VBROADCASTSD(Mem{Base: x, Index: i, Scale: 8}, xi)
	for q, a := range acc {
		VFMADD231PD(Mem{Base: p, Disp: 64 * q}, xi, a)
	}
	ADDQ(stride, p)
	INCQ(i)
	CMPQ(i, n)
	JLT(LabelRef("mtrow"))
	for q, a := range acc {
		VMOVUPD(a, Mem{Base: out, Index: jb, Scale: 8, Disp: 64 * q})
	}
	ADDQ(U8(32), jb)
	CMPQ(jb, n32)
	JLT(LabelRef("mtblock"))
	VZEROUPPER()
	RET()
}

// matArgs loads the products' arguments (func(out, k, x *float64, n, n32
// int)) and the row stride in bytes, 8n.
func matArgs() (out, k, x, n, n32, stride Register) {
	out = Load(Param("out"), GP64())
	k = Load(Param("k"), GP64())
	x = Load(Param("x"), GP64())
	n = Load(Param("n"), GP64())
	n32 = Load(Param("n32"), GP64())
	stride = GP64()
	MOVQ(n, stride)
	SHLQ(U8(3), stride)
	return
}

// zeroAccs returns four zmm accumulators set to zero.
func zeroAccs() []VecVirtual {
	acc := []VecVirtual{ZMM(), ZMM(), ZMM(), ZMM()}
	for _, a := range acc {
		VXORPD(a, a, a)
	}
	return acc
}

// The constants of exp64 (coupling/exp.go), which expKernelRow must
// compute with exactly: the same values, in the same operations.
const (
	expLog2e = 1.44269504088896338700e+00
	expLn2Hi = 6.93147180369123816490e-01
	expLn2Lo = 1.90821492927058770002e-10
	expMax   = 709.0
	expMin   = -708.0
)

// expKernelRow is expKernelRowGo over n values, n a multiple of 8: each
// lane computes exp64 of (fi + g_j - c_j) / eps, the comparisons with
// expMax and expMin as masks applied last.
func expKernelRow() {
	TEXT("expKernelRowAVX512", NOSPLIT, "func(k *float64, c *float32, gj *float64, n int, fi, eps float64)")
	Pragma("noescape")
	Doc("expKernelRowAVX512 writes k_j = exp64((fi + g_j - c_j) / eps) for j < n (a multiple of 8).")
	consts := GLOBL("couplingexp", RODATA|NOPTR)
	vals := []float64{expLog2e, expLn2Hi, expLn2Lo, expMax, expMin, math.Inf(1)}
	fact := 1.0
	for i := 0; i <= 12; i++ {
		if i > 0 {
			fact *= float64(i)
		}
		vals = append(vals, 1/fact)
	}
	for i, v := range vals {
		DATA(8*i, U64(math.Float64bits(v)))
	}
	DATA(8*len(vals), U64(1023))
	bc := func(i int) VecVirtual {
		z := ZMM()
		VBROADCASTSD(consts.Offset(8*i), z)
		return z
	}
	log2e, ln2hi, ln2lo, hi, lo, inf := bc(0), bc(1), bc(2), bc(3), bc(4), bc(5)
	var taylor [13]VecVirtual
	for i := range taylor {
		taylor[i] = bc(6 + i)
	}
	bias := ZMM()
	VPBROADCASTQ(consts.Offset(8*len(vals)), bias)
	k := Load(Param("k"), GP64())
	c := Load(Param("c"), GP64())
	g := Load(Param("gj"), GP64()) // not "g": the Go assembler's name of a register
	n := Load(Param("n"), GP64())
	fi, eps := ZMM(), ZMM()
	// straight from the arguments' memory: an SSE load cannot reach the
	// upper sixteen registers the allocator may pick
	for _, a := range []struct {
		name string
		z    VecVirtual
	}{{"fi", fi}, {"eps", eps}} {
		b, err := Param(a.name).Resolve()
		if err != nil {
			panic(err)
		}
		VBROADCASTSD(b.Addr, a.z)
	}
	zero := ZMM()
	VXORPD(zero, zero, zero)
	j := GP64()
	XORQ(j, j)
	Label("expkrow")
	x, cv := ZMM(), ZMM()
	VADDPD(Mem{Base: g, Index: j, Scale: 8}, fi, x)
	VCVTPS2PD(Mem{Base: c, Index: j, Scale: 4}, cv)
	VSUBPD(cv, x, x)
	VDIVPD(eps, x, x)
	VCMPPD(U8(0x1e), hi, x, K1) // K1: x > expMax (greater than, ordered, quiet)
	VCMPPD(U8(0x11), lo, x, K2) // K2: x < expMin (less than, ordered, quiet)
	nv := ZMM()
	VMULPD(log2e, x, nv)
	VRNDSCALEPD(U8(0), nv, nv) // to the nearest integer, ties to even
	r := ZMM()
	VMOVAPD(x, r)
	VFNMADD231PD(ln2hi, nv, r) // r = x - n ln2hi, one rounding
	VFNMADD231PD(ln2lo, nv, r)
	p := ZMM()
	VMOVAPD(taylor[12], p)
	for i := 11; i >= 0; i-- {
		VFMADD213PD(taylor[i], r, p) // p = p r + 1/i!
	}
	e := ZMM()
	VCVTTPD2QQ(nv, e)
	VPADDQ(bias, e, e)
	VPSLLQ(U8(52), e, e)
	VMULPD(e, p, p)
	VMOVAPD(inf, K1, p)
	VMOVAPD(zero, K2, p)
	VMOVUPD(p, Mem{Base: k, Index: j, Scale: 8})
	ADDQ(U8(8), j)
	CMPQ(j, n)
	JLT(LabelRef("expkrow"))
	VZEROUPPER()
	RET()
}
