//go:build kernelsim

// The kernels of fmgpu.cu compiled for the host, and their table for the
// kernelsim harness (sim_runtime.cc). kernels_test.go checks that the table
// names exactly the extern "C" __global__ functions of the sources, plus
// the harness self-tests of sim_selftest.h.
#include "sim_registry.h"

#include "fmgpu.cu"
#include "sim_selftest.h"

extern const SimKernel sim_kernel_table[] = {
    SIM_KERNEL(act_backward_kernel),
    SIM_KERNEL(activate_forward_kernel),
    SIM_KERNEL(adam_ema_update_kernel),
    SIM_KERNEL(add_channel_bias_forward_kernel),
    SIM_KERNEL(axpy_update_kernel),
    SIM_KERNEL(bias_act_backward_kernel),
    SIM_KERNEL(channel_sum_reduce_kernel),
    SIM_KERNEL(conv2d_data_backward_kernel),
    SIM_KERNEL(conv2d_filter_backward_kernel),
    SIM_KERNEL(conv2d_forward_kernel),
    SIM_KERNEL(copy_channels_forward_kernel),
    SIM_KERNEL(draw_batch_forward_kernel),
    SIM_KERNEL(draw_labels_forward_kernel),
    SIM_KERNEL(dropout_forward_kernel),
    SIM_KERNEL(embed_input_forward_kernel),
    SIM_KERNEL(error_norm_reduce_kernel),
    SIM_KERNEL(fill_forward_kernel),
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
    SIM_KERNEL(group_norm_backward_kernel),
    SIM_KERNEL(group_norm_forward_kernel),
    SIM_KERNEL(lin_comb_update_kernel),
    SIM_KERNEL(linear_backward_kernel),
    SIM_KERNEL(linear_forward_kernel),
    SIM_KERNEL(mse_loss_backward_kernel),
    SIM_KERNEL(one_hot_forward_kernel),
    SIM_KERNEL(path_target_forward_kernel),
    SIM_KERNEL(rand_normal_forward_kernel),
    SIM_KERNEL(rand_rademacher_forward_kernel),
    SIM_KERNEL(row_dot_forward_kernel),
    SIM_KERNEL(softmax_backward_kernel),
    SIM_KERNEL(softmax_forward_kernel),
    SIM_KERNEL(sum_squares_reduce_kernel),
    SIM_KERNEL(transpose_forward_kernel),
    SIM_KERNEL(unit_column_forward_kernel),
    SIM_KERNEL(upsample2x_backward_kernel),
    SIM_KERNEL(upsample2x_forward_kernel),
    // sim_selftest.h
    SIM_KERNEL(simtest_reverse_kernel),
    SIM_KERNEL(simtest_early_exit_kernel),
    SIM_KERNEL(simtest_divergent_kernel),
    SIM_KERNEL(simtest_warp_kernel),
    SIM_KERNEL(simtest_dynamic_smem_kernel),
    SIM_KERNEL(simtest_index_kernel),
    SIM_KERNEL(simtest_overrun_kernel),
    SIM_KERNEL(simtest_args_kernel),
};
extern const int sim_kernel_table_len = sizeof(sim_kernel_table) / sizeof(sim_kernel_table[0]);
