// The single translation unit `make kernels` compiles into fmgpu.fatbin
// (one module, one cuModuleLoadData) and the kernelsim harness compiles
// for the host (sim_kernels.cc): every kernel family, in one place.
#include "adam.cu"
#include "fill.cu"
#include "gemm.cu"
#include "mlp.cu"
#include "ode.cu"
#include "path.cu"
#include "rand.cu"
#include "reduce.cu"
