package gpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/fmgpu/fmgpu/internal/sgemm"
)

// TestCPUGroupNormActFused: with every sgemm kernel set this CPU has (the
// AVX-512 set fuses the bias, the norm and the activation into one pass),
// GroupNormAct leaves x, y, mean, rstd and a bit for bit as
// AddChannelBias, GroupNorm and Activate one after the other, on shapes
// whose channels are not whole vectors (HW 49, 7, 1) and on the U-Net's.
func TestCPUGroupNormActFused(t *testing.T) {
	saved := sgemm.Kernel()
	defer sgemm.SetKernel(saved)
	shapes := []GroupNormShape{
		{Batch: 3, C: 4, HW: 49, Groups: 2, Eps: 1e-5},
		{Batch: 2, C: 6, HW: 7, Groups: 3, Eps: 1e-3},
		{Batch: 2, C: 8, HW: 1, Groups: 8, Eps: 1e-5},
		{Batch: 4, C: 64, HW: 196, Groups: 8, Eps: 1e-5},
		{Batch: 2, C: 32, HW: 784, Groups: 8, Eps: 1e-5},
	}
	r := rand.New(rand.NewPCG(3, 4))
	normals := func(n int, scale, shift float64) []float32 { return normalFloats(r, n, scale, shift) }
	same := func(name string, got, want []float32) { t.Helper(); sameBitsAsUnfused(t, name, got, want) }
	for _, kern := range sgemm.Kernels() {
		if err := sgemm.SetKernel(kern); err != nil {
			t.Fatal(err)
		}
		c := NewCPU(2)
		for si, s := range shapes {
			for _, act := range []Act{ActSiLU, ActNone} {
				for _, withBias := range []bool{true, false} {
					name := fmt.Sprintf("%s/shape %d/act %d/bias %v", kern, si, act, withBias)
					n, ng := s.Batch*s.C*s.HW, s.Batch*s.Groups
					x := normals(n, 3, 0.5)
					gamma, beta := normals(s.C, 1, 1), normals(s.C, 1, 0)
					upload := func(v []float32) Buffer { b := c.Alloc(len(v)); c.Upload(b, v); return b }
					px, px2 := upload(x), upload(x)
					pg, pb := upload(gamma), upload(beta)
					var xb, xb2 Buffer
					if withBias {
						bias := normals(s.Batch*s.C, 2, 0)
						xb, xb2 = upload(bias), upload(bias)
					}
					y, a, m, rs := c.Alloc(n), c.Alloc(n), c.Alloc(ng), c.Alloc(ng)
					c.GroupNormAct(s, act, px, xb, pg, pb, y, a, m, rs)

					y2, a2, m2, rs2 := c.Alloc(n), c.Alloc(n), c.Alloc(ng), c.Alloc(ng)
					if withBias {
						c.AddChannelBias(s.Batch, s.C, s.HW, px2, xb2, px2)
					}
					c.GroupNorm(s, px2, pg, pb, y2, m2, rs2)
					c.Activate(act, y2, a2)
					same(name+": x", host(px), host(px2))
					same(name+": y", host(y), host(y2))
					same(name+": mean", host(m), host(m2))
					same(name+": rstd", host(rs), host(rs2))
					same(name+": a", host(a), host(a2))
				}
			}
		}
		c.Close()
	}
}

// TestCPUGroupNormActBackwardFused: with every sgemm kernel set,
// GroupNormActBackward (one pass over the groups) leaves dx, dgamma,
// dbeta and dxSum bit for bit as the ops it stands for one after the
// other: BiasActBackward over the whole buffer, GroupNormBackward in
// place, then Copy or Axpy into dx, then ChannelSum; and so when it
// recomputes y (nil) from x and the statistics. The shapes have
// groups and whole buffers that are not whole vectors (the SiLU
// gradient's tail path), and dx is given distinct from, or as, add and dA.
func TestCPUGroupNormActBackwardFused(t *testing.T) {
	saved := sgemm.Kernel()
	defer sgemm.SetKernel(saved)
	shapes := []GroupNormShape{
		{Batch: 3, C: 4, HW: 49, Groups: 2, Eps: 1e-5},
		{Batch: 2, C: 6, HW: 7, Groups: 3, Eps: 1e-3},
		{Batch: 3, C: 8, HW: 1, Groups: 8, Eps: 1e-5},
		{Batch: 1, C: 6, HW: 13, Groups: 1, Eps: 1e-5}, // 78 elements: a 14-element tail past the last vector of 16
		{Batch: 4, C: 64, HW: 49, Groups: 8, Eps: 1e-5},
		{Batch: 2, C: 32, HW: 784, Groups: 8, Eps: 1e-5},
		{Batch: 0, C: 8, HW: 4, Groups: 2, Eps: 1e-5},
	}
	r := rand.New(rand.NewPCG(5, 6))
	normals := func(n int, scale, shift float64) []float32 { return normalFloats(r, n, scale, shift) }
	same := func(name string, got, want []float32) { t.Helper(); sameBitsAsUnfused(t, name, got, want) }
	// dx: where the fused op writes: a buffer of its own, add's, or dA's.
	const (
		dxOwn = iota
		dxIsAdd
		dxIsDA
	)
	for _, kern := range sgemm.Kernels() {
		if err := sgemm.SetKernel(kern); err != nil {
			t.Fatal(err)
		}
		c := NewCPU(2)
		upload := func(v []float32) Buffer { b := c.Alloc(len(v)); c.Upload(b, v); return b }
		for si, s := range shapes {
			n, ng := s.Batch*s.C*s.HW, s.Batch*s.Groups
			x := normals(n, 3, 0.5)
			gamma, beta := normals(s.C, 1, 1), normals(s.C, 1, 0)
			px, pg, pb := upload(x), upload(gamma), upload(beta)
			y, a, m, rs := c.Alloc(n), c.Alloc(n), c.Alloc(ng), c.Alloc(ng)
			c.GroupNormAct(s, ActSiLU, px, nil, pg, pb, y, a, m, rs)
			for _, act := range []Act{ActSiLU, ActNone} {
				for _, withAdd := range []bool{false, true} {
					for _, where := range []int{dxOwn, dxIsAdd, dxIsDA} {
						if where == dxIsAdd && !withAdd {
							continue
						}
						for _, variant := range []int{0, 1, 2} { // dxSum or not, y recomputed
							withSum, recompute := variant > 0, variant == 2
							name := fmt.Sprintf("%s/shape %d/act %d/add %v/dx %d/sum %v/recompute %v", kern, si, act, withAdd, where, withSum, recompute)
							dA, addv := normals(n, 1, 0), normals(n, 1, 0.2)
							// fused
							fdA, fadd := upload(dA), upload(addv)
							var add Buffer
							if withAdd {
								add = fadd
							}
							dx := c.Alloc(n)
							switch where {
							case dxIsAdd:
								dx = fadd
							case dxIsDA:
								dx = fdA
							}
							var sum, sum2 Buffer
							if withSum {
								sum, sum2 = c.Alloc(s.Batch*s.C), c.Alloc(s.Batch*s.C)
							}
							dg, db := c.Alloc(s.C), c.Alloc(s.C)
							yArg, bArg := y, Buffer(nil)
							if recompute {
								yArg, bArg = nil, pb
							}
							c.GroupNormActBackward(s, act, fdA, yArg, px, pg, bArg, m, rs, add, dx, dg, db, sum)

							// the ops one after the other
							udA, uadd, dx2 := upload(dA), upload(addv), c.Alloc(n)
							dg2, db2 := c.Alloc(s.C), c.Alloc(s.C)
							if act != ActNone && n > 0 {
								c.BiasActBackward(act, 1, n, udA, y, udA, nil)
							}
							c.GroupNormBackward(s, udA, px, pg, m, rs, udA, dg2, db2)
							if withAdd {
								c.Copy(dx2, uadd)
								c.Axpy(1, udA, dx2)
							} else {
								c.Copy(dx2, udA)
							}
							if withSum {
								c.ChannelSum(s.Batch, s.C, s.HW, dx2, sum2)
								same(name+": dxSum", host(sum), host(sum2))
							}
							same(name+": dx", host(dx), host(dx2))
							same(name+": dgamma", host(dg), host(dg2))
							same(name+": dbeta", host(db), host(db2))
						}
					}
				}
			}
		}
		c.Close()
	}
}

// normalFloats draws n values of N(shift, scale^2) from r.
func normalFloats(r *rand.Rand, n int, scale, shift float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64()*scale + shift)
	}
	return v
}

// sameBitsAsUnfused fails t unless got equals want (the unfused ops'
// result) bit for bit.
func sameBitsAsUnfused(t *testing.T, name string, got, want []float32) {
	t.Helper()
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("%s[%d] = %v, want %v (the unfused ops')", name, i, got[i], want[i])
		}
	}
}
