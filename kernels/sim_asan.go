//go:build kernelsim && simasan

package kernels

// The simasan build (make kernel-check-asan, with go test -asan, which
// links the AddressSanitizer runtime and instruments Go and C, not C++):
// the harness and the kernels compiled with AddressSanitizer and UBSan;
// with UBSAN_OPTIONS=halt_on_error=1 (the make target sets it) any report
// ends the test binary. The access
// hooks are not compiled in (ThreadSanitizer's instrumentation cannot be
// combined with AddressSanitizer's): the checks of this build are the
// sanitizers', the guard pages and synccheck.

// -O1 -g1 (after cgo's default -O2 -g from CGO_CXXFLAGS and after sim.go's
// -O2, which sorts before this file, so they win: CGO_CXXFLAGS cannot
// change the optimization or debug level of this build): GCC
// takes minutes per kernel file at -O2 -g with the sanitizers' code (its
// inlining and variable tracking over the unrolled tiles), ten times less
// at -O1 -g1, which keeps the line tables of the reports' stack traces.

/*
#cgo CXXFLAGS: -fsanitize=address,undefined -fno-omit-frame-pointer -O1 -g1
#cgo LDFLAGS: -fsanitize=undefined
*/
import "C"
