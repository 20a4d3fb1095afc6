package cli

import (
	"errors"
	"fmt"
	"io"
	"sync"

	ucli "github.com/urfave/cli/v2"

	"github.com/fmgpu/fmgpu/gpu"
	"github.com/fmgpu/fmgpu/internal/sgemm"
)

// openBackend returns the backend --device asks for: "cpu", "cuda", or
// "auto" (the GPU when the NVIDIA driver loads and a device answers, else
// the CPU, and describeBackend then says why). threads bounds the CPU
// backend's workers (0: all cores). --device cuda without a usable GPU is
// an error naming what is missing.
func openBackend(device string, threads int) (gpu.Backend, error) {
	cpuBackend := func() (gpu.Backend, error) {
		if err := sgemm.EnvKernelError(); err != nil {
			return nil, usageError{err}
		}
		return gpu.NewCPU(threads), nil
	}
	switch device {
	case "cpu":
		return cpuBackend()
	case "cuda":
		b, err := gpu.NewCUDA()
		if err != nil {
			return nil, fmt.Errorf("--device cuda: %w", err)
		}
		return b, nil
	case "auto":
		b, err := gpu.NewCUDA()
		if err == nil {
			return b, nil
		}
		cpu, cpuErr := cpuBackend()
		if cpuErr != nil {
			return nil, cpuErr
		}
		autoFallback.Store(cpu, briefCUDAError(err))
		return cpu, nil
	}
	return nil, usagef("--device %q: want auto, cpu or cuda", device)
}

// precisionUsage is --precision's help, the same on every command.
const precisionUsage = "matrix products: fp32 (float32 FMA), tf32x3 (float32 accuracy on a GPU's tensor cores, 3xTF32), tf32 (one TF32 product, about 3 significant digits: GPU only) or bf16 (one BF16 product, about 2 significant digits, float32 storage: GPU only); docs/performance.md, \"Tensor cores\""

func precisionFlag(category string) *ucli.StringFlag {
	return &ucli.StringFlag{Name: "precision", Value: gpu.PrecisionFP32.String(), Category: category, Usage: precisionUsage}
}

// precisionFrom reads --precision.
func precisionFrom(c *ucli.Context) (gpu.Precision, error) {
	p, err := gpu.ParsePrecision(c.String("precision"))
	if err != nil {
		return p, usagef("--precision: %v", err)
	}
	return p, nil
}

// setPrecision gives b the products' precision, or a usage error naming
// --precision when b does not offer it (the CPU backend and tf32 or bf16).
func setPrecision(b gpu.Backend, p gpu.Precision) error {
	if err := gpu.SetPrecision(b, p); err != nil {
		return usagef("--precision %s on %s: %v", p, b.Info().Backend, err)
	}
	return nil
}

// precisionNote is ", precision P" for a backend whose products are not
// fp32, for the line a command prints about its device ("" for fp32: the
// line as before precisions existed).
func precisionNote(b gpu.Backend) string {
	if p := gpu.PrecisionOf(b); p != gpu.PrecisionFP32 {
		return ", precision " + p.String()
	}
	return ""
}

// autoFallback holds, for each CPU backend --device auto chose, why the GPU
// was not used: the commands print it with the device they run on, once
// their inputs are known to be good.
var autoFallback sync.Map // gpu.Backend -> string

// fallbackNote is the line a command prints before its work when --device
// auto fell back to the CPU ("" otherwise).
func fallbackNote(command string, b gpu.Backend) string {
	if _, ok := autoFallback.Load(b); !ok {
		return ""
	}
	return fmt.Sprintf("%s on %s\n", command, describeBackend(b))
}

// briefCUDAError is why the GPU is not used, in a few words ("no NVIDIA
// driver (libcuda.so.1: not found)").
func briefCUDAError(err error) string {
	var u *gpu.CUDAUnavailable
	if errors.As(err, &u) {
		return u.Brief()
	}
	return err.Error()
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
	if why, ok := autoFallback.Load(b); ok {
		s += fmt.Sprintf(" (no GPU: %s)", why)
	}
	return s
}

// describeDevices writes one line per device kind this binary knows, for
// `fmgpu info`.
func describeDevices(w io.Writer) {
	cpu := gpu.NewCPU(0)
	fmt.Fprintf(w, "device cpu: %s\n", describeBackend(cpu))
	cpu.Close()
	if b, err := gpu.NewCUDA(); err != nil {
		fmt.Fprintf(w, "device cuda: unavailable: %v\n", err)
	} else {
		fmt.Fprintf(w, "device cuda: %s\n", describeBackend(b))
		b.Close()
	}
}
