// The single translation unit `make kernels` compiles into fmgpu.fatbin
// (one module, one cuModuleLoadData) and the kernelsim harness compiles
// for the host (sim_kernels.cc): every kernel family, in one place.
#include "adam.cu"
#include "attn.cu"
#include "conv.cu"
#include "fill.cu"
#include "gemm.cu"
#include "image.cu"
#include "mlp.cu"
#include "norm.cu"
#include "ode.cu"
#include "path.cu"
#include "rand.cu"
#include "reduce.cu"
