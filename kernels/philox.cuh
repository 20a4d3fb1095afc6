// Philox-4x32-10, bit for bit as gpu/philox.go: the counter-based
// generator both backends share, so that the CUDA kernels draw the same
// x0, t and batch indices as the CPU backend for the same seed and counter.
//
// Layout (gpu/philox.go): key = (seed low 32 bits, seed high 32 bits);
// counter = (i / 4, purpose, stream low, stream high); element i takes lane
// i % 4 of its block's four words.
#pragma once
#include "common.cuh"

// Purposes: gpu.Purpose* (gpu/philox.go), part of this ABI.
#define FM_PURPOSE_GENERIC 0u
#define FM_PURPOSE_INDEX 1u
#define FM_PURPOSE_TIME_U 2u
#define FM_PURPOSE_TIME_N 3u
#define FM_PURPOSE_NOISE 4u
#define FM_PURPOSE_GENERIC_U 5u
#define FM_PURPOSE_LABEL_DROP 6u
#define FM_PURPOSE_DROPOUT 7u

struct fm_u32x4 {
    unsigned w[4];
};

FM_DEVICE fm_u32x4 philox4x32_10(unsigned c0, unsigned c1, unsigned c2, unsigned c3, unsigned k0, unsigned k1) {
    const unsigned M0 = 0xD2511F53u, M1 = 0xCD9E8D57u, W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
    for (int r = 0; r < 10; r++) {
        if (r > 0) {
            k0 += W0;
            k1 += W1;
        }
        unsigned hi0 = __umulhi(M0, c0), lo0 = M0 * c0;
        unsigned hi1 = __umulhi(M1, c2), lo1 = M1 * c2;
        unsigned n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
        c0 = n0;
        c1 = lo1;
        c2 = n2;
        c3 = lo0;
    }
    fm_u32x4 out;
    out.w[0] = c0;
    out.w[1] = c1;
    out.w[2] = c2;
    out.w[3] = c3;
    return out;
}

// lane_of returns w[lane] with selects rather than a dynamically indexed
// array (which nvcc would place in local memory).
FM_DEVICE unsigned lane_of(fm_u32x4 w, unsigned lane) {
    unsigned lo = (lane & 1) ? w.w[1] : w.w[0], hi = (lane & 1) ? w.w[3] : w.w[2];
    return (lane & 2) ? hi : lo;
}
FM_DEVICE float lane_of4(const float z[4], unsigned lane) {
    float lo = (lane & 1) ? z[1] : z[0], hi = (lane & 1) ? z[3] : z[2];
    return (lane & 2) ? hi : lo;
}

// philox_block is gpu.PhiloxBlock: the four words of block `block` of the
// stream (seed, purpose, stream).
FM_DEVICE fm_u32x4 philox_block(unsigned long long seed, unsigned purpose, unsigned long long stream, unsigned block) {
    return philox4x32_10(block, purpose, (unsigned)stream, (unsigned)(stream >> 32), (unsigned)seed,
                         (unsigned)(seed >> 32));
}

// uniform01 is gpu.Uniform01: ((w >> 9) + 0.5) 2^-23, exact, in (0, 1).
FM_DEVICE float uniform01(unsigned w) { return ((float)(w >> 9) + 0.5f) * (1.0f / 8388608.0f); }

// index_below is gpu.IndexBelow: floor(w n / 2^32).
FM_DEVICE unsigned index_below(unsigned w, unsigned n) { return __umulhi(w, n); }

// box_muller is gpu.BoxMuller in float32: r = sqrt(-2 log u0), angle 2 pi u1
// through sincospif (exact argument reduction). gpu/philox.go evaluates it
// in float64 and rounds; the two agree to a few float32 ulps.
FM_DEVICE void box_muller(float u0, float u1, float* z0, float* z1) {
    float r = sqrtf(-2.0f * logf(u0));
    float s, c;
    sincospif(2.0f * u1, &s, &c);
    *z0 = r * c;
    *z1 = r * s;
}

// normal_block is gpu.NormalBlock: lanes (0, 1) and (2, 3) are Box-Muller
// pairs of the block's four uniforms.
FM_DEVICE void normal_block(fm_u32x4 w, float z[4]) {
    box_muller(uniform01(w.w[0]), uniform01(w.w[1]), &z[0], &z[1]);
    box_muller(uniform01(w.w[2]), uniform01(w.w[3]), &z[2], &z[3]);
}
