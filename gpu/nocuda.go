//go:build !cuda && !kernelsim

package gpu

import "errors"

// Flavor names the build: "cpu" here, "cuda" or "kernelsim" in the tagged
// builds.
const Flavor = "cpu"

// errNoCUDA is what the CUDA entry points return in a build without CUDA.
var errNoCUDA = errors.New("this fmgpu was built without CUDA: build bin/fmgpu-cuda with `make cuda` (go build -tags cuda; needs cuda.h and libcuda.so), or use Dockerfile.cuda")

// NewCUDA returns the CUDA backend; this build has none.
func NewCUDA() (Backend, error) { return nil, errNoCUDA }

// ProbeCUDA describes the CUDA device; this build has none.
func ProbeCUDA() (DeviceInfo, error) { return DeviceInfo{Backend: "cuda"}, errNoCUDA }
