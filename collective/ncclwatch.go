package collective

import (
	"fmt"
	"os"
	"runtime"
	"sync"
	"time"
	"unsafe"

	"github.com/fmgpu/fmgpu/internal/cudadriver"
)

// NCCL has no timeout of its own: a collective whose peer never comes
// (dead under a launcher that lets the others run, alive but stuck, or
// calling collectives in another order) waits on the GPU forever, and so
// does every host thread that synchronizes with its stream. The watchdog
// here is PyTorch's (its NCCL watchdog thread, TORCH_NCCL_ASYNC_ERROR_HANDLING):
// each collective is timed from the moment it is called until an event
// recorded on its stream after it has completed; one that takes longer
// than the timeout, or an asynchronous error of the communicator
// (ncclCommGetAsyncError: a failed connection), aborts the communicator
// (ncclCommAbort makes the kernels and the blocked calls return) and ends
// the rank with one line saying which collective and, where it can tell,
// which rank.
//
// The polling runs on a goroutine locked to an OS thread of its own, where
// the context of the collectives' streams is made current too: the thread
// that queued them may itself be blocked in a synchronization.

// watchPeriod is how often the watchdog polls, at most: a tenth of the
// timeout, so that a hang is seen within 10% of it, and no more than one
// poll a second (a query is a few microseconds).
func watchPeriod(timeout time.Duration) time.Duration {
	return min(max(timeout/10, 10*time.Millisecond), time.Second)
}

// collOp is one collective the watchdog times.
type collOp struct {
	what   string // "all-reduce", "broadcast"
	count  int
	start  time.Time
	ev     cudadriver.Event // recorded on the collective's stream after it
	queued bool             // the call returned and ev was recorded: done when ev is
}

// collWatch is the watchdog's state: the collectives not yet known to be
// complete, in the order they were called.
type collWatch struct {
	timeout time.Duration
	// query reports whether an event has completed, and eventsOK whether
	// events can be used at all (the driver has cuEventQuery and the
	// context is known); without, a collective counts as complete when its
	// call returns, which still catches the calls that block (the fake
	// libnccl's, NCCL's own under NCCL_BLOCKING_WAIT-like settings).
	query    func(cudadriver.Event) (bool, error)
	eventsOK bool
	now      func() time.Time

	mu      sync.Mutex
	pending []*collOp
	free    []cudadriver.Event
	fired   bool
}

// begin registers a collective about to be called.
func (w *collWatch) begin(what string, count int) *collOp {
	op := &collOp{what: what, count: count, start: w.now()}
	w.mu.Lock()
	w.pending = append(w.pending, op)
	w.mu.Unlock()
	return op
}

// takeEvent is an event to record after a collective, from the pool of
// completed ones or new (make runs on the context's thread).
func (w *collWatch) takeEvent(make func() (cudadriver.Event, error)) (cudadriver.Event, bool) {
	w.mu.Lock()
	if n := len(w.free); n > 0 {
		ev := w.free[n-1]
		w.free = w.free[:n-1]
		w.mu.Unlock()
		return ev, true
	}
	w.mu.Unlock()
	ev, err := make()
	return ev, err == nil
}

// queued marks op's call returned: ok, with ev recorded after it on its
// stream (complete when ev is), or not (the call failed, or events are
// not available: complete now).
func (w *collWatch) queued(op *collOp, ev cudadriver.Event, recorded bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if recorded {
		op.ev, op.queued = ev, true
		return
	}
	if ev != 0 {
		w.free = append(w.free, ev)
	}
	for i, p := range w.pending {
		if p == op {
			w.pending = append(w.pending[:i], w.pending[i+1:]...)
			break
		}
	}
}

// poll retires the completed collectives at the head of the queue and
// returns the oldest one still pending past the timeout (nil: none), or
// the error of a failed event query.
func (w *collWatch) poll() (*collOp, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for len(w.pending) > 0 {
		p := w.pending[0]
		if !p.queued {
			break // in its call
		}
		done, err := w.query(p.ev)
		if err != nil {
			return nil, err
		}
		if !done {
			break
		}
		w.free = append(w.free, p.ev)
		w.pending = w.pending[1:]
	}
	if len(w.pending) == 0 || w.fired {
		return nil, nil
	}
	if p := w.pending[0]; w.now().Sub(p.start) > w.timeout {
		w.fired = true
		return p, nil
	}
	return nil, nil
}

// events returns every event the watchdog holds, for destruction.
func (w *collWatch) events() []cudadriver.Event {
	w.mu.Lock()
	defer w.mu.Unlock()
	evs := append([]cudadriver.Event(nil), w.free...)
	for _, p := range w.pending {
		if p.ev != 0 {
			evs = append(evs, p.ev)
		}
	}
	w.free, w.pending = nil, nil
	return evs
}

// startWatch starts the watchdog of c, whose context is current on the
// calling thread; stopWatch stops it.
func (c *ncclComm) startWatch(timeout time.Duration) {
	w := &collWatch{timeout: timeout, now: time.Now, query: c.drv.EventQuery}
	var ctx cudadriver.Context
	if c.drv.HasEventQuery() {
		if cur, err := c.drv.CtxGetCurrent(); err == nil && cur != 0 {
			ctx = cur
		}
	}
	c.watch = w
	c.watchStop, c.watchDone = make(chan struct{}), make(chan struct{})
	ready := make(chan bool)
	go func() {
		defer close(c.watchDone)
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		ready <- ctx != 0 && c.drv.CtxSetCurrent(ctx) == nil
		t := time.NewTicker(watchPeriod(timeout))
		defer t.Stop()
		for {
			select {
			case <-c.watchStop:
				return
			case <-t.C:
			}
			if err := c.asyncError(); err != nil {
				c.watchFault(err)
				return
			}
			op, err := w.poll()
			if err != nil {
				c.watchFault(fmt.Errorf("collective: nccl watchdog on rank %d: %w", c.rank, err))
				return
			}
			if op != nil {
				c.watchFault(c.stuck(op))
				return
			}
		}
	}()
	w.eventsOK = <-ready // before any collective reads it
}

// asyncError is the communicator's asynchronous error (a failed
// connection to a peer, a peer's abort), nil while there is none.
func (c *ncclComm) asyncError() error {
	comm := c.comm.Load()
	if comm == 0 || c.fault.get() != nil {
		return nil
	}
	var async int32
	r := ncclCall(c.lib.commGetAsyncError, comm, uintptr(unsafe.Pointer(&async)))
	if r == 0 && async == 0 {
		return nil
	}
	if r == 0 {
		r = uintptr(async)
	}
	err := c.lib.errorf(fmt.Sprintf("nccl communicator of rank %d", c.rank), comm, r)
	if c.rv != nil {
		// A peer's failure reaches NCCL and the rendezvous at about the
		// same time; the rendezvous's report names the rank and its
		// reason, and wins.
		for i := 0; i < 100 && c.fault.get() == nil; i++ {
			time.Sleep(10 * time.Millisecond)
		}
		if c.fault.get() != nil {
			return nil
		}
	}
	return err
}

// stuck explains a collective that did not complete in time: the ranks of
// this node that have exited, where the bootstrap told who they are.
func (c *ncclComm) stuck(op *collOp) error {
	what := op.what
	if op.count > 0 {
		what = fmt.Sprintf("%s of %d floats", op.what, op.count)
	}
	var why string
	switch {
	case c.mpi != nil && len(c.mpi.peers) == c.size:
		why = diagnoseStuck(c.rank, c.mpi.peers)
	case c.rv != nil:
		// The rendezvous sees a peer process end at once, and would have
		// said so.
		why = "every rank is still running (one stopped calling collectives, or calls them in another order)"
	default:
		why = "the other ranks cannot be checked from here"
	}
	return fmt.Errorf("collective: nccl %s on rank %d did not complete within %v: %s", what, c.rank, c.watch.timeout, why)
}

// watchFault ends the run of a rank whose watchdog fired: the fault is
// recorded and the peers told over the rendezvous; then, by default, the
// rank writes the error and ends while its calls are still blocked, so
// that nothing else it prints comes first; with an OnFault of the
// owner's, the communicator is aborted (so that a call or a
// synchronization blocked on it returns) and the owner called.
func (c *ncclComm) watchFault(err error) {
	if !c.fault.set(err) {
		return
	}
	if c.onFault == nil {
		// The line first: once the peers know, they abort, and this
		// rank's blocked call may return (and its owner go on) before
		// the exit.
		fmt.Fprintf(os.Stderr, "fmgpu: %v\n", err)
		if c.rv != nil {
			c.rv.close(err)
		}
		c.exitOnFault(err)
	}
	if c.rv != nil {
		c.rv.close(err)
	}
	if c.commMu.TryLock() {
		if h := c.comm.Load(); h != 0 {
			ncclCall(c.lib.commAbort, h)
		}
		c.commMu.Unlock()
	}
	// On a goroutine of its own: the callback may Abort or Close c, which
	// waits for the watchdog to end.
	go c.reportFault(err)
}

// stopWatch stops the watchdog (not from its own goroutine) and destroys
// its events, on the context's thread.
func (c *ncclComm) stopWatch() {
	if c.watch == nil {
		return
	}
	select {
	case <-c.watchStop:
	default:
		close(c.watchStop)
	}
	<-c.watchDone
	for _, ev := range c.watch.events() {
		c.drv.EventDestroy(ev)
	}
}

// timed runs call, a collective of count floats queued on stream, under
// the watchdog.
func (c *ncclComm) timed(what string, count int, stream uintptr, call func() uintptr) uintptr {
	w := c.watch
	if w == nil {
		return call()
	}
	op := w.begin(what, count)
	r := call()
	var ev cudadriver.Event
	recorded := false
	if r == 0 && w.eventsOK {
		var ok bool
		// cuEventDisableTiming: a marker, cheaper to record.
		if ev, ok = w.takeEvent(func() (cudadriver.Event, error) { return c.drv.EventCreate(2) }); ok {
			recorded = c.drv.EventRecord(ev, cudadriver.Stream(stream)) == nil
		}
	}
	w.queued(op, ev, recorded)
	return r
}
