//go:build kernelsim

// The kernels of fmgpu.cu compiled for the host, and their tables for the
// kernelsim harness (sim_runtime.cc joins them). The op families are split
// over four translation units, this one and sim_kernels_{conv,dense,
// products}.cc, so that the compiler runs on several cores: as one, with
// the sanitizers' instrumentation, they took 6 minutes of one core. Their
// objects must be linked next to each other, as the file order does (cgo,
// internal/fakecuda): the harness takes the static shared variables of
// the four (thread-local) for one span of memory (sim_memory.cc,
// register_shared). This one has the small families and the harness
// self-tests of sim_selftest.h.
// kernels_test.go checks that the tables name exactly the extern "C"
// __global__ functions of the sources, plus the self-tests.
#include "sim_registry.h"

#include "attention.cu"
#include "draw.cu"
#include "layout.cu"
#include "memory.cu"
#include "norm.cu"
#include "ode.cu"
#include "optimizer.cu"
#include "random.cu"
#include "sim_selftest.h"

extern const SimKernel sim_kernels_misc[] = {
    SIM_KERNEL(adam_ema_update_kernel),
    SIM_KERNEL(add_channel_bias_forward_kernel),
    SIM_KERNEL(axpy_update_kernel),
    SIM_KERNEL(channel_sum_reduce_kernel),
    SIM_KERNEL(copy_channels_forward_kernel),
    SIM_KERNEL(draw_batch_forward_kernel),
    SIM_KERNEL(draw_labels_forward_kernel),
    SIM_KERNEL(dropout_forward_kernel),
    SIM_KERNEL(error_norm_reduce_kernel),
    SIM_KERNEL(fill_forward_kernel),
    SIM_KERNEL(group_norm_backward_kernel),
    SIM_KERNEL(group_norm_forward_kernel),
    SIM_KERNEL(lin_comb_update_kernel),
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
    SIM_KERNEL(simtest_reverse_kernel),
    SIM_KERNEL(simtest_early_exit_kernel),
    SIM_KERNEL(simtest_divergent_kernel),
    SIM_KERNEL(simtest_warp_kernel),
    SIM_KERNEL(simtest_dynamic_smem_kernel),
    SIM_KERNEL(simtest_index_kernel),
    SIM_KERNEL(simtest_overrun_kernel),
    SIM_KERNEL(simtest_args_kernel),
    SIM_KERNEL(simtest_shared_race_kernel),
    SIM_KERNEL(simtest_global_race_kernel),
    SIM_KERNEL(simtest_last_block_kernel),
    SIM_KERNEL(simtest_uninit_shared_kernel),
    SIM_KERNEL(simtest_mask_kernel),
    SIM_KERNEL(simtest_vote_kernel),
    SIM_KERNEL(simtest_barrier_sites_kernel),
    SIM_KERNEL(simtest_load_kernel),
    SIM_KERNEL(simtest_misaligned_kernel),
    SIM_KERNEL(simtest_mma_kernel),
    SIM_KERNEL(simtest_mma_bf16_kernel),
    SIM_KERNEL(simtest_bf16x2_kernel),
    SIM_KERNEL(simtest_ldmatrix_kernel),
    SIM_KERNEL(simtest_cp_async_kernel),
};
extern const int sim_kernels_misc_len = sizeof(sim_kernels_misc) / sizeof(sim_kernels_misc[0]);
