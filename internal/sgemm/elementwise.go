package sgemm

import "math"

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
