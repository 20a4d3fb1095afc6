package collective

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/ebitengine/purego"
)

// The MPI engine binds libmpi at run time. The two ABIs in use differ in
// how the predefined handles are spelled: Open MPI's MPI_COMM_WORLD,
// MPI_FLOAT, MPI_SUM... are the addresses of exported globals
// (ompi_mpi_comm_world...), MPICH's (and Intel MPI's, MVAPICH's, Cray's:
// the libmpi.so.12 family) are integer constants fixed by its mpi.h. The
// functions themselves have the same C signatures; a handle is passed in an
// integer register either way.

const mpiInstall = "install MPI (Debian/Ubuntu: apt-get install openmpi-bin libopenmpi-dev, or mpich; " +
	"on a cluster: module load openmpi) or name the library in " + EnvLibMPI

// MPI thread levels (the same in both ABIs).
const (
	mpiThreadFunneled = 1
	mpiThreadMultiple = 3
)

type mpiLib struct {
	path    string
	ompi    bool
	version string // MPI_Get_library_version, its first field

	initThread, finalize, abort, commRank, commSize, commSetErrhandler uintptr
	allreduce, bcast, barrier, allgather, errorString                  uintptr

	// Predefined handles and MPI_IN_PLACE for this ABI.
	commWorld, float, byte_, sum, errorsReturn, inPlace uintptr
}

// The MPICH ABI's handle values (mpi.h of MPICH 3 and 4; Intel MPI and
// MVAPICH share them).
const (
	mpichCommWorld    = 0x44000000
	mpichFloat        = 0x4c00040a
	mpichByte         = 0x4c00010d
	mpichSum          = 0x58000003
	mpichErrorsReturn = 0x54000001
)

// mpiCandidates are the sonames tried, the launcher's own family first.
func mpiCandidates(override string, l Launcher) []string {
	if override != "" {
		return []string{override}
	}
	switch l {
	case LaunchOpenMPI:
		return []string{"libmpi.so.40", "libmpi.so"}
	case LaunchPMI:
		return []string{"libmpi.so.12", "libmpich.so.12", "libmpi.so"}
	}
	return []string{"libmpi.so", "libmpi.so.40", "libmpi.so.12", "libmpich.so.12"}
}

func loadMPI(override string, l Launcher) (*mpiLib, error) {
	if runtime.GOOS != "linux" {
		return nil, &LoadError{Library: "libmpi", Err: fmt.Errorf("MPI is loaded on Linux only (this is %s)", runtime.GOOS), Install: mpiInstall}
	}
	var lib uintptr
	var err error
	var path string
	for _, path = range mpiCandidates(override, l) {
		// RTLD_GLOBAL: Open MPI's components, opened by libmpi itself,
		// resolve symbols of libmpi and libopen-pal through the global
		// scope.
		if lib, err = purego.Dlopen(path, purego.RTLD_NOW|purego.RTLD_GLOBAL); err == nil {
			break
		}
	}
	if err != nil {
		return nil, &LoadError{Library: strings.Join(mpiCandidates(override, l), ", "), Err: err, Install: mpiInstall}
	}
	m := &mpiLib{path: path}
	for _, s := range []struct {
		p    *uintptr
		name string
	}{
		{&m.initThread, "MPI_Init_thread"},
		{&m.finalize, "MPI_Finalize"},
		{&m.abort, "MPI_Abort"},
		{&m.commRank, "MPI_Comm_rank"},
		{&m.commSize, "MPI_Comm_size"},
		{&m.commSetErrhandler, "MPI_Comm_set_errhandler"},
		{&m.allreduce, "MPI_Allreduce"},
		{&m.bcast, "MPI_Bcast"},
		{&m.barrier, "MPI_Barrier"},
		{&m.allgather, "MPI_Allgather"},
		{&m.errorString, "MPI_Error_string"},
	} {
		if *s.p, err = purego.Dlsym(lib, s.name); err != nil {
			return nil, &LoadError{Library: path, Err: fmt.Errorf("entry point %s missing: %v", s.name, err), Install: mpiInstall}
		}
	}
	if getVersion, err := purego.Dlsym(lib, "MPI_Get_library_version"); err == nil {
		buf := make([]byte, 8192) // MPICH's MPI_MAX_LIBRARY_VERSION_STRING, the larger
		var n int32
		purego.SyscallN(getVersion, uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&n)))
		v := string(bytes.TrimRight(buf[:max(0, min(int(n), len(buf)))], "\x00"))
		// "Open MPI v4.1.4, package: ...", "MPICH Version:\t4.0.2\n...":
		// the first field, for messages.
		first, _, _ := strings.Cut(strings.TrimSpace(v), "\n")
		first, _, _ = strings.Cut(first, ",")
		m.version = strings.Join(strings.Fields(first), " ")
	}
	if world, err := purego.Dlsym(lib, "ompi_mpi_comm_world"); err == nil {
		m.ompi = true
		m.commWorld = world
		for _, s := range []struct {
			p    *uintptr
			name string
		}{
			{&m.float, "ompi_mpi_float"},
			{&m.byte_, "ompi_mpi_byte"},
			{&m.sum, "ompi_mpi_op_sum"},
			{&m.errorsReturn, "ompi_mpi_errors_return"},
		} {
			if *s.p, err = purego.Dlsym(lib, s.name); err != nil {
				return nil, &LoadError{Library: path, Err: fmt.Errorf("Open MPI handle %s missing: %v", s.name, err), Install: mpiInstall}
			}
		}
		m.inPlace = 1 // Open MPI: (void *) 1
		return m, nil
	}
	if !mpichFamily(m.version) {
		return nil, &LoadError{Library: path, Err: fmt.Errorf("neither Open MPI nor an MPICH-ABI library (it says %q)", m.version), Install: mpiInstall}
	}
	m.commWorld, m.float, m.byte_, m.sum, m.errorsReturn = mpichCommWorld, mpichFloat, mpichByte, mpichSum, mpichErrorsReturn
	m.inPlace = ^uintptr(0) // MPICH: (void *) -1
	return m, nil
}

func mpichFamily(version string) bool {
	v := strings.ToLower(version)
	for _, name := range []string{"mpich", "intel", "mvapich", "cray"} {
		if strings.Contains(v, name) {
			return true
		}
	}
	return false
}

// call runs an MPI function and returns its error code. Like
// purego.SyscallN it keeps the Go memory its uintptr(unsafe.Pointer)
// arguments reach alive and in place for the call.
//
//go:uintptrescapes
func mpiCall(fn uintptr, args ...uintptr) int32 {
	r, _, _ := purego.SyscallN(fn, args...)
	return int32(r)
}

// identity is what each rank tells the others at start-up, for the
// messages about a rank that stopped.
type identity struct {
	pid  int
	host string
}

const identityBytes = 8 + 64

func (id identity) encode() []byte {
	b := make([]byte, identityBytes)
	binary.LittleEndian.PutUint32(b, uint32(id.pid))
	copy(b[8:], id.host)
	return b
}

func decodeIdentity(b []byte) identity {
	return identity{pid: int(binary.LittleEndian.Uint32(b)), host: string(bytes.TrimRight(b[8:identityBytes], "\x00"))}
}

// mpiComm is the MPI engine. Every MPI call runs on one goroutine locked
// to its OS thread (the thread that called MPI_Init_thread, so a library
// that grants only MPI_THREAD_FUNNELED is served too); the caller waits for
// it with a timeout, which a collective stuck on a missing rank runs into.
type mpiComm struct {
	lib        *mpiLib
	rank, size int
	local      int
	peers      []identity
	timeout    time.Duration
	ops        chan func()
	busy       atomic.Bool
	fault      faultState
	closed     bool
}

func openMPI(opts Options) (*mpiComm, error) {
	// UCX, the transport under MPICH (and under Open MPI's pml ucx),
	// installs handlers for SIGSEGV, SIGBUS, SIGILL and SIGFPE that print a
	// backtrace and re-raise the signal: they replace the Go runtime's, and
	// a nil dereference that Go would turn into a panic kills the process.
	// An empty list keeps them out; the user's own setting wins. UCX
	// reads it when it is loaded, with libmpi.
	if _, set := os.LookupEnv("UCX_ERROR_SIGNALS"); !set {
		os.Setenv("UCX_ERROR_SIGNALS", "")
	}
	lib, err := loadMPI(opts.MPILibrary, opts.Launch.Launcher)
	if err != nil {
		return nil, err
	}
	m := &mpiComm{lib: lib, timeout: opts.Timeout, ops: make(chan func())}
	started := make(chan error)
	go m.worker(started)
	if err := <-started; err != nil {
		return nil, err
	}
	l := opts.Launch
	if l.Size > 1 && (m.size != l.Size || m.rank != l.Rank) {
		m.Close()
		return nil, fmt.Errorf("collective: %s (%s) says rank %d of %d, the %s launcher rank %d of %d: is it the MPI of the launcher? (set %s)",
			lib.path, lib.version, m.rank, m.size, l.Launcher, l.Rank, l.Size, EnvLibMPI)
	}
	host, _ := os.Hostname()
	me := identity{pid: os.Getpid(), host: host}.encode()
	all := make([]byte, identityBytes*m.size)
	err = m.do("exchange of host names", 0, func() int32 {
		return mpiCall(lib.allgather, uintptr(unsafe.Pointer(&me[0])), identityBytes, lib.byte_,
			uintptr(unsafe.Pointer(&all[0])), identityBytes, lib.byte_, lib.commWorld)
	})
	if err != nil {
		m.Close()
		return nil, err
	}
	m.peers = make([]identity, m.size)
	for r := range m.peers {
		m.peers[r] = decodeIdentity(all[r*identityBytes:])
		if r < m.rank && m.peers[r].host == m.peers[m.rank].host {
			m.local++
		}
	}
	if l.LocalRank >= 0 && l.Size > 1 {
		m.local = l.LocalRank
	}
	return m, nil
}

func (m *mpiComm) worker(started chan<- error) {
	runtime.LockOSThread() // for the life of the communicator
	var provided int32
	rc := mpiCall(m.lib.initThread, 0, 0, mpiThreadMultiple, uintptr(unsafe.Pointer(&provided)))
	if rc != 0 {
		started <- fmt.Errorf("collective: MPI_Init_thread (%s) failed with code %d", m.lib.path, rc)
		return
	}
	if provided < mpiThreadFunneled {
		started <- fmt.Errorf("collective: %s grants thread level %d, fmgpu needs MPI_THREAD_FUNNELED", m.lib.path, provided)
		return
	}
	// Errors come back as codes (reported with MPI_Error_string) rather
	// than aborting inside the library.
	mpiCall(m.lib.commSetErrhandler, m.lib.commWorld, m.lib.errorsReturn)
	var rank, size int32
	mpiCall(m.lib.commRank, m.lib.commWorld, uintptr(unsafe.Pointer(&rank)))
	mpiCall(m.lib.commSize, m.lib.commWorld, uintptr(unsafe.Pointer(&size)))
	m.rank, m.size = int(rank), int(size)
	started <- nil
	for f := range m.ops {
		m.busy.Store(true)
		f()
		m.busy.Store(false)
	}
}

func (m *mpiComm) errorString(code int32) string {
	buf := make([]byte, 1024)
	var n int32
	if mpiCall(m.lib.errorString, uintptr(code), uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&n))) != 0 {
		return fmt.Sprintf("MPI error %d", code)
	}
	return string(bytes.TrimRight(buf[:max(0, min(int(n), len(buf)))], "\x00"))
}

// do runs f on the MPI thread and waits for it, at most the timeout.
func (m *mpiComm) do(what string, count int, f func() int32) error {
	if m.closed {
		return ErrClosed
	}
	if err := m.fault.get(); err != nil {
		return err
	}
	done := make(chan error, 1)
	m.ops <- func() {
		if rc := f(); rc != 0 {
			done <- fmt.Errorf("collective: mpi %s on rank %d: %s", what, m.rank, m.errorString(rc))
			return
		}
		done <- nil
	}
	t := time.NewTimer(m.timeout)
	defer t.Stop()
	select {
	case err := <-done:
		if err != nil {
			m.fault.set(err)
		}
		return err
	case <-t.C:
		err := m.stuck(what, count)
		m.fault.set(err)
		return err
	}
}

// stuck explains a collective that did not complete: a rank of this node
// whose process has ended is named; others cannot be checked from here.
func (m *mpiComm) stuck(what string, count int) error {
	op := what
	if count > 0 {
		op = fmt.Sprintf("%s of %d floats", what, count)
	}
	if len(m.peers) != m.size {
		return fmt.Errorf("collective: mpi %s on rank %d did not complete within %v: a rank did not join", op, m.rank, m.timeout)
	}
	return fmt.Errorf("collective: mpi %s on rank %d did not complete within %v: %s", op, m.rank, m.timeout, diagnoseStuck(m.rank, m.peers))
}

// diagnoseStuck says why a collective of rank may not complete: the ranks
// of its node whose process has ended are named; ranks on other nodes
// cannot be checked from here.
func diagnoseStuck(rank int, peers []identity) string {
	me := peers[rank]
	var gone, remote []int
	for r, p := range peers {
		switch {
		case r == rank:
		case p.host != me.host:
			remote = append(remote, r)
		case !processAlive(p.pid):
			gone = append(gone, r)
		}
	}
	why := "every rank of this node is still running (one stopped calling collectives, or calls them in another order)"
	if len(gone) > 0 {
		var s []string
		for _, r := range gone {
			s = append(s, fmt.Sprintf("rank %d (pid %d)", r, peers[r].pid))
		}
		why = strings.Join(s, ", ") + " has exited"
		if len(gone) > 1 {
			why = strings.Join(s, ", ") + " have exited"
		}
	} else if len(remote) > 0 {
		why = fmt.Sprintf("no rank of this node has exited; %s on other nodes cannot be checked from here", rankList(remote))
	}
	return why
}

// processAlive reports whether pid is a running process of this node (a
// zombie, dead but not yet reaped by its launcher, is not).
func processAlive(pid int) bool {
	if pid <= 0 {
		return true
	}
	if err := syscall.Kill(pid, 0); err == syscall.ESRCH {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return !os.IsNotExist(err)
	}
	// pid (comm) state ...: the state follows the last ')'.
	if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) {
		return stat[i+2] != 'Z' && stat[i+2] != 'X'
	}
	return true
}

func (m *mpiComm) Engine() Engine { return EngineMPI }
func (m *mpiComm) Rank() int      { return m.rank }
func (m *mpiComm) Size() int      { return m.size }
func (m *mpiComm) LocalRank() int { return m.local }

// maxMPICount is the largest count passed in one call (MPI counts are C
// ints); longer buffers go in pieces.
const maxMPICount = 1 << 30

// agreeEngine is the first collective of every rank an MPI launcher
// started, whichever engine the rank opens over MPI: its own MPI engine
// (CPUs) or NCCL bootstrapped through MPI (GPUs). Ranks that chose
// different engines (--device cuda beside --device cpu, or auto on a mix
// of hosts with and without a GPU) would otherwise meet in mismatched
// calls, a broadcast of NCCL's id against a sum, and wait without end.
func (m *mpiComm) agreeEngine(e Engine) error {
	code := float32(1)
	if e == EngineNCCL {
		code = 2
	}
	x := []float32{code}
	if err := m.AllReduceSum(Host(x)); err != nil {
		return err
	}
	if n := float32(m.Size()); x[0] != code*n {
		nccl := int(x[0] - n) // the ranks that chose NCCL
		return fmt.Errorf("collective: the ranks chose different engines: %d of %d on GPUs (NCCL), %d on CPUs (MPI), this rank %s; give every rank the same --device (and, with auto, a GPU to every rank or to none)", nccl, m.Size(), m.Size()-nccl, e)
	}
	return nil
}

func (m *mpiComm) AllReduceSum(b Buffer) error {
	if b.onDev {
		return fmt.Errorf("collective: the mpi engine reduces host buffers; a device buffer needs the nccl engine")
	}
	x := b.host
	for off := 0; off < len(x); off += maxMPICount {
		part := x[off:min(len(x), off+maxMPICount)]
		err := m.do("all-reduce", len(x), func() int32 {
			return mpiCall(m.lib.allreduce, m.lib.inPlace, uintptr(unsafe.Pointer(&part[0])), uintptr(len(part)),
				m.lib.float, m.lib.sum, m.lib.commWorld)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func (m *mpiComm) Broadcast(b Buffer) error {
	if b.onDev {
		return fmt.Errorf("collective: the mpi engine broadcasts host buffers; a device buffer needs the nccl engine")
	}
	x := b.host
	for off := 0; off < len(x); off += maxMPICount {
		part := x[off:min(len(x), off+maxMPICount)]
		err := m.do("broadcast", len(x), func() int32 {
			return mpiCall(m.lib.bcast, uintptr(unsafe.Pointer(&part[0])), uintptr(len(part)), m.lib.float, 0, m.lib.commWorld)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// broadcastBytes sends rank 0's b to every rank (the NCCL unique id).
func (m *mpiComm) broadcastBytes(b []byte) error {
	return m.do("broadcast of the NCCL id", 0, func() int32 {
		return mpiCall(m.lib.bcast, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), m.lib.byte_, 0, m.lib.commWorld)
	})
}

func (m *mpiComm) Barrier() error {
	return m.do("barrier", 0, func() int32 { return mpiCall(m.lib.barrier, m.lib.commWorld) })
}

// Abort ends the job through MPI_Abort: the launcher kills every rank and
// names this one. If the MPI thread is stuck in a collective the call is
// made from this thread (a library at MPI_THREAD_MULTIPLE allows it; the
// others abort all the same in practice).
func (m *mpiComm) Abort(reason error) {
	if m.closed {
		return
	}
	m.closed = true
	code := abortCode(reason)
	abort := func() { mpiCall(m.lib.abort, m.lib.commWorld, uintptr(code)) }
	if m.busy.Load() {
		abort()
	} else {
		done := make(chan struct{})
		m.ops <- func() { abort(); close(done) }
		select {
		case <-done:
		case <-time.After(30 * time.Second):
		}
	}
	// MPI_Abort does not return where the library can kill the job.
	os.Exit(code)
}

// abortCode is the exit status an abort for reason asks the launcher to
// end the job with: the reason's own (ExitCode, as a command's usage
// error: 2, so that mpirun exits as a single process would), else 1.
func abortCode(reason error) int {
	var ec interface{ ExitCode() int }
	if errors.As(reason, &ec) && ec.ExitCode() > 0 && ec.ExitCode() < 256 {
		return ec.ExitCode()
	}
	return 1
}

// Close finalizes MPI. After a fault it does not (MPI_Finalize would wait
// for the missing rank): it returns the fault, and the process's exit
// tells the launcher.
func (m *mpiComm) Close() error {
	if m.closed {
		return nil
	}
	m.closed = true
	if err := m.fault.get(); err != nil {
		return err
	}
	done := make(chan int32, 1)
	m.ops <- func() { done <- mpiCall(m.lib.finalize) }
	close(m.ops)
	select {
	case rc := <-done:
		if rc != 0 {
			return fmt.Errorf("collective: MPI_Finalize on rank %d failed with code %d", m.rank, rc)
		}
	case <-time.After(m.timeout):
		return fmt.Errorf("collective: MPI_Finalize on rank %d did not complete within %v", m.rank, m.timeout)
	}
	return nil
}
