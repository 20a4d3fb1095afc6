package sgemm

// Group-norm kernels (AVX-512; asm/norm.go): the passes of a group norm,
// forward and backward, over one group or channel at a time. The gpu
// package's CPU backend uses them when NormKernels reports them, and its
// own loops otherwise.

// NormKernels reports whether the kernel set in use has the group-norm
// kernels.
func NormKernels() bool { return current.Load().norm }

// ImageKernels reports whether the kernel set in use is the one with the
// image network's kernels (direct convolutions, group norm, SiLU): the
// AVX-512 set. The gpu package's CPU backend takes its image paths whose
// summation order differs from the other sets' only then, so that the
// results of those sets stay what they were.
func ImageKernels() bool { return current.Load().conv != nil }

// NormSums returns sum x and sum x^2, accumulated in float64 in a fixed
// order (the result depends on x only).
func NormSums(x []float32) (sum, sq float64) {
	if len(x) == 0 {
		return 0, 0
	}
	if !NormKernels() {
		for _, v := range x {
			sum += float64(v)
			sq += float64(v) * float64(v)
		}
		return sum, sq
	}
	var out [2]float64
	normSumsKernel(len(x), &x[0], &out)
	return out[0], out[1]
}

// NormDotSums returns sum dy and sum dy x over len(dy) elements, in
// float64 in a fixed order (the products of float32s are exact in
// float64).
func NormDotSums(dy, x []float32) (sd, sdx float64) {
	n := len(dy)
	if n == 0 {
		return 0, 0
	}
	_ = x[n-1]
	if !NormKernels() {
		for i, d := range dy {
			sd += float64(d)
			sdx += float64(d) * float64(x[i])
		}
		return sd, sdx
	}
	var out [2]float64
	normDotSumsKernel(n, &dy[0], &x[0], &out)
	return out[0], out[1]
}

// NormApply sets y = (x - m) a + b over len(x) elements (the subtraction
// rounded, then a fused multiply-add).
func NormApply(x, y []float32, m, a, b float32) {
	n := len(x)
	if n == 0 {
		return
	}
	_ = y[n-1]
	if !NormKernels() {
		for i, v := range x {
			y[i] = (v-m)*a + b
		}
		return
	}
	k := [4]float32{m, a, b}
	normApplyKernel(n, &x[0], &y[0], &k)
}

// NormBackApply sets dx = A dy + B (x - m) + C over len(dx) elements.
func NormBackApply(dy, x, dx []float32, A, m, B, C float32) {
	n := len(dx)
	if n == 0 {
		return
	}
	_, _ = dy[n-1], x[n-1]
	if !NormKernels() {
		for i := range dx {
			dx[i] = A*dy[i] + (B*(x[i]-m) + C)
		}
		return
	}
	k := [4]float32{A, m, B, C}
	normBackApplyKernel(n, &dy[0], &x[0], &dx[0], &k)
}

// SiLU sets y[i] = silu(x[i]) for i < len(y), y may be x: the epilogue's
// SiLU (GemmEpilogue with a zero bias), in one pass with the AVX-512
// set; with the others, as a copy then the epilogue in place.
func SiLU(x, y []float32) {
	n := len(y)
	if n == 0 {
		return
	}
	_ = x[n-1]
	if NormKernels() {
		siluToKernel(n, &x[0], &y[0])
		return
	}
	if &x[0] != &y[0] {
		copy(y, x[:n])
	}
	ep := Epilogue{Act: ActSiLU}
	GemmEpilogue(false, false, 1, n, 0, 1, nil, 1, nil, n, 1, y, n, &ep)
}

// Axpy sets y[i] += a*x[i] for i < len(y), the product rounded before the
// sum on every kernel set (the vector kernel and the loop agree bit for
// bit).
func Axpy(a float32, x, y []float32) {
	n := len(y)
	if n == 0 {
		return
	}
	_ = x[n-1]
	if NormKernels() {
		axpyKernel(n, a, &x[0], &y[0])
		return
	}
	x = x[:n]
	for i, v := range x {
		y[i] += a * v
	}
}
