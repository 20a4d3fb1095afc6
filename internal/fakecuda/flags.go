//go:build !simasan

package fakecuda

// The kernels' access checks: GCC's ThreadSanitizer instrumentation calling
// the harness's own hooks (kernels/sim_memory.cc), as kernels/sim_checks.go
// compiles them for the kernelsim build.
var (
	sanitizeFlags     = []string{"-fsanitize=thread", "-DFMGPU_SIM_CHECKS=1"}
	sanitizeLinkFlags []string
)
