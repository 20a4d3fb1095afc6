package sgemm

// Thin direct convolutions: a 3 x 3 convolution (stride 1) to at most
// convThinMax output channels (a network's output layer) or from at most
// convThinMax input channels (the filter gradient of its input layer).
// The channels-last tiles pad channels to 16, so there 15 of every 16
// multiply-adds were of zeros. These kernels vectorize along positions
// instead, over planes with a zero border (the input rows copied, not
// transposed), and keep the tiles' order of operations for every output
// (the sum over taps, then channels, of one chain of multiply-adds; the
// filter gradient's sums over the same runs of images): the same bits.

// convThinMax is the most channels a thin convolution has on its thin
// side.
const convThinMax = 4

// convThinRows is the output rows of a thin forward kernel call.
const convThinRows = 4

// convThin turns the thin kernels on; off, the channels-last tiles run
// the thin convolutions too (the tests compare the two bit for bit).
var convThin = true

// thinForward reports whether g runs on the thin forward kernels.
func (g convGeom) thinForward() bool {
	return convThin && !g.parity && !g.pointwise && g.stride == 1 && g.outC <= convThinMax
}

// thinFilter reports whether s's filter gradient runs on the thin kernel.
func (s Conv3x3) thinFilter() bool { return convThin && s.Stride == 1 && s.C <= convThinMax }

// convThinTask runs thin forward units: image b's output rows [r0,
// r0+rows) for every output channel.
type convThinTask struct {
	cs           *ConvState
	k            *convKernels
	g            convGeom
	rows, perImg int
	planeLen     int // a unit's padded plane: (rows + 2) (w + 2) floats
	x, bias, y   []float32
	wt           []float32 // per output channel, 9 taps of inC weights
	taps         [9]int
}

// packThin packs w (outC, inC, 3, 3) as the thin forward kernel reads it:
// for each of the no output channels, the taps, then the ni input
// channels. With flip, the filter of the stride-1 backward data: inC
// outputs from outC inputs, w'(c, o, t) = w(o, c, 8 - t).
func packThin(dst, w []float32, outC, inC int, flip bool) {
	no, ni := outC, inC
	if flip {
		no, ni = inC, outC
	}
	for o := 0; o < no; o++ {
		for t := 0; t < 9; t++ {
			for c := 0; c < ni; c++ {
				if flip {
					dst[(o*9+t)*ni+c] = w[(c*inC+o)*9+8-t]
				} else {
					dst[(o*9+t)*ni+c] = w[(o*inC+c)*9+t]
				}
			}
		}
	}
}

// runThinForward computes y = conv(x) + bias for g (stride 1, outC <=
// convThinMax) with the thin filter in cs.wpack.
func (cs *ConvState) runThinForward(batch int, g convGeom, x, bias, y []float32, parts int) {
	t := &cs.thin
	wp := g.w + 2
	// Units of whole images while their planes stay within convUnitBytes.
	rows := max(1, min(g.oh, convUnitBytes/(4*wp*g.inC)-2))
	*t = convThinTask{cs: cs, k: current.Load().conv, g: g, rows: rows, perImg: (g.oh + rows - 1) / rows, planeLen: (rows + 2) * wp,
		x: x, bias: bias, y: y, wt: cs.wpack}
	for u := 0; u < 3; u++ {
		for v := 0; v < 3; v++ {
			t.taps[3*u+v] = 4 * (u*wp + v)
		}
	}
	units := batch * t.perImg
	ParallelFor(t, units, min(units, convChunks*max(1, parts)))
}

// Run computes units [lo, hi).
func (t *convThinTask) Run(lo, hi int) {
	g := t.g
	wp := g.w + 2
	// The planes, then room for the kernels' reads of 32 floats from any
	// row start.
	buf := t.cs.scratch(g.inC*t.planeLen + 32)
	hw, ohw := g.h*g.w, g.oh*g.ow
	for u := lo; u < hi; u++ {
		b, r0 := u/t.perImg, u%t.perImg*t.rows
		rows := min(t.rows, g.oh-r0)
		x := t.x[b*g.inC*hw : (b+1)*g.inC*hw]
		// Padded rows r0-1 .. r0+rows of each channel, zero outside.
		for c := 0; c < g.inC; c++ {
			pl := buf[c*t.planeLen : (c+1)*t.planeLen]
			for r := 0; r < rows+2; r++ {
				row := pl[r*wp : (r+1)*wp]
				ih := r0 - 1 + r
				if ih < 0 || ih >= g.h {
					clear(row)
					continue
				}
				row[0], row[wp-1] = 0, 0
				copy(row[1:wp-1], x[c*hw+ih*g.w:c*hw+ih*g.w+g.w])
			}
		}
		clear(buf[g.inC*t.planeLen:])
		y := t.y[b*g.outC*ohw : (b+1)*g.outC*ohw]
		for o := 0; o < g.outC; o++ {
			wo := t.wt[o*9*g.inC : (o+1)*9*g.inC]
			for i := 0; i < rows; i += convThinRows {
				nr := min(convThinRows, rows-i)
				for j0 := 0; j0 < g.ow; j0 += 32 {
					mask := uint64(1)<<min(32, g.ow-j0) - 1
					yo := &y[o*ohw+(r0+i)*g.ow+j0]
					t.k.thinF[nr-1](9, &t.taps[0], g.inC, &buf[i*wp+j0], 4*t.planeLen, 4*wp,
						&wo[0], yo, 4*g.ow, int(mask))
				}
			}
			if t.bias != nil {
				bo := t.bias[o]
				row := y[o*ohw+r0*g.ow : o*ohw+(r0+rows)*g.ow]
				for p := range row {
					row[p] += bo
				}
			}
		}
	}
	t.cs.release(buf)
}

// thinGroup computes the partial sums of image group g as group does
// (part[g][o][u][v][c], c < cp, only c < C written), each kernel call
// over the same runs of images.
func (t *convFilterTask) thinGroup(g int, buf []float32) {
	s := t.s
	C, cp, O, hw := s.C, t.cp, s.OutC, s.H*s.W
	wp := s.W + 2
	planeLen := (s.H + 2) * wp
	o32 := (O + 31) &^ 31
	part := t.part[g*9*cp*O : (g+1)*9*cp*O]
	b1 := min(s.Batch, (g+1)*convGroupImages)
	xs := buf[:t.nimg*C*planeLen+32]
	dys := buf[len(xs) : len(xs)+t.nimg*hw*o32]
	tile := buf[len(xs)+len(dys):][:9*32]
	for b0 := g * convGroupImages; b0 < b1; b0 += t.nimg {
		n := min(t.nimg, b1-b0)
		for i := 0; i < n; i++ {
			x := t.x[(b0+i)*C*hw : (b0+i+1)*C*hw]
			for c := 0; c < C; c++ {
				pl := xs[(i*C+c)*planeLen : (i*C+c+1)*planeLen]
				clear(pl[:wp])
				clear(pl[(s.H+1)*wp:])
				for r := 0; r < s.H; r++ {
					row := pl[(r+1)*wp : (r+2)*wp]
					row[0], row[wp-1] = 0, 0
					copy(row[1:wp-1], x[c*hw+r*s.W:c*hw+r*s.W+s.W])
				}
			}
			// dy, channels last, in panels of 32: [panel][image][p][32]
			dy := t.dy[(b0+i)*O*hw : (b0+i+1)*O*hw]
			for q := 0; q < o32; q += 32 {
				d := dys[(q/32*t.nimg+i)*hw*32 : (q/32*t.nimg+i+1)*hw*32]
				for g16 := q; g16 < q+32; g16 += 16 {
					if g16+16 <= O {
						t.k.pack(&dy[g16*hw], 4*hw, hw, &d[g16-q], 128)
						continue
					}
					for p := 0; p < hw; p++ {
						for o := g16; o < g16+16; o++ {
							v := float32(0)
							if o < O {
								v = dy[o*hw+p]
							}
							d[p*32+o-q] = v
						}
					}
				}
			}
		}
		first := b0 == g*convGroupImages
		for c := 0; c < C; c++ {
			for q := 0; q < o32; q += 32 {
				t.k.thinW(n, s.H, s.W, &xs[c*planeLen], 4*wp, 8, 4*(C*planeLen-s.H*wp),
					&dys[q/32*t.nimg*hw*32], &tile[0])
				for o := q; o < min(O, q+32); o++ {
					for k := 0; k < 9; k++ {
						at := (9*o+k)*cp + c
						if first {
							part[at] = tile[k*32+o-q]
						} else {
							part[at] += tile[k*32+o-q]
						}
					}
				}
			}
		}
		if t.dbPart != nil {
			for i := 0; i < n; i++ {
				for o := 0; o < O; o++ {
					t.dbPart[(b0+i)*O+o], _ = NormSums(t.dy[((b0+i)*O+o)*hw : ((b0+i)*O+o+1)*hw])
				}
			}
		}
	}
}

// thinScratch is the floats thinGroup needs.
func (t *convFilterTask) thinScratch() int {
	s := t.s
	o32 := (s.OutC + 31) &^ 31
	return t.nimg*s.C*(s.H+2)*(s.W+2) + 32 + t.nimg*s.H*s.W*o32 + 9*32
}
