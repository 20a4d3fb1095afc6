// The tensor-core and asynchronous-copy instructions of the tf32 and bf16 products
// (gemm_tc.cuh), behind one set of functions that both builds provide:
// under nvcc they are the PTX instructions (inline asm, sm_80 and newer);
// in the kernelsim build sim_mma.h emulates them from the PTX ISA's
// definitions, with the harness's checks, so that the same kernel code
// runs in both. A call may stand for several instructions (MT x NT
// products, N loads): the emulation meets the warp once per call.
//
//   fm_tf32(x)            cvt.rna.tf32.f32: x rounded to tf32 (10 stored
//                         mantissa bits, round to nearest, ties away from
//                         zero), as the 32-bit pattern an mma operand takes;
//   fm_mma_tf32<MT, NT>   MT x NT mma.sync.aligned.m16n8k8.row.col.f32.tf32
//                         .tf32.f32: acc[i][j] += A_i B_j, one warp;
//   fm_mma_tf32x3<MT, NT> the three products of the 3xTF32 split;
//   fm_bf16x2(lo, hi)     cvt.rn.bf16x2.f32: lo and hi rounded to bf16 (8
//                         significant bits, round to nearest, ties to even),
//                         packed lo in bits 0-15, hi in bits 16-31, as an
//                         mma .bf16 operand register holds two elements;
//   fm_mma_bf16<MT, NT>   MT x NT mma.sync.aligned.m16n8k16.row.col.f32.bf16
//                         .bf16.f32: acc[i][j] += A_i B_j, one warp;
//   fm_ldmatrix_x4<N>     N ldmatrix.sync.aligned.m8n8.x4.shared.b16: four 8 x 4
//                         matrices of 32-bit words each, one warp;
//   fm_cp_async16, fm_cp_async_commit, fm_cp_async_wait<N>
//                         cp.async.cg.shared.global (16 bytes, zero-filled
//                         past src_bytes), cp.async.commit_group,
//                         cp.async.wait_group N;
//   fm_cp_async4          cp.async.ca.shared.global of 4 bytes (zero-filled
//                         when src_bytes is 0): the convolutions' gathers.
//
// Fragment layouts of m16n8k8 with .tf32 operands (PTX ISA, "Matrix
// Fragments for mma.m16n8k8"), lane l, g = l >> 2 (groupID), t = l & 3
// (threadID_in_group), (row, column):
//   A (16 x 8, row):  a0 (g, t), a1 (g + 8, t), a2 (g, t + 4), a3 (g + 8, t + 4);
//   B (8 x 8, col):   b0 (k = t, n = g), b1 (k = t + 4, n = g);
//   C, D (16 x 8):    c0 (g, 2t), c1 (g, 2t + 1), c2 (g + 8, 2t), c3 (g + 8, 2t + 1).
// Fragment layouts of m16n8k16 with .bf16 operands (PTX ISA, "Matrix
// Fragments for mma.m16n8k16 with floating point type"): register r holds
// two elements, h = 0 in its low half and h = 1 in its high half:
//   A (16 x 16, row): register r = (g + 8 (r & 1), 2t + 8 (r >> 1) + h);
//   B (16 x 8, col):  register r = (k = 2t + 8 r + h, n = g);
//   C, D (16 x 8):    as m16n8k8's.
// ldmatrix .x4: lanes 8 i .. 8 i + 7 give the addresses of rows 0..7 of
// matrix i (16 bytes each, 16-byte aligned, in shared memory); lane l
// receives in r[i] the 32-bit word l & 3 of row l >> 2 of matrix i. With
// matrices (rows 0-7, k 0-3), (rows 8-15, k 0-3), (rows 0-7, k 4-7), (rows
// 8-15, k 4-7) of a k-contiguous tile that is exactly a0..a3 above.
#pragma once
#include "common.cuh"

#ifdef __CUDACC__

FM_DEVICE uint32_t fm_tf32(float x) {
    uint32_t r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
    return r;
}

template <int MT, int NT>
FM_DEVICE void fm_mma_tf32(float acc[MT][NT][4], const uint32_t a[MT][4], const uint32_t b[NT][2]) {
    FM_UNROLL
    for (int i = 0; i < MT; i++)
        FM_UNROLL
    for (int j = 0; j < NT; j++)
        asm volatile(
            "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
            "{%0, %1, %2, %3};"
            : "+f"(acc[i][j][0]), "+f"(acc[i][j][1]), "+f"(acc[i][j][2]), "+f"(acc[i][j][3])
            : "r"(a[i][0]), "r"(a[i][1]), "r"(a[i][2]), "r"(a[i][3]), "r"(b[j][0]), "r"(b[j][1]));
}

// cvt.rn.bf16x2.f32 d, a, b puts a's bf16 in d's upper half and b's in its
// lower half.
FM_DEVICE uint32_t fm_bf16x2(float lo, float hi) {
    uint32_t r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

template <int MT, int NT>
FM_DEVICE void fm_mma_bf16(float acc[MT][NT][4], const uint32_t a[MT][4], const uint32_t b[NT][2]) {
    FM_UNROLL
    for (int i = 0; i < MT; i++)
        FM_UNROLL
    for (int j = 0; j < NT; j++)
        asm volatile(
            "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
            "{%0, %1, %2, %3};"
            : "+f"(acc[i][j][0]), "+f"(acc[i][j][1]), "+f"(acc[i][j][2]), "+f"(acc[i][j][3])
            : "r"(a[i][0]), "r"(a[i][1]), "r"(a[i][2]), "r"(a[i][3]), "r"(b[j][0]), "r"(b[j][1]));
}

// fm_mma_tf32x3: the 3xTF32 products of fm_tf32_split's parts, acc +=
// A_lo B_hi, then A_hi B_lo, then A_hi B_hi (the small terms first).
template <int MT, int NT>
FM_DEVICE void fm_mma_tf32x3(float acc[MT][NT][4], const uint32_t ahi[MT][4], const uint32_t alo[MT][4],
                             const uint32_t bhi[NT][2], const uint32_t blo[NT][2]) {
    fm_mma_tf32<MT, NT>(acc, alo, bhi);
    fm_mma_tf32<MT, NT>(acc, ahi, blo);
    fm_mma_tf32<MT, NT>(acc, ahi, bhi);
}

// fm_ldmatrix_x4: N ldmatrix .x4 instructions, the i-th from this lane's
// row address rows[i] into r[i].
template <int N>
FM_DEVICE void fm_ldmatrix_x4(uint32_t r[N][4], const float* const rows[N]) {
    FM_UNROLL
    for (int i = 0; i < N; i++) {
        unsigned s = (unsigned)__cvta_generic_to_shared(rows[i]);
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
                     : "=r"(r[i][0]), "=r"(r[i][1]), "=r"(r[i][2]), "=r"(r[i][3])
                     : "r"(s)
                     : "memory");
    }
}

// fm_cp_async16 copies the first src_bytes (0..16, a multiple of 4) of
// src to dst and zeros the rest of the 16 bytes; src and dst 16-byte
// aligned (src_bytes = 0 reads nothing, but src must still be a global
// address).
FM_DEVICE void fm_cp_async16(float* dst, const float* src, int src_bytes) {
    unsigned s = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(s), "l"(src), "r"(src_bytes) : "memory");
}

// fm_cp_async4 copies the float at src to dst (src_bytes = 4) or zeros
// dst (src_bytes = 0, reading nothing; src must still be a global
// address); both 4-byte aligned.
FM_DEVICE void fm_cp_async4(float* dst, const float* src, int src_bytes) {
    unsigned s = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;" ::"r"(s), "l"(src), "r"(src_bytes) : "memory");
}

FM_DEVICE void fm_cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }

template <int N>
FM_DEVICE void fm_cp_async_wait() {
    asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}

#else
#include "sim_mma.h"
#endif

// fm_tf32_split: x = hi + lo + e with hi = tf32(x), lo = tf32(x - hi)
// (x - hi is exact in float32), |e| <= 2^-22 |x| roughly: the operands of
// the 3xTF32 product, which keeps float32 accuracy on the tensor cores.
// An infinite or NaN x gives lo = 0, so that hi carries it alone (Inf -
// Inf would turn an infinite operand into NaN).
FM_DEVICE void fm_tf32_split(float x, uint32_t& hi, uint32_t& lo) {
    hi = fm_tf32(x);
    float d = fm_sub(x, __uint_as_float(hi));
    lo = fm_tf32(d == d ? d : 0.0f);
}
