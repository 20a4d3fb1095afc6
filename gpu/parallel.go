package gpu

import (
	"runtime"
	"sync"

	"github.com/fmgpu/fmgpu/internal/sgemm"
)

// task is the loop body of one op over the index range [lo, hi). Ops keep
// their task structs inside the backend and pass pointers to them, so that
// splitting work over the pool allocates nothing.
type task interface{ run(lo, hi int) }

// workPool splits the CPU backend's ops over sgemm's worker pool: the
// goroutines that compute the matrix products also run the elementwise
// ops and reductions between them, so one set of workers (spinning
// briefly between calls, see sgemm's pool.go) serves the whole training
// step, instead of two pools taking turns on the same cores.
type workPool struct {
	n int // ranges an op is cut into (the backend's thread count)

	mu   sync.Mutex
	free []*loopBody
}

// loopBody adapts a task to sgemm.Task; recycled so do allocates nothing.
type loopBody struct{ t task }

func (l *loopBody) Run(lo, hi int) { l.t.run(lo, hi) }

func newWorkPool(n int) *workPool {
	return &workPool{n: max(n, 1)}
}

// minParallelWork is the rough flop count below which an op runs on the
// calling goroutine: handing work to another core costs a microsecond or
// two even when the workers are awake.
const minParallelWork = 1 << 15

// do runs t over [0, n) in at most p.n contiguous ranges; work is the rough
// cost of one index in flops. The ranges are spread over the shared pool
// (at most sgemm.Threads() run at once); each index runs exactly once, and
// tasks write per-range results to fixed places, so results do not depend
// on the thread count.
func (p *workPool) do(t task, n, work int) {
	if n*work < minParallelWork || p.n == 1 || n < 2 {
		t.run(0, n)
		return
	}
	l := p.get()
	l.t = t
	sgemm.ParallelFor(l, n, min(p.n, n))
	l.t = nil
	p.put(l)
}

func (p *workPool) get() *loopBody {
	p.mu.Lock()
	defer p.mu.Unlock()
	if k := len(p.free); k > 0 {
		l := p.free[k-1]
		p.free = p.free[:k-1]
		return l
	}
	return &loopBody{}
}

func (p *workPool) put(l *loopBody) {
	p.mu.Lock()
	p.free = append(p.free, l)
	p.mu.Unlock()
}

func defaultThreads() int { return runtime.GOMAXPROCS(0) }
