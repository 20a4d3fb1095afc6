package sgemm

import (
	"fmt"
	"sync"
)

// Direct 3x3 convolutions (zero padding 1, stride 1 or 2: the U-Net's
// convolutions but its 1x1 ones) on the AVX-512 kernels, without an im2col
// matrix. (At stride 1, from wgMinC channels and wgMinW positions wide,
// they run as Winograd convolutions instead: winograd.go.)
//
// The operands are NCHW, as everywhere in the gpu package. A unit of
// work copies the input rows it needs into a channels-last (NHWC) block,
// padded: rows of W + 2 positions, a position's channels contiguous
// (their count rounded up to 16, the extra ones zero), zero rows and
// columns around the image. There a 3x3 tap is a shift by whole
// positions, so the product over (tap, channel) reads the block in place:
// the forward tile (convF*) holds up to 14 output positions of one row
// (or two rows of up to 7) times 32 output channels in 28 zmm
// accumulators, broadcasts one input value per position and channel and
// multiplies it by two zmm of the packed filter, 9 C steps. The tile goes
// to an NHWC scratch that is transposed back into the NCHW output, with
// the bias (convUnpack16). At stride 2 the tile steps two positions per
// output. Backward data at stride 1 is the same convolution of dy with
// the filter flipped and its channel axes swapped; at stride 2 each of
// the four parities of the input position (row and column even or odd)
// is such a convolution with 1, 2, 2 or 4 of the taps, its outputs two
// positions apart. The filter gradient (convW*) sums, for 4 output
// channels, 3 horizontal taps and 32 input channels (24 accumulators), dy
// (read in place, NCHW) times the NHWC block of x, over every position of
// a fixed group of images: each group's partial sums are added in group
// order, so that the result does not depend on the thread count.
//
// The layout costs two transpositions of the activations per call (16 x
// 16 in registers, in cache) and no wasted products, unlike an NCHW
// implicit product over padded rows, whose vectors run along a row and
// carry its padding. The transpositions' own cost is small; what they
// wait for is memory (the batch's activations are far larger than the
// caches): so while a whole-image forward unit runs its tiles, it
// prefetches, a few lines after each tile, the next image's input, which
// the next unit's transposition then finds in L2.

// convKernels are a kernel set's direct convolution kernels.
type convKernels struct {
	// fwd[nvec-1][mr-1]: mr positions of one row; fwd2[nvec-1][s-1]: s
	// positions of each of two rows (images narrower than a tile).
	fwd    [2][convMaxMR]convFwdKernel
	fwd2   [2][convMaxMR / 2]convFwdKernel
	filter [2]convFilterKernel // 4 output channels
	filt1  [2]convFilterKernel // 1 output channel
	pack   func(src *float32, cstride int, n int, dst *float32, pstride int)
	unpack func(src *float32, pstride int, n int, dst *float32, cstride int, bias *float32)
	add    func(n int, dst, src *float32) // dst += src
	// prefetch brings n cache lines from p into L2 (nil: none).
	prefetch func(p *float32, n int)
	// thinF[r-1]: r rows of a thin forward (conv_thin.go); thinW: the
	// thin filter gradient.
	thinF [convThinRows]convThinFKernel
	thinW convThinWKernel
	// wgIn, wgOut, wgGrad: the Winograd transforms (winograd.go).
	wgIn   func(n int, src *float32, sa int, srow int, dst *float32, st int, sx int)
	wgOut  func(n int, src *float32, st int, sx int, dst *float32, sa int, srow int)
	wgGrad func(src0 *float32, src1 *float32, cmask int, dst *float32, sx int)
}

type convThinFKernel func(ntap int, tap *int, kc int, x *float32, cs int, rs int, w *float32, y *float32, ys int, mask int)

type convThinWKernel func(nimg, rows, cols int, x *float32, rsx int, brow int, bimg int, dy *float32, c *float32)

// prefetcher spreads the prefetch of a few ranges (the next unit's input)
// over the kernel calls of a unit, so that the memory traffic of the
// transposes runs while the products do.
type prefetcher struct {
	k      *convKernels
	ranges [2][]float32
	nr     int
	per    int // lines per step
}

// add queues the lines of r.
func (f *prefetcher) add(r []float32) {
	if len(r) > 0 && f.nr < len(f.ranges) {
		f.ranges[f.nr] = r
		f.nr++
	}
}

// plan spreads the queued lines over steps steps.
func (f *prefetcher) plan(steps int) {
	lines := 0
	for _, r := range f.ranges[:f.nr] {
		lines += (len(r) + 15) / 16
	}
	f.per = (lines + steps - 1) / max(1, steps)
}

// step prefetches the next per lines.
func (f *prefetcher) step() {
	if f.k.prefetch == nil {
		f.nr = 0
		return
	}
	n := f.per
	for n > 0 && f.nr > 0 {
		r := f.ranges[0]
		m := min(n, (len(r)+15)/16)
		f.k.prefetch(&r[0], m)
		n -= m
		if 16*m >= len(r) {
			copy(f.ranges[:], f.ranges[1:f.nr])
			f.nr--
			continue
		}
		f.ranges[0] = r[16*m:]
	}
}

type convFwdKernel func(ntap int, tap *int, kc int, a *float32, sa int, srow int, b *float32, c *float32, ldc int)

type convFilterKernel func(nimg, rows, cols int, a *float32, sa int, aimg int, b *float32, sp int, st int, brow int, bimg int, c *float32, ldc int, beta float32)

// convMaxMR is the most output positions of a forward tile (asm/conv.go).
const convMaxMR = 14

// Conv3x3 is the shape of a direct convolution: Batch NCHW images of C
// channels, H x W, to OutC channels; 3x3 filter (OutC, C, 3, 3), zero
// padding 1, Stride 1 or 2.
type Conv3x3 struct {
	Batch, C, H, W, OutC, Stride int
}

// OutH is the output height, (H - 1) / Stride + 1.
func (s Conv3x3) OutH() int { return (s.H-1)/s.Stride + 1 }

// OutW is the output width.
func (s Conv3x3) OutW() int { return (s.W-1)/s.Stride + 1 }

// DirectConv reports whether the kernel set in use runs s directly (the
// AVX-512 set has the kernels; any positive sizes, stride 1 or 2).
func DirectConv(s Conv3x3) bool {
	return current.Load().conv != nil && s.Batch >= 0 && s.C > 0 && s.OutC > 0 && s.H > 0 && s.W > 0 &&
		(s.Stride == 1 || s.Stride == 2)
}

func pad16(n int) int { return (n + 15) &^ 15 }

// ConvState holds the scratch memory and task state of direct
// convolutions, reused from call to call (nothing is allocated once the
// largest shape has run). Its methods must not run concurrently.
type ConvState struct {
	wpack  []float32 // the packed filter
	part   []float32 // BackwardFilter: per image group, the partial dW
	dbPart []float64 // BackwardFilter: per image and output channel, the sum of dy
	taps   [4][9]int // the forward tiles' tap offsets (bytes), per parity class

	mu   sync.Mutex
	free [][]float32 // scratch blocks of the running units

	fwd  convFwdTask
	thin convThinTask
	filt convFilterTask
	red  convReduceTask
	pack filterPackTask
}

func (cs *ConvState) scratch(n int) []float32 {
	cs.mu.Lock()
	var s []float32
	if k := len(cs.free); k > 0 {
		s = cs.free[k-1]
		cs.free = cs.free[:k-1]
	}
	cs.mu.Unlock()
	if cap(s) < n {
		s = make([]float32, n)
	}
	return s[:n]
}

func (cs *ConvState) release(s []float32) {
	cs.mu.Lock()
	cs.free = append(cs.free, s)
	cs.mu.Unlock()
}

func grow(s *[]float32, n int) []float32 {
	if cap(*s) < n {
		*s = make([]float32, n)
	}
	return (*s)[:n]
}

func (s Conv3x3) check(op string, x, w, y []float32) {
	if !DirectConv(s) {
		panic(fmt.Sprintf("sgemm: %s: no direct kernels for %+v", op, s))
	}
	if len(x) < s.Batch*s.C*s.H*s.W || len(y) < s.Batch*s.OutC*s.OutH()*s.OutW() || len(w) < s.OutC*s.C*9 {
		panic(fmt.Sprintf("sgemm: %s: short operands for %+v", op, s))
	}
}

// Forward sets y = conv(x, w) + bias (bias nil: none); parts is the
// number of ranges the work is cut into for the pool, at least (the
// caller's thread count; results do not depend on it).
func (cs *ConvState) Forward(s Conv3x3, x, w, bias, y []float32, parts int) {
	s.check("Conv3x3 forward", x, w, y)
	if bias != nil && len(bias) < s.OutC {
		panic("sgemm: Conv3x3 forward: short bias")
	}
	g := convGeom{inC: s.C, h: s.H, w: s.W, outC: s.OutC, oh: s.OutH(), ow: s.OutW(), stride: s.Stride}
	if g.thinForward() {
		packThin(grow(&cs.wpack, 9*s.C*s.OutC), w, s.OutC, s.C, false)
		cs.runThinForward(s.Batch, g, x, bias, y, parts)
		return
	}
	op := pad16(s.OutC)
	if g.winograd() {
		cs.packFilterPool(grow(&cs.wpack, 16*s.C*op), w, s.OutC, s.C, op, 0, false, true, parts)
		cs.runWinograd(s.Batch, g, x, bias, y, parts)
		return
	}
	cs.packFilterPool(grow(&cs.wpack, 9*s.C*op), w, s.OutC, s.C, op, 9, false, false, parts)
	cs.runForward(s.Batch, g, x, bias, y, parts)
}

// BackwardData sets dx to the gradient of sum(dy * conv(x, w)) with
// respect to x.
func (cs *ConvState) BackwardData(s Conv3x3, dy, w, dx []float32, parts int) {
	s.check("Conv3x3 backward data", dx, w, dy)
	cp := pad16(s.C)
	if s.Stride == 1 {
		// The convolution of dy with w flipped, its channel axes swapped.
		g := convGeom{inC: s.OutC, h: s.H, w: s.W, outC: s.C, oh: s.H, ow: s.W, stride: 1}
		if g.thinForward() {
			packThin(grow(&cs.wpack, 9*s.OutC*s.C), w, s.OutC, s.C, true)
			cs.runThinForward(s.Batch, g, dy, nil, dx, parts)
			return
		}
		if g.winograd() {
			cs.packFilterPool(grow(&cs.wpack, 16*s.OutC*cp), w, s.OutC, s.C, cp, 0, true, true, parts)
			cs.runWinograd(s.Batch, g, dy, nil, dx, parts)
			return
		}
		cs.packFilterPool(grow(&cs.wpack, 9*s.OutC*cp), w, s.OutC, s.C, cp, 9, true, false, parts)
		cs.runForward(s.Batch, g, dy, nil, dx, parts)
		return
	}
	packParityFilters(grow(&cs.wpack, 9*s.OutC*cp), w, s.OutC, s.C, cp)
	g := convGeom{inC: s.OutC, h: s.OutH(), w: s.OutW(), outC: s.C, oh: s.H, ow: s.W, stride: 2, parity: true}
	cs.runForward(s.Batch, g, dy, nil, dx, parts)
}

// Conv1x1 is the shape of a pointwise convolution: Batch NCHW images of
// C channels, H x W, to OutC channels; filter (OutC, C, 1, 1), stride 1,
// no padding. It runs on the forward tiles of the 3 x 3 convolutions with
// one tap (the channel products of a position), on the same blocks.
type Conv1x1 struct {
	Batch, C, H, W, OutC int
}

// DirectPointwise reports whether the kernel set in use runs s directly:
// where the products it replaces (per image, y = w x and dx = w^T dy) run
// the main kernels in one block of k (so each output is one chain of
// multiply-adds over the channels in order, then the bias added), which
// the direct tiles reproduce bit for bit. Smaller products take other
// paths (a plain loop, dot products, the transposed product) whose
// roundings differ.
func DirectPointwise(s Conv1x1) bool {
	hw := s.H * s.W
	return DirectConv(Conv3x3{Batch: s.Batch, C: s.C, H: s.H, W: s.W, OutC: s.OutC, Stride: 1}) &&
		hw >= max(dotMaxN, swapN) && s.C <= current.Load().kc && s.OutC <= current.Load().kc &&
		min(s.C, s.OutC)*max(s.C, s.OutC)*hw > smallMNK
}

func (s Conv1x1) check(op string, x, w, y []float32) {
	if !DirectPointwise(s) {
		panic(fmt.Sprintf("sgemm: %s: no direct kernels for %+v", op, s))
	}
	if len(x) < s.Batch*s.C*s.H*s.W || len(y) < s.Batch*s.OutC*s.H*s.W || len(w) < s.OutC*s.C {
		panic(fmt.Sprintf("sgemm: %s: short operands for %+v", op, s))
	}
}

// ForwardPointwise sets y = conv(x, w) + bias for a 1 x 1 filter (bias
// nil: none): each output the sum over the input channels in order, then
// the bias added.
func (cs *ConvState) ForwardPointwise(s Conv1x1, x, w, bias, y []float32, parts int) {
	s.check("Conv1x1 forward", x, w, y)
	if bias != nil && len(bias) < s.OutC {
		panic("sgemm: Conv1x1 forward: short bias")
	}
	op := pad16(s.OutC)
	cs.packFilterPool(grow(&cs.wpack, s.C*op), w, s.OutC, s.C, op, 1, false, false, parts)
	g := convGeom{inC: s.C, h: s.H, w: s.W, outC: s.OutC, oh: s.H, ow: s.W, stride: 1, pointwise: true}
	cs.runForward(s.Batch, g, x, bias, y, parts)
}

// BackwardDataPointwise sets dx to the gradient of sum(dy * conv(x, w))
// with respect to x for a 1 x 1 filter: each the sum over the output
// channels in order.
func (cs *ConvState) BackwardDataPointwise(s Conv1x1, dy, w, dx []float32, parts int) {
	s.check("Conv1x1 backward data", dx, w, dy)
	cp := pad16(s.C)
	cs.packFilterPool(grow(&cs.wpack, s.OutC*cp), w, s.OutC, s.C, cp, 1, true, false, parts)
	g := convGeom{inC: s.OutC, h: s.H, w: s.W, outC: s.C, oh: s.H, ow: s.W, stride: 1, pointwise: true}
	cs.runForward(s.Batch, g, dy, nil, dx, parts)
}

// convGeom is a forward-kernel convolution: inC channels of h x w to outC
// of oh x ow. parity: the stride-2 backward data, where the input is dy
// (h x w its output size) and the output dx, in four parity classes.
// pointwise: a 1 x 1 filter (stride 1), one tap at the centre of the
// 3 x 3 convolution's padded block.
type convGeom struct {
	inC, h, w, outC, oh, ow, stride int
	parity, pointwise               bool
}

// taps is the number of filter taps of g's forward tiles.
func (g convGeom) taps() int {
	if g.pointwise {
		return 1
	}
	return 9
}

// parityTaps lists, for an input row (or column) parity, the filter taps
// u and the offsets di of the dy rows they read: row 2m + parity of dx
// gets w[u] dy[m + di].
var parityTaps = [2][]struct{ u, di int }{{{1, 0}}, {{0, 1}, {2, 0}}}

// packFilterInputs packs w (outC, inC, k, k), kk = k k taps (9 or 1), as
// the panels the forward kernels read: output channels in panels of 32
// (the last one of 16 when op is an odd multiple of 16; channels from outC
// to op zero), each panel tap-major, then input channel, then its output
// channels. With flip it packs instead the filter of the stride-1
// backward data, inC outputs (padded to op) from outC inputs: w'(c, o, t)
// = w(o, c, kk - 1 - t). It packs the packed filter's input channels
// [c0, c1) only, which write places of their own.
func packFilterInputs(dst, w []float32, outC, inC, op, kk int, flip bool, c0, c1 int) {
	no, ni := outC, inC
	if flip {
		no, ni = inC, outC
	}
	for p0 := 0; p0 < op; p0 += 32 {
		nr := min(32, op-p0)
		nv := max(0, min(nr, no-p0)) // outputs of the panel that exist
		panel := dst[p0*kk*ni : (p0+nr)*kk*ni]
		for t := 0; t < kk; t++ {
			for c := c0; c < c1; c++ {
				row := panel[(t*ni+c)*nr : (t*ni+c+1)*nr]
				if flip {
					src := w[(c*inC+p0)*kk+kk-1-t:]
					for j := range row[:nv] {
						row[j] = src[j*kk]
					}
				} else {
					src := w[(p0*inC+c)*kk+t:]
					for j := range row[:nv] {
						row[j] = src[j*inC*kk]
					}
				}
				clear(row[nv:])
			}
		}
	}
}

// filterPackTask packs a filter for the forward tiles, input channels
// [lo, hi) of the packed filter per range: packFilterInputs' panels, or
// packWinogradInputs' transformed ones.
type filterPackTask struct {
	dst, w            []float32
	outC, inC, op, kk int
	flip, wino        bool
}

func (t *filterPackTask) Run(lo, hi int) {
	if t.wino {
		packWinogradInputs(t.dst, t.w, t.outC, t.inC, t.op, t.flip, lo, hi)
		return
	}
	packFilterInputs(t.dst, t.w, t.outC, t.inC, t.op, t.kk, t.flip, lo, hi)
}

// filterPackWork is the number of packed floats below which a filter is
// packed on the calling thread alone (a few microseconds).
const filterPackWork = 1 << 14

// packFilterPool is packFilterInputs (wino false) or packWinogradInputs
// (wino true, kk ignored) over all the input channels, on the pool: on
// the calling thread alone, the packing of a 64 x 64 filter took 0.1 to
// 0.3 ms while the other threads waited for it.
func (cs *ConvState) packFilterPool(dst, w []float32, outC, inC, op, kk int, flip, wino bool, parts int) {
	ni := inC
	if flip {
		ni = outC
	}
	if wino {
		kk = 16
	}
	t := &cs.pack
	*t = filterPackTask{dst: dst, w: w, outC: outC, inC: inC, op: op, kk: kk, flip: flip, wino: wino}
	chunks := 1
	if op*ni*kk >= filterPackWork {
		chunks = max(1, parts)
	}
	ParallelFor(t, ni, chunks)
	*t = filterPackTask{}
}

// packParityFilters packs the stride-2 backward data's four filters, one
// per parity class k = 2 pr + pc, one after the other: class k's taps (u,
// v) in parityTaps order, its panels as packFilterInputs' over the inC outputs
// (padded to cp) from outC inputs.
func packParityFilters(dst, w []float32, outC, inC, cp int) {
	off := 0
	for pr := 0; pr < 2; pr++ {
		for pc := 0; pc < 2; pc++ {
			nt := len(parityTaps[pr]) * len(parityTaps[pc])
			for p0 := 0; p0 < cp; p0 += 32 {
				nr := min(32, cp-p0)
				panel := dst[off+p0*nt*outC : off+(p0+nr)*nt*outC]
				t := 0
				for _, tu := range parityTaps[pr] {
					for _, tv := range parityTaps[pc] {
						for o := 0; o < outC; o++ {
							row := panel[(t*outC+o)*nr : (t*outC+o+1)*nr]
							for j := range row {
								if c := p0 + j; c < inC {
									row[j] = w[(o*inC+c)*9+3*tu.u+tv.u]
								} else {
									row[j] = 0
								}
							}
						}
						t++
					}
				}
			}
			off += nt * outC * cp
		}
	}
}

// convUnitBytes bounds a forward unit's scratch (its NHWC input block and
// output tiles) so that it stays in the 1 MiB L2 of a Zen 5 core with room
// for the filter panel. A unit is a whole image when it fits: the NCHW
// planes are then read and written as long runs, where units of a few
// rows read each plane in short pieces and ran 30% slower.
const convUnitBytes = 512 << 10

// convFwdTask runs forward units: image b's output rows [r0, r0+rows)
// (for parity, the dy rows whose dx rows those are).
type convFwdTask struct {
	cs               *ConvState
	k                *convKernels
	g                convGeom
	cp, op           int // padded channel counts of the input block and the output tiles
	rows, perImg     int // rows per unit, units per image
	blkLen, ysLen    int
	x, bias, y, wpck []float32
	wino             winoPlan // the Winograd units' (wino.band > 0)
}

// convChunks is the ranges of forward units per thread: units are claimed
// range by range, so that a thread that falls behind (descheduled on a
// shared machine) leaves at most one short range to wait for, while a
// unit still finds the next image of its range to prefetch.
const convChunks = 8

func (cs *ConvState) runForward(batch int, g convGeom, x, bias, y []float32, parts int) {
	t := &cs.fwd
	*t = convFwdTask{cs: cs, k: current.Load().conv, g: g, cp: pad16(g.inC), op: pad16(g.outC), x: x, bias: bias, y: y, wpck: cs.wpack}
	wp := g.w + 2
	// Per output row of a unit: the input rows it reads (half a row for
	// parity) and the output positions it writes.
	rowBytes := 4 * (g.stride*wp*t.cp + g.ow*t.op)
	rows := max(1, min(g.oh, convUnitBytes/rowBytes-2))
	if !g.parity && 2*g.ow <= convMaxMR && rows%2 == 1 && rows < g.oh {
		rows++ // pair the rows of narrow images
	}
	t.rows, t.perImg = rows, (g.oh+rows-1)/rows
	t.ysLen = (rows*g.ow + 16) * t.op
	if g.parity {
		t.blkLen = (rows/2+3)*wp*t.cp + 16
		k := 0
		for pr := 0; pr < 2; pr++ {
			for pc := 0; pc < 2; pc++ {
				i := 0
				for _, tu := range parityTaps[pr] {
					for _, tv := range parityTaps[pc] {
						cs.taps[k][i] = 4 * (tu.di*wp + tv.di) * t.cp
						i++
					}
				}
				k++
			}
		}
	} else {
		t.blkLen = (g.stride*(rows-1)+3)*wp*t.cp + 16
		for u := 0; u < 3; u++ {
			for v := 0; v < 3; v++ {
				cs.taps[0][3*u+v] = 4 * (u*wp + v) * t.cp
			}
		}
		if g.pointwise {
			cs.taps[0][0] = 4 * (wp + 1) * t.cp
		}
	}
	units := batch * t.perImg
	ParallelFor(t, units, min(units, convChunks*max(1, parts)))
}

// Run computes units [lo, hi).
func (t *convFwdTask) Run(lo, hi int) {
	s := t.cs.scratch(t.blkLen + t.ysLen)
	blk, ys := s[:t.blkLen], s[t.blkLen:]
	pf := &prefetcher{k: t.k}
	g := t.g
	hw := g.h * g.w
	for u := lo; u < hi; u++ {
		b, r0 := u/t.perImg, u%t.perImg*t.rows
		rows := min(t.rows, t.g.oh-r0)
		pf.nr = 0
		if t.perImg == 1 && u+1 < hi {
			// whole images: the next one's input (not this one's output:
			// lines prefetched for reading and then written cost more
			// than lines written cold, measured on Zen 5)
			pf.add(t.x[(b+1)*g.inC*hw : (b+2)*g.inC*hw])
		}
		switch {
		case t.wino.band > 0:
			t.winoUnit(b, r0, rows, blk, ys, pf)
		case t.g.parity:
			t.parityUnit(b, r0, rows, blk, ys, pf)
		default:
			t.unit(b, r0, rows, blk, ys, pf)
		}
	}
	t.cs.release(s)
}

func (t *convFwdTask) unit(b, r0, rows int, blk, ys []float32, pf *prefetcher) {
	g := t.g
	s, wp, C, cp, op := g.stride, g.w+2, g.inC, t.cp, t.op
	hw := g.h * g.w
	packRows(t.k, blk, t.x[b*C*hw:(b+1)*C*hw], C, cp, g.h, g.w, s*r0-1, s*(rows-1)+3)
	// Tiles of up to convMaxMR positions: runs along a row, or pairs of
	// rows when two fit. (Packing and unpacking row by row between the
	// tiles, to spread their memory traffic, ran 5% to 10% slower.)
	pair := 2*g.ow <= convMaxMR
	nt := g.taps()
	pf.plan((op + 31) / 32 * rows * ((g.ow + convMaxMR - 1) / convMaxMR))
	for p0 := 0; p0 < op; p0 += 32 {
		nv := min(32, op-p0) / 16
		bp := &t.wpck[p0*nt*C]
		for i := 0; i < rows; {
			if pair && i+1 < rows {
				a := &blk[s*i*wp*cp]
				c := &ys[i*g.ow*op+p0]
				t.k.fwd2[nv-1][g.ow-1](nt, &t.cs.taps[0][0], C, a, 4*s*cp, 4*s*wp*cp, bp, c, 4*op)
				pf.step()
				pf.step()
				i += 2
				continue
			}
			for j0 := 0; j0 < g.ow; j0 += convMaxMR {
				mr := min(convMaxMR, g.ow-j0)
				a := &blk[(s*i*wp+s*j0)*cp]
				c := &ys[(i*g.ow+j0)*op+p0]
				t.k.fwd[nv-1][mr-1](nt, &t.cs.taps[0][0], C, a, 4*s*cp, 4*s*wp*cp, bp, c, 4*op)
				pf.step()
			}
			i++
		}
	}
	ohw := g.oh * g.ow
	unpackRows(t.k, ys, op, rows*g.ow, t.y[b*g.outC*ohw:(b+1)*g.outC*ohw], g.outC, ohw, r0*g.ow, t.bias)
}

// parityUnit computes dx rows [r0, r0+rows) of image b for the stride-2
// backward data (t.g: dy of h x w, dx of oh x ow).
func (t *convFwdTask) parityUnit(b, r0, rows int, blk, ys []float32, pf *prefetcher) {
	g := t.g
	wp, C, cp, op := g.w+2, g.inC, t.cp, t.op
	// dx rows 2m + pr for m in [m0, m1) read dy rows m0 .. m1 (m1 < h
	// when inside).
	m0, m1 := r0/2, (r0+rows+1)/2
	hw := g.h * g.w
	packRows(t.k, blk, t.x[b*C*hw:(b+1)*C*hw], C, cp, g.h, g.w, m0, m1-m0+1)
	off, k := 0, 0
	pf.plan((op + 31) / 32 * 4 * (m1 - m0))
	for pr := 0; pr < 2; pr++ {
		for pc := 0; pc < 2; pc++ {
			nt := len(parityTaps[pr]) * len(parityTaps[pc])
			nc := (g.ow - pc + 1) / 2 // dx columns 2n + pc
			for p0 := 0; p0 < op; p0 += 32 {
				nv := min(32, op-p0) / 16
				bp := &t.wpck[off+p0*nt*C]
				for m := m0; m < m1; m++ {
					r := 2*m + pr // dx row
					if r < r0 || r >= r0+rows {
						continue
					}
					for n0 := 0; n0 < nc; n0 += convMaxMR {
						mr := min(convMaxMR, nc-n0)
						a := &blk[((m-m0)*wp+n0+1)*cp]
						c := &ys[((r-r0)*g.ow+2*n0+pc)*op+p0]
						t.k.fwd[nv-1][mr-1](nt, &t.cs.taps[k][0], C, a, 4*cp, 0, bp, c, 8*op)
					}
					pf.step()
				}
			}
			off += nt * C * op
			k++
		}
	}
	ohw := g.oh * g.ow
	unpackRows(t.k, ys, op, rows*g.ow, t.y[b*g.outC*ohw:(b+1)*g.outC*ohw], g.outC, ohw, r0*g.ow, nil)
}

// packRows writes padded rows [pr0, pr0+n) of image x (C planes of h x w;
// rows outside [0, h) are zero) into blk as NHWC: n rows of w + 2
// positions of cp floats (the channels, then zeros), the first and last
// position of each row zero. It reads 16 planes at a time, each from top
// to bottom: row by row over all the planes interleaved too many streams
// for the prefetchers (96 channels of 28 x 28 packed 40% slower).
func packRows(k *convKernels, blk, x []float32, C, cp, h, w, pr0, n int) {
	wp, hw := w+2, h*w
	_ = blk[n*wp*cp-1]
	for r := 0; r < n; r++ {
		row := blk[r*wp*cp : (r+1)*wp*cp]
		if ih := pr0 + r; ih < 0 || ih >= h {
			clear(row)
			continue
		}
		clear(row[:cp])
		clear(row[(wp-1)*cp:])
	}
	r0, r1 := max(0, -pr0), min(n, h-pr0)
	c16 := C &^ 15
	for g := 0; g < c16; g += 16 {
		for r := r0; r < r1; r++ {
			k.pack(&x[g*hw+(pr0+r)*w], 4*hw, w, &blk[(r*wp+1)*cp+g], 4*cp)
		}
	}
	if c16 == C {
		return
	}
	for r := r0; r < r1; r++ {
		ih := pr0 + r
		for p := 0; p < w; p++ {
			pos := blk[(r*wp+p+1)*cp : (r*wp+p+2)*cp]
			for c := c16; c < C; c++ {
				pos[c] = x[c*hw+ih*w+p]
			}
			clear(pos[C:])
		}
	}
}

// unpackRows writes n positions of NHWC tiles (ys, op floats apart) into
// positions [p0, p0+n) of the outC planes of y (hw floats each), adding
// bias (nil: none).
func unpackRows(k *convKernels, ys []float32, op, n int, y []float32, outC, hw, p0 int, bias []float32) {
	_ = y[(outC-1)*hw+p0+n-1]
	c16 := outC &^ 15
	for g := 0; g < c16; g += 16 {
		var bp *float32
		if bias != nil {
			bp = &bias[g]
		}
		k.unpack(&ys[g], 4*op, n, &y[g*hw+p0], 4*hw, bp)
	}
	for c := c16; c < outC; c++ {
		var bc float32
		if bias != nil {
			bc = bias[c]
		}
		row := y[c*hw+p0 : c*hw+p0+n]
		for p := range row {
			row[p] = ys[p*op+c] + bc
		}
	}
}

// convFilterBytes bounds the NHWC blocks of the images one filter-gradient
// kernel call runs over (it streams them once per output-channel quad,
// tap row and channel panel: they must stay in L2); within that, a call
// covers up to a group's images, so that small images make long calls.
const convFilterBytes = 256 << 10

// convGroupImages is the number of images whose filter-gradient partial
// sums are added first (then the groups in order): fixed, so that the
// result does not depend on the thread count.
const convGroupImages = 8

// convFilterTask runs filter-gradient units: group g's partial sums,
// part[g][o][u][v][c] (c < cp): an output channel's 9 cp sums contiguous,
// so that the groups' sums are added as long vectors (Winograd:
// part[g][o][x][c], 16 cp sums, one per transformed position x).
type convFilterTask struct {
	cs           *ConvState
	k            *convKernels
	s            Conv3x3
	cp           int
	x, dy, part  []float32
	groups, nimg int            // image groups; images per kernel call
	thin         bool           // the thin kernel (s.thinFilter)
	wino         winoFilterPlan // the Winograd filter gradient's (wino.band > 0)
	// dbPart, when the bias gradient is wanted, receives each image's
	// float64 sums of dy over positions (b OutC + o), taken while the
	// kernel calls have dy in cache.
	dbPart []float64
}

// convReduceTask adds the groups' partial sums into dw and computes db,
// for output channels [lo, hi).
type convReduceTask struct {
	t      *convFilterTask
	dw, db []float32
}

// BackwardFilter sets dw (OutC, C, 3, 3) to the gradient of sum(dy *
// conv(x, w)) with respect to w and, when db is not nil, db (OutC) to
// that with respect to the bias (float64 sums).
func (cs *ConvState) BackwardFilter(s Conv3x3, x, dy, dw, db []float32, parts int) {
	s.check("Conv3x3 backward filter", x, dw, dy)
	if db != nil && len(db) < s.OutC {
		panic("sgemm: Conv3x3 backward filter: short db")
	}
	cp := pad16(s.C)
	wino := s.winogradFilter()
	nw := 9 * cp * s.OutC
	if wino {
		nw = 16 * cp * s.OutC
	}
	groups := (s.Batch + convGroupImages - 1) / convGroupImages
	blkImg := 4 * (s.H + 2) * (s.W + 2) * cp
	t := &cs.filt
	*t = convFilterTask{cs: cs, k: current.Load().conv, s: s, cp: cp, x: x, dy: dy, part: grow(&cs.part, groups*nw),
		groups: groups, nimg: max(1, min(convGroupImages, convFilterBytes/blkImg)), thin: s.thinFilter()}
	if wino {
		t.planWinograd()
	}
	if db != nil {
		if n := s.Batch * s.OutC; cap(cs.dbPart) < n {
			cs.dbPart = make([]float64, n)
		}
		t.dbPart = cs.dbPart[:s.Batch*s.OutC]
	}
	if groups == 0 {
		clear(dw[:9*s.C*s.OutC])
		if db != nil {
			clear(db[:s.OutC])
		}
		return
	}
	ParallelFor(t, groups, min(groups, max(1, parts)))
	r := &cs.red
	*r = convReduceTask{t: t, dw: dw, db: db}
	ParallelFor(r, s.OutC, min(s.OutC, max(1, parts)))
}

func (t *convFilterTask) Run(lo, hi int) {
	s := t.s
	blkImg := (s.H + 2) * (s.W + 2) * t.cp
	if t.thin {
		buf := t.cs.scratch(t.thinScratch())
		for g := lo; g < hi; g++ {
			t.thinGroup(g, buf)
		}
		t.cs.release(buf)
		return
	}
	if t.wino.band > 0 {
		buf := t.cs.scratch(t.wino.scratch)
		for g := lo; g < hi; g++ {
			t.winoGroup(g, buf)
		}
		t.cs.release(buf)
		return
	}
	blk := t.cs.scratch(t.nimg*blkImg + 16)
	for g := lo; g < hi; g++ {
		t.group(g, blk)
	}
	t.cs.release(blk)
}

// group computes the partial sums of image group g.
func (t *convFilterTask) group(g int, blk []float32) {
	s := t.s
	C, cp, O, hw, wp, st := s.C, t.cp, s.OutC, s.H*s.W, s.W+2, s.Stride
	oh, ow := s.OutH(), s.OutW()
	ohw := oh * ow
	blkImg := (s.H + 2) * wp * cp
	part := t.part[g*9*cp*O : (g+1)*9*cp*O]
	b1 := min(s.Batch, (g+1)*convGroupImages)
	for b0 := g * convGroupImages; b0 < b1; b0 += t.nimg {
		n := min(t.nimg, b1-b0)
		for i := 0; i < n; i++ {
			packRows(t.k, blk[i*blkImg:(i+1)*blkImg], t.x[(b0+i)*C*hw:(b0+i+1)*C*hw], C, cp, s.H, s.W, -1, s.H+2)
		}
		beta := float32(1)
		if b0 == g*convGroupImages {
			beta = 0
		}
		dy := t.dy[b0*O*ohw : (b0+n)*O*ohw]
		for o := 0; o < O; {
			kern, mr := t.k.filter, 4
			if O-o < 4 {
				kern, mr = t.k.filt1, 1
			}
			for u := 0; u < 3; u++ {
				for c0 := 0; c0 < cp; c0 += 32 {
					nv := min(32, cp-c0) / 16
					kern[nv-1](n, oh, ow, &dy[o*ohw], 4*ohw, 4*(O-1)*ohw,
						&blk[u*wp*cp+c0], 4*st*cp, 4*cp, 4*(st*wp-st*ow)*cp, 4*(blkImg-st*oh*wp*cp),
						&part[(9*o+3*u)*cp+c0], 36*cp, beta)
				}
			}
			o += mr
		}
		if t.dbPart != nil {
			for i := 0; i < n; i++ {
				for o := 0; o < O; o++ {
					t.dbPart[(b0+i)*O+o], _ = NormSums(dy[(i*O+o)*ohw : (i*O+o+1)*ohw])
				}
			}
		}
	}
}

// Run adds the partial sums of output channels [lo, hi) in group order
// (into group 0's): dw(o, c, u, v) = sum over groups of part(o, u, v, c)
// (Winograd: G^T dU G of the sums dU(x) = part(o, x, c));
// db(o) = the sum of dy(b, o) over the images (each a float64 sum, taken
// by the group's task) in image order.
func (r *convReduceTask) Run(lo, hi int) {
	t := r.t
	s, cp := t.s, t.cp
	C, O := s.C, s.OutC
	taps := 9 // per output channel, taps x cp partial sums
	if t.wino.band > 0 {
		taps = 16 // the transformed positions'
	}
	nw := taps * cp * O
	acc := t.part[taps*cp*lo : taps*cp*hi]
	for g := 1; g < t.groups; g++ {
		t.k.add(len(acc), &acc[0], &t.part[g*nw+taps*cp*lo])
	}
	for o := lo; o < hi; o++ {
		a := t.part[taps*cp*o : taps*cp*(o+1)]
		dw := r.dw[o*C*9 : (o+1)*C*9]
		for c := 0; c < C; c++ {
			d := dw[9*c : 9*c+9]
			if taps == 16 {
				winogradFilterGrad(d, a[c:], cp)
				continue
			}
			for k := range d {
				d[k] = a[k*cp+c]
			}
		}
		if r.db == nil {
			continue
		}
		sum := 0.0
		for b := 0; b < s.Batch; b++ {
			sum += t.dbPart[b*O+o]
		}
		r.db[o] = float32(sum)
	}
}
