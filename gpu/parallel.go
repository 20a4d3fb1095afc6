package gpu

import (
	"runtime"
	"sync"
)

// workPool runs the CPU backend's ops over a fixed set of goroutines, so an
// op splits its rows over the cores without starting goroutines per call.
type workPool struct {
	n    int
	jobs chan poolJob
}

type poolJob struct {
	fn     func(lo, hi int)
	lo, hi int
	wg     *sync.WaitGroup
}

func newWorkPool(n int) *workPool {
	if n < 1 {
		n = 1
	}
	p := &workPool{n: n, jobs: make(chan poolJob, 4*n)}
	for i := 1; i < n; i++ { // the caller is worker 0
		go func() {
			for j := range p.jobs {
				j.fn(j.lo, j.hi)
				j.wg.Done()
			}
		}()
	}
	return p
}

func (p *workPool) close() { close(p.jobs) }

// parallelFor calls fn over [0, n) in at most p.n contiguous chunks. work
// is the cost of one index in rough flops: below minParallelWork in all, the
// op runs on the calling goroutine.
func (p *workPool) parallelFor(n, work int, fn func(lo, hi int)) {
	const minParallelWork = 1 << 15
	parts := p.n
	if n*work < minParallelWork || parts == 1 || n < 2 {
		fn(0, n)
		return
	}
	if parts > n {
		parts = n
	}
	var wg sync.WaitGroup
	wg.Add(parts - 1)
	chunk := (n + parts - 1) / parts
	for i := 1; i < parts; i++ {
		lo := i * chunk
		hi := min(lo+chunk, n)
		if lo >= hi {
			wg.Done()
			continue
		}
		p.jobs <- poolJob{fn: fn, lo: lo, hi: hi, wg: &wg}
	}
	fn(0, min(chunk, n))
	wg.Wait()
}

func defaultThreads() int { return runtime.GOMAXPROCS(0) }
