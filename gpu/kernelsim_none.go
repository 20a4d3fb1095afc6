//go:build !kernelsim

package gpu

import "errors"

// NewKernelSim returns the device backend over the host-compiled kernels;
// only the kernelsim build (go test -tags kernelsim, make kernel-check) has
// it.
func NewKernelSim() (Backend, error) {
	return nil, errors.New("built without the kernel simulator: build with -tags kernelsim")
}
