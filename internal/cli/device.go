package cli

import (
	"fmt"
	"io"

	"github.com/fmgpu/fmgpu/gpu"
)

// openBackend returns the backend --device asks for: "cpu", "cuda", or
// "auto" (CUDA when this binary is a CUDA build and a device answers, else
// the CPU). threads bounds the CPU backend's workers (0: all cores).
func openBackend(device string, threads int) (gpu.Backend, error) {
	switch device {
	case "cpu":
		return gpu.NewCPU(threads), nil
	case "cuda":
		b, err := gpu.NewCUDA()
		if err != nil {
			return nil, fmt.Errorf("--device cuda: %w", err)
		}
		return b, nil
	case "auto", "":
		if gpu.Flavor != "cpu" {
			if b, err := gpu.NewCUDA(); err == nil {
				return b, nil
			}
		}
		return gpu.NewCPU(threads), nil
	}
	return nil, usagef("--device %q: want auto, cpu or cuda", device)
}

func describeBackend(b gpu.Backend) string {
	in := b.Info()
	s := fmt.Sprintf("%s: %s", in.Backend, in.Name)
	if in.ComputeCapability != "" {
		s += fmt.Sprintf(", compute capability %s", in.ComputeCapability)
	}
	if in.MemoryBytes > 0 {
		s += fmt.Sprintf(", %.1f GiB", float64(in.MemoryBytes)/(1<<30))
	}
	if in.Driver != "" {
		s += ", driver " + in.Driver
	}
	if in.Threads > 0 {
		s += fmt.Sprintf(", %d threads", in.Threads)
	}
	return s
}

// describeDevices writes one line per device kind this binary knows, for
// `fmgpu info`.
func describeDevices(w io.Writer) {
	cpu := gpu.NewCPU(0)
	fmt.Fprintf(w, "device cpu: %s\n", describeBackend(cpu))
	cpu.Close()
	if gpu.Flavor == "cpu" {
		fmt.Fprintln(w, "device cuda: not in this build (build bin/fmgpu-cuda with `make cuda`, or use Dockerfile.cuda)")
	} else if b, err := gpu.NewCUDA(); err != nil {
		fmt.Fprintf(w, "device cuda: unavailable: %v\n", err)
	} else {
		fmt.Fprintf(w, "device cuda: %s\n", describeBackend(b))
		b.Close()
	}
}
