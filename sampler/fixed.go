package sampler

import (
	"github.com/fmgpu/fmgpu/gpu"
)

// Runge-Kutta weights as the stage ops take them.
var (
	coefOne  = []float32{1}
	coefHalf = []float32{0.5}
	coefHeun = []float32{0.5, 0.5}
	coefRK4  = []float32{1.0 / 6, 1.0 / 3, 1.0 / 3, 1.0 / 6}
)

// stepper holds the workspace of a fixed-step method: stage buffers k and a
// stage state tmp, allocated once per solve.
type stepper struct {
	b   Backend
	sys system
	m   Method
	k   []gpu.Buffer
	tmp gpu.Buffer
}

func newStepper(b Backend, sys system, m Method) *stepper {
	n := sys.size()
	s := &stepper{b: b, sys: sys, m: m, k: make([]gpu.Buffer, m.Stages())}
	for i := range s.k {
		s.k[i] = b.Alloc(n)
	}
	if m != Euler {
		s.tmp = b.Alloc(n)
	}
	return s
}

func (s *stepper) free() {
	for _, k := range s.k {
		s.b.Free(k)
	}
	if s.tmp != nil {
		s.b.Free(s.tmp)
	}
}

// step advances y from t to t + h in place (h < 0 steps backwards).
func (s *stepper) step(t, h float64, y gpu.Buffer) {
	b, f, k := s.b, s.sys, s.k
	hf := float32(h)
	switch s.m {
	case Euler: // y += h f(t, y)
		f.eval(t, y, k[0])
		b.Axpy(hf, k[0], y)
	case Midpoint: // y += h f(t + h/2, y + h/2 k1)
		f.eval(t, y, k[0])
		b.LinComb(s.tmp, y, hf, coefHalf, k[:1])
		f.eval(t+h/2, s.tmp, k[1])
		b.Axpy(hf, k[1], y)
	case Heun: // y += h (k1 + k2) / 2, k2 = f(t + h, y + h k1)
		f.eval(t, y, k[0])
		b.LinComb(s.tmp, y, hf, coefOne, k[:1])
		f.eval(t+h, s.tmp, k[1])
		b.LinComb(y, y, hf, coefHeun, k[:2])
	case RK4:
		f.eval(t, y, k[0])
		b.LinComb(s.tmp, y, hf, coefHalf, k[0:1])
		f.eval(t+h/2, s.tmp, k[1])
		b.LinComb(s.tmp, y, hf, coefHalf, k[1:2])
		f.eval(t+h/2, s.tmp, k[2])
		b.LinComb(s.tmp, y, hf, coefOne, k[2:3])
		f.eval(t+h, s.tmp, k[3])
		b.LinComb(y, y, hf, coefRK4, k[:4])
	default:
		panic("sampler: not a fixed-step method: " + s.m.String())
	}
}

// fixedSteps integrates y over the fixed grid of o (o normalized).
func fixedSteps(b Backend, sys system, y gpu.Buffer, o Options) (Stats, error) {
	pts := mergeSaves(fixedGrid(o), o)
	s := newStepper(b, sys, o.Method)
	defer s.free()
	var st Stats
	saved := 0
	emit := func(p point) {
		for i := 0; i < p.saves; i++ {
			o.OnSave(o.SaveAt[saved], y)
			saved++
		}
	}
	emit(pts[0])
	for i := 1; i < len(pts); i++ {
		if o.Stop != nil {
			if err := o.Stop(); err != nil {
				st.NFE = st.Steps * o.Method.Stages()
				return st, err
			}
		}
		t := pts[i-1].t
		s.step(t, pts[i].t-t, y)
		st.Steps++
		emit(pts[i])
	}
	st.NFE = st.Steps * o.Method.Stages()
	return st, nil
}

// run steps y over the grid points ts (no saves).
func (s *stepper) run(ts []float64, y gpu.Buffer) Stats {
	var st Stats
	for i := 1; i < len(ts); i++ {
		s.step(ts[i-1], ts[i]-ts[i-1], y)
		st.Steps++
	}
	st.NFE = st.Steps * s.m.Stages()
	return st
}
