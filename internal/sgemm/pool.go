package sgemm

import (
	"runtime"
	"sync"
)

// buffers are one worker's packing space, reused across calls.
type buffers struct {
	b    []float32 // packed B panels (kc x nc)
	tile []float32 // MR x NR scratch tile for partial column panels
}

// job is the state of one call; jobs are recycled through a free list so
// that a call in steady state allocates nothing.
type job struct {
	prob  *problem
	parts int
	byM   bool // split rows (else columns) among parts
	units int  // MR-row or NR-column panels to split
	bufs  []buffers
	tasks []task
	wg    sync.WaitGroup
	tmp   []float32 // C^T for the tiny-n path
	p     problem
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
	for t := range work {
		t.j.runPart(t.part)
		t.j.wg.Done()
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
	j := &job{bufs: make([]buffers, poolSize), tasks: make([]task, poolSize)}
	for i := range j.tasks {
		j.tasks[i] = task{j: j, part: i}
	}
	return j
}

func putJob(j *job) {
	j.prob = nil
	j.p = problem{}
	jobMu.Lock()
	jobFree = append(jobFree, j)
	jobMu.Unlock()
}

// run computes the product pr, split over the pool when large enough.
func (j *job) run(in *problem) {
	j.p = *in
	pr := &j.p
	j.prob = pr
	K := pr.kern
	parts := 1
	if pr.m*pr.n*pr.k >= parallelMNK {
		parts = poolSize
	}
	mp := (pr.m + K.mr - 1) / K.mr
	np := (pr.n + K.nr - 1) / K.nr
	switch {
	case pr.dot:
		// Rows in blocks of dotBlock.
		j.byM, j.units = true, (pr.m+dotBlock-1)/dotBlock
	case pr.transB && np >= parts && mp < 8*np:
		// B is packed but A is read in place: splitting columns packs
		// each B panel once, while splitting rows would pack all of B on
		// every part. Worth it unless A is much larger than B.
		j.byM, j.units = false, np
	case mp >= np:
		j.byM, j.units = true, mp
	default:
		j.byM, j.units = false, np
	}
	parts = min(parts, j.units)
	j.parts = parts
	if parts == 1 {
		j.runPart(0)
		return
	}
	j.wg.Add(parts - 1)
	for i := 1; i < parts; i++ {
		work <- &j.tasks[i]
	}
	j.runPart(0)
	j.wg.Wait()
}

func (j *job) runPart(part int) {
	pr := j.prob
	u0 := part * j.units / j.parts
	u1 := (part + 1) * j.units / j.parts
	if pr.dot {
		pr.dotRegion(min(pr.m, u0*dotBlock), min(pr.m, u1*dotBlock))
		return
	}
	if j.byM {
		pr.region(&j.bufs[part], u0*pr.kern.mr, min(pr.m, u1*pr.kern.mr), 0, pr.n)
	} else {
		pr.region(&j.bufs[part], 0, pr.m, u0*pr.kern.nr, min(pr.n, u1*pr.kern.nr))
	}
}
