//go:build kernelsim

package gpu

import (
	"fmt"
	"io/fs"
	"maps"
	"os"
	"regexp"
	"runtime"
	"strconv"
	"sync"

	"github.com/fmgpu/fmgpu/kernels"
)

// Flavor names the build: "cpu", "cuda" or "kernelsim".
const Flavor = "kernelsim"

// KernelSimOptions configures the kernelsim harness (kernels/sim_shim.h).
type KernelSimOptions struct {
	// Threads is the number of OS threads running blocks (<= 0: GOMAXPROCS).
	Threads int
	// Order is how a block's threads are ordered between barriers:
	// "shuffle" (the default: a fresh permutation per phase, seeded by
	// Seed), "forward" or "reverse".
	Order string
	Seed  uint64
	// NoRacecheck and NoInitcheck turn off those checks of every access
	// (kernels/README.md, "Checks"); memcheck and synccheck stay on.
	NoRacecheck, NoInitcheck bool
	// CheckFirst and CheckEvery sample the access checks over repeated
	// launches: each configuration (kernel, grid, block) is checked on its
	// first CheckFirst launches, then on one in CheckEvery. Zero takes the
	// default (DefaultCheckFirst, DefaultCheckEvery, or CheckEvery from
	// $FMGPU_KERNELSIM_CHECK_EVERY); CheckEvery 1 checks every launch.
	CheckFirst, CheckEvery int
}

// The default sampling of the kernelsim access checks: a training repeats
// the same launches thousands of times, and checking each costs about
// twice the unchecked run.
const (
	DefaultCheckFirst = 4
	DefaultCheckEvery = 16
)

// NewCUDA, in the kernelsim build, returns the kernelsim backend: code that
// asks for the GPU (fmgpu --device cuda, end-to-end tests) runs the CUDA
// backend's Go code and kernels on the CPU. Its Info().Backend says
// "kernelsim".
func NewCUDA() (Backend, error) { return NewKernelSim() }

// ProbeCUDA describes the kernelsim stand-in for a CUDA device.
func ProbeCUDA() (DeviceInfo, error) {
	b, err := NewKernelSim()
	if err != nil {
		return DeviceInfo{Backend: "kernelsim"}, err
	}
	defer b.Close()
	return b.Info(), nil
}

// NewKernelSim returns the device backend (DeviceBackend) running the CUDA
// kernels compiled for the host: the CUDA backend's Go code and kernels,
// checked on a CPU.
func NewKernelSim() (Backend, error) { return NewKernelSimWith(KernelSimOptions{}) }

// NewKernelSimWith is NewKernelSim with options. The harness is process-
// wide: the options apply to every kernelsim backend.
func NewKernelSimWith(o KernelSimOptions) (Backend, error) {
	order := kernels.SimShuffle
	switch o.Order {
	case "", "shuffle":
	case "forward":
		order = kernels.SimForward
	case "reverse":
		order = kernels.SimReverse
	default:
		return nil, fmt.Errorf("kernelsim: unknown thread order %q (want shuffle, forward or reverse)", o.Order)
	}
	threads := o.Threads
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	bounds, err := simLaunchBounds()
	if err != nil {
		return nil, err
	}
	checks := kernels.SimAllChecks
	if o.NoRacecheck {
		checks &^= kernels.SimRacecheck
	}
	if o.NoInitcheck {
		checks &^= kernels.SimInitcheck
	}
	first, every := o.CheckFirst, o.CheckEvery
	if first <= 0 {
		first = DefaultCheckFirst
	}
	if every <= 0 {
		every = DefaultCheckEvery
		if v := os.Getenv("FMGPU_KERNELSIM_CHECK_EVERY"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return nil, fmt.Errorf("kernelsim: FMGPU_KERNELSIM_CHECK_EVERY=%q is not a positive integer", v)
			}
			every = n
		}
	}
	kernels.SimConfig(threads, order, o.Seed, checks)
	kernels.SimSampling(first, every)
	return newDeviceBackend(&simLauncher{threads: threads, bounds: bounds, sigs: kernels.SimKernels(),
		smem: map[string]int{}, stats: map[string]KernelStat{}}), nil
}

// simLauncher implements launcher with the kernelsim harness: memory is
// host memory, launches run to completion before they return.
type simLauncher struct {
	threads int
	bounds  map[string]int    // kernel -> __launch_bounds__
	sigs    map[string]string // kernel -> argument signature
	smem    map[string]int    // kernel -> its maximum dynamic shared memory attribute, as set
	stats   map[string]KernelStat
}

func (s *simLauncher) kernelStats() map[string]KernelStat { return maps.Clone(s.stats) }
func (s *simLauncher) resetKernelStats()                  { clear(s.stats) }

func (s *simLauncher) info() DeviceInfo {
	return DeviceInfo{Backend: "kernelsim", Name: "kernelsim on " + cpuName(), ComputeCapability: "host", Threads: s.threads}
}

func (s *simLauncher) alloc(bytes int) (devPtr, error) {
	p := kernels.SimAlloc(bytes)
	if p == 0 {
		return 0, fmt.Errorf("kernelsim: cannot allocate %d bytes", bytes)
	}
	return devPtr(p), nil
}

func (s *simLauncher) free(p devPtr) error { kernels.SimFree(uint64(p)); return nil }

func (s *simLauncher) upload(dst devPtr, src []float32) error {
	kernels.SimHtoD(uint64(dst), src)
	return nil
}

func (s *simLauncher) download(dst []float32, src devPtr) error {
	kernels.SimDtoH(dst, uint64(src))
	return nil
}

func (s *simLauncher) copyDtoD(dst, src devPtr, bytes int) error {
	kernels.SimDtoD(uint64(dst), uint64(src), bytes)
	return nil
}

func (s *simLauncher) memset32(dst devPtr, v uint32, n int) error {
	kernels.SimMemset32(uint64(dst), v, n)
	return nil
}

// launch checks what a GPU would check at launch time and what only shows
// on a GPU as wrong numbers: the block within the kernel's
// __launch_bounds__ (beyond it cuLaunchKernel fails), the arguments'
// types against the kernel's parameters, then runs the kernel.
func (s *simLauncher) launch(k *kernelCall) error {
	bound, ok := s.bounds[k.name]
	if !ok {
		return fmt.Errorf("kernelsim: kernel %s not found in kernels/*.cu", k.name)
	}
	if threads := int(k.block.x) * int(k.block.y) * int(k.block.z); threads > bound {
		return fmt.Errorf("kernelsim: %s: block of %d threads exceeds its __launch_bounds__(%d)", k.name, threads, bound)
	}
	st := s.stats[k.name]
	st.Launches++
	s.stats[k.name] = st
	if k.shared > maxDefaultSmem && s.smem[k.name] < k.shared {
		// as the CUDA launcher does (gpu/cuda.go)
		if err := kernels.SimSetMaxDynamicShared(k.name, k.shared); err != nil {
			return fmt.Errorf("kernelsim: %w", err)
		}
		s.smem[k.name] = k.shared
	}
	return kernels.SimLaunch(k.name, [3]uint32{k.grid.x, k.grid.y, k.grid.z}, [3]uint32{k.block.x, k.block.y, k.block.z},
		k.shared, k.slots[:k.n], k.signature())
}

func (s *simLauncher) sync() error  { return nil }
func (s *simLauncher) close() error { return nil }

var (
	launchBoundsOnce sync.Once
	launchBounds     map[string]int
	launchBoundsErr  error
	// kernelDecl matches a kernel's declaration in kernels/*.cu.
	kernelDecl = regexp.MustCompile(`extern "C" __global__ void\s+(?:__launch_bounds__\((\d+)(?:,\s*\d+)?\)\s+)?(\w+)\s*\(`)
)

// simLaunchBounds reads every kernel's __launch_bounds__ from the sources
// the harness was built from; a kernel without one is an error (every
// kernel states its launch preconditions, docs/design.md, and nvcc needs
// the bound to budget registers).
func simLaunchBounds() (map[string]int, error) {
	launchBoundsOnce.Do(func() {
		launchBounds = map[string]int{}
		launchBoundsErr = fs.WalkDir(kernels.Sources, ".", func(path string, de fs.DirEntry, err error) error {
			if err != nil || de.IsDir() {
				return err
			}
			src, err := fs.ReadFile(kernels.Sources, path)
			if err != nil {
				return err
			}
			for _, m := range kernelDecl.FindAllSubmatch(src, -1) {
				if len(m[1]) == 0 {
					return fmt.Errorf("kernelsim: %s: kernel %s has no __launch_bounds__", path, m[2])
				}
				n, _ := strconv.Atoi(string(m[1]))
				launchBounds[string(m[2])] = n
			}
			return nil
		})
	})
	return launchBounds, launchBoundsErr
}
