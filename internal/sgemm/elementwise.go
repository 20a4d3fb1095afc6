package sgemm

import (
	"math"
	"sync"
)

// SiLUGrad sets dz[i] = dy[i] * silu'(z[i]) for i < len(dz), where
//
//	silu'(z) = s (1 + z (1 - s)),  s = 1 / (1 + exp(-z)),
//
// the backward pass of SiLU. dy and z must be at least as long as dz; dz
// may alias either. The vector kernels use the epilogue's exp polynomial
// (relative error about 2e-7) and take 1 - s as exp(-z) s, so the result is
// within a few float32 roundings of s + |z s (1 - s)| times |dy|; a tail
// shorter than the vector width, and the generic build, use math.Exp.
// The result of an element does not depend on the others' count, except
// for which path (vector or tail) computes it.
func SiLUGrad(dy, z, dz []float32) {
	n := len(dz)
	if n == 0 {
		return
	}
	_, _ = dy[n-1], z[n-1]
	k := current.Load()
	done := 0
	if k.siluGrad != nil && n >= k.epiW {
		done = n - n%k.epiW
		k.siluGrad(done, &dy[0], &z[0], &dz[0])
	}
	for i := done; i < n; i++ {
		dz[i] = dy[i] * siluGrad64(z[i])
	}
}

// SiLUGradPart is SiLUGrad over elements [at, at+len(dz)) of a pass over
// total elements: each element gets what SiLUGrad over the whole pass
// would give it (the vector path up to the pass's last whole vector, the
// tail path after), so that a pass cut into pieces, as the group norm's
// backward cuts it into groups, computes the same bits.
func SiLUGradPart(dy, z, dz []float32, at, total int) {
	n := len(dz)
	if n == 0 {
		return
	}
	_, _ = dy[n-1], z[n-1]
	k := current.Load()
	v := 0 // elements on the vector path
	if k.siluGrad != nil && total >= k.epiW {
		v = min(n, max(0, total-total%k.epiW-at))
	}
	full := v - v%max(1, k.epiW)
	if full > 0 {
		k.siluGrad(full, &dy[0], &z[0], &dz[0])
	}
	if r := v - full; r > 0 {
		// a piece's last partial vector: through the kernel on a copy
		tmp := siluGradTmp.Get().(*[3][32]float32)
		ty, tz, td := tmp[0][:], tmp[1][:], tmp[2][:]
		copy(ty[:r], dy[full:v])
		copy(tz[:r], z[full:v])
		k.siluGrad(k.epiW, &ty[0], &tz[0], &td[0])
		copy(dz[full:v], td[:r])
		siluGradTmp.Put(tmp)
	}
	for i := v; i < n; i++ {
		dz[i] = dy[i] * siluGrad64(z[i])
	}
}

// siluGradTmp holds SiLUGradPart's copies of a partial vector (the kernel
// is called through a function value, so arrays on the stack would
// escape: one allocation a call).
var siluGradTmp = sync.Pool{New: func() any { return new([3][32]float32) }}

// siluGrad64 is silu'(z) computed in float64.
func siluGrad64(z float32) float32 {
	// exp(-z) overflows float64 below z = -709; silu' is 0 in float32 long
	// before that.
	zz := max(float64(z), -700)
	e := math.Exp(-zz)
	s := 1 / (1 + e)
	return float32(s * (1 + zz*(e*s)))
}

// AddColSums adds to acc[j], for j < cols, the sum over i < rows of
// x[i*ldx+j], accumulated in float64 in row order: the result is that of a
// plain sequential float64 loop, whatever the kernel.
func AddColSums(acc []float64, x []float32, rows, cols, ldx int) {
	if rows <= 0 || cols <= 0 {
		return
	}
	if ldx < cols {
		panic("sgemm: AddColSums with ldx < cols")
	}
	_, _ = acc[cols-1], x[(rows-1)*ldx+cols-1]
	k := current.Load()
	done := 0
	if k.colSum != nil && cols >= k.sumW {
		done = cols - cols%k.sumW
		k.colSum(rows, done, &x[0], 4*ldx, &acc[0])
	}
	if done == cols {
		return
	}
	for i := 0; i < rows; i++ {
		row := x[i*ldx+done : i*ldx+cols]
		a := acc[done:cols]
		for j, v := range row {
			a[j] += float64(v)
		}
	}
}

// adamKind selects an assembly Adam kernel.
type adamKind int8

const (
	adamNone adamKind = iota
	adamZMM
	adamYMM
)

// AdamConsts are the scalars of one Adam step (see Adam).
type AdamConsts struct {
	Clip         float32 // the gradient is scaled by Clip first
	WeightDecay  float32
	Decoupled    bool // AdamW: decay applied to the step, not the gradient
	Beta1, Beta2 float32
	InvBiasCorr1 float32 // 1 / (1 - Beta1^t)
	InvBiasCorr2 float32 // 1 / (1 - Beta2^t)
	Eps, LR      float32
	EMADecay     float32 // 0: no EMA
}

// Indices into the constant block of the assembly Adam (asm/gen.go ad*).
const (
	adClip = iota
	adWDL2
	adB1
	adOneMinusB1
	adB2
	adOneMinusB2
	adIB1
	adIB2
	adEps
	adLR
	adWDDecoupled
	adEMA
	adOneMinusEMA
	adFlags
	adCount
)

// Adam runs one Adam step over len(p) parameters, with the EMA update
// when ema is not nil (and c.EMADecay > 0), in float32:
//
//	g' = Clip g (+ WeightDecay p unless Decoupled)
//	m = b1 m + (1-b1) g';  v = b2 v + ((1-b2) g') g'
//	step = (m InvBiasCorr1) / (sqrt(v InvBiasCorr2) + Eps) (+ WeightDecay p if Decoupled)
//	p = p - LR step;  ema = d ema + (1-d) p
//
// Every operation is rounded to float32 in this order, without fused
// multiply-adds, so the vector kernels and the Go loop give bit-identical
// results. g, m, v (and ema) must be at least as long as p.
func Adam(c *AdamConsts, p, g, m, v, ema []float32) {
	n := len(p)
	if n == 0 {
		return
	}
	_, _, _ = g[n-1], m[n-1], v[n-1]
	useEMA := ema != nil && c.EMADecay > 0
	if useEMA {
		_ = ema[n-1]
	}
	k := current.Load()
	done := 0
	if k.adam != adamNone && n >= k.epiW {
		done = n - n%k.epiW
		var kc [adCount]float32
		var flags uint32
		kc[adClip] = c.Clip
		if c.WeightDecay != 0 && !c.Decoupled {
			kc[adWDL2] = c.WeightDecay
			flags |= 1
		}
		kc[adB1], kc[adOneMinusB1] = c.Beta1, 1-c.Beta1
		kc[adB2], kc[adOneMinusB2] = c.Beta2, 1-c.Beta2
		kc[adIB1], kc[adIB2] = c.InvBiasCorr1, c.InvBiasCorr2
		kc[adEps], kc[adLR] = c.Eps, c.LR
		if c.Decoupled {
			kc[adWDDecoupled] = c.WeightDecay
			flags |= 2
		}
		ep := &p[0]
		if useEMA {
			kc[adEMA], kc[adOneMinusEMA] = c.EMADecay, 1-c.EMADecay
			flags |= 4
			ep = &ema[0]
		}
		kc[adFlags] = math.Float32frombits(flags)
		adamKernel(k.adam, done, &p[0], &g[0], &m[0], &v[0], ep, &kc)
	}
	if done < n {
		var e []float32
		if useEMA {
			e = ema[done:n]
		}
		adamGo(c, p[done:n], g[done:n], m[done:n], v[done:n], e)
	}
}

// adamGo is Adam's Go loop; the explicit conversions round every
// operation (Go may otherwise fuse a*b + c).
func adamGo(c *AdamConsts, p, g, m, v, ema []float32) {
	b1, b2, ob1, ob2 := c.Beta1, c.Beta2, 1-c.Beta1, 1-c.Beta2
	l2 := c.WeightDecay != 0 && !c.Decoupled
	d, od := c.EMADecay, 1-c.EMADecay
	for i := range p {
		pi := p[i]
		gi := float32(c.Clip * g[i])
		if l2 {
			gi = gi + float32(c.WeightDecay*pi)
		}
		mi := float32(b1*m[i]) + float32(ob1*gi)
		vi := float32(b2*v[i]) + float32(float32(ob2*gi)*gi)
		m[i], v[i] = mi, vi
		step := float32(mi*c.InvBiasCorr1) / (float32(math.Sqrt(float64(float32(vi*c.InvBiasCorr2)))) + c.Eps)
		if c.Decoupled {
			step = step + float32(c.WeightDecay*pi)
		}
		pi = pi - float32(c.LR*step)
		p[i] = pi
		if ema != nil {
			ema[i] = float32(d*ema[i]) + float32(od*pi)
		}
	}
}

// SumSquares returns the sum of x[i]^2 in float64. The vector kernels
// keep several float64 accumulators (element i in lane i mod 16 or 32,
// lanes added in a fixed order), so the result depends on the data and
// the kernel only, not on where the caller splits its work if it splits
// at multiples of 32.
func SumSquares(x []float32) float64 {
	k := current.Load()
	done, s := 0, 0.0
	if k.sumSq != nil && len(x) >= k.sqW {
		done = len(x) - len(x)%k.sqW
		s = k.sumSq(done, &x[0])
	}
	for _, v := range x[done:] {
		s += float64(v) * float64(v)
	}
	return s
}
