//go:build kernelsim && !race && !simasan

package kernels

// The access checks: GCC's ThreadSanitizer instrumentation of every load
// and store of the kernels, calling the harness's own __tsan_* entry points
// (sim_memory.cc; no ThreadSanitizer runtime is linked). Without them (the
// simasan build, or -race, whose runtime defines those entry points too)
// the harness still runs, with guard pages, explicit alignment checks and
// synccheck only.

/*
#cgo CXXFLAGS: -fsanitize=thread -DFMGPU_SIM_CHECKS=1
*/
import "C"
