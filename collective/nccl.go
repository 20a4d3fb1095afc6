package collective

import (
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/ebitengine/purego"

	"github.com/fmgpu/fmgpu/internal/cudadriver"
)

// The NCCL engine binds libnccl.so.2 at run time. NCCL keeps its own ABI
// stable across 2.x: the entry points below are those of NCCL 2.4 and
// later (ncclCommAbort, ncclCommGetAsyncError), and ncclGetLastError
// (2.13) is used when present.

const ncclInstall = "install NCCL (NVIDIA's CUDA repository: apt-get install libnccl2; or pip install nvidia-nccl-cu12 " +
	"and set " + EnvLibNCCL + " to its nvidia/nccl/lib/libnccl.so.2)"

// DefaultNCCLLibrary is NCCL's soname.
const DefaultNCCLLibrary = "libnccl.so.2"

// ncclUniqueID is ncclUniqueId: 128 opaque bytes, passed by value to
// ncclCommInitRank.
type ncclUniqueID struct{ Internal [128]byte }

const (
	ncclFloat32 = 7 // ncclDataType_t
	ncclSum     = 0 // ncclRedOp_t
)

type ncclLib struct {
	path    string
	version int

	getUniqueID, allReduce, broadcast, commDestroy, commAbort uintptr
	getErrorString, getLastError, commGetAsyncError           uintptr
	commInitRank                                              func(comm *uintptr, nranks int32, id ncclUniqueID, rank int32) int32
}

func loadNCCL(override string) (*ncclLib, error) {
	path := override
	if path == "" {
		path = DefaultNCCLLibrary
	}
	if runtime.GOOS != "linux" {
		return nil, &LoadError{Library: path, Err: fmt.Errorf("NCCL is loaded on Linux only (this is %s)", runtime.GOOS), Install: ncclInstall}
	}
	lib, err := purego.Dlopen(path, purego.RTLD_NOW|purego.RTLD_LOCAL)
	if err != nil {
		return nil, &LoadError{Library: path, Err: err, Install: ncclInstall}
	}
	n := &ncclLib{path: path}
	for _, s := range []struct {
		p    *uintptr
		name string
	}{
		{&n.getUniqueID, "ncclGetUniqueId"},
		{&n.allReduce, "ncclAllReduce"},
		{&n.broadcast, "ncclBroadcast"},
		{&n.commDestroy, "ncclCommDestroy"},
		{&n.commAbort, "ncclCommAbort"},
		{&n.getErrorString, "ncclGetErrorString"},
		{&n.commGetAsyncError, "ncclCommGetAsyncError"},
	} {
		if *s.p, err = purego.Dlsym(lib, s.name); err != nil {
			return nil, &LoadError{Library: path, Err: fmt.Errorf("entry point %s missing (NCCL older than 2.4?): %v", s.name, err), Install: ncclInstall}
		}
	}
	n.getLastError, _ = purego.Dlsym(lib, "ncclGetLastError")
	// ncclCommInitRank takes the 128-byte id by value, which the C ABI
	// passes on the stack (amd64) or by hidden reference (arm64):
	// RegisterFunc lays it out.
	initRank, err := purego.Dlsym(lib, "ncclCommInitRank")
	if err != nil {
		return nil, &LoadError{Library: path, Err: fmt.Errorf("entry point ncclCommInitRank missing: %v", err), Install: ncclInstall}
	}
	purego.RegisterFunc(&n.commInitRank, initRank)
	if getVersion, err := purego.Dlsym(lib, "ncclGetVersion"); err == nil {
		var v int32
		if r, _, _ := purego.SyscallN(getVersion, uintptr(unsafe.Pointer(&v))); r == 0 {
			n.version = int(v)
		}
	}
	return n, nil
}

// versionString spells NCCL's version code (major*10000 + minor*100 +
// patch since 2.9, major*1000 + minor*100 + patch before).
func (n *ncclLib) versionString() string {
	v := n.version
	switch {
	case v <= 0:
		return "unknown version"
	case v >= 10000:
		return fmt.Sprintf("%d.%d.%d", v/10000, v/100%100, v%100)
	default:
		return fmt.Sprintf("%d.%d.%d", v/1000, v/100%10, v%100)
	}
}

func (n *ncclLib) errorf(what string, comm uintptr, code uintptr) error {
	msg := fmt.Sprintf("ncclResult %d", code)
	if p, _, _ := purego.SyscallN(n.getErrorString, code); p != 0 {
		msg = cString(p)
	}
	if n.getLastError != 0 && comm != 0 {
		if p, _, _ := purego.SyscallN(n.getLastError, comm); p != 0 {
			if last := cString(p); last != "" {
				msg += ": " + last
			}
		}
	}
	return fmt.Errorf("collective: %s: %s", what, msg)
}

// cString copies a NUL-terminated C string of the library's static storage.
func cString(p uintptr) string {
	var b []byte
	for i := uintptr(0); i < 4096; i++ {
		c := *(*byte)(unsafe.Add(unsafe.Pointer(nil), p+i))
		if c == 0 {
			break
		}
		b = append(b, c)
	}
	return string(b)
}

// ncclCall runs an NCCL entry point; like purego.SyscallN it keeps the Go
// memory its uintptr(unsafe.Pointer) arguments reach alive for the call.
//
//go:uintptrescapes
func ncclCall(fn uintptr, args ...uintptr) uintptr {
	r, _, _ := purego.SyscallN(fn, args...)
	return r
}

// ncclComm is the NCCL engine. Its bootstrap is the TCP rendezvous (rv)
// when MASTER_ADDR and MASTER_PORT are set, else MPI (mpi) under an MPI
// launcher; a barrier and host buffers go through a device scratch buffer
// on a stream of its own.
type ncclComm struct {
	lib              *ncclLib
	drv              *cudadriver.Driver
	rank, size, loc  int
	comm             atomic.Uintptr
	commMu           sync.Mutex // held while the communicator is destroyed or aborted
	stream           cudadriver.Stream
	scratch          cudadriver.DevicePtr
	scratchN         int
	rv               *rendezvous
	mpi              *mpiComm
	onFault          func(error)
	fault            faultState
	closed           bool
	bootstrapVia     string
	streamCreated    bool
	scratchAllocated bool
	// the watchdog of the collectives (ncclwatch.go), for more than one
	// rank
	watch                *collWatch
	watchStop, watchDone chan struct{}
}

func openNCCL(opts Options) (_ *ncclComm, err error) {
	l := *opts.Launch
	lib, err := loadNCCL(opts.NCCLLibrary)
	if err != nil {
		return nil, err
	}
	drv, err := cudadriver.Open("")
	if err != nil {
		return nil, fmt.Errorf("collective: the nccl engine needs the CUDA driver: %w", err)
	}
	c := &ncclComm{lib: lib, drv: drv, rank: l.Rank, size: l.Size, loc: max(l.LocalRank, 0), onFault: opts.OnFault}
	defer func() {
		if err != nil {
			c.release(err, false)
		}
	}()
	var id ncclUniqueID
	getID := func() error {
		if r := ncclCall(lib.getUniqueID, uintptr(unsafe.Pointer(&id))); r != 0 {
			return lib.errorf("ncclGetUniqueId on rank 0", 0, r)
		}
		return nil
	}
	switch {
	case l.Size == 1:
		c.bootstrapVia = "none"
		if err := getID(); err != nil {
			return nil, err
		}
	case l.HasMaster():
		c.bootstrapVia = "tcp"
		if l.Rank == 0 {
			if err := getID(); err != nil {
				return nil, err
			}
			if c.rv, err = serveRendezvous(l, id.Internal[:], opts.Timeout, opts.Heartbeat); err != nil {
				return nil, err
			}
		} else {
			var b []byte
			if c.rv, b, err = joinRendezvous(l, opts.Timeout, opts.Heartbeat); err != nil {
				return nil, err
			}
			if len(b) != len(id.Internal) {
				return nil, fmt.Errorf("collective: rank %d received a bootstrap of %d bytes, not an NCCL id of %d", l.Rank, len(b), len(id.Internal))
			}
			copy(id.Internal[:], b)
		}
		// Watch from here: a rank that dies during ncclCommInitRank must
		// not leave the others waiting in it.
		c.rv.watch(c.peerFault)
	case l.ByMPI():
		c.bootstrapVia = "mpi"
		if c.mpi, err = openMPI(opts); err != nil {
			return nil, err
		}
		if err := c.mpi.agreeEngine(EngineNCCL); err != nil {
			return nil, err
		}
		if c.rank == 0 {
			if err := getID(); err != nil {
				return nil, err
			}
		}
		if err := c.mpi.broadcastBytes(id.Internal[:]); err != nil {
			return nil, err
		}
		if l.LocalRank < 0 {
			c.loc = c.mpi.LocalRank()
		}
	default:
		return nil, fmt.Errorf("collective: nccl over %d ranks needs %s and %s (rank 0's host and a free port) or an MPI launcher", l.Size, EnvMasterAddr, EnvMasterPort)
	}
	var comm uintptr
	if r := lib.commInitRank(&comm, int32(l.Size), id, int32(l.Rank)); r != 0 {
		return nil, lib.errorf(fmt.Sprintf("ncclCommInitRank (rank %d of %d)", l.Rank, l.Size), 0, uintptr(r))
	}
	c.comm.Store(comm)
	if err := c.fault.get(); err != nil {
		return nil, err
	}
	if c.stream, err = drv.StreamCreate(1); err != nil { // CU_STREAM_NON_BLOCKING
		return nil, fmt.Errorf("collective: nccl engine stream: %w", err)
	}
	c.streamCreated = true
	if c.size > 1 {
		c.startWatch(opts.Timeout)
	}
	return c, nil
}

// peerFault is the watchdog's report: the communicator is aborted, so that
// a call blocked in NCCL returns, and the owner is told.
func (c *ncclComm) peerFault(e *PeerError) {
	if !c.fault.set(e) {
		return
	}
	if c.onFault == nil {
		// The default report ends the process: it goes first, so that a
		// call the abort would unblock cannot return the fault to its
		// caller before the one-line report is out and the exit taken.
		c.reportFault(e)
	}
	// Unless Close or Abort is destroying the communicator right now
	// (then it is being freed: nothing to unblock).
	if c.commMu.TryLock() {
		if h := c.comm.Load(); h != 0 {
			ncclCall(c.lib.commAbort, h)
		}
		c.commMu.Unlock()
	}
	c.reportFault(e)
}

// reportFault hands a fault its watchdog found to the owner's OnFault; by
// default, the error on one line to stderr and exit status 1, through
// MPI_Abort when the run was bootstrapped over MPI (a launcher that lets
// the other ranks run on when one exits still ends the job; those ranks
// may be waiting in NCCL for this one).
func (c *ncclComm) reportFault(err error) {
	if c.onFault != nil {
		c.onFault(err)
		return
	}
	fmt.Fprintf(os.Stderr, "fmgpu: %v\n", err)
	c.exitOnFault(err)
}

// exitOnFault ends the process after a fault, through MPI_Abort where MPI
// is loaded.
func (c *ncclComm) exitOnFault(err error) {
	if c.mpi != nil {
		c.mpi.Abort(err) // does not return
	}
	os.Exit(1)
}

func (c *ncclComm) Engine() Engine { return EngineNCCL }
func (c *ncclComm) Rank() int      { return c.rank }
func (c *ncclComm) Size() int      { return c.size }
func (c *ncclComm) LocalRank() int { return c.loc }

func (c *ncclComm) ready() error {
	if c.closed {
		return ErrClosed
	}
	return c.fault.get()
}

// check turns an NCCL result into an error, after looking for an
// asynchronous error of the communicator (a failed peer connection).
func (c *ncclComm) check(what string, r uintptr) error {
	comm := c.comm.Load()
	if r == 0 {
		var async int32
		if ncclCall(c.lib.commGetAsyncError, comm, uintptr(unsafe.Pointer(&async))) == 0 && async == 0 {
			return nil
		}
		r = uintptr(async)
	}
	err := c.lib.errorf(fmt.Sprintf("%s on rank %d", what, c.rank), comm, r)
	if c.rv != nil {
		// A peer's failure reaches NCCL and the watchdog at about the
		// same time; the watchdog's report names the rank and its reason.
		for i := 0; i < 100 && c.fault.get() == nil; i++ {
			time.Sleep(10 * time.Millisecond)
		}
	}
	c.fault.set(err)
	return c.fault.get()
}

func (c *ncclComm) AllReduceSum(b Buffer) error {
	if err := c.ready(); err != nil {
		return err
	}
	if err := b.check(); err != nil {
		return err
	}
	if !b.onDev {
		return c.viaScratch("all-reduce", b.host, c.allReduce)
	}
	if b.n == 0 {
		return nil
	}
	return c.allReduce(b.dev, b.n, b.stream)
}

func (c *ncclComm) allReduce(ptr uint64, n int, stream uintptr) error {
	r := c.timed("all-reduce", n, stream, func() uintptr {
		return ncclCall(c.lib.allReduce, uintptr(ptr), uintptr(ptr), uintptr(n), ncclFloat32, ncclSum, c.comm.Load(), stream)
	})
	return c.check("ncclAllReduce", r)
}

func (c *ncclComm) Broadcast(b Buffer) error {
	if err := c.ready(); err != nil {
		return err
	}
	if err := b.check(); err != nil {
		return err
	}
	if !b.onDev {
		return c.viaScratch("broadcast", b.host, c.broadcast)
	}
	if b.n == 0 {
		return nil
	}
	return c.broadcast(b.dev, b.n, b.stream)
}

func (c *ncclComm) broadcast(ptr uint64, n int, stream uintptr) error {
	r := c.timed("broadcast", n, stream, func() uintptr {
		return ncclCall(c.lib.broadcast, uintptr(ptr), uintptr(ptr), uintptr(n), ncclFloat32, 0, c.comm.Load(), stream)
	})
	return c.check("ncclBroadcast", r)
}

// viaScratch runs a collective on a host buffer: copied to the device
// scratch, reduced there on the engine's stream, copied back.
func (c *ncclComm) viaScratch(what string, x []float32, op func(uint64, int, uintptr) error) error {
	if len(x) == 0 {
		return nil
	}
	if err := c.growScratch(len(x)); err != nil {
		return err
	}
	bytes := 4 * len(x)
	// On the engine's stream: a synchronous copy from pageable memory may
	// return before its DMA lands, ordered only on the legacy stream.
	if err := c.drv.MemcpyHtoDAsync(c.scratch, unsafe.Pointer(&x[0]), bytes, c.stream); err != nil {
		return fmt.Errorf("collective: nccl %s: %w", what, err)
	}
	if err := op(uint64(c.scratch), len(x), uintptr(c.stream)); err != nil {
		return err
	}
	if err := c.sync(what); err != nil {
		return err
	}
	if err := c.drv.MemcpyDtoH(unsafe.Pointer(&x[0]), c.scratch, bytes); err != nil {
		return fmt.Errorf("collective: nccl %s: %w", what, err)
	}
	runtime.KeepAlive(x)
	return nil
}

func (c *ncclComm) sync(what string) error {
	if err := c.drv.StreamSynchronize(c.stream); err != nil {
		if f := c.fault.get(); f != nil {
			return f
		}
		return fmt.Errorf("collective: nccl %s on rank %d: %w", what, c.rank, err)
	}
	return c.fault.get()
}

func (c *ncclComm) growScratch(n int) error {
	if n <= c.scratchN {
		return nil
	}
	if c.scratchAllocated {
		c.drv.MemFree(c.scratch)
		c.scratchN, c.scratchAllocated = 0, false
	}
	p, err := c.drv.MemAlloc(4 * n)
	if err != nil {
		return fmt.Errorf("collective: nccl scratch of %d floats: %w", n, err)
	}
	c.scratch, c.scratchN, c.scratchAllocated = p, n, true
	return nil
}

// Barrier all-reduces one float on the engine's stream and waits for it:
// NCCL has no barrier of its own.
func (c *ncclComm) Barrier() error {
	if err := c.ready(); err != nil {
		return err
	}
	if err := c.growScratch(1); err != nil {
		return err
	}
	if err := c.allReduce(uint64(c.scratch), 1, uintptr(c.stream)); err != nil {
		return err
	}
	return c.sync("barrier")
}

// Abort tells the peers (over the rendezvous, or through MPI_Abort) and
// aborts the communicator.
func (c *ncclComm) Abort(reason error) {
	if c.closed {
		return
	}
	if reason == nil {
		reason = fmt.Errorf("aborted")
	}
	c.fault.set(reason)
	c.release(reason, true)
}

// Close destroys the communicator after a completed run. Collectives
// queued on the caller's streams must have completed.
func (c *ncclComm) Close() error {
	if c.closed {
		return nil
	}
	err := c.fault.get()
	c.release(err, false)
	return err
}

// release frees what open made. abort is nil after a completed run: the
// engine's stream is drained and the peers told goodbye before the
// communicator is destroyed, so that a peer exiting at the same time is
// not taken for a fault. fatal ends an MPI-launched job with MPI_Abort (the
// peers may be waiting in NCCL); after a failed Open the error goes back to
// the caller instead, whose exit the launcher sees.
func (c *ncclComm) release(abort error, fatal bool) {
	c.closed = true
	if c.streamCreated && abort == nil {
		c.drv.StreamSynchronize(c.stream)
	}
	c.stopWatch()
	if c.rv != nil {
		c.rv.close(abort)
	}
	c.commMu.Lock()
	if h := c.comm.Swap(0); h != 0 {
		if abort != nil {
			ncclCall(c.lib.commAbort, h)
		} else {
			ncclCall(c.lib.commDestroy, h)
		}
	}
	c.commMu.Unlock()
	if c.scratchAllocated {
		c.drv.MemFree(c.scratch)
		c.scratchAllocated = false
	}
	if c.streamCreated {
		c.drv.StreamDestroy(c.stream)
		c.streamCreated = false
	}
	if c.mpi != nil {
		switch {
		case abort == nil:
			c.mpi.Close()
		case fatal:
			c.mpi.Abort(abort)
		default:
			c.mpi.closed = true // MPI_Finalize would wait for the other ranks
		}
	}
}
