//go:build !kernelsim

package gpu

// Flavor names the build: "cpu+cuda" (the CPU backend, and the CUDA
// backend when the NVIDIA driver is found at run time) or, under the build
// tag kernelsim, "kernelsim".
const Flavor = "cpu+cuda"

// NewCUDA returns the CUDA backend on device 0 (NewCUDADriver), or a
// *CUDAUnavailable error saying what is missing.
func NewCUDA() (Backend, error) { return NewCUDADriver(CUDAOptions{}) }

// NewCUDAWith is NewCUDA with options.
func NewCUDAWith(o CUDAOptions) (Backend, error) { return NewCUDADriver(o) }

// ProbeCUDA describes device 0 as the driver sees it, for `fmgpu info`.
func ProbeCUDA() (DeviceInfo, error) { return ProbeCUDADriver(CUDAOptions{}) }
