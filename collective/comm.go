package collective

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// Engine names the library that carries the collectives.
type Engine string

const (
	// EngineNone is the single-process engine: every collective is the
	// identity, nothing is loaded.
	EngineNone Engine = "none"
	// EngineMPI reduces host buffers through libmpi (Open MPI or MPICH).
	EngineMPI Engine = "mpi"
	// EngineNCCL reduces device buffers through libnccl.so.2 on a CUDA
	// stream.
	EngineNCCL Engine = "nccl"
)

// Buffer is a flat float32 array to reduce or broadcast in place: host
// memory (Host) or device memory on a CUDA stream (Device).
type Buffer struct {
	host   []float32
	dev    uint64
	n      int
	stream uintptr
	onDev  bool
}

// Host is a buffer in host memory. The engine reads and writes x during the
// call only.
func Host(x []float32) Buffer { return Buffer{host: x, n: len(x)} }

// Device is a buffer of n float32 at device address ptr (a CUdeviceptr of
// the current context), ordered on stream (a CUstream; 0 is the legacy
// default stream). A collective on it is queued on stream and returns
// before it runs: work queued later on the same stream sees the result,
// and the host sees it after a stream synchronization.
func Device(ptr uint64, n int, stream uintptr) Buffer {
	return Buffer{dev: ptr, n: n, stream: stream, onDev: true}
}

// HostData is the memory of a Host buffer, nil for a Device one: for a
// Comm implemented outside this package (a test's, in one process).
func (b Buffer) HostData() []float32 { return b.host }

// Len is the number of float32 elements.
func (b Buffer) Len() int { return b.n }

// OnDevice reports whether b is device memory.
func (b Buffer) OnDevice() bool { return b.onDev }

func (b Buffer) check() error {
	if b.n < 0 || b.onDev && b.dev == 0 && b.n > 0 {
		return fmt.Errorf("collective: invalid device buffer (address %#x, %d floats)", b.dev, b.n)
	}
	return nil
}

// Comm is one process's membership of a group of Size ranks. Every rank
// calls the same collectives in the same order with buffers of the same
// length; a collective returns when this rank's part is done (for a Device
// buffer: when it is queued). Methods are not safe for concurrent use.
//
// The NCCL engine's methods must be called on the OS thread where the CUDA
// context of the rank's device is current (as every CUDA driver call).
type Comm interface {
	Engine() Engine
	Rank() int
	Size() int
	LocalRank() int
	// AllReduceSum replaces b, on every rank, by the elementwise sum of
	// the ranks' b. Every rank gets the same bits (NCCL's and MPI's
	// algorithms reduce each element once and pass the result on, or add
	// in commuted orders), which keeps data-parallel weights identical.
	AllReduceSum(b Buffer) error
	// Broadcast replaces b, on every rank, by rank 0's b.
	Broadcast(b Buffer) error
	// Barrier returns on a rank when every rank has entered it.
	Barrier() error
	// Abort ends this rank's membership after a failure: the other ranks
	// stop with an error naming this rank and reason, instead of waiting
	// for it. Under an MPI launcher it ends the whole job (MPI_Abort) and
	// does not return. Call it instead of Close on an error path.
	Abort(reason error)
	// Close ends a run that every rank completed: it releases the engine
	// (MPI_Finalize, ncclCommDestroy) and tells the peers this rank is done.
	Close() error
}

// Options configure Open. The zero value reads the launch from the
// environment and uses the default timeouts.
type Options struct {
	// Launch overrides DetectLaunch(os.Getenv).
	Launch *Launch
	// Force loads the engine even for a single process (Size 1): to
	// measure it or check that it is installed.
	Force bool
	// Timeout bounds the rendezvous (every rank joining) and each
	// collective (the MPI engine's call; an NCCL collective from its call
	// until its stream has run it). Default 10 minutes, as PyTorch's default
	// collective timeout.
	Timeout time.Duration
	// Heartbeat is the period of the liveness messages on the rendezvous
	// connections (torchrun-style launches); a peer silent for
	// 10 x Heartbeat is declared lost. Default 2 s. A peer that exits is
	// seen at once, whatever the period.
	Heartbeat time.Duration
	// OnFault is called, from a watchdog's goroutine, when a peer of a
	// run bootstrapped over the TCP rendezvous dies, goes silent or
	// aborts, or when an NCCL collective does not complete within Timeout
	// or its communicator reports an asynchronous error, while this rank
	// may be blocked inside NCCL. The communicator is aborted first, so a
	// blocked call returns (with the same error). The default writes the
	// error on one line to stderr and exits with status 1, through
	// MPI_Abort when NCCL was bootstrapped over MPI. (The MPI engine
	// returns its faults from the collectives.)
	OnFault func(error)
	// MPILibrary and NCCLLibrary override the libraries' paths (default:
	// $FMGPU_LIBMPI / $FMGPU_LIBNCCL, else the sonames searched by the
	// dynamic loader).
	MPILibrary, NCCLLibrary string
}

const (
	defaultTimeout   = 10 * time.Minute
	defaultHeartbeat = 2 * time.Second
)

func (o *Options) fill() error {
	if o.Launch == nil {
		l, err := DetectLaunch(os.Getenv)
		if err != nil {
			return err
		}
		o.Launch = &l
	}
	if o.Launch.Size < 1 {
		o.Launch.Size = 1
	}
	if o.Timeout <= 0 {
		o.Timeout = defaultTimeout
	}
	if o.Heartbeat <= 0 {
		o.Heartbeat = defaultHeartbeat
	}
	if o.MPILibrary == "" {
		o.MPILibrary = os.Getenv(EnvLibMPI)
	}
	if o.NCCLLibrary == "" {
		o.NCCLLibrary = os.Getenv(EnvLibNCCL)
	}
	return nil
}

// Library overrides, read by Options.
const (
	EnvLibMPI  = "FMGPU_LIBMPI"
	EnvLibNCCL = "FMGPU_LIBNCCL"
)

// Open joins the run described by opts.Launch with engine: EngineMPI for
// host buffers (CPU training), EngineNCCL for device buffers (GPU
// training). A single process gets the no-op engine and loads nothing,
// unless opts.Force. A missing library is a *LoadError whose message says
// how to install it.
func Open(engine Engine, opts Options) (Comm, error) {
	if err := opts.fill(); err != nil {
		return nil, err
	}
	l := *opts.Launch
	if l.Size == 1 && !opts.Force || engine == EngineNone {
		if l.Size > 1 {
			return nil, fmt.Errorf("collective: engine %q cannot serve %d ranks", engine, l.Size)
		}
		return single{}, nil
	}
	switch engine {
	case EngineMPI:
		if l.Size > 1 && !l.ByMPI() {
			return nil, fmt.Errorf("collective: %s needs an MPI launcher (mpirun, mpiexec, srun) for %d ranks; "+
				"the %s variables (%s, %s) serve NCCL on GPUs only", engine, l.Size, l.Launcher, EnvRank, EnvWorldSize)
		}
		c, err := openMPI(opts)
		if err != nil {
			return nil, err
		}
		if err := c.agreeEngine(EngineMPI); err != nil {
			return nil, err // every rank finds it and exits; mpirun ends the job
		}
		return c, nil
	case EngineNCCL:
		return openNCCL(opts)
	}
	return nil, fmt.Errorf("collective: unknown engine %q (want %s or %s)", engine, EngineMPI, EngineNCCL)
}

// LoadError is a library that could not be opened or lacks an entry point.
type LoadError struct {
	Library string // the paths or sonames tried
	Err     error
	Install string // how to install it
}

func (e *LoadError) Error() string {
	return fmt.Sprintf("collective: cannot load %s (%v); %s", e.Library, e.Err, e.Install)
}

func (e *LoadError) Unwrap() error { return e.Err }

// PeerError is a peer that died, aborted or went silent.
type PeerError struct {
	Rank   int    // the peer at fault
	Reason string // what happened to it
	Via    int    // the rank that saw it, when not this one (-1)
}

func (e *PeerError) Error() string {
	if e.Via >= 0 {
		return fmt.Sprintf("collective: rank %d %s (seen by rank %d)", e.Rank, e.Reason, e.Via)
	}
	return fmt.Sprintf("collective: rank %d %s", e.Rank, e.Reason)
}

// ErrClosed is returned by collectives after Close or Abort.
var ErrClosed = errors.New("collective: communicator closed")

// single is the one-process engine: the sum over one rank is the buffer.
type single struct{}

func (single) Engine() Engine            { return EngineNone }
func (single) Rank() int                 { return 0 }
func (single) Size() int                 { return 1 }
func (single) LocalRank() int            { return 0 }
func (single) AllReduceSum(Buffer) error { return nil }
func (single) Broadcast(Buffer) error    { return nil }
func (single) Barrier() error            { return nil }
func (single) Abort(error)               {}
func (single) Close() error              { return nil }

// faultState holds the first fault of a communicator; the operations check
// it before they start.
type faultState struct {
	mu  sync.Mutex
	err error
}

func (f *faultState) set(err error) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return false
	}
	f.err = err
	return true
}

func (f *faultState) get() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// Describe is a one-line account of c for a run's log: the engine, its
// library and the number of ranks.
func Describe(c Comm) string {
	if w, ok := c.(interface{ Unwrap() Comm }); ok { // a wrapper (train's, running NCCL on its context thread)
		c = w.Unwrap()
	}
	switch c := c.(type) {
	case *mpiComm:
		return fmt.Sprintf("mpi (%s, %s), %d ranks", c.lib.version, c.lib.path, c.size)
	case *ncclComm:
		return fmt.Sprintf("nccl %s (%s, bootstrap %s), %d ranks", c.lib.versionString(), c.lib.path, c.bootstrapVia, c.size)
	}
	return fmt.Sprintf("%s, %d rank(s)", c.Engine(), c.Size())
}
