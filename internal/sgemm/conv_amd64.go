//go:build !noasm

package sgemm

// avx512Conv are the AVX-512 set's direct convolution kernels (asm/conv.go).
var avx512Conv = &convKernels{
	fwd: [2][convMaxMR]convFwdKernel{
		{convF1x16s1, convF2x16s2, convF3x16s3, convF4x16s4, convF5x16s5, convF6x16s6, convF7x16s7, convF8x16s8, convF9x16s9, convF10x16s10, convF11x16s11, convF12x16s12, convF13x16s13, convF14x16s14},
		{convF1x32s1, convF2x32s2, convF3x32s3, convF4x32s4, convF5x32s5, convF6x32s6, convF7x32s7, convF8x32s8, convF9x32s9, convF10x32s10, convF11x32s11, convF12x32s12, convF13x32s13, convF14x32s14},
	},
	fwd2: [2][convMaxMR / 2]convFwdKernel{
		{convF2x16s1, convF4x16s2, convF6x16s3, convF8x16s4, convF10x16s5, convF12x16s6, convF14x16s7},
		{convF2x32s1, convF4x32s2, convF6x32s3, convF8x32s4, convF10x32s5, convF12x32s6, convF14x32s7},
	},
	filter:   [2]convFilterKernel{convW4x16, convW4x32},
	filt1:    [2]convFilterKernel{convW1x16, convW1x32},
	pack:     convPack16,
	unpack:   convUnpack16,
	add:      convAdd,
	prefetch: convPrefetch,
	thinF:    [convThinRows]convThinFKernel{convThinF1, convThinF2, convThinF3, convThinF4},
	thinW:    convThinW,
	wgIn:     wgInput16,
	wgOut:    wgOutput16,
	wgGrad:   wgGrad16,
}
