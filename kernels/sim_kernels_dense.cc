//go:build kernelsim

// The kernels of dense.cu compiled for the host, and their table for the
// kernelsim harness (see sim_kernels.cc).
#include "sim_registry.h"

#include "dense.cu"

extern const SimKernel sim_kernels_dense[] = {
    SIM_KERNEL(act_backward_kernel),
    SIM_KERNEL(activate_forward_kernel),
    SIM_KERNEL(bias_act_backward_kernel),
    SIM_KERNEL(embed_input_forward_kernel),
    SIM_KERNEL(linear_backward_kernel),
    SIM_KERNEL(linear_forward_kernel),
    SIM_KERNEL(linear_bf16_backward_kernel),
    SIM_KERNEL(linear_bf16_forward_kernel),
    SIM_KERNEL(linear_tf32_backward_kernel),
    SIM_KERNEL(linear_tf32_forward_kernel),
    SIM_KERNEL(linear_tf32x3_backward_kernel),
    SIM_KERNEL(linear_tf32x3_forward_kernel),
    SIM_KERNEL(mse_loss_backward_kernel),
    SIM_KERNEL(one_hot_forward_kernel),
};
extern const int sim_kernels_dense_len = sizeof(sim_kernels_dense) / sizeof(sim_kernels_dense[0]);
