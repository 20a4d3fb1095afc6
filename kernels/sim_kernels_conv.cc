//go:build kernelsim

// The kernels of conv.cu compiled for the host, and their table for the
// kernelsim harness (see sim_kernels.cc).
#include "sim_registry.h"

#include "conv.cu"

extern const SimKernel sim_kernels_conv[] = {
    SIM_KERNEL(conv2d_bf16_data_backward_kernel),
    SIM_KERNEL(conv2d_bf16_filter_backward_kernel),
    SIM_KERNEL(conv2d_bf16_forward_kernel),
    SIM_KERNEL(conv2d_bf16_rows128_data_backward_kernel),
    SIM_KERNEL(conv2d_bf16_rows128_filter_backward_kernel),
    SIM_KERNEL(conv2d_bf16_rows128_forward_kernel),
    SIM_KERNEL(conv2d_data_backward_kernel),
    SIM_KERNEL(conv2d_filter_backward_kernel),
    SIM_KERNEL(conv2d_forward_kernel),
    SIM_KERNEL(conv2d_rows128_data_backward_kernel),
    SIM_KERNEL(conv2d_rows128_filter_backward_kernel),
    SIM_KERNEL(conv2d_rows128_forward_kernel),
    SIM_KERNEL(conv2d_tf32_data_backward_kernel),
    SIM_KERNEL(conv2d_tf32_filter_backward_kernel),
    SIM_KERNEL(conv2d_tf32_forward_kernel),
    SIM_KERNEL(conv2d_tf32_rows128_data_backward_kernel),
    SIM_KERNEL(conv2d_tf32_rows128_filter_backward_kernel),
    SIM_KERNEL(conv2d_tf32_rows128_forward_kernel),
    SIM_KERNEL(conv2d_tf32x3_data_backward_kernel),
    SIM_KERNEL(conv2d_tf32x3_filter_backward_kernel),
    SIM_KERNEL(conv2d_tf32x3_forward_kernel),
    SIM_KERNEL(conv2d_tf32x3_rows128_data_backward_kernel),
    SIM_KERNEL(conv2d_tf32x3_rows128_filter_backward_kernel),
    SIM_KERNEL(conv2d_tf32x3_rows128_forward_kernel),
};
extern const int sim_kernels_conv_len = sizeof(sim_kernels_conv) / sizeof(sim_kernels_conv[0]);
