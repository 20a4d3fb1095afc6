package sgemm

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// convRef is the float64 reference of the direct convolutions: y = conv(x,
// w) + bias, dx, dw and db for a given dy; each value with the sum of the
// magnitudes of its terms (the scale of its rounding error).
type convRef struct {
	y, yAbs, dx, dxAbs, dw, dwAbs, db []float64
}

func newConvRef(s Conv3x3, x, w, bias, dy []float32) convRef {
	C, O, H, W := s.C, s.OutC, s.H, s.W
	oh, ow := s.OutH(), s.OutW()
	hw, ohw := H*W, oh*ow
	r := convRef{
		y: make([]float64, s.Batch*O*ohw), yAbs: make([]float64, s.Batch*O*ohw),
		dx: make([]float64, s.Batch*C*hw), dxAbs: make([]float64, s.Batch*C*hw),
		dw: make([]float64, O*C*9), dwAbs: make([]float64, O*C*9), db: make([]float64, O),
	}
	for b := 0; b < s.Batch; b++ {
		for o := 0; o < O; o++ {
			for i := 0; i < oh; i++ {
				for j := 0; j < ow; j++ {
					yi := (b*O+o)*ohw + i*ow + j
					r.y[yi] = float64(bias[o])
					r.yAbs[yi] = math.Abs(float64(bias[o]))
					g := float64(dy[yi])
					r.db[o] += g
					for c := 0; c < C; c++ {
						for u := 0; u < 3; u++ {
							for v := 0; v < 3; v++ {
								ih, iw := s.Stride*i+u-1, s.Stride*j+v-1
								if ih < 0 || ih >= H || iw < 0 || iw >= W {
									continue
								}
								xi := (b*C+c)*hw + ih*W + iw
								wi := (o*C+c)*9 + 3*u + v
								p := float64(x[xi]) * float64(w[wi])
								r.y[yi] += p
								r.yAbs[yi] += math.Abs(p)
								r.dx[xi] += g * float64(w[wi])
								r.dxAbs[xi] += math.Abs(g * float64(w[wi]))
								r.dw[wi] += g * float64(x[xi])
								r.dwAbs[wi] += math.Abs(g * float64(x[xi]))
							}
						}
					}
				}
			}
		}
	}
	return r
}

func checkClose(t *testing.T, what string, got []float32, want, abs []float64, rel float64) {
	t.Helper()
	bad := 0
	for i := range want {
		if d := math.Abs(float64(got[i]) - want[i]); !(d <= rel*abs[i]+1e-30) {
			if bad < 5 {
				t.Errorf("%s[%d] = %g, want %g (|terms| %g)", what, i, got[i], want[i], abs[i])
			}
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d of %d wrong", what, bad, len(want))
	}
}

func randConv(r *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(r.NormFloat64())
	}
	return s
}

// TestConv3x3 checks the direct and Winograd convolutions (each shape
// with the Winograd path on, then off) against the float64 reference on
// the U-Net's shapes and edge cases (widths that leave partial tiles or
// pair rows, 16-channel panels, images in several groups, odd sizes on
// the Winograd path), each result within a few float32 roundings per
// term.
func TestConv3x3(t *testing.T) {
	if current.Load().conv == nil {
		t.Skip("no direct convolution kernels on this CPU or build")
	}
	for _, s := range []Conv3x3{
		{2, 32, 28, 28, 32, 1}, {3, 64, 14, 14, 32, 1}, {2, 128, 7, 7, 64, 1}, {9, 16, 5, 5, 16, 1},
		{1, 16, 3, 17, 48, 1}, {2, 48, 6, 9, 16, 1}, {1, 32, 4, 30, 96, 1}, {17, 16, 2, 1, 16, 1}, {0, 16, 4, 4, 16, 1},
		{2, 1, 28, 28, 32, 1}, {2, 32, 28, 28, 1, 1}, {3, 3, 5, 6, 5, 1}, {2, 21, 9, 4, 7, 1}, {1, 70, 7, 7, 67, 1},
		{2, 32, 28, 28, 32, 2}, {3, 64, 14, 14, 64, 2}, {2, 16, 7, 7, 16, 2}, {2, 5, 9, 11, 3, 2}, {9, 33, 6, 5, 18, 2},
		{1, 16, 1, 1, 16, 2}, {2, 16, 2, 3, 32, 2}, {1, 48, 30, 29, 32, 2}, {1, 64, 40, 41, 80, 1},
		{9, 16, 13, 13, 16, 1}, {1, 70, 9, 15, 67, 1}, {2, 20, 14, 14, 36, 1}, {0, 16, 14, 14, 16, 1},
	} {
		for _, wino := range []bool{true, false} {
			t.Run(fmt.Sprintf("%+v/winograd=%v", s, wino), func(t *testing.T) {
				defer func(on bool) { convWinograd = on }(convWinograd)
				convWinograd = wino
				testConv3x3(t, s)
			})
		}
	}
}

// testConv3x3 runs one shape of TestConv3x3: the three passes against
// the reference, which path each took (Winograd where it is on and
// applies, else direct), and the same bits with 1 and 3 parts.
func testConv3x3(t *testing.T, s Conv3x3) {
	r := rand.New(rand.NewPCG(uint64(s.C), uint64(s.W)))
	hw, ohw := s.H*s.W, s.OutH()*s.OutW()
	x := randConv(r, s.Batch*s.C*hw)
	w := randConv(r, s.OutC*s.C*9)
	bias := randConv(r, s.OutC)
	dy := randConv(r, s.Batch*s.OutC*ohw)
	ref := newConvRef(s, x, w, bias, dy)
	wino := convWinograd && s.Stride == 1 && min(s.C, s.OutC) >= wgMinC && s.W >= wgMinW
	dbAbs := make([]float64, s.OutC)
	for o := range dbAbs {
		for b := 0; b < s.Batch; b++ {
			for _, v := range dy[(b*s.OutC+o)*ohw : (b*s.OutC+o+1)*ohw] {
				dbAbs[o] += math.Abs(float64(v))
			}
		}
	}
	var cs ConvState
	var first [][]float32 // the results with parts = 1
	for _, parts := range []int{1, 3} {
		y := randConv(r, s.Batch*s.OutC*ohw)
		cs.Forward(s, x, w, bias, y, parts)
		checkClose(t, "y", y, ref.y, ref.yAbs, 1e-5)
		fwdWino := cs.fwd.wino.band > 0
		dx := randConv(r, s.Batch*s.C*hw)
		cs.BackwardData(s, dy, w, dx, parts)
		checkClose(t, "dx", dx, ref.dx, ref.dxAbs, 1e-5)
		dataWino := cs.fwd.wino.band > 0
		dw, db := randConv(r, s.OutC*s.C*9), randConv(r, s.OutC)
		cs.BackwardFilter(s, x, dy, dw, db, parts)
		checkClose(t, "dw", dw, ref.dw, ref.dwAbs, 2e-5)
		checkClose(t, "db", db, ref.db, dbAbs, 1e-6)
		if filtWino := cs.filt.wino.band > 0; fwdWino != wino || dataWino != wino || filtWino != wino {
			t.Errorf("Winograd forward %v, backward data %v, filter gradient %v; want %v", fwdWino, dataWino, filtWino, wino)
		}
		// The results do not depend on the number of parts.
		got := [][]float32{y, dx, dw, db}
		if first == nil {
			first = got
			continue
		}
		for i, name := range []string{"y", "dx", "dw", "db"} {
			for j := range got[i] {
				if math.Float32bits(got[i][j]) != math.Float32bits(first[i][j]) {
					t.Errorf("%s[%d] = %g with 3 parts, %g with 1", name, j, got[i][j], first[i][j])
					break
				}
			}
		}
	}
}

// TestConv1x1 checks the direct pointwise convolutions against the
// float64 reference (each value within 1e-5 of the sum of its terms'
// magnitudes: a few float32 roundings a term) and, bit for bit, against
// the products they replace (per image, y = w x with y preset to the bias
// and beta 1; dx = w^T dy), whose sums run over the channels in the same
// order: a network's results do not change with the path.
func TestConv1x1(t *testing.T) {
	if current.Load().conv == nil {
		t.Skip("no direct convolution kernels on this CPU or build")
	}
	for _, s := range []Conv1x1{
		{2, 96, 28, 28, 32}, {3, 128, 14, 14, 64}, {2, 64, 7, 7, 192}, {2, 32, 14, 14, 64},
		{1, 5, 3, 17, 7}, {3, 21, 9, 4, 48}, {17, 16, 2, 1, 16}, {0, 16, 8, 8, 16}, {2, 70, 7, 7, 67}, {1, 3, 1, 1, 1}, {2, 7, 5, 13, 40},
	} {
		t.Run(fmt.Sprintf("%+v", s), func(t *testing.T) {
			if !DirectPointwise(s) {
				if s.H*s.W >= 64 && s.C >= 16 && s.OutC >= 16 {
					t.Fatalf("no direct path for %+v", s)
				}
				t.Skip("the products take another path")
			}
			r := rand.New(rand.NewPCG(uint64(s.C), uint64(s.W)))
			hw := s.H * s.W
			x, w, bias := randConv(r, s.Batch*s.C*hw), randConv(r, s.OutC*s.C), randConv(r, s.OutC)
			dy := randConv(r, s.Batch*s.OutC*hw)
			y0, dx0 := make([]float32, len(dy)), make([]float32, len(x))
			refY, refYAbs := make([]float64, len(dy)), make([]float64, len(dy))
			refX, refXAbs := make([]float64, len(x)), make([]float64, len(x))
			for b := 0; b < s.Batch; b++ {
				yb := y0[b*s.OutC*hw : (b+1)*s.OutC*hw]
				for o := 0; o < s.OutC; o++ {
					for p := 0; p < hw; p++ {
						yb[o*hw+p] = bias[o]
						i := (b*s.OutC+o)*hw + p
						refY[i], refYAbs[i] = float64(bias[o]), math.Abs(float64(bias[o]))
						for c := 0; c < s.C; c++ {
							xi := (b*s.C+c)*hw + p
							v := float64(w[o*s.C+c]) * float64(x[xi])
							refY[i] += v
							refYAbs[i] += math.Abs(v)
							g := float64(w[o*s.C+c]) * float64(dy[i])
							refX[xi] += g
							refXAbs[xi] += math.Abs(g)
						}
					}
				}
				Gemm(false, false, s.OutC, hw, s.C, 1, w, s.C, x[b*s.C*hw:], hw, 1, yb, hw)
				Gemm(true, false, s.C, hw, s.OutC, 1, w, s.C, dy[b*s.OutC*hw:], hw, 0, dx0[b*s.C*hw:], hw)
			}
			var cs ConvState
			for _, parts := range []int{1, 3} {
				y := randConv(r, len(dy))
				cs.ForwardPointwise(s, x, w, bias, y, parts)
				checkClose(t, "y", y, refY, refYAbs, 1e-5)
				dx := randConv(r, len(x))
				cs.BackwardDataPointwise(s, dy, w, dx, parts)
				checkClose(t, "dx", dx, refX, refXAbs, 1e-5)
				for i := range y {
					if math.Float32bits(y[i]) != math.Float32bits(y0[i]) {
						t.Fatalf("y[%d] = %v, the product's %v", i, y[i], y0[i])
					}
				}
				for i := range dx {
					if math.Float32bits(dx[i]) != math.Float32bits(dx0[i]) {
						t.Fatalf("dx[%d] = %v, the product's %v", i, dx[i], dx0[i])
					}
				}
			}
		})
	}
}

// TestConvThin: the thin kernels (few output channels forward and in the
// backward data, few input channels in the filter gradient) leave y, dx,
// dw and db bit for bit as the channels-last tiles do, on the U-Net's
// input and output layers, several images groups, widths past 32
// positions and odd sizes; the float64 reference checks both in
// TestConv3x3.
func TestConvThin(t *testing.T) {
	if current.Load().conv == nil {
		t.Skip("no direct convolution kernels on this CPU or build")
	}
	defer func() { convThin = true }()
	for _, s := range []Conv3x3{
		{64, 1, 28, 28, 32, 1}, {64, 32, 28, 28, 1, 1}, {9, 3, 32, 32, 64, 1}, {3, 64, 32, 32, 3, 1},
		{2, 4, 5, 37, 4, 1}, {3, 2, 7, 3, 40, 1}, {17, 1, 3, 2, 16, 1}, {2, 1, 1, 1, 1, 1}, {1, 5, 9, 70, 2, 1},
	} {
		t.Run(fmt.Sprintf("%+v", s), func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(s.C), uint64(s.OutC)))
			hw := s.H * s.W
			x, w, bias := randConv(r, s.Batch*s.C*hw), randConv(r, s.OutC*s.C*9), randConv(r, s.OutC)
			dy := randConv(r, s.Batch*s.OutC*hw)
			type result struct{ y, dx, dw, db []float32 }
			run := func(thin bool) result {
				convThin = thin
				var cs ConvState
				res := result{make([]float32, len(dy)), make([]float32, len(x)), make([]float32, len(w)), make([]float32, s.OutC)}
				cs.Forward(s, x, w, bias, res.y, 2)
				cs.BackwardData(s, dy, w, res.dx, 2)
				cs.BackwardFilter(s, x, dy, res.dw, res.db, 2)
				return res
			}
			want, got := run(false), run(true)
			for _, c := range []struct {
				name      string
				got, want []float32
			}{{"y", got.y, want.y}, {"dx", got.dx, want.dx}, {"dw", got.dw, want.dw}, {"db", got.db, want.db}} {
				for i := range c.want {
					if math.Float32bits(c.got[i]) != math.Float32bits(c.want[i]) {
						t.Fatalf("%s[%d] = %v, the tiles' %v", c.name, i, c.got[i], c.want[i])
					}
				}
			}
		})
	}
}

// TestConvTranspose checks the 16 x 16 transposing copies on every length
// of a partial block.
func TestConvTranspose(t *testing.T) {
	k := current.Load().conv
	if k == nil {
		t.Skip("no direct convolution kernels on this CPU or build")
	}
	for n := 0; n <= 40; n++ {
		const cs, ps = 45, 19 // strides in floats
		src := make([]float32, 16*cs)
		for i := range src {
			src[i] = float32(i)
		}
		dst := make([]float32, (n+16)*ps)
		if n > 0 {
			k.pack(&src[0], 4*cs, n, &dst[0], 4*ps)
		}
		for p := 0; p < n+16; p++ {
			for c := 0; c < ps; c++ {
				want := float32(0)
				if p < n && c < 16 {
					want = src[c*cs+p]
				}
				if dst[p*ps+c] != want {
					t.Fatalf("pack n=%d: dst[%d][%d] = %g, want %g", n, p, c, dst[p*ps+c], want)
				}
			}
		}
		back := make([]float32, 16*cs)
		bias := make([]float32, 16)
		for c := range bias {
			bias[c] = 1000 * float32(c)
		}
		if n > 0 {
			k.unpack(&dst[0], 4*ps, n, &back[0], 4*cs, &bias[0])
		}
		for c := 0; c < 16; c++ {
			for p := 0; p < cs; p++ {
				want := float32(0)
				if p < n {
					want = src[c*cs+p] + bias[c]
				}
				if back[c*cs+p] != want {
					t.Fatalf("unpack n=%d: [%d][%d] = %g, want %g", n, c, p, back[c*cs+p], want)
				}
			}
		}
	}
}

// unetConvs are the 3x3 stride-1 convolutions of the MNIST U-Net (base
// 32, mults 1,2,2) at batch 64.
var unetConvs = []Conv3x3{
	{64, 32, 28, 28, 32, 1}, {64, 64, 28, 28, 32, 1}, {64, 96, 28, 28, 32, 1}, {64, 64, 28, 28, 64, 1},
	{64, 32, 14, 14, 64, 1}, {64, 64, 14, 14, 64, 1}, {64, 96, 14, 14, 64, 1}, {64, 128, 14, 14, 64, 1},
	{64, 64, 7, 7, 64, 1}, {64, 128, 7, 7, 64, 1},
	{64, 32, 28, 28, 32, 2}, {64, 64, 14, 14, 64, 2}, {64, 1, 28, 28, 32, 1}, {64, 32, 28, 28, 1, 1},
}

// BenchmarkConv3x3 times the direct convolutions on the U-Net's shapes:
//
//	go test -run - -bench Conv3x3 -cpu 1 ./internal/sgemm
func BenchmarkConv3x3(b *testing.B) {
	if current.Load().conv == nil {
		b.Skip("no direct convolution kernels on this CPU or build")
	}
	for _, s := range unetConvs {
		hw, ohw := s.H*s.W, s.OutH()*s.OutW()
		r := rand.New(rand.NewPCG(1, 2))
		x, w, bias := randConv(r, s.Batch*s.C*hw), randConv(r, s.OutC*s.C*9), randConv(r, s.OutC)
		y, dy := randConv(r, s.Batch*s.OutC*ohw), randConv(r, s.Batch*s.OutC*ohw)
		dx, dw, db := randConv(r, s.Batch*s.C*hw), randConv(r, s.OutC*s.C*9), randConv(r, s.OutC)
		var cs ConvState
		flop := benchShape{m: s.Batch * ohw, n: s.OutC, k: 9 * s.C}
		name := fmt.Sprintf("%dx%d/%d-%d/s%d", s.H, s.W, s.C, s.OutC, s.Stride)
		ops := []string{"forward", "data", "filter"}
		if s.Stride == 1 && min(s.C, s.OutC) >= wgMinC && s.W >= wgMinW {
			ops = []string{"forward/winograd", "forward/direct", "data/winograd", "data/direct", "filter/winograd", "filter/direct"}
		}
		for _, op := range ops {
			b.Run(name+"/"+op, func(b *testing.B) {
				defer func(on bool) { convWinograd = on }(convWinograd)
				op, path, _ := strings.Cut(op, "/")
				convWinograd = path != "direct"
				run := func() {
					switch op {
					case "forward":
						cs.Forward(s, x, w, bias, y, Threads())
					case "data":
						cs.BackwardData(s, dy, w, dx, Threads())
					default:
						cs.BackwardFilter(s, x, dy, dw, db, Threads())
					}
				}
				run()
				b.ResetTimer()
				start, cpu0 := time.Now(), cpuTime()
				for i := 0; i < b.N; i++ {
					run()
				}
				reportGFLOPS(b, flop, time.Since(start), cpuTime()-cpu0)
			})
		}
	}
}

// TestConv3x3Random runs TestConv3x3's checks on random stride-1 shapes
// around the Winograd path's limits (channels from 1 to 80, 10 to 40
// positions wide, up to 9 images).
func TestConv3x3Random(t *testing.T) {
	if current.Load().conv == nil {
		t.Skip("no direct convolution kernels on this CPU or build")
	}
	r := rand.New(rand.NewPCG(7, 11))
	for i := 0; i < 12; i++ {
		s := Conv3x3{Batch: r.IntN(10), C: 1 + r.IntN(80), H: 1 + r.IntN(30), W: 10 + r.IntN(31), OutC: 1 + r.IntN(80), Stride: 1}
		t.Run(fmt.Sprintf("%+v", s), func(t *testing.T) { testConv3x3(t, s) })
	}
}
