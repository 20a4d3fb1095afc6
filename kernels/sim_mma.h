// Host emulation of mma.cuh's tensor-core and asynchronous-copy
// instructions for the kernelsim harness, from the PTX ISA's definitions
// (mma.cuh lists the fragment layouts):
//   - cvt.rna.tf32.f32 keeps the 10 high mantissa bits, rounding to nearest
//     with ties away from zero (add half of the dropped 13 bits' weight to
//     the magnitude, then clear them; a carry moves into the exponent, up to
//     infinity, as rounding does);
//   - cvt.rn.bf16x2.f32 rounds each float to its 16 high bits, to nearest
//     with ties to even (add 0x7fff plus the kept part's lowest bit, then
//     drop the low 16 bits; a carry moves into the exponent, up to
//     infinity); a NaN stays a NaN (0x7fff here: the emulation does not keep
//     a payload);
//   - mma.sync and ldmatrix are warp collectives (sim_shim.h's
//     SimWarpCollective): every lane parks with a record of its registers
//     and the last to arrive has the scheduler compute all 32 lanes'
//     results. A call is one collective whatever instructions it stands for
//     (fm_mma_tf32's MT x NT products, fm_mma_tf32x3's three times as
//     many, fm_ldmatrix_x4's N loads): parks are the emulation's cost. An
//     mma operand that is not a tf32 value (low 13 bits set: not rounded
//     with cvt.rna.tf32.f32, whose absence a GPU would hide by truncating)
//     is a launch error. The products of tf32 values are exact in double and
//     the eight of a k step are added in double, then to C, rounded once:
//     at least as accurate as the GPU (the PTX ISA promises an fp32
//     accumulation without saying how it rounds). The m16n8k16 .bf16
//     products likewise: a product of two bf16 values (8 significant bits
//     each) is exact in float32 and in double, the sixteen of a k step are
//     added in double and then to C, rounded once. Any 16 bits are a bf16
//     value, so a missing conversion cannot be told from the operands;
//     the tests' results tell it;
//   - ldmatrix exchanges the 32 row addresses in the collective; each lane
//     then reads its own four words, so that the access checks see every
//     read (initcheck: a tile not yet written);
//   - cp.async queues the copy in the issuing thread (sim_runtime.cc) and
//     wait_group applies the completed groups' copies, in that thread, as
//     checked loads and stores: the latest moment a GPU may perform them. A
//     kernel that reads the destination before its wait_group reads the
//     poisoned (NaN) or stale shared memory, and initcheck or racecheck
//     report it.
#pragma once
#include <stdio.h>

static inline uint32_t fm_tf32(float x) {
    uint32_t u = __float_as_uint(x);
    if ((u & 0x7f800000u) == 0x7f800000u) return (u & 0x007fffffu) != 0 ? 0x7fffe000u : u;  // NaN, infinity
    return (u + 0x1000u) & 0xffffe000u;
}

// sim_lane is the calling thread's lane in its warp.
static inline unsigned sim_lane() {
    return (threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z)) & 31;
}

static inline uint16_t sim_bf16(float x) {
    uint32_t u = __float_as_uint(x);
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fff;  // NaN
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

static inline uint32_t fm_bf16x2(float lo, float hi) { return (uint32_t)sim_bf16(lo) | (uint32_t)sim_bf16(hi) << 16; }

// ---- mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 --------------------
// ---- mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 -------------------

#define SIM_MMA_MAX 8  // most m16 (or n8) tiles of one call

struct SimMmaLane {
    SimWarpCollective hdr;
    int mt, nt, nprod;
    int bf16;              // m16n8k16 .bf16 (else m16n8k8 .tf32)
    const uint32_t* a[3];  // [mt][4] each: the products' A fragments, in order
    const uint32_t* b[3];  // [nt][2] each
    float* c;              // [mt][nt][4]
};

// sim_tf32_operand checks that v is a tf32 value (its low 13 bits zero).
SIM_NO_CHECKS static int sim_tf32_operand(uint32_t v, char op, int r, int tile, int lane, char* err, size_t errlen) {
    if ((v & 0x1fffu) == 0) return 0;
    snprintf(err, errlen, "operand %c%d of %c-tile %d in lane %d is 0x%08x, not a tf32 value (round it with "
             "cvt.rna.tf32.f32)", op, r, op == 'a' ? 'm' : 'n', tile, lane, v);
    return 1;
}

// sim_mma_run performs, for each product in order, every lane's MT x NT
// instructions D = C + A_i B_j (each instruction's D rounded to float32,
// as the next one reads it).
SIM_NO_CHECKS static int sim_mma_run(SimWarpCollective* const* lanes, char* err, size_t errlen) {
    const SimMmaLane* L[32];
    for (int l = 0; l < 32; l++) L[l] = (const SimMmaLane*)lanes[l];
    const int mt = L[0]->mt, nt = L[0]->nt, np = L[0]->nprod, bf = L[0]->bf16;
    for (int l = 1; l < 32; l++)
        if (L[l]->mt != mt || L[l]->nt != nt || L[l]->nprod != np || L[l]->bf16 != bf) {
            snprintf(err, errlen, "lanes 0 and %d issue different products (%d x %d x %d%s, %d x %d x %d%s)", l, np,
                     mt, nt, bf ? " bf16" : "", L[l]->nprod, L[l]->mt, L[l]->nt, L[l]->bf16 ? " bf16" : "");
            return 1;
        }
    static thread_local double A[SIM_MMA_MAX][16][16], B[SIM_MMA_MAX][16][8];
    const int K = bf ? 16 : 8;
    for (int p = 0; p < np; p++) {
        // Gather the warp's matrices: A_i (16 x K), B_j (K x 8, k by n).
        for (int l = 0; l < 32; l++) {
            const int g = l >> 2, t = l & 3;
            if (bf) {
                // register r holds elements h = 0 (bits 0-15) and 1 (16-31)
                for (int i = 0; i < mt; i++)
                    for (int r = 0; r < 4; r++) {
                        const uint32_t v = L[l]->a[p][i * 4 + r];
                        for (int h = 0; h < 2; h++)
                            A[i][g + 8 * (r & 1)][2 * t + 8 * (r >> 1) + h] =
                                (double)__uint_as_float((v >> (16 * h)) << 16);
                    }
                for (int j = 0; j < nt; j++)
                    for (int r = 0; r < 2; r++) {
                        const uint32_t v = L[l]->b[p][j * 2 + r];
                        for (int h = 0; h < 2; h++)
                            B[j][2 * t + 8 * r + h][g] = (double)__uint_as_float((v >> (16 * h)) << 16);
                    }
                continue;
            }
            for (int i = 0; i < mt; i++)
                for (int r = 0; r < 4; r++) {
                    uint32_t v = L[l]->a[p][i * 4 + r];
                    if (sim_tf32_operand(v, 'a', r, i, l, err, errlen)) return 1;
                    A[i][g + 8 * (r & 1)][t + 4 * (r >> 1)] = (double)__uint_as_float(v);
                }
            for (int j = 0; j < nt; j++)
                for (int r = 0; r < 2; r++) {
                    uint32_t v = L[l]->b[p][j * 2 + r];
                    if (sim_tf32_operand(v, 'b', r, j, l, err, errlen)) return 1;
                    B[j][t + 4 * r][g] = (double)__uint_as_float(v);
                }
        }
        // Each lane's four outputs of each instruction.
        for (int l = 0; l < 32; l++) {
            const int g = l >> 2, t = l & 3;
            for (int i = 0; i < mt; i++)
                for (int j = 0; j < nt; j++)
                    for (int r = 0; r < 4; r++) {
                        const int row = g + 8 * (r >> 1), col = 2 * t + (r & 1);
                        double s = 0.0;
                        for (int k = 0; k < K; k++) s += A[i][row][k] * B[j][k][col];
                        float* c = L[l]->c + (i * nt + j) * 4 + r;
                        *c = (float)((double)*c + s);
                    }
        }
    }
    return 0;
}

template <int MT, int NT>
static inline void sim_mma(float acc[MT][NT][4], int nprod, const uint32_t (*const a[3])[4],
                           const uint32_t (*const b[3])[2], int bf16 = 0) {
    static_assert(MT <= SIM_MMA_MAX && NT <= SIM_MMA_MAX, "raise SIM_MMA_MAX");
    SimMmaLane rec;
    rec.hdr.fn = sim_mma_run;
    rec.mt = MT, rec.nt = NT, rec.nprod = nprod, rec.bf16 = bf16;
    for (int p = 0; p < nprod; p++) rec.a[p] = &a[p][0][0], rec.b[p] = &b[p][0][0];
    rec.c = &acc[0][0][0];
    sim_warp_op(SIM_WARP_MMA, 0xffffffffu, (uint64_t)(uintptr_t)&rec, 0, 0, 32);
}

template <int MT, int NT>
static inline void fm_mma_tf32(float acc[MT][NT][4], const uint32_t a[MT][4], const uint32_t b[NT][2]) {
    const uint32_t(*const as[3])[4] = {a, nullptr, nullptr};
    const uint32_t(*const bs[3])[2] = {b, nullptr, nullptr};
    sim_mma<MT, NT>(acc, 1, as, bs);
}

template <int MT, int NT>
static inline void fm_mma_tf32x3(float acc[MT][NT][4], const uint32_t ahi[MT][4], const uint32_t alo[MT][4],
                                 const uint32_t bhi[NT][2], const uint32_t blo[NT][2]) {
    const uint32_t(*const as[3])[4] = {alo, ahi, ahi};
    const uint32_t(*const bs[3])[2] = {bhi, blo, bhi};
    sim_mma<MT, NT>(acc, 3, as, bs);
}

template <int MT, int NT>
static inline void fm_mma_bf16(float acc[MT][NT][4], const uint32_t a[MT][4], const uint32_t b[NT][2]) {
    const uint32_t(*const as[3])[4] = {a, nullptr, nullptr};
    const uint32_t(*const bs[3])[2] = {b, nullptr, nullptr};
    sim_mma<MT, NT>(acc, 1, as, bs, 1);
}

// ---- ldmatrix.sync.aligned.m8n8.x4.shared.b16 -------------------------------

#define SIM_LDMATRIX_MAX 8  // most instructions of one call

struct SimLdmatrixLane {
    SimWarpCollective hdr;
    int n;
    const float* const* rows;             // [n]: this lane's row addresses
    const float* src[SIM_LDMATRIX_MAX][4];  // the rows this lane reads, per instruction and matrix
};

SIM_NO_CHECKS static int sim_ldmatrix_run(SimWarpCollective* const* lanes, char* err, size_t errlen) {
    SimLdmatrixLane* L[32];
    for (int l = 0; l < 32; l++) L[l] = (SimLdmatrixLane*)lanes[l];
    for (int l = 1; l < 32; l++)
        if (L[l]->n != L[0]->n) {
            snprintf(err, errlen, "lanes 0 and %d issue %d and %d loads", l, L[0]->n, L[l]->n);
            return 1;
        }
    for (int l = 0; l < 32; l++)
        for (int q = 0; q < L[l]->n; q++)
            for (int i = 0; i < 4; i++) L[l]->src[q][i] = L[8 * i + (l >> 2)]->rows[q];
    return 0;
}

template <int N>
static inline void fm_ldmatrix_x4(uint32_t r[N][4], const float* const rows[N]) {
    static_assert(N <= SIM_LDMATRIX_MAX, "raise SIM_LDMATRIX_MAX");
    for (int q = 0; q < N; q++) sim_check_aligned(rows[q], 16);
    SimLdmatrixLane rec;
    rec.hdr.fn = sim_ldmatrix_run;
    rec.n = N;
    rec.rows = rows;
    sim_warp_op(SIM_WARP_LDMATRIX, 0xffffffffu, (uint64_t)(uintptr_t)&rec, 0, 0, 32);
    const unsigned w = sim_lane() & 3;
    for (int q = 0; q < N; q++)
        for (int i = 0; i < 4; i++) r[q][i] = __float_as_uint(rec.src[q][i][w]);
}

// ---- cp.async ---------------------------------------------------------------

static inline void fm_cp_async16(float* dst, const float* src, int src_bytes) {
    sim_check_aligned(dst, 16);
    sim_check_aligned(src, 16);
    if (src_bytes < 0 || src_bytes > 16 || src_bytes % 4 != 0)
        sim_fault("cp.async with a src-size not a multiple of 4 in [0, 16]");
    sim_cp_async(dst, src, 16, (unsigned)src_bytes);
}

static inline void fm_cp_async4(float* dst, const float* src, int src_bytes) {
    sim_check_aligned(dst, 4);
    sim_check_aligned(src, 4);
    if (src_bytes != 0 && src_bytes != 4) sim_fault("cp.async of 4 bytes with a src-size other than 0 or 4");
    sim_cp_async(dst, src, 4, (unsigned)src_bytes);
}

static inline void fm_cp_async_commit() { sim_cp_async_commit(); }

// sim_cp_apply performs one copy as the thread's own checked accesses.
static inline void sim_cp_apply(const SimAsyncCopy& c) {
    float* d = (float*)c.dst;
    const float* s = (const float*)c.src;
    const unsigned words = c.bytes / 4, valid = c.src_bytes / 4;
    for (unsigned w = 0; w < words; w++) d[w] = w < valid ? s[w] : 0.0f;
}

template <int N>
static inline void fm_cp_async_wait() {
    SimAsyncCopy c[SIM_MAX_ASYNC_COPIES];
    const int n = sim_cp_async_take(N, c);
    for (int i = 0; i < n; i++) sim_cp_apply(c[i]);
}
