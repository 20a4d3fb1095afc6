//go:build kernelsim

// The kernels of products.cu compiled for the host, and their table for the
// kernelsim harness (see sim_kernels.cc).
#include "sim_registry.h"

#include "products.cu"

extern const SimKernel sim_kernels_products[] = {
    SIM_KERNEL(gemm_batched_nn_forward_kernel),
    SIM_KERNEL(gemm_batched_nt_forward_kernel),
    SIM_KERNEL(gemm_batched_tn_forward_kernel),
    SIM_KERNEL(gemm_batched_tt_forward_kernel),
    SIM_KERNEL(gemm_nn_forward_kernel),
    SIM_KERNEL(gemm_nn_split_forward_kernel),
    SIM_KERNEL(gemm_nt_split_forward_kernel),
    SIM_KERNEL(gemm_split_reduce_kernel),
    SIM_KERNEL(gemm_tn_split_forward_kernel),
    SIM_KERNEL(gemm_tt_split_forward_kernel),
    SIM_KERNEL(gemm_nt_forward_kernel),
    SIM_KERNEL(gemm_tn_forward_kernel),
    SIM_KERNEL(gemm_tt_forward_kernel),
    SIM_KERNEL(gemm_bf16_nn_forward_kernel),
    SIM_KERNEL(gemm_bf16_nt_forward_kernel),
    SIM_KERNEL(gemm_bf16_tn_forward_kernel),
    SIM_KERNEL(gemm_bf16_tt_forward_kernel),
    SIM_KERNEL(gemm_tf32_nn_forward_kernel),
    SIM_KERNEL(gemm_tf32_nt_forward_kernel),
    SIM_KERNEL(gemm_tf32_tn_forward_kernel),
    SIM_KERNEL(gemm_tf32_tt_forward_kernel),
    SIM_KERNEL(gemm_tf32x3_nn_forward_kernel),
    SIM_KERNEL(gemm_tf32x3_nt_forward_kernel),
    SIM_KERNEL(gemm_tf32x3_tn_forward_kernel),
    SIM_KERNEL(gemm_tf32x3_tt_forward_kernel),
};
extern const int sim_kernels_products_len = sizeof(sim_kernels_products) / sizeof(sim_kernels_products[0]);
