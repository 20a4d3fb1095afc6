//go:build kernelsim

package gpu_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/fmgpu/fmgpu/flow"
	"github.com/fmgpu/fmgpu/gpu"
	"github.com/fmgpu/fmgpu/internal/numtest"
)

// The image ops of the device backend, kernels compiled for the host,
// against float64 references written here in plain loops (the conformance
// suite, gpu/gputest, checks them again against its own). Tolerances as
// CONVENTIONS.md: products and reductions 1e-4 relative to the sum of the
// magnitudes of their terms, float32 elementwise arithmetic 1e-5 (or bit
// for bit where the kernel does the CPU's one rounding); every operand is a
// view inside a parent full of NaN that must be neither read nor written.

// imgEnv is one test's backend, random source and buffers.
type imgEnv struct {
	t   *testing.T
	be  gpu.Backend
	rng *rand.Rand
}

func newImgEnv(t *testing.T, seed uint64) *imgEnv {
	be := newKernelSim(t, gpu.KernelSimOptions{})
	t.Cleanup(func() {
		if err := be.Sync(); err != nil {
			t.Errorf("Sync: %v", err)
		}
		be.Close()
	})
	return &imgEnv{t: t, be: be, rng: rand.New(rand.NewPCG(seed, 7))}
}

// nan is what the parents of views hold outside them.
var nan = float32(math.NaN())

// view is n elements at offset 3 of a parent with 5 more NaNs after it.
type view struct {
	parent, b gpu.Buffer
	n         int
}

const viewOff, viewTail = 3, 5

func (e *imgEnv) view(v []float32) view {
	host := make([]float32, viewOff+len(v)+viewTail)
	for i := range host {
		host[i] = nan
	}
	copy(host[viewOff:], v)
	p := e.be.Alloc(len(host))
	e.be.Upload(p, host)
	return view{parent: p, b: p.Slice(viewOff, len(v)), n: len(v)}
}

// out is a view of n NaNs (an output the op must overwrite).
func (e *imgEnv) out(n int) view { return e.view(nanSlice(n)) }

func nanSlice(n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = nan
	}
	return v
}

// get downloads the view and checks the parent's NaNs around it.
func (e *imgEnv) get(name string, v view) []float32 {
	e.t.Helper()
	all := make([]float32, v.parent.Len())
	e.be.Download(all, v.parent)
	for i, x := range all {
		if (i < viewOff || i >= viewOff+v.n) && !math.IsNaN(float64(x)) {
			e.t.Errorf("%s: element %d outside the view written (%v)", name, i-viewOff, x)
			break
		}
	}
	return all[viewOff : viewOff+v.n]
}

func (e *imgEnv) normals(n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(e.rng.NormFloat64())
	}
	return v
}

// checkClose compares got with want within tol (elementwise), printing the
// first few faults.
func checkClose(t *testing.T, name string, got []float32, want, tol []float64) {
	t.Helper()
	bad := 0
	for i := range want {
		if !numtest.Close(float64(got[i]), want[i], tol[i], 0) {
			if bad < 4 {
				t.Errorf("%s[%d] = %.9g, want %.9g (tol %.3g)", name, i, got[i], want[i], tol[i])
			}
			bad++
		}
	}
	if bad > 4 {
		t.Errorf("%s: %d of %d elements out of tolerance", name, bad, len(want))
	}
}

func checkExact(t *testing.T, name string, got, want []float32) {
	t.Helper()
	bad := 0
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			if bad < 4 {
				t.Errorf("%s[%d] = %v, want %v", name, i, got[i], want[i])
			}
			bad++
		}
	}
	if bad > 4 {
		t.Errorf("%s: %d of %d elements differ", name, bad, len(want))
	}
}

// rtolRed: products and reductions, relative to sum |terms| (float32
// accumulation over at most a few thousand terms).
const rtolRed = 1e-4

// convCases cover 1 x 1, 3 x 3 and 5 x 5 filters, strides 1 to 3,
// padding 0 to 2, a filter wider than the image, non-square images, and
// channel, position and batch counts around the 64-wide tiles and the
// 16-deep k steps.
var convCases = []gpu.ConvShape{
	{Batch: 1, InC: 1, H: 1, W: 1, OutC: 1, K: 1, Stride: 1, Pad: 0},
	{Batch: 2, InC: 3, H: 5, W: 7, OutC: 4, K: 3, Stride: 1, Pad: 1},
	{Batch: 3, InC: 2, H: 9, W: 8, OutC: 5, K: 3, Stride: 2, Pad: 1},
	{Batch: 1, InC: 17, H: 6, W: 6, OutC: 65, K: 1, Stride: 1, Pad: 0},
	{Batch: 2, InC: 5, H: 11, W: 10, OutC: 3, K: 5, Stride: 3, Pad: 2},
	{Batch: 5, InC: 8, H: 4, W: 4, OutC: 16, K: 3, Stride: 1, Pad: 1},
	{Batch: 1, InC: 2, H: 2, W: 3, OutC: 2, K: 3, Stride: 1, Pad: 2},
	{Batch: 2, InC: 7, H: 13, W: 13, OutC: 9, K: 3, Stride: 2, Pad: 0},
	{Batch: 4, InC: 3, H: 28, W: 28, OutC: 8, K: 3, Stride: 1, Pad: 1},
	{Batch: 1, InC: 70, H: 3, W: 3, OutC: 66, K: 3, Stride: 1, Pad: 1},
}

// convRef returns y = conv(x, w) + bias and the error scale sum |w x| +
// |bias| of every output.
func convRef(s gpu.ConvShape, x, w, bias []float32) (y, scale []float64) {
	oh, ow := s.OutH(), s.OutW()
	y = make([]float64, s.Batch*s.OutC*oh*ow)
	scale = make([]float64, len(y))
	for b := 0; b < s.Batch; b++ {
		for o := 0; o < s.OutC; o++ {
			for i := 0; i < oh; i++ {
				for j := 0; j < ow; j++ {
					var sum, sa float64
					if bias != nil {
						sum, sa = float64(bias[o]), math.Abs(float64(bias[o]))
					}
					for c := 0; c < s.InC; c++ {
						for u := 0; u < s.K; u++ {
							for v := 0; v < s.K; v++ {
								ih, iw := i*s.Stride+u-s.Pad, j*s.Stride+v-s.Pad
								if ih < 0 || ih >= s.H || iw < 0 || iw >= s.W {
									continue
								}
								p := float64(w[((o*s.InC+c)*s.K+u)*s.K+v]) * float64(x[((b*s.InC+c)*s.H+ih)*s.W+iw])
								sum += p
								sa += math.Abs(p)
							}
						}
					}
					k := ((b*s.OutC+o)*oh+i)*ow + j
					y[k], scale[k] = sum, sa
				}
			}
		}
	}
	return y, scale
}

// convAdjoint returns dx and dw (and dbias) of sum(dy * conv(x, w)), with
// their error scales, by the adjoint of convRef's loops.
func convAdjoint(s gpu.ConvShape, x, w, dy []float32) (dx, sdx, dw, sdw, db, sdb []float64) {
	oh, ow := s.OutH(), s.OutW()
	dx, sdx = make([]float64, len(x)), make([]float64, len(x))
	dw, sdw = make([]float64, len(w)), make([]float64, len(w))
	db, sdb = make([]float64, s.OutC), make([]float64, s.OutC)
	for b := 0; b < s.Batch; b++ {
		for o := 0; o < s.OutC; o++ {
			for i := 0; i < oh; i++ {
				for j := 0; j < ow; j++ {
					g := float64(dy[((b*s.OutC+o)*oh+i)*ow+j])
					db[o] += g
					sdb[o] += math.Abs(g)
					for c := 0; c < s.InC; c++ {
						for u := 0; u < s.K; u++ {
							for v := 0; v < s.K; v++ {
								ih, iw := i*s.Stride+u-s.Pad, j*s.Stride+v-s.Pad
								if ih < 0 || ih >= s.H || iw < 0 || iw >= s.W {
									continue
								}
								xi, wi := ((b*s.InC+c)*s.H+ih)*s.W+iw, ((o*s.InC+c)*s.K+u)*s.K+v
								dx[xi] += g * float64(w[wi])
								sdx[xi] += math.Abs(g * float64(w[wi]))
								dw[wi] += g * float64(x[xi])
								sdw[wi] += math.Abs(g * float64(x[xi]))
							}
						}
					}
				}
			}
		}
	}
	return
}

func tolOf(scale []float64, rtol float64) []float64 {
	t := make([]float64, len(scale))
	for i, s := range scale {
		t[i] = rtol*s + 1e-30
	}
	return t
}

func TestDeviceConv2D(t *testing.T) {
	e := newImgEnv(t, 1)
	for ci, s := range convCases {
		oh, ow := s.OutH(), s.OutW()
		xs, ws := e.normals(s.Batch*s.InC*s.H*s.W), e.normals(s.OutC*s.InC*s.K*s.K)
		var bs []float32
		if ci%3 != 1 {
			bs = e.normals(s.OutC)
		}
		dys := e.normals(s.Batch * s.OutC * oh * ow)
		x, w, dy := e.view(xs), e.view(ws), e.view(dys)
		var bias gpu.Buffer
		if bs != nil {
			bias = e.view(bs).b
		}
		y, dx := e.out(len(dys)), e.out(len(xs))
		dw := e.out(len(ws))
		var dbias view
		var dbiasBuf gpu.Buffer
		if ci%2 == 0 {
			dbias = e.out(s.OutC)
			dbiasBuf = dbias.b
		}
		e.be.Conv2D(s, x.b, w.b, bias, y.b)
		e.be.Conv2DBackwardData(s, dy.b, w.b, dx.b)
		e.be.Conv2DBackwardFilter(s, x.b, dy.b, dw.b, dbiasBuf)
		name := fmt.Sprintf("%+v", s)
		want, scale := convRef(s, xs, ws, bs)
		checkClose(t, "Conv2D "+name, e.get("y", y), want, tolOf(scale, rtolRed))
		wdx, sdx, wdw, sdw, wdb, sdb := convAdjoint(s, xs, ws, dys)
		checkClose(t, "Conv2DBackwardData "+name, e.get("dx", dx), wdx, tolOf(sdx, rtolRed))
		checkClose(t, "Conv2DBackwardFilter dw "+name, e.get("dw", dw), wdw, tolOf(sdw, rtolRed))
		if dbiasBuf != nil {
			checkClose(t, "Conv2DBackwardFilter dbias "+name, e.get("dbias", dbias), wdb, tolOf(sdb, rtolRed))
		}
		if err := e.be.Sync(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
}

// The filter gradient's long sums are split into chunks (a double sum of
// float partials): a large batch x positions count checks the split, and
// the result is the same bits whatever the harness's thread order and
// block parallelism.
func TestDeviceConv2DFilterSplitDeterministic(t *testing.T) {
	s := gpu.ConvShape{Batch: 6, InC: 3, H: 30, W: 31, OutC: 5, K: 3, Stride: 1, Pad: 1}
	rng := rand.New(rand.NewPCG(3, 3))
	xs := make([]float32, s.Batch*s.InC*s.H*s.W)
	dys := make([]float32, s.Batch*s.OutC*s.OutH()*s.OutW())
	for i := range xs {
		xs[i] = float32(rng.NormFloat64())
	}
	for i := range dys {
		dys[i] = float32(rng.NormFloat64())
	}
	var runs [][]float32
	for _, o := range []gpu.KernelSimOptions{{Order: "forward", Threads: 1}, {Order: "reverse", Threads: 3}, {}} {
		be := newKernelSim(t, o)
		x, dy, dw, db := be.Alloc(len(xs)), be.Alloc(len(dys)), be.Alloc(s.OutC*s.InC*9), be.Alloc(s.OutC)
		be.Upload(x, xs)
		be.Upload(dy, dys)
		be.Conv2DBackwardFilter(s, x, dy, dw, db)
		got := make([]float32, dw.Len()+db.Len())
		be.Download(got[:dw.Len()], dw)
		be.Download(got[dw.Len():], db)
		if err := be.Sync(); err != nil {
			t.Fatal(err)
		}
		be.Close()
		runs = append(runs, got)
	}
	_, _, wdw, sdw, wdb, sdb := convAdjoint(s, xs, make([]float32, s.OutC*s.InC*9), dys)
	checkClose(t, "dw", runs[0][:len(wdw)], wdw, tolOf(sdw, rtolRed))
	checkClose(t, "dbias", runs[0][len(wdw):], wdb, tolOf(sdb, rtolRed))
	for i := 1; i < len(runs); i++ {
		checkExact(t, fmt.Sprintf("run %d against run 0", i), runs[i], runs[0])
	}
}

// An empty batch: the gradients are zero, the outputs untouched.
func TestDeviceConv2DEmptyBatch(t *testing.T) {
	e := newImgEnv(t, 2)
	s := gpu.ConvShape{Batch: 0, InC: 2, H: 3, W: 3, OutC: 3, K: 3, Stride: 1, Pad: 1}
	x, y := e.view(nil), e.view(nil)
	w := e.view(e.normals(3 * 2 * 9))
	dw, db := e.out(3*2*9), e.out(3)
	e.be.Conv2D(s, x.b, w.b, nil, y.b)
	e.be.Conv2DBackwardData(s, y.b, w.b, x.b)
	e.be.Conv2DBackwardFilter(s, x.b, y.b, dw.b, db.b)
	checkExact(t, "dw", e.get("dw", dw), make([]float32, dw.n))
	checkExact(t, "dbias", e.get("dbias", db), make([]float32, 3))
}

// groupNormRef returns y, mean, rstd of GroupNorm in float64.
func groupNormRef(s gpu.GroupNormShape, x, gamma, beta []float32) (y, mean, rstd []float64) {
	cpg := s.C / s.Groups
	n := cpg * s.HW
	y = make([]float64, len(x))
	mean, rstd = make([]float64, s.Batch*s.Groups), make([]float64, s.Batch*s.Groups)
	for u := range mean {
		xs := x[u*n : (u+1)*n]
		var m, v float64
		for _, a := range xs {
			m += float64(a)
		}
		m /= float64(n)
		for _, a := range xs {
			v += (float64(a) - m) * (float64(a) - m)
		}
		v /= float64(n)
		r := 1 / math.Sqrt(v+float64(s.Eps))
		mean[u], rstd[u] = m, r
		for e := range xs {
			c := u%s.Groups*cpg + e/s.HW
			y[u*n+e] = (float64(xs[e])-m)*r*float64(gamma[c]) + float64(beta[c])
		}
	}
	return
}

var groupNormCases = []gpu.GroupNormShape{
	{Batch: 1, C: 1, HW: 1, Groups: 1, Eps: 1e-5},
	{Batch: 2, C: 4, HW: 3, Groups: 2, Eps: 1e-5},
	{Batch: 3, C: 6, HW: 17, Groups: 3, Eps: 1e-6},
	{Batch: 2, C: 32, HW: 49, Groups: 8, Eps: 1e-5},
	{Batch: 1, C: 5, HW: 257, Groups: 1, Eps: 1e-3},
	{Batch: 3, C: 12, HW: 100, Groups: 4, Eps: 1e-5},
	{Batch: 2, C: 80, HW: 4, Groups: 8, Eps: 1e-5},
	{Batch: 0, C: 4, HW: 5, Groups: 2, Eps: 1e-5},
}

func TestDeviceGroupNorm(t *testing.T) {
	e := newImgEnv(t, 4)
	for ci, s := range groupNormCases {
		n := s.Batch * s.C * s.HW
		xs := e.normals(n)
		for i := range xs {
			xs[i] = 2*xs[i] + 0.5 // a mean and variance away from 0 and 1
		}
		gs, bs, dys := e.normals(s.C), e.normals(s.C), e.normals(n)
		x, gamma, beta, dy := e.view(xs), e.view(gs), e.view(bs), e.view(dys)
		y, mean, rstd := e.out(n), e.out(s.Batch*s.Groups), e.out(s.Batch*s.Groups)
		alias := ci%2 == 1
		dx := e.out(n)
		if alias {
			dx = e.view(dys)
		}
		dg, db := e.out(s.C), e.out(s.C)
		e.be.GroupNorm(s, x.b, gamma.b, beta.b, y.b, mean.b, rstd.b)
		dyb := dy.b
		if alias {
			dyb = dx.b
		}
		e.be.GroupNormBackward(s, dyb, x.b, gamma.b, mean.b, rstd.b, dx.b, dg.b, db.b)
		name := fmt.Sprintf("%+v", s)

		wy, wm, wr := groupNormRef(s, xs, gs, bs)
		ty := make([]float64, n)
		cpg := s.C / s.Groups
		for i := range ty {
			c := i / s.HW % s.C
			u := i / (cpg * s.HW)
			// (x - mean) rstd gamma + beta: a few float32 roundings of
			// each term.
			ty[i] = 1e-5 * (math.Abs((float64(xs[i])-wm[u])*wr[u]*float64(gs[c])) + math.Abs(float64(bs[c])) + 1e-6)
		}
		checkClose(t, "GroupNorm y "+name, e.get("y", y), wy, ty)
		checkClose(t, "GroupNorm mean "+name, e.get("mean", mean), wm, tolOf(absAll(wm, 1e-6), 1e-5))
		checkClose(t, "GroupNorm rstd "+name, e.get("rstd", rstd), wr, tolOf(absAll(wr, 0), 1e-5))

		// Backward in float64: xh = (x - mean) rstd, g = dy gamma;
		// dx = rstd (g - mean(g) - xh mean(g xh)); dgamma = sum dy xh;
		// dbeta = sum dy.
		wdx, tdx := make([]float64, n), make([]float64, n)
		wdg, tdg, wdb, tdb := make([]float64, s.C), make([]float64, s.C), make([]float64, s.C), make([]float64, s.C)
		gn := cpg * s.HW
		for u := 0; u < s.Batch*s.Groups; u++ {
			var sg, sgx, ag, agx float64
			for k := 0; k < gn; k++ {
				i := u*gn + k
				c := i / s.HW % s.C
				xh := (float64(xs[i]) - wm[u]) * wr[u]
				g := float64(dys[i]) * float64(gs[c])
				sg += g
				sgx += g * xh
				ag += math.Abs(g)
				agx += math.Abs(g * xh)
				wdg[c] += float64(dys[i]) * xh
				tdg[c] += math.Abs(float64(dys[i]) * xh)
				wdb[c] += float64(dys[i])
				tdb[c] += math.Abs(float64(dys[i]))
			}
			for k := 0; k < gn; k++ {
				i := u*gn + k
				c := i / s.HW % s.C
				xh := (float64(xs[i]) - wm[u]) * wr[u]
				g := float64(dys[i]) * float64(gs[c])
				wdx[i] = wr[u] * (g - sg/float64(gn) - xh*sgx/float64(gn))
				// float32 terms combined after double sums: a few
				// roundings of each term's magnitude.
				tdx[i] = 2e-5*wr[u]*(math.Abs(g)+ag/float64(gn)+math.Abs(xh)*agx/float64(gn)) + 1e-30
			}
		}
		checkClose(t, "GroupNormBackward dx "+name, e.get("dx", dx), wdx, tdx)
		checkClose(t, "GroupNormBackward dgamma "+name, e.get("dgamma", dg), wdg, tolOf(tdg, rtolRed))
		checkClose(t, "GroupNormBackward dbeta "+name, e.get("dbeta", db), wdb, tolOf(tdb, rtolRed))
	}
}

func absAll(v []float64, floor float64) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = math.Abs(x) + floor
	}
	return out
}

func silu32(z float32) float32 { return z / (1 + float32(math.Exp(float64(-z)))) }

// The elementwise and data-movement ops: bit for bit where the kernel does
// the CPU's float32 roundings (copies, one addition, the upsampling
// gradient's pairwise sum), within float32 roundings otherwise.
func TestDeviceImageElementwise(t *testing.T) {
	e := newImgEnv(t, 5)
	for _, n := range []int{1, 3, 257, 1000} {
		xs := e.normals(n)
		for _, act := range []gpu.Act{gpu.ActNone, gpu.ActSiLU} {
			x, y := e.view(xs), e.out(n)
			e.be.Activate(act, x.b, y.b)
			e.be.Activate(act, x.b, x.b) // in place
			want, tol := make([]float64, n), make([]float64, n)
			for i, v := range xs {
				w := float64(v)
				if act == gpu.ActSiLU {
					w = w / (1 + math.Exp(-w))
				}
				want[i], tol[i] = w, 2e-6*math.Abs(w)+1e-30 // expf: a few ulp
			}
			checkClose(t, fmt.Sprintf("Activate(%d) n=%d", act, n), e.get("y", y), want, tol)
			checkClose(t, fmt.Sprintf("Activate(%d) n=%d in place", act, n), e.get("x", x), want, tol)
		}
	}
	for _, sh := range [][3]int{{1, 1, 1}, {2, 3, 17}, {3, 5, 49}, {1, 70, 4}} {
		b, c, hw := sh[0], sh[1], sh[2]
		xs, bs := e.normals(b*c*hw), e.normals(b*c)
		x, bias, y := e.view(xs), e.view(bs), e.out(b*c*hw)
		e.be.AddChannelBias(b, c, hw, x.b, bias.b, y.b)
		want := make([]float32, len(xs))
		for i := range xs {
			want[i] = xs[i] + bs[i/hw]
		}
		checkExact(t, fmt.Sprintf("AddChannelBias %v", sh), e.get("y", y), want)
		e.be.AddChannelBias(b, c, hw, x.b, bias.b, x.b)
		checkExact(t, fmt.Sprintf("AddChannelBias %v in place", sh), e.get("x", x), want)

		sum := e.out(b * c)
		e.be.ChannelSum(b, c, hw, y.b, sum.b)
		ws, ts := make([]float64, b*c), make([]float64, b*c)
		for i, v := range want {
			ws[i/hw] += float64(v)
			ts[i/hw] += math.Abs(float64(v))
		}
		checkClose(t, fmt.Sprintf("ChannelSum %v", sh), e.get("sum", sum), ws, tolOf(ts, 1e-6))
	}
	for _, sh := range [][4]int{{1, 1, 1, 1}, {2, 3, 3, 5}, {1, 2, 7, 7}, {3, 1, 14, 13}} {
		b, c, h, w := sh[0], sh[1], sh[2], sh[3]
		xs, dys := e.normals(b*c*h*w), e.normals(b*c*4*h*w)
		x, y, dy, dx := e.view(xs), e.out(len(dys)), e.view(dys), e.out(len(xs))
		e.be.Upsample2x(b, c, h, w, x.b, y.b)
		e.be.Upsample2xBackward(b, c, h, w, dy.b, dx.b)
		wy, wdx := make([]float32, len(dys)), make([]float32, len(xs))
		for p := 0; p < b*c; p++ {
			for i := 0; i < 2*h; i++ {
				for j := 0; j < 2*w; j++ {
					wy[(p*2*h+i)*2*w+j] = xs[(p*h+i/2)*w+j/2]
				}
			}
			for i := 0; i < h; i++ {
				for j := 0; j < w; j++ {
					r0, r1 := (p*2*h+2*i)*2*w+2*j, (p*2*h+2*i+1)*2*w+2*j
					wdx[(p*h+i)*w+j] = (dys[r0] + dys[r0+1]) + (dys[r1] + dys[r1+1])
				}
			}
		}
		checkExact(t, fmt.Sprintf("Upsample2x %v", sh), e.get("y", y), wy)
		checkExact(t, fmt.Sprintf("Upsample2xBackward %v", sh), e.get("dx", dx), wdx)
	}
	for _, c := range []struct{ b, hw, n, srcC, srcOff, dstC, dstOff int }{
		{1, 1, 1, 1, 0, 1, 0}, {2, 17, 3, 5, 2, 7, 4}, {3, 4, 2, 2, 0, 6, 1}, {2, 49, 8, 16, 8, 8, 0},
	} {
		ss, ds := e.normals(c.b*c.srcC*c.hw), e.normals(c.b*c.dstC*c.hw)
		src, dst := e.view(ss), e.view(ds)
		e.be.CopyChannels(c.b, c.hw, c.n, src.b, c.srcC, c.srcOff, dst.b, c.dstC, c.dstOff)
		want := append([]float32(nil), ds...)
		for b := 0; b < c.b; b++ {
			for k := 0; k < c.n; k++ {
				for p := 0; p < c.hw; p++ {
					want[(b*c.dstC+c.dstOff+k)*c.hw+p] = ss[(b*c.srcC+c.srcOff+k)*c.hw+p]
				}
			}
		}
		checkExact(t, fmt.Sprintf("CopyChannels %+v", c), e.get("dst", dst), want)
	}
	for _, sh := range [][3]int{{1, 1, 1}, {1, 3, 5}, {4, 17, 33}, {2, 64, 65}, {3, 100, 2}} {
		b, r, c := sh[0], sh[1], sh[2]
		xs := e.normals(b * r * c)
		x, y := e.view(xs), e.out(len(xs))
		e.be.Transpose(b, r, c, x.b, y.b)
		want := make([]float32, len(xs))
		for z := 0; z < b; z++ {
			for i := 0; i < r; i++ {
				for j := 0; j < c; j++ {
					want[z*r*c+j*r+i] = xs[z*r*c+i*c+j]
				}
			}
		}
		checkExact(t, fmt.Sprintf("Transpose %v", sh), e.get("y", y), want)
	}
	{
		labels := []float32{0, 2, 9, -1, 10, 1.5, nan, 3}
		const classes = 10
		l, o := e.view(labels), e.out(len(labels)*classes)
		e.be.OneHot(len(labels), classes, l.b, o.b)
		want := make([]float32, len(labels)*classes)
		for r, v := range labels {
			if k := int(v); float32(k) == v && k >= 0 && k < classes {
				want[r*classes+k] = 1
			}
		}
		checkExact(t, "OneHot", e.get("out", o), want)
	}
}

func TestDeviceSoftmax(t *testing.T) {
	e := newImgEnv(t, 6)
	for ci, sh := range [][2]int{{1, 1}, {3, 2}, {17, 31}, {9, 257}, {33, 49}, {2, 1000}} {
		rows, cols := sh[0], sh[1]
		xs := e.normals(rows * cols)
		for i := range xs {
			xs[i] *= 4
		}
		ys := make([]float64, len(xs))
		for r := 0; r < rows; r++ {
			m := math.Inf(-1)
			for c := 0; c < cols; c++ {
				m = math.Max(m, float64(xs[r*cols+c]))
			}
			var s float64
			for c := 0; c < cols; c++ {
				s += math.Exp(float64(xs[r*cols+c]) - m)
			}
			for c := 0; c < cols; c++ {
				ys[r*cols+c] = math.Exp(float64(xs[r*cols+c])-m) / s
			}
		}
		x, y := e.view(xs), e.out(len(xs))
		alias := ci%2 == 1
		if alias {
			y = x
		}
		e.be.Softmax(rows, cols, x.b, y.b)
		// expf of a rounded argument (|x - m| up to ~30: 30 2^-24
		// relative) and a division.
		checkClose(t, fmt.Sprintf("Softmax %v", sh), e.get("y", y), ys, tolOf(absAll(ys, 0), 1e-5))

		// Backward from the float32 y the kernel produced.
		y32 := e.get("y", y)
		dys := e.normals(rows * cols)
		yv, dy := e.view(y32), e.view(dys)
		dx := e.out(len(dys))
		if alias {
			dx = dy
		}
		e.be.SoftmaxBackward(rows, cols, yv.b, dy.b, dx.b)
		want, tol := make([]float64, len(dys)), make([]float64, len(dys))
		for r := 0; r < rows; r++ {
			var d, da float64
			for c := 0; c < cols; c++ {
				d += float64(dys[r*cols+c]) * float64(y32[r*cols+c])
				da += math.Abs(float64(dys[r*cols+c]) * float64(y32[r*cols+c]))
			}
			for c := 0; c < cols; c++ {
				i := r*cols + c
				want[i] = float64(y32[i]) * (float64(dys[i]) - d)
				tol[i] = 1e-5*math.Abs(float64(y32[i]))*(math.Abs(float64(dys[i]))+da) + 1e-30
			}
		}
		checkClose(t, fmt.Sprintf("SoftmaxBackward %v", sh), e.get("dx", dx), want, tol)
	}
}

func TestDeviceGemmBatched(t *testing.T) {
	e := newImgEnv(t, 7)
	shapes := [][4]int{{1, 1, 1, 1}, {3, 17, 5, 3}, {2, 65, 33, 70}, {5, 49, 49, 8}, {2, 3, 2, 0}, {1, 64, 64, 64}}
	scalars := [][2]float32{{1, 0}, {0.5, -1}, {-1.5, 0.25}}
	for si, sh := range shapes {
		batch, m, n, k := sh[0], sh[1], sh[2], sh[3]
		for _, ta := range []bool{false, true} {
			for _, tb := range []bool{false, true} {
				ab := scalars[(si+len(scalars)-1)%len(scalars)]
				rowsA, colsA := m, k
				if ta {
					rowsA, colsA = k, m
				}
				rowsB, colsB := k, n
				if tb {
					rowsB, colsB = n, k
				}
				lda, ldb, ldc := colsA+1, colsB+2, n+1
				la, lb, lc := max(rowsA*lda, 1)+3, max(rowsB*ldb, 1)+1, m*ldc+2 // strides with gaps
				as, bs, cs := e.normals(batch*la), e.normals(batch*lb), e.normals(batch*lc)
				a, b, c := e.view(as), e.view(bs), e.view(cs)
				e.be.GemmBatched(ta, tb, batch, m, n, k, ab[0], a.b, lda, la, b.b, ldb, lb, ab[1], c.b, ldc, lc)
				got := e.get("c", c)
				for z := 0; z < batch; z++ {
					want, tol := make([]float64, m*n), make([]float64, m*n)
					gz := make([]float32, m*n)
					for i := 0; i < m; i++ {
						for j := 0; j < n; j++ {
							var s, sa float64
							for l := 0; l < k; l++ {
								var av, bv float64
								if ta {
									av = float64(as[z*la+l*lda+i])
								} else {
									av = float64(as[z*la+i*lda+l])
								}
								if tb {
									bv = float64(bs[z*lb+j*ldb+l])
								} else {
									bv = float64(bs[z*lb+l*ldb+j])
								}
								s += av * bv
								sa += math.Abs(av * bv)
							}
							cv := float64(cs[z*lc+i*ldc+j])
							want[i*n+j] = float64(ab[0])*s + float64(ab[1])*cv
							tol[i*n+j] = rtolRed*(math.Abs(float64(ab[0]))*sa+math.Abs(float64(ab[1])*cv)) + 1e-30
							gz[i*n+j] = got[z*lc+i*ldc+j]
						}
					}
					checkClose(t, fmt.Sprintf("GemmBatched(%v, %v) %v z=%d", ta, tb, sh, z), gz, want, tol)
				}
				// The gaps between and beside the C_z are untouched.
				for i, v := range got {
					z, r := i/lc, i%lc
					if z >= batch || r >= m*ldc || r%ldc >= n {
						if math.Float32bits(v) != math.Float32bits(cs[i]) {
							t.Errorf("GemmBatched(%v, %v) %v: C element %d outside the products written", ta, tb, sh, i)
							break
						}
					}
				}
			}
		}
	}
}

// DrawLabels: the label of the row DrawBatch draws (data whose first
// column is the row index), or null with the dropout uniform below the
// rate; the stream words from gpu.PhiloxBlock.
func TestDeviceDrawLabels(t *testing.T) {
	e := newImgEnv(t, 8)
	const nData, d = 37, 2
	data, labels := make([]float32, nData*d), make([]float32, nData)
	for i := 0; i < nData; i++ {
		data[i*d], data[i*d+1] = float32(i), -1
		labels[i] = float32(i % 10)
	}
	for _, rows := range []int{1, 3, 4, 17, 257} {
		for _, drop := range []float32{0, 0.3, 1} {
			dr := gpu.BatchDraw{Path: flow.DefaultSpec(flow.KindOT), Time: flow.DefaultTimeSampler(flow.TimeUniform),
				Seed: uint64(rows) * 977, Step: 5}
			dv, lv := e.view(data), e.view(labels)
			x1, tt, xt, ut := e.out(rows*d), e.out(rows), e.out(rows*d), e.out(rows*d)
			y := e.out(rows)
			e.be.DrawBatch(dr, dv.b, nData, d, rows, nil, x1.b, tt.b, xt.b, ut.b)
			e.be.DrawLabels(dr, lv.b, nData, rows, drop, 10, y.b)
			x1s, ys := e.get("x1", x1), e.get("y", y)
			want := make([]float32, rows)
			for r := 0; r < rows; r++ {
				wi := gpu.PhiloxBlock(dr.Seed, gpu.PurposeIndex, dr.Step, uint32(r/4))
				wd := gpu.PhiloxBlock(dr.Seed, gpu.PurposeLabelDrop, dr.Step, uint32(r/4))
				i := gpu.IndexBelow(wi[r%4], nData)
				if float32(i) != x1s[r*d] {
					t.Fatalf("rows %d: DrawBatch drew row %v, the Philox index is %d", rows, x1s[r*d], i)
				}
				want[r] = labels[i]
				if gpu.Uniform01(wd[r%4]) < drop {
					want[r] = 10
				}
			}
			checkExact(t, fmt.Sprintf("DrawLabels rows=%d dropout=%g", rows, drop), ys, want)
		}
	}
}

// The image ops against the CPU backend in the device report's form, at
// batch 1 (size 128 divides the GPU report's batch of 128).
func TestKernelSimImageReport(t *testing.T) {
	be := newKernelSim(t, gpu.KernelSimOptions{})
	defer be.Close()
	runImageReport(t, be, 128, time.Millisecond)
}
