package gpu

import (
	"runtime"
	"sync"
)

// task is the loop body of one op over the index range [lo, hi). Ops keep
// their task structs inside the backend and pass pointers to them, so that
// splitting work over the pool allocates nothing.
type task interface{ run(lo, hi int) }

// workPool runs the CPU backend's ops over a fixed set of goroutines. One
// op runs at a time: the backend is not safe for concurrent use.
type workPool struct {
	n    int
	jobs chan poolJob
	wg   sync.WaitGroup
}

type poolJob struct {
	t      task
	lo, hi int
}

func newWorkPool(n int) *workPool {
	if n < 1 {
		n = 1
	}
	p := &workPool{n: n, jobs: make(chan poolJob, n)}
	for i := 1; i < n; i++ { // the caller is worker 0
		go func() {
			for j := range p.jobs {
				j.t.run(j.lo, j.hi)
				p.wg.Done()
			}
		}()
	}
	return p
}

func (p *workPool) close() { close(p.jobs) }

// minParallelWork is the rough flop count below which an op runs on the
// calling goroutine: handing work to another core costs microseconds.
const minParallelWork = 1 << 15

// do runs t over [0, n) in at most p.n contiguous chunks; work is the rough
// cost of one index in flops.
func (p *workPool) do(t task, n, work int) {
	parts := p.n
	if n*work < minParallelWork || parts == 1 || n < 2 {
		t.run(0, n)
		return
	}
	parts = min(parts, n)
	chunk := (n + parts - 1) / parts
	for i := 1; i < parts; i++ {
		lo := i * chunk
		if lo >= n {
			break
		}
		p.wg.Add(1)
		p.jobs <- poolJob{t: t, lo: lo, hi: min(lo+chunk, n)}
	}
	t.run(0, min(chunk, n))
	p.wg.Wait()
}

func defaultThreads() int { return runtime.GOMAXPROCS(0) }
