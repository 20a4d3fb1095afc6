//go:build kernelsim

package kernels

// -Wno-maybe-uninitialized: once FM_UNROLL unrolls a kernel's staging
// loops (a value written under `if (i < n)` and stored under the same
// test), GCC no longer sees that the store follows the write.

/*
#cgo CXXFLAGS: -std=c++17 -O2 -Wall -Wextra -Werror -Wno-unused-parameter -Wno-unused-function -Wno-maybe-uninitialized
#cgo LDFLAGS: -lstdc++ -lm -lpthread
#include <stdlib.h>
#include "sim_api.h"
*/
import "C"

import (
	"embed"
	"errors"
	"fmt"
	"unsafe"
)

// Sources are the kernel sources the harness compiled. Embedding them also
// makes the go build cache rebuild this package when a .cu or .cuh file
// changes (cgo alone tracks only the package's own C and header files).
//
//go:embed *.cu *.cuh
var Sources embed.FS

// PtxasReport is kernels/ptxas-report.txt, which `make kernels` writes with
// the fatbin: every kernel's registers and static shared memory on sm_80
// and sm_90. The harness checks each launch against those GPUs' limits
// with it.
//
//go:embed ptxas-report.txt
var PtxasReport []byte

func init() {
	if err := SimLoadPtxasReport(PtxasReport); err != nil {
		panic("kernels/ptxas-report.txt: " + err.Error())
	}
}

// SimOrder is the order in which the harness runs a block's threads
// between two barriers.
type SimOrder int

const (
	SimForward SimOrder = 0 // thread 0 first
	SimReverse SimOrder = 1 // the last thread first
	SimShuffle SimOrder = 2 // a fresh pseudo-random permutation per phase
)

// SimChecks selects the optional checks of every access (memcheck and
// synccheck are always on).
type SimChecks int

const (
	SimRacecheck SimChecks = C.SIM_CHECK_RACE // races in shared and global memory
	SimInitcheck SimChecks = C.SIM_CHECK_INIT // shared memory read before written
	SimAllChecks           = SimRacecheck | SimInitcheck
)

// SimChecksAvailable reports whether the kernels were compiled with the
// access hooks (not in the simasan build, nor with -race): without them
// only guard pages, explicit alignment checks and synccheck remain.
func SimChecksAvailable() bool { return C.sim_checks_available() != 0 }

// SimConfig configures the harness for the launches that follow.
// Threads <= 0 runs blocks on every core.
func SimConfig(threads int, order SimOrder, seed uint64, checks SimChecks) {
	C.sim_configure(C.int(threads), C.int(order), C.uint64_t(seed), C.int(checks))
}

// SimSampling makes the access checks run on the first `first` launches of
// each configuration (kernel, grid, block, dynamic shared memory) and then
// on one launch in `every` (0: no more); the other launches run unchecked
// but for synccheck and the guard pages. SimSampling(0, 1), the default,
// checks every launch. The counts start again at every call.
func SimSampling(first, every int) { C.sim_set_sampling(C.int(first), C.int(every)) }

// SimLoadPtxasReport replaces the resource report the launches are checked
// against (tests plant faults with it; PtxasReport is the real one).
func SimLoadPtxasReport(report []byte) error {
	if len(report) == 0 {
		return errors.New("empty report")
	}
	var msg [512]C.char
	if C.sim_load_ptxas_report((*C.char)(unsafe.Pointer(&report[0])), C.size_t(len(report)), &msg[0], C.size_t(len(msg))) != 0 {
		return errors.New(C.GoString(&msg[0]))
	}
	return nil
}

// SimLaunch runs kernel name over grid x block threads with shared bytes
// of dynamic shared memory, synchronously. args holds one 8-byte slot per
// kernel argument and sig one letter per argument (p pointer, i int32,
// u uint32, f float32, d float64, L uint64, l int64); the harness checks
// sig against the kernel's C++ signature.
func SimLaunch(name string, grid, block [3]uint32, shared int, args []uint64, sig string) error {
	if len(args) != len(sig) {
		return fmt.Errorf("%s: %d argument slots, signature %q", name, len(args), sig)
	}
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	csig := C.CString(sig)
	defer C.free(unsafe.Pointer(csig))
	g := [3]C.uint{C.uint(grid[0]), C.uint(grid[1]), C.uint(grid[2])}
	b := [3]C.uint{C.uint(block[0]), C.uint(block[1]), C.uint(block[2])}
	var argp *C.uint64_t
	if len(args) > 0 {
		argp = (*C.uint64_t)(unsafe.Pointer(&args[0]))
	}
	var msg [1024]C.char
	if C.sim_launch(cname, &g[0], &b[0], C.size_t(shared), argp, C.int(len(args)), csig, &msg[0], C.size_t(len(msg))) != 0 {
		return errors.New(C.GoString(&msg[0]))
	}
	return nil
}

// SimSetMaxDynamicShared sets kernel name's maximum dynamic shared memory
// (cuFuncSetAttribute's CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES:
// the opt-in above 48 KiB); an error when a targeted GPU cannot give it.
func SimSetMaxDynamicShared(name string, bytes int) error {
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	var msg [512]C.char
	if C.sim_set_max_dynamic_shared(cname, C.size_t(bytes), &msg[0], C.size_t(len(msg))) != 0 {
		return errors.New(C.GoString(&msg[0]))
	}
	return nil
}

// SimAlloc returns bytes of harness "device" memory (host memory, its
// contents NaN, between guard pages), or 0 when bytes is 0 or the
// allocation fails.
func SimAlloc(bytes int) uint64 { return uint64(C.sim_alloc(C.size_t(bytes))) }

// SimFree releases an allocation of SimAlloc.
func SimFree(p uint64) { C.sim_free(C.uint64_t(p)) }

// SimHtoD copies src into device memory at dst.
func SimHtoD(dst uint64, src []float32) {
	if len(src) > 0 {
		C.sim_htod(C.uint64_t(dst), unsafe.Pointer(&src[0]), C.size_t(4*len(src)))
	}
}

// SimDtoH copies device memory at src into dst.
func SimDtoH(dst []float32, src uint64) {
	if len(dst) > 0 {
		C.sim_dtoh(unsafe.Pointer(&dst[0]), C.uint64_t(src), C.size_t(4*len(dst)))
	}
}

// SimDtoD copies bytes of device memory (the ranges may overlap).
func SimDtoD(dst, src uint64, bytes int) {
	C.sim_dtod(C.uint64_t(dst), C.uint64_t(src), C.size_t(bytes))
}

// SimMemset32 sets n 32-bit words at dst to v.
func SimMemset32(dst uint64, v uint32, n int) {
	C.sim_memset32(C.uint64_t(dst), C.uint32_t(v), C.size_t(n))
}

// SimKernels lists the harness's kernels with their argument signatures.
func SimKernels() map[string]string {
	n := int(C.sim_kernel_count())
	m := make(map[string]string, n)
	for i := 0; i < n; i++ {
		m[C.GoString(C.sim_kernel_name(C.int(i)))] = C.GoString(C.sim_kernel_sig(C.int(i)))
	}
	return m
}

// SimCheckedLaunches counts, by kernel, the launches that ran with the
// access checks (memcheck, and racecheck and initcheck as SimConfig says)
// since the process started.
func SimCheckedLaunches() map[string]uint64 {
	n := int(C.sim_kernel_count())
	m := make(map[string]uint64, n)
	for i := 0; i < n; i++ {
		m[C.GoString(C.sim_kernel_name(C.int(i)))] = uint64(C.sim_checked_launches(C.int(i)))
	}
	return m
}
