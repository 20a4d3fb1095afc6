//go:build !cuda && !kernelsim

package gpu

import "errors"

// Flavor names the build: "cpu" here, "cuda" or "kernelsim" in the tagged
// builds.
const Flavor = "cpu"

// NewCUDA reports that this binary has no CUDA backend.
func NewCUDA() (Backend, error) {
	return nil, errors.New("this fmgpu was built without CUDA: build bin/fmgpu-cuda with `make cuda` (or use Dockerfile.cuda)")
}
