// It uses the gorgonia oracle of gorgonia_test.go (not in cuda builds).

//go:build !cuda

package model_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/fmgpu/fmgpu/internal/numtest"
)

// cdStep is the central-difference step on the float64 reference. The
// loss and its derivatives are O(1) here, so the truncation error is about
// cdStep^2 / 6 ~ 2e-11 and the rounding error about 1e-16 / cdStep ~ 1e-11:
// the differences are good to about 1e-11 absolute, while the gradients'
// largest elements are about 1e-2, so an element at the gradFloorFrac floor
// (1e-4) is known to about 1e-7 relative (measured: at most 1.6e-7).
const cdStep = 1e-5

// cdOracleRTol bounds gorgonia against the central differences (both
// float64), element-wise with the gradFloorFrac floor: the two oracles
// must agree ten times better than the float32 backward is asked to, and
// the differences' own error (above) leaves that bound a margin of 6.
const cdOracleRTol = 1e-5

// TestBackwardMatchesCentralDifferences compares MLP.Backward (float32)
// with central differences of the float64 reference loss. Every parameter
// is differenced, not a random subset: the largest network here has 458
// parameters and the whole test takes milliseconds. Tolerance: gradRTol
// (1e-4) element-wise with the gradFloorFrac floor, as against gorgonia,
// since the differences are exact to about 1e-9 (cdStep).
func TestBackwardMatchesCentralDifferences(t *testing.T) {
	b := newBackend(t)
	cases := append([]testCase{tinyCase}, testCases...)
	for ci, tc := range cases {
		const rows = 17 // the largest of testRows
		t.Run(fmt.Sprintf("%s/rows=%d", tc.name, rows), func(t *testing.T) {
			m := newMLP(t, b, tc.cfg, uint64(300+ci))
			r := rand.New(rand.NewPCG(uint64(ci), 3000))
			bt := newBatch(r, rows, tc.cfg.Dim)
			_, got := mlpGrads(t, b, m, bt)

			p := to64(hostData(t, m.Params()))
			in := refEmbed(tc.cfg, rows, to64(bt.x), to64(bt.t))
			tgt := to64(bt.tgt)
			loss := func() float64 { return refLoss(rows, refForward(tc.cfg, m.Tensors(), p, rows, in), tgt) }
			cd := make([]float64, len(p))
			for i := range p {
				cd[i] = centralDiff(loss, p, i, cdStep)
			}
			_, gg := gorgoniaGrads(t, tc.cfg, m.Tensors(), p, rows, in, tgt)

			worst, worstOracle := 0.0, 0.0
			for _, ts := range m.Tensors() {
				lo, hi := ts.Offset, ts.Offset+ts.Size()
				e := elemRelErr(got[lo:hi], cd[lo:hi])
				if !(e <= gradRTol) {
					t.Errorf("%s: element-wise relative error %.3g of MLP.Backward against central differences, want <= %g", ts.Name, e, gradRTol)
				}
				eo := elemRelErr(gg[lo:hi], cd[lo:hi])
				if !(eo <= cdOracleRTol) {
					t.Errorf("%s: gorgonia and central differences differ by %.3g, want <= %g", ts.Name, eo, cdOracleRTol)
				}
				worst, worstOracle = math.Max(worst, e), math.Max(worstOracle, eo)
			}
			t.Log(numtest.Describe(fmt.Sprintf("Backward vs central differences (%d parameters)", len(p)), worst, gradRTol))
			t.Log(numtest.Describe("gorgonia vs central differences", worstOracle, cdOracleRTol))
		})
	}
}

// vjpRTol bounds InputVJP (float32) against the float64 central
// differences and the float64 Jacobian: like a gradient, element-wise with
// a floor of gradFloorFrac of the largest element compared.
const vjpRTol = 1e-4

// TestInputVJP checks w = e^T dv/dx against central differences of
// sum_r e_r . v(t_r, x_r) with respect to x on the float64 reference, that
// VJP equals Velocity followed by InputVJP, and that the sum over unit
// vectors e_j of (e_j^T dv/dx)_j is the divergence, the trace of the
// float64 Jacobian (itself checked against central differences).
func TestInputVJP(t *testing.T) {
	b := newBackend(t)
	cases := append([]testCase{tinyCase}, testCases...)
	for ci, tc := range cases {
		for _, rows := range []int{3, 17} {
			t.Run(fmt.Sprintf("%s/rows=%d", tc.name, rows), func(t *testing.T) {
				d := tc.cfg.Dim
				m := newMLP(t, b, tc.cfg, uint64(400+ci))
				r := rand.New(rand.NewPCG(uint64(ci), uint64(4000+rows)))
				bt := newBatch(r, rows, d)
				ev := make([]float32, rows*d)
				for i := range ev {
					ev[i] = float32(r.NormFloat64())
				}
				x, tb, e := upload(b, bt.x), upload(b, bt.t), upload(b, ev)
				v, w := b.Alloc(rows*d), b.Alloc(rows*d)
				m.Forward(rows, tb, x, v)
				m.InputVJP(e, w)
				if err := b.Sync(); err != nil {
					t.Fatal(err)
				}
				got := append([]float32(nil), hostData(t, w)...)

				p := to64(hostData(t, m.Params()))
				x64, t64, e64 := to64(bt.x), to64(bt.t), to64(ev)
				dot := func() float64 {
					out := refForward(tc.cfg, m.Tensors(), p, rows, refEmbed(tc.cfg, rows, x64, t64))
					s := 0.0
					for i := range out {
						s += e64[i] * out[i]
					}
					return s
				}
				cd := make([]float64, rows*d)
				for i := range cd {
					cd[i] = centralDiff(dot, x64, i, cdStep)
				}
				errCD := elemRelErr(got, cd)
				if !(errCD <= vjpRTol) {
					t.Errorf("InputVJP against central differences: element-wise relative error %.3g, want <= %g", errCD, vjpRTol)
				}
				t.Log(numtest.Describe("InputVJP vs central differences", errCD, vjpRTol))

				// VJP is Velocity (one t for all rows) then InputVJP.
				tc0 := bt.t[0]
				v2, w2 := b.Alloc(rows*d), b.Alloc(rows*d)
				m.VJP(float64(tc0), rows, x, e, v2, w2)
				tcol := make([]float32, rows)
				for i := range tcol {
					tcol[i] = tc0
				}
				m.Forward(rows, upload(b, tcol), x, v)
				m.InputVJP(e, w)
				if err := b.Sync(); err != nil {
					t.Fatal(err)
				}
				numtest.AllClose(t, "VJP v", hostData(t, v2), hostData(t, v), 0, 0)
				numtest.AllClose(t, "VJP w", hostData(t, w2), hostData(t, w), 0, 0)

				// Divergence by D unit probes against the trace of the
				// float64 Jacobian.
				m.Forward(rows, tb, x, v)
				div := make([]float64, rows)
				for j := 0; j < d; j++ {
					b.UnitColumn(rows, d, j, e)
					m.InputVJP(e, w)
					if err := b.Sync(); err != nil {
						t.Fatal(err)
					}
					wj := hostData(t, w)
					for r := 0; r < rows; r++ {
						div[r] += float64(wj[r*d+j])
					}
				}
				in := refEmbed(tc.cfg, rows, x64, t64)
				w0 := d + tc.cfg.TimeEmbed.Width()
				worstDiv, worstJac := 0.0, 0.0
				for r := 0; r < rows; r++ {
					jac := refJacobian(tc.cfg, m.Tensors(), p, in[r*w0:(r+1)*w0])
					// The reference Jacobian against central differences
					// of the reference forward, one row at a time.
					xr := x64[r*d : (r+1)*d]
					for i := 0; i < d; i++ {
						vi := func() float64 {
							return refForward(tc.cfg, m.Tensors(), p, 1, refEmbed(tc.cfg, 1, xr, t64[r:r+1]))[i]
						}
						for j := 0; j < d; j++ {
							worstJac = math.Max(worstJac, numtest.RelErr(centralDiff(vi, xr, j, cdStep), jac[i*d+j], 1e-2*maxAbs(jac)))
						}
					}
					tr := 0.0
					for j := 0; j < d; j++ {
						tr += jac[j*d+j]
					}
					// Floor: the Jacobian's largest entry, the scale of
					// the probes' float32 products.
					worstDiv = math.Max(worstDiv, numtest.RelErr(div[r], tr, maxAbs(jac)))
				}
				if !(worstJac <= cdOracleRTol) {
					t.Errorf("reference Jacobian against central differences: %.3g, want <= %g", worstJac, cdOracleRTol)
				}
				if !(worstDiv <= vjpRTol) {
					t.Errorf("divergence from unit-probe InputVJPs against the Jacobian's trace: relative error %.3g, want <= %g", worstDiv, vjpRTol)
				}
				t.Log(numtest.Describe("divergence (unit probes) vs trace of the float64 Jacobian", worstDiv, vjpRTol))
				t.Log(numtest.Describe("float64 Jacobian vs central differences", worstJac, cdOracleRTol))
			})
		}
	}
}
