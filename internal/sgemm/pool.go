package sgemm

import (
	"runtime"
	"sync"
	"sync/atomic"
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
	units int  // MR-row or NR-column panels (dotBlock rows on the dot path)
	bufs  []buffers
	tasks []task
	wg    sync.WaitGroup
	tmp   []float32 // C^T for the tiny-n path, B^T for the dot path
	p     problem

	bsh      []float32 // shared packed B
	np       int       // NR-column panels of B
	chunk    int64     // units per grab
	next     atomic.Int64
	packNext atomic.Int64
	packDone atomic.Int64
	// packUnits: panels x k-blocks of B to pack into bsh before computing.
	packUnits int64
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
//
// Work is handed out dynamically: the caller and the woken workers take
// chunks of MR-row (or NR-column) panels from an atomic counter, so a
// late or preempted worker delays nothing. A transposed B is first packed
// once into a shared buffer, panel by panel, by all parts together.
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
	j.packUnits = 0
	shared := tuneShared && pr.transB && !pr.dot && parts > 1 && pr.k*np*K.nr <= maxSharedB
	switch {
	case pr.dot:
		// Rows in blocks of dotBlock.
		j.byM, j.units = true, (pr.m+dotBlock-1)/dotBlock
	case !shared && pr.transB && np >= parts && mp < 8*np:
		// B is packed per part but A is read in place: splitting columns
		// packs each B panel once, while splitting rows would pack all of
		// B on every part. Worth it unless A is much larger than B.
		j.byM, j.units = false, np
	case mp >= np:
		j.byM, j.units = true, mp
	default:
		j.byM, j.units = false, np
	}
	if shared {
		need := pr.k * np * K.nr
		if cap(j.bsh) < need {
			j.bsh = make([]float32, need)
		}
		pr.bsh = j.bsh[:need]
		pr.pcStride = K.kc * np * K.nr
		j.np = np
		j.packUnits = int64(((pr.k + K.kc - 1) / K.kc) * np)
	}
	parts = min(parts, j.units)
	j.parts = parts
	j.chunk = int64(max(1, j.units/(parts*tuneChunks)))
	if parts == 1 {
		j.chunk = int64(j.units)
	}
	j.next.Store(0)
	j.packNext.Store(0)
	j.packDone.Store(0)
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

const (
	// chunksPerPart: work is cut into about this many chunks per part.
	chunksPerPart = 1
	// maxSharedB bounds (in floats) the shared packed copy of a
	// transposed B; larger ones are packed per part and per block.
	maxSharedB = 4 << 20
)

func (j *job) runPart(part int) {
	pr := j.prob
	K := pr.kern
	if j.packUnits > 0 {
		for {
			u := j.packNext.Add(1) - 1
			if u >= j.packUnits {
				break
			}
			t, q := int(u)/j.np, int(u)%j.np
			pc := t * K.kc
			kb := min(K.kc, pr.k-pc)
			off := t*pr.pcStride + q*kb*K.nr
			packBT(pr.bsh[off:off+kb*K.nr], pr.b, pr.ldb, q*K.nr, min(K.nr, pr.n-q*K.nr), pc, kb, K.nr)
			j.packDone.Add(1)
		}
		for j.packDone.Load() < j.packUnits {
			runtime.Gosched()
		}
	}
	units := int64(j.units)
	for {
		u0 := j.next.Add(j.chunk) - j.chunk
		if u0 >= units {
			return
		}
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

var (
	tuneShared = true
	tuneChunks = chunksPerPart
)
