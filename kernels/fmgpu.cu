// The single translation unit `make kernels` compiles into fmgpu.fatbin
// (one module, one cuModuleLoadData) and the kernelsim harness compiles
// for the host (sim_kernels.cc): every kernel family, in one place. One
// file per op family of package gpu (gpu/F.go: kernels/F.cu); reductions
// finish in their own kernel (common.cuh, last_block_of).
#include "attention.cu"
#include "conv.cu"
#include "dense.cu"
#include "draw.cu"
#include "layout.cu"
#include "memory.cu"
#include "norm.cu"
#include "ode.cu"
#include "optimizer.cu"
#include "products.cu"
#include "random.cu"
