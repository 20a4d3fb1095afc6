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

// Checks of sim_configure (with the access hooks compiled in: see
// sim_checks_available); memcheck and synccheck are always on.
#define SIM_CHECK_RACE 1 /* racecheck: shared and global memory */
#define SIM_CHECK_INIT 2 /* initcheck: shared memory read before written */

// sim_configure sets the number of OS threads running blocks (<= 0: the
// machine's), the order of fibers between barriers (0 forward, 1 reverse,
// 2 a fresh permutation per phase from seed) and the checks (SIM_CHECK_*
// bits) of the launches that follow.
void sim_configure(int threads, int order, uint64_t seed, int checks);

// sim_checks_available is 1 when the kernels were compiled with the access
// hooks (memcheck of every access, racecheck, initcheck), 0 otherwise.
int sim_checks_available(void);

// sim_set_sampling: the access checks run on the first `first` launches of
// each configuration (kernel, grid, block, dynamic shared memory), then on
// one launch in `every` (0: none); the others run unchecked (synccheck and
// the guard pages stay). The default, (0, 1), checks every launch. The
// counts start again at every call.
void sim_set_sampling(int first, int every);

// sim_load_ptxas_report reads nvcc's resource report (kernels/
// ptxas-report.txt: registers, static shared memory and stack of every
// kernel per architecture); launches are then checked against the limits
// of sm_80 and sm_90 (or only the architecture of sim_set_arch), and a
// kernel the report lacks (other than the self-tests) cannot launch.
int sim_load_ptxas_report(const char* text, size_t len, char* err, size_t errlen);
void sim_set_arch(int sm);
// sim_set_max_dynamic_shared is the kernel's maximum dynamic shared memory
// attribute (the opt-in above 48 KiB): 1 and a message when the GPU cannot.
int sim_set_max_dynamic_shared(const char* name, size_t bytes, char* err, size_t errlen);
// sim_kernel_resources gives the report's figures for a kernel on sm_<sm>:
// 0, or 1 when the report has no such entry.
int sim_kernel_resources(const char* name, int sm, int* regs, int* smem, int* stack);

// sim_launch runs kernel name over grid x block with shared dynamic shared
// bytes. args[i] is the i-th argument's 8-byte slot (value in the low
// bytes); sig has one letter per argument (p pointer, i int, u unsigned,
// f float, d double, L unsigned 64-bit, l signed 64-bit) and must equal the
// kernel's C++ signature. Returns 0 or writes a message into err.
int sim_launch(const char* name, const unsigned grid[3], const unsigned block[3], size_t shared,
               const uint64_t* args, int nargs, const char* sig, char* err, size_t errlen);

// sim_launch_check makes sim_launch's checks of the grid, block and
// resources alone: 0, or 1 and a message ("resources: ..." for what the
// ptxas report's figures do not fit).
int sim_launch_check(const char* name, const unsigned grid[3], const unsigned block[3], size_t shared, char* err,
                     size_t errlen);

// Device memory: guarded allocations (sim_memory.cc), their contents NaN
// (0xFF bytes) at first. The copies abort the process with a message when
// their range is not inside one live allocation.
uint64_t sim_alloc(size_t bytes);
void sim_free(uint64_t p);
void sim_htod(uint64_t dst, const void* src, size_t bytes);
void sim_dtoh(void* dst, uint64_t src, size_t bytes);
void sim_dtod(uint64_t dst, uint64_t src, size_t bytes);
void sim_memset32(uint64_t dst, uint32_t v, size_t n);

int sim_kernel_count(void);
const char* sim_kernel_name(int i);
const char* sim_kernel_sig(int i);
// sim_checked_launches: how many launches of kernel i ran with the access
// checks (memcheck, and racecheck and initcheck as configured).
uint64_t sim_checked_launches(int i);

#ifdef __cplusplus
}
#endif
#endif
