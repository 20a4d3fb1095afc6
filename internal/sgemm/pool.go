package sgemm

import (
	"math/bits"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// buffers are one worker's packing space, reused across calls.
type buffers struct {
	b    []float32 // packed B panels (kc x nc)
	a    []float32 // packed A panel (kc x MR)
	tile []float32 // MR x NR scratch tile for partial column panels
}

// job is the state of one call; jobs are recycled through a free list so
// that a call in steady state allocates nothing.
type job struct {
	prob  *problem
	parts int
	byM   bool // split rows (else columns) among parts
	units int  // MR-row or NR-column panels (dotBlock rows on the dot path)
	bufs  []buffers
	tasks []task
	// pending counts the parts posted or running on workers.
	pending atomic.Int32
	claim   []atomic.Int32 // per part: claimIdle, claimPosted, ...
	tmp     []float32      // C^T for the tiny-n path, B^T for the dot path
	ep      Epilogue       // copy of the caller's epilogue
	p       problem

	chunk int64 // units per range
	// Ranges [r*chunk, (r+1)*chunk) of units are claimed by setting bit r
	// of claimed (more than 64 ranges: taken in order from next).
	ranges  int
	claimed atomic.Uint64
	next    atomic.Int64

	loop Task // ParallelFor: the loop body (nil for a product)
}

// dotBlock: rows per unit of work on the dot path.
const dotBlock = 48

type task struct {
	j    *job
	part int
}

var (
	poolOnce sync.Once
	poolSize int // total parts, including the caller
	work     chan *task

	jobMu   sync.Mutex
	jobFree []*job
)

func startPool() {
	poolSize = max(1, runtime.GOMAXPROCS(0))
	work = make(chan *task, 4*poolSize)
	for i := 1; i < poolSize; i++ {
		go worker()
	}
}

func worker() {
	for {
		t := nextTask()
		j := t.j
		if !j.claim[t.part].CompareAndSwap(claimPosted, claimRunning) {
			// The caller did this part itself (or the message is stale).
			continue
		}
		j.runPart(t.part)
		// The last access to the job: the caller may reuse it at once.
		j.pending.Add(-1)
	}
}

// States of a part handed to the pool. A worker runs a part only if it
// moves it from posted to running; the caller cancels the parts no worker
// has claimed once it has run out of chunks, so it never waits for a
// worker that has not started (one descheduled by the OS, say). A message
// left in the queue by a cancelled part is discarded by whichever worker
// takes it, or, if the job has been reused and the part posted again,
// runs that part: messages for one (job, part) are interchangeable.
const (
	claimIdle int32 = iota
	claimPosted
	claimRunning
	claimCancelled
)

// spinTime: how long an idle worker polls for the next task before it
// parks. Products come in bursts (a training step is a chain of them), and
// a parked goroutine takes tens of microseconds to wake: with the caller
// also waiting without parking, this took the 256^3 product from about
// 165 to 210 GFLOP/s on 2 cores (the MLP step at batch 256 from 147 to
// 179). The cost is up to 50 µs of one core polling after each product.
const spinTime = 50 * time.Microsecond

func nextTask() *task {
	deadline := time.Now().Add(spinTime)
	for i := 0; ; i++ {
		select {
		case t := <-work:
			return t
		default:
		}
		if i%32 == 31 && time.Now().After(deadline) {
			return <-work
		}
	}
}

func getJob() *job {
	poolOnce.Do(startPool)
	jobMu.Lock()
	if n := len(jobFree); n > 0 {
		j := jobFree[n-1]
		jobFree = jobFree[:n-1]
		jobMu.Unlock()
		return j
	}
	jobMu.Unlock()
	j := &job{bufs: make([]buffers, poolSize), tasks: make([]task, poolSize), claim: make([]atomic.Int32, poolSize)}
	for i := range j.tasks {
		j.tasks[i] = task{j: j, part: i}
	}
	return j
}

func putJob(j *job) {
	j.loop = nil
	j.prob = nil
	j.p = problem{}
	j.ep = Epilogue{}
	jobMu.Lock()
	jobFree = append(jobFree, j)
	jobMu.Unlock()
}

// run computes the product pr, split over the pool when large enough.
//
// The panels are cut into one chunk per part (static halves keep the
// blocks of A and B each part streams small enough for its L2), but the
// chunks are claimed (see grab): part i takes chunk i if it is still free,
// and when a worker wakes late or is preempted, the caller takes its chunk
// instead of waiting. (Finer chunks
// and a shared packed B were measured slower on the MLP shapes: each
// chunk then streams a whole kc x n block of B through L2.)
func (j *job) run(in *problem) {
	j.p = *in
	pr := &j.p
	j.prob = pr
	K := pr.kern
	parts := 1
	work := pr.m * pr.n * pr.k
	if pr.ep != nil && pr.ep.Act == ActSiLU {
		// The SiLU costs about as much as epiSiLUWork multiply-adds.
		work += pr.m * pr.n * epiSiLUWork
	}
	if work >= parallelMNK {
		parts = poolSize
	}
	mp := (pr.m + K.mr - 1) / K.mr
	np := (pr.n + K.nr - 1) / K.nr
	switch {
	case pr.dot:
		// Rows in blocks of dotBlock.
		j.byM, j.units = true, (pr.m+dotBlock-1)/dotBlock
	case pr.transB && np >= parts && mp < 8*np && pr.ep == nil:
		// B is packed per part but A is read in place: splitting columns
		// packs each B panel once, while splitting rows would pack all of
		// B on every part. Worth it unless A is much larger than B, or
		// there is an epilogue: split by columns, its stores of C and
		// Pre ran 2 to 4 times slower than split by rows (measured
		// 256x512x512 with bias, SiLU and Pre: 850-1065 µs by columns,
		// 675 by rows; 256x256x256: 180 against 168).
		j.byM, j.units = false, np
	case mp >= np:
		j.byM, j.units = true, mp
	default:
		j.byM, j.units = false, np
	}
	parts = min(parts, j.units)
	j.chunk = int64(max(1, j.units/(parts*chunksPerPart)))
	if parts == 1 {
		j.chunk = int64(j.units)
	}
	j.dispatch(parts)
}

// dispatch runs j.units units, j.chunk per grab, on the caller and up to
// parts-1 workers, and returns when all are done.
func (j *job) dispatch(parts int) {
	j.parts = parts
	j.ranges = int((int64(j.units) + j.chunk - 1) / j.chunk)
	j.claimed.Store(0)
	j.next.Store(0)
	if parts == 1 {
		j.runPart(0)
		return
	}
	j.pending.Store(0)
	for i := 1; i < parts; i++ {
		j.pending.Add(1)
		j.claim[i].Store(claimPosted)
		select {
		case work <- &j.tasks[i]:
		default:
			// Queue full (stale messages, or many concurrent callers):
			// run it here, unless a stale message has claimed it already.
			if j.claim[i].CompareAndSwap(claimPosted, claimCancelled) {
				j.pending.Add(-1)
			}
		}
	}
	j.runPart(0)
	for i := 1; i < parts; i++ {
		if j.claim[i].CompareAndSwap(claimPosted, claimCancelled) {
			j.pending.Add(-1)
		}
	}
	// Wait for the workers that started, without parking: a parked
	// goroutine takes tens of microseconds to wake, the time of a whole
	// 256^3 product on one core. Yield while they finish their chunks;
	// sleep if one is slow.
	for i := 0; j.pending.Load() != 0; i++ {
		if i < waitYields {
			runtime.Gosched()
		} else {
			time.Sleep(20 * time.Microsecond)
		}
	}
}

// waitYields bounds how often the caller yields before sleeping.
const waitYields = 2000

// chunksPerPart: work is cut into about this many chunks per part.
const chunksPerPart = 1

func (j *job) runPart(part int) {
	if j.loop != nil {
		j.runLoop(part)
		return
	}
	pr := j.prob
	K := pr.kern
	units := int64(j.units)
	for r := j.grab(part, true); r >= 0; r = j.grab(part, false) {
		u0 := int64(r) * j.chunk
		u1 := int(min(u0+j.chunk, units))
		switch {
		case pr.dot:
			pr.dotRegion(min(pr.m, int(u0)*dotBlock), min(pr.m, u1*dotBlock))
		case j.byM:
			pr.region(&j.bufs[part], int(u0)*K.mr, min(pr.m, u1*K.mr), 0, pr.n)
		default:
			pr.region(&j.bufs[part], 0, pr.m, int(u0)*K.nr, min(pr.n, u1*K.nr))
		}
	}
}

// grab claims the next range for part and returns its index, or -1 when
// none is left. A part first claims range number part (first == true):
// so the same core computes the same rows or columns of each call, whose
// operands and results then stay in its caches from one call to the next
// (a training step's products and elementwise ops split their rows alike);
// then it takes any unclaimed range, so a worker that starts late, or is
// preempted, costs nothing: its range is done by another.
func (j *job) grab(part int, first bool) int {
	if j.ranges > 64 {
		r := j.next.Add(1) - 1
		if r >= int64(j.ranges) {
			return -1
		}
		return int(r)
	}
	all := uint64(1)<<j.ranges - 1
	if j.ranges == 64 {
		all = ^uint64(0)
	}
	if first && part < j.ranges {
		bit := uint64(1) << part
		for {
			c := j.claimed.Load()
			if c&bit != 0 {
				break
			}
			if j.claimed.CompareAndSwap(c, c|bit) {
				return part
			}
		}
	}
	for {
		c := j.claimed.Load()
		free := all &^ c
		if free == 0 {
			return -1
		}
		r := bits.TrailingZeros64(free)
		if j.claimed.CompareAndSwap(c, c|1<<r) {
			return r
		}
	}
}

// Task is the body of a parallel loop: Run(lo, hi) handles the indices
// lo <= i < hi. Keep the Task value in a long-lived place (a field of a
// struct reused from call to call) and pass a pointer to it: then
// ParallelFor allocates nothing.
type Task interface{ Run(lo, hi int) }

// Threads is the number of goroutines the pool computes on, the caller
// included: GOMAXPROCS when the pool started.
func Threads() int {
	poolOnce.Do(startPool)
	return poolSize
}

// ParallelFor calls t.Run over [0, n) cut into chunks contiguous ranges of
// ceil(n/chunks) indices (the last shorter), and returns when all have
// run. The ranges go to the caller and the pool's workers, the same
// workers that compute the products, up to Threads() at once: part i
// (the caller is part 0) first takes range i, so that successive loops
// over the same data split alike keep it in the same core's cache, then
// any range left, so a worker that starts late costs nothing (its range
// is run by another). Every range is run exactly once, but which goroutine
// runs which, and in what order, is not fixed: a loop whose result must
// not depend on the thread count writes each range's result to a place of
// its own (per-chunk partial sums added in order afterwards, say).
// chunks <= 1, or n small, runs t.Run(0, n) on the caller. ParallelFor may
// be called from a Task (the inner loop then runs where it can) and from
// several goroutines at once.
func ParallelFor(t Task, n, chunks int) {
	if n <= 0 {
		return
	}
	chunks = min(chunks, n)
	if chunks <= 1 {
		t.Run(0, n)
		return
	}
	j := getJob()
	j.loop = t
	j.units = n
	j.chunk = int64((n + chunks - 1) / chunks)
	chunks = int((int64(n) + j.chunk - 1) / j.chunk)
	j.dispatch(min(chunks, poolSize))
	putJob(j)
}

// runLoop runs ranges of a ParallelFor until none is left.
func (j *job) runLoop(part int) {
	units := int64(j.units)
	for r := j.grab(part, true); r >= 0; r = j.grab(part, false) {
		u0 := int64(r) * j.chunk
		j.loop.Run(int(u0), int(min(u0+j.chunk, units)))
	}
}
