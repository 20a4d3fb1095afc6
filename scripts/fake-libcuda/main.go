// Command fake-libcuda builds the fake libcuda.so.1 of kernels/fakecuda (the
// CUDA driver API over the kernelsim harness) and prints its path, so that
// a shell can run fmgpu's real CUDA path without a GPU:
//
//	FMGPU_LIBCUDA=$(go run ./scripts/fake-libcuda) fmgpu train --device cuda ...
package main

import (
	"fmt"
	"os"

	"github.com/fmgpu/fmgpu/internal/fakecuda"
)

func main() {
	p, err := fakecuda.Build()
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake-libcuda:", err)
		os.Exit(1)
	}
	fmt.Println(p)
}
