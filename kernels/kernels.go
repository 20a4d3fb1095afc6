// Package kernels holds fmgpu's CUDA kernels: the sources (*.cu, one family
// of ops per file, compiled as the single translation unit fmgpu.cu), the
// fatbin `make kernels` builds from them (SASS for sm_80 and sm_90, PTX for
// compute_90, committed), and, under the build tag kernelsim, a host
// harness that runs the same sources on the CPU (sim.go).
//
// The cuda build of package gpu loads Fatbin with cuModuleLoadData; nothing
// here needs nvcc or a GPU at build time.
package kernels

import _ "embed"

// Fatbin is kernels/fmgpu.fatbin: every kernel of fmgpu.cu.
//
//go:embed fmgpu.fatbin
var Fatbin []byte
