package sgemm

// Winograd convolutions F(2x2, 3x3) (Lavin and Gray, "Fast Algorithms for
// Convolutional Neural Networks", 2015) for the stride-1 3x3 convolutions
// with at least wgMinC channels on both sides: the forward pass and the
// backward data (the same convolution with the filter flipped). A 2x2
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

// wgBandBytes bounds a band's transformed input and products (V and M).
const wgBandBytes = 256 << 10

// winograd reports whether g runs as a Winograd convolution.
func (g convGeom) winograd() bool {
	k := current.Load().conv
	return convWinograd && k != nil && k.wgIn != nil && g.stride == 1 && !g.parity && !g.pointwise &&
		g.inC >= wgMinC && g.outC >= wgMinC
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

// packWinograd packs the transformed filter U = G g G^T of w (outC, inC,
// 3, 3) as 16 one-tap filters, one per transformed position x, each laid
// out as packFilter's panels (op output channels, padded with zeros).
// With flip, the filter of the stride-1 backward data: inC outputs from
// outC inputs, g'(c, o) = g(o, c) rotated by 180 degrees.
func packWinograd(dst, w []float32, outC, inC, op int, flip bool) {
	no, ni := outC, inC
	if flip {
		no, ni = inC, outC
	}
	for o := 0; o < op; o++ {
		p0 := o &^ 31
		nr, j := min(32, op-p0), o-p0
		for c := 0; c < ni; c++ {
			var u [16]float64
			if o < no {
				var g [9]float64
				for t := range g {
					if flip {
						g[t] = float64(w[(c*inC+o)*9+8-t])
					} else {
						g[t] = float64(w[(o*inC+c)*9+t])
					}
				}
				u = winogradFilter(g)
			}
			for x, v := range u {
				dst[x*op*ni+p0*ni+c*nr+j] = float32(v)
			}
		}
	}
}

// winogradFilter returns G g G^T (4 x 4, row-major) of a 3 x 3 filter g,
// with G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1].
func winogradFilter(g [9]float64) [16]float64 {
	var t [4][3]float64 // G g
	for k := 0; k < 3; k++ {
		g0, g1, g2 := g[k], g[3+k], g[6+k]
		t[0][k] = g0
		t[1][k] = (g0 + g1 + g2) / 2
		t[2][k] = (g0 - g1 + g2) / 2
		t[3][k] = g2
	}
	var u [16]float64
	for a := 0; a < 4; a++ {
		r0, r1, r2 := t[a][0], t[a][1], t[a][2]
		u[4*a] = r0
		u[4*a+1] = (r0 + r1 + r2) / 2
		u[4*a+2] = (r0 - r1 + r2) / 2
		u[4*a+3] = r2
	}
	return u
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
