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

/*
#cgo CXXFLAGS: -fsanitize=address,undefined -fno-omit-frame-pointer
#cgo LDFLAGS: -fsanitize=undefined
*/
import "C"
