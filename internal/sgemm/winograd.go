package sgemm

// Winograd convolutions F(2x2, 3x3) (Lavin and Gray, "Fast Algorithms for
// Convolutional Neural Networks", 2015) for the stride-1 3x3 convolutions
// with at least wgMinC channels on both sides, at least wgMinW positions
// wide: the forward pass, the backward data (the same convolution with
// the filter flipped) and the filter gradient (below). A 2x2
// output tile is Y = A^T [(G g G^T) . (B^T d B)] A summed over the input
// channels, where d is the tile's 4x4 input patch and g the 3x3 filter:
// 16 products per tile and channel pair instead of the direct tiles' 36,
// so 2.25 times fewer multiply-adds, for two transforms of the
// activations (adds and subtracts, 16 channels a zmm).
//
// A unit packs its input rows into the direct tiles' NHWC block
// (packRows), then goes through it in bands of tile rows: the input
// transform writes, for each of the 16 transformed positions x, a matrix
// V_x (tiles x channels, channels-last); the products M_x = V_x U_x with
// the transformed filter U_x (channels x output channels, packed as the
// direct tiles' one-tap panels) run on the forward tiles with one tap;
// the output transform writes the band's 2x2 tiles into the NHWC output
// scratch, which unpackRows transposes into the NCHW output with the
// bias. A band's V and M stay in L2.
//
// Rounding: the transforms add at most four values (the input's) or take
// halves (the filter's, computed in float64), so each output carries a
// few float32 roundings more than the direct tiles' chain of
// multiply-adds; TestConv3x3 holds both to the float64 reference.

// convWinograd turns the Winograd convolutions on; off, the direct tiles
// run every convolution (the tests run both against the reference).
var convWinograd = true

// wgMinC is the fewest channels, on either side, of a Winograd
// convolution: below, the products' channel sums are too short to repay
// the transforms.
const wgMinC = 16

// wgMinW is the narrowest image of a Winograd convolution. In narrower
// ones the tiles are few and, at odd widths, a large part padding: at
// 7 x 7 the direct kernels were as fast (forward, backward data) or 1.3
// to 2 times faster (the filter gradient, whose output-gradient transform
// runs along a row of tiles, 16 a zmm).
const wgMinW = 13

// wgBandBytes bounds a band's transformed input and products (V and M).
const wgBandBytes = 256 << 10

// winograd reports whether g runs as a Winograd convolution.
func (g convGeom) winograd() bool {
	k := current.Load().conv
	return convWinograd && k != nil && k.wgIn != nil && g.stride == 1 && !g.parity && !g.pointwise &&
		g.inC >= wgMinC && g.outC >= wgMinC && g.w >= wgMinW
}

// winoPlan is a Winograd forward task's tiling: ntc tiles a row (the
// output width rounded up to even, owp, over 2), band tile rows a band,
// and the lengths of a unit's scratch parts after its NHWC block: the
// output tiles (outLen, owp positions a row), V and M.
type winoPlan struct {
	ntc, owp, band     int
	outLen, vLen, mLen int
}

// winoTap is the one tap offset (0) of the products' kernel calls.
var winoTap = [1]int{0}

// packWinogradInputs packs the transformed filter U = G g G^T of w (outC,
// inC, 3, 3), G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1], in float64,
// as 16 one-tap filters, one per transformed position x, each laid out as
// packFilterInputs' panels (op output channels, padded with zeros). With
// flip, the filter of the stride-1 backward data: inC outputs from outC
// inputs, g'(c, o) = g(o, c) rotated by 180 degrees. It packs the packed
// filter's input channels [c0, c1) only, which write places of their own.
func packWinogradInputs(dst, w []float32, outC, inC, op int, flip bool, c0, c1 int) {
	no, ni := outC, inC
	if flip {
		no, ni = inC, outC
	}
	xs := op * ni // one transformed position's filter
	// The transform runs over a panel's 32 outputs at a time, each
	// arithmetic step a loop over them, and each transformed position's
	// row is then stored in one run: one filter at a time, with the 16
	// stores of each xs floats apart (a multiple of 4 KiB for 64
	// channels, one L1 set), the packing of a 64 x 64 filter took about
	// 0.3 ms on one thread while the pool waited.
	var g [9][32]float64
	var t [4][3][32]float64 // G g
	for p0 := 0; p0 < op; p0 += 32 {
		nr := min(32, op-p0)
		nv := max(0, min(nr, no-p0)) // outputs of the panel that exist
		for c := c0; c < c1; c++ {
			for j := 0; j < nv; j++ {
				o := p0 + j
				if flip {
					f := w[(c*inC+o)*9 : (c*inC+o)*9+9]
					for k := range g {
						g[k][j] = float64(f[8-k])
					}
				} else {
					f := w[(o*inC+c)*9 : (o*inC+c)*9+9]
					for k := range g {
						g[k][j] = float64(f[k])
					}
				}
			}
			for k := 0; k < 3; k++ {
				g0, g1, g2 := &g[k], &g[3+k], &g[6+k]
				t0, t1, t2, t3 := &t[0][k], &t[1][k], &t[2][k], &t[3][k]
				for j := 0; j < nv; j++ {
					t0[j] = g0[j]
					t1[j] = (g0[j] + g1[j] + g2[j]) / 2
					t2[j] = (g0[j] - g1[j] + g2[j]) / 2
					t3[j] = g2[j]
				}
			}
			row := p0*ni + c*nr
			for a := 0; a < 4; a++ {
				r0, r1, r2 := &t[a][0], &t[a][1], &t[a][2]
				d0 := dst[(4*a)*xs+row:][:nr]
				d1 := dst[(4*a+1)*xs+row:][:nr]
				d2 := dst[(4*a+2)*xs+row:][:nr]
				d3 := dst[(4*a+3)*xs+row:][:nr]
				for j := 0; j < nv; j++ {
					d0[j] = float32(r0[j])
					d1[j] = float32((r0[j] + r1[j] + r2[j]) / 2)
					d2[j] = float32((r0[j] - r1[j] + r2[j]) / 2)
					d3[j] = float32(r2[j])
				}
				clear(d0[nv:])
				clear(d1[nv:])
				clear(d2[nv:])
				clear(d3[nv:])
			}
		}
	}
}

// runWinograd runs g (g.winograd()) over batch images, the transformed
// filter in cs.wpack.
func (cs *ConvState) runWinograd(batch int, g convGeom, x, bias, y []float32, parts int) {
	t := &cs.fwd
	*t = convFwdTask{cs: cs, k: current.Load().conv, g: g, cp: pad16(g.inC), op: pad16(g.outC), x: x, bias: bias, y: y, wpck: cs.wpack}
	p := &t.wino
	wp := g.w + 2
	p.ntc = (g.ow + 1) / 2
	p.owp = 2 * p.ntc
	// Units of an even number of rows (a whole image when it fits).
	rowBytes := 4 * (wp*t.cp + p.owp*t.op)
	rows := min(g.oh, max(2, (convUnitBytes/rowBytes-2)&^1))
	t.rows, t.perImg = rows, (g.oh+rows-1)/rows
	tr := (rows + 1) / 2
	p.band = max(1, min(tr, wgBandBytes/(4*16*p.ntc*(t.cp+t.op))))
	// The block holds 2 tr + 2 padded rows and one zero position after
	// them: an odd-width image's last tile column reads one position past
	// its row's end, the next row's zero left border.
	t.blkLen = (2*tr+2)*wp*t.cp + t.cp + 16
	p.outLen = 2*tr*p.owp*t.op + 16*t.op // unpackRows reads whole blocks of 16 positions
	p.vLen = 16 * p.band * p.ntc * t.cp
	p.mLen = 16 * p.band * p.ntc * t.op
	t.ysLen = p.outLen + p.vLen + p.mLen
	units := batch * t.perImg
	ParallelFor(t, units, min(units, convChunks*max(1, parts)))
}

// winoUnit computes output rows [r0, r0+rows) of image b.
func (t *convFwdTask) winoUnit(b, r0, rows int, blk, scr []float32, pf *prefetcher) {
	g, p := t.g, &t.wino
	wp, C, cp, op := g.w+2, g.inC, t.cp, t.op
	ys := scr[:p.outLen]
	v := scr[p.outLen : p.outLen+p.vLen]
	m := scr[p.outLen+p.vLen : p.outLen+p.vLen+p.mLen]
	hw := g.h * g.w
	tr := (rows + 1) / 2
	packRows(t.k, blk, t.x[b*C*hw:(b+1)*C*hw], C, cp, g.h, g.w, r0-1, 2*tr+2)
	clear(blk[(2*tr+2)*wp*cp : (2*tr+2)*wp*cp+cp])
	pf.plan(16 * ((op + 31) / 32) * ((tr*p.ntc + convMaxMR - 1) / convMaxMR))
	for b0 := 0; b0 < tr; b0 += p.band {
		nb := min(p.band, tr-b0)
		nt := nb * p.ntc
		for i := 0; i < nb; i++ {
			src := (2 * (b0 + i)) * wp * cp
			for c0 := 0; c0 < cp; c0 += 16 {
				t.k.wgIn(p.ntc, &blk[src+c0], 4*cp, 4*wp*cp, &v[i*p.ntc*cp+c0], 4*cp, 4*nt*cp)
			}
		}
		for x := 0; x < 16; x++ {
			vx, mx, ux := v[x*nt*cp:], m[x*nt*op:], t.wpck[x*op*C:]
			for p0 := 0; p0 < op; p0 += 32 {
				nv := min(32, op-p0) / 16
				for j0 := 0; j0 < nt; j0 += convMaxMR {
					mr := min(convMaxMR, nt-j0)
					t.k.fwd[nv-1][mr-1](1, &winoTap[0], C, &vx[j0*cp], 4*cp, 0, &ux[p0*C], &mx[j0*op+p0], 4*op)
					pf.step()
				}
			}
		}
		for i := 0; i < nb; i++ {
			dst := 2 * (b0 + i) * p.owp * op
			for c0 := 0; c0 < op; c0 += 16 {
				t.k.wgOut(p.ntc, &m[i*p.ntc*op+c0], 4*op, 4*nt*op, &ys[dst+c0], 4*op, 4*p.owp*op)
			}
		}
	}
	ohw := g.oh * g.ow
	yb := t.y[b*g.outC*ohw : (b+1)*g.outC*ohw]
	if p.owp == g.ow {
		unpackRows(t.k, ys, op, rows*g.ow, yb, g.outC, ohw, r0*g.ow, t.bias)
		return
	}
	for r := 0; r < rows; r++ {
		unpackRows(t.k, ys[r*p.owp*op:], op, g.ow, yb, g.outC, ohw, (r0+r)*g.ow, t.bias)
	}
}

// The filter gradient. With Z = A dY A^T the transform of a tile's 2x2
// output gradient, the gradient of the transformed filter is dU = sum over
// tiles of Z . V (V the tile's transformed input), and that of the filter
// is G^T dU G. For each transformed position x the sum over tiles is a
// product dU_x = Z_x V_x, of output channels x tiles by tiles x input
// channels: the forward tiles with one tap, over the tiles, with Z_x
// channel-major (wgGrad16 transforms dy in place, NCHW, 16 tiles a zmm)
// and V_x in the kernel's 32-channel panels. Each image's bands of tile
// rows are summed into its group's partial sums (16 per output and input
// channel), in image order; the groups are added in order, as for the
// direct kernels, then transformed back (float64).

// wgGradAhead is how many planes ahead of its transform a band's rows of
// dy are prefetched: the transform reads a few lines of each of many
// planes, too many streams for the hardware prefetchers.
const wgGradAhead = 4

// wgFilterBandBytes bounds a filter-gradient band's V and Z.
const wgFilterBandBytes = 512 << 10

// winoFilterPlan is a Winograd filter gradient's tiling: ntr x ntc tiles
// an image, band tile rows a band (bandT tiles, of one or more images),
// and the scratch a task needs: the NHWC block (blkLen), V, Z, a band's
// product (16 cp OutC) and a zero row.
type winoFilterPlan struct {
	ntr, ntc, band, bandT int
	blkLen, vLen, zLen    int
	scratch               int
}

// winogradFilter reports whether s's filter gradient runs as a Winograd
// convolution (where the forward pass does: convGeom.winograd).
func (s Conv3x3) winogradFilter() bool {
	return convGeom{inC: s.C, h: s.H, w: s.W, outC: s.OutC, oh: s.OutH(), ow: s.OutW(), stride: s.Stride}.winograd()
}

func (t *convFilterTask) planWinograd() {
	s, p := t.s, &t.wino
	p.ntr, p.ntc = (s.H+1)/2, (s.W+1)/2
	p.band = max(1, min(convGroupImages*p.ntr, wgFilterBandBytes/(4*16*p.ntc*(t.cp+s.OutC))))
	p.bandT = p.band * p.ntc
	p.blkLen = (2*p.ntr+2)*(s.W+2)*t.cp + t.cp
	p.vLen = 16 * p.bandT * t.cp
	p.zLen = 16 * (p.bandT + 16) * s.OutC
	p.scratch = p.blkLen + p.vLen + p.zLen + 16*t.cp*s.OutC + 32
}

// winoGroup computes the partial sums of image group g: part(o, x, c).
// A band holds up to bandT tiles, whole tile rows, of one or more of the
// group's images (small images share a band, so that the products' sums
// over tiles are not too short).
func (t *convFilterTask) winoGroup(g int, buf []float32) {
	s, p := t.s, &t.wino
	C, cp, O, hw, wp := s.C, t.cp, s.OutC, s.H*s.W, s.W+2
	oh, ow := s.OutH(), s.OutW()
	ohw := oh * ow
	nw := 16 * cp * O
	bt := p.bandT
	// Z_x: O rows of bt tiles and 16 floats for the whole-zmm stores of
	// the last tile row (of each image, in a shared band) written there.
	zrow := bt + 16
	zx := O * zrow
	blk := buf[:p.blkLen]
	v := buf[p.blkLen : p.blkLen+p.vLen]
	z := buf[p.blkLen+p.vLen : p.blkLen+p.vLen+p.zLen]
	tmp := buf[p.blkLen+p.vLen+p.zLen : p.blkLen+p.vLen+p.zLen+nw]
	zero := buf[p.blkLen+p.vLen+p.zLen+nw : p.blkLen+p.vLen+p.zLen+nw+32]
	clear(zero)
	part := t.part[g*nw : (g+1)*nw]
	nt, first := 0, true
	flush := func() {
		dst := tmp
		if first {
			dst = part
		}
		for x := 0; x < 16; x++ {
			zs, vx := z[x*zx:], v[x*bt*cp:]
			for pc := 0; pc < cp; pc += 32 {
				nv := min(32, cp-pc) / 16
				for o0 := 0; o0 < O; o0 += convMaxMR {
					mr := min(convMaxMR, O-o0)
					t.k.fwd[nv-1][mr-1](1, &winoTap[0], nt, &zs[o0*zrow], 4*zrow, 0, &vx[pc*bt], &dst[o0*16*cp+x*cp+pc], 4*16*cp)
				}
			}
		}
		if !first {
			t.k.add(nw, &part[0], &tmp[0])
		}
		first, nt = false, 0
	}
	b1 := min(s.Batch, (g+1)*convGroupImages)
	for b := g * convGroupImages; b < b1; b++ {
		packRows(t.k, blk, t.x[b*C*hw:(b+1)*C*hw], C, cp, s.H, s.W, -1, 2*p.ntr+2)
		clear(blk[p.blkLen-cp:])
		dy := t.dy[b*O*ohw : (b+1)*O*ohw]
		for i0 := 0; i0 < p.ntr; {
			nb := min(p.ntr-i0, (bt-nt)/p.ntc) // tile rows into this band
			if nb == 0 {
				flush()
				continue
			}
			for i := 0; i < nb; i++ {
				src := 2 * (i0 + i) * wp * cp
				slot := nt + i*p.ntc
				for c0 := 0; c0 < cp; c0 += 16 {
					pc := c0 &^ 31
					nr := min(32, cp-pc)
					t.k.wgIn(p.ntc, &blk[src+c0], 4*cp, 4*wp*cp, &v[pc*bt+slot*nr+c0-pc], 4*nr, 4*bt*cp)
				}
			}
			span := min(ohw, 2*(i0+nb)*ow) - 2*i0*ow // the rows' floats of a plane
			for o := 0; o < O; o++ {
				plane := dy[o*ohw : (o+1)*ohw]
				if o+wgGradAhead < O && t.k.prefetch != nil {
					t.k.prefetch(&dy[(o+wgGradAhead)*ohw+2*i0*ow], (span+15)/16)
				}
				for i := 0; i < nb; i++ {
					r := 2 * (i0 + i)
					for j0 := 0; j0 < p.ntc; j0 += 16 {
						// the loads read cols floats (masked): the
						// row's, or a zero row's below an odd height
						cols := min(32, ow-2*j0)
						row1 := &zero[0]
						if r+1 < oh {
							row1 = &plane[(r+1)*ow+2*j0]
						}
						t.k.wgGrad(&plane[r*ow+2*j0], row1, 1<<cols-1, &z[o*zrow+nt+i*p.ntc+j0], 4*zx)
					}
				}
			}
			nt += nb * p.ntc
			i0 += nb
		}
		if t.dbPart != nil {
			for o := 0; o < O; o++ {
				t.dbPart[b*O+o], _ = NormSums(dy[o*ohw : (o+1)*ohw])
			}
		}
	}
	if nt > 0 {
		flush()
	}
}

// winogradFilterGrad sets d (3 x 3) to G^T dU G, dU(x) = a[x cp] (x <
// 16, 4 x 4 row-major), with G as in packWinogradInputs.
func winogradFilterGrad(d []float32, a []float32, cp int) {
	var t [4][3]float64 // dU G
	for r := 0; r < 4; r++ {
		u0, u1, u2, u3 := float64(a[(4*r)*cp]), float64(a[(4*r+1)*cp]), float64(a[(4*r+2)*cp]), float64(a[(4*r+3)*cp])
		t[r][0] = u0 + (u1+u2)/2
		t[r][1] = (u1 - u2) / 2
		t[r][2] = (u1+u2)/2 + u3
	}
	for k := 0; k < 3; k++ {
		d[k] = float32(t[0][k] + (t[1][k]+t[2][k])/2)
		d[3+k] = float32((t[1][k] - t[2][k]) / 2)
		d[6+k] = float32((t[1][k]+t[2][k])/2 + t[3][k])
	}
}
