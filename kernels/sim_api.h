// C interface of the kernelsim harness (sim_runtime.cc), called from Go
// through cgo (kernels/sim.go). "Device" memory is host memory; a device
// pointer is its address as a uint64.
#ifndef FMGPU_SIM_API_H
#define FMGPU_SIM_API_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// sim_configure sets the number of OS threads running blocks (<= 0: the
// machine's), the order of fibers between barriers (0 forward, 1 reverse,
// 2 a fresh permutation per phase from seed) and whether allocations end at
// a guard page (an overrun past a buffer faults at once).
void sim_configure(int threads, int order, uint64_t seed, int guard);

// sim_launch runs kernel name over grid x block with shared dynamic shared
// bytes. args[i] is the i-th argument's 8-byte slot (value in the low
// bytes); sig has one letter per argument (p pointer, i int, u unsigned,
// f float, d double, L unsigned 64-bit, l signed 64-bit) and must equal the
// kernel's C++ signature. Returns 0 or writes a message into err.
int sim_launch(const char* name, const unsigned grid[3], const unsigned block[3], size_t shared,
               const uint64_t* args, int nargs, const char* sig, char* err, size_t errlen);

uint64_t sim_alloc(size_t bytes);
void sim_free(uint64_t p);
void sim_htod(uint64_t dst, const void* src, size_t bytes);
void sim_dtoh(void* dst, uint64_t src, size_t bytes);
void sim_dtod(uint64_t dst, uint64_t src, size_t bytes);
void sim_memset32(uint64_t dst, uint32_t v, size_t n);

int sim_kernel_count(void);
const char* sim_kernel_name(int i);
const char* sim_kernel_sig(int i);

#ifdef __cplusplus
}
#endif
#endif
