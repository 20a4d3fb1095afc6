//go:build linux

package coupling

import (
	"flag"
	"fmt"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

var cputimeFlag = flag.Bool("cputime", false, "TestCPUTime: print the solvers' thread CPU time per batch (docs/performance.md)")

// threadCPU is this thread's CPU time: unlike wall time it does not count
// the time other processes take the core away, which on a shared machine
// is most of the spread between runs.
func threadCPU() time.Duration {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts) != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// TestCPUTime prints, for the benchmark batches, the best of five thread
// CPU times per batch of the exact solver (on the squared distances, then
// on the trainer's -2 X0 X1^T) and of Sinkhorn:
//
//	go test ./coupling -run CPUTime -v -cputime
func TestCPUTime(t *testing.T) {
	if !*cputimeFlag {
		t.Skip("measurement; run with -cputime")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	best := func(f func()) time.Duration {
		b := time.Duration(1 << 62)
		for range 5 {
			start := threadCPU()
			f()
			b = min(b, threadCPU()-start)
		}
		return b / benchBatches
	}
	for _, c := range benchCases {
		costs, name := benchCosts(t, c, costSqDist)
		gram, _ := benchCosts(t, c, costGram)
		p := make([]int, c.n)
		var a Assigner
		exact := func(costs [][]float32) time.Duration {
			return best(func() {
				for _, cost := range costs {
					if err := a.Assign(p, cost, c.n); err != nil {
						t.Fatal(err)
					}
				}
			}).Round(10 * time.Microsecond)
		}
		line := fmt.Sprintf("| %s | %v | %v |", name, exact(costs), exact(gram))
		u := make([]float64, c.n)
		for i := range u {
			u[i] = (float64(i) + 0.5) / float64(c.n)
		}
		for _, reg := range []float64{0.05, 0.5, 5} {
			cp, err := NewCoupler(Options{Kind: KindSinkhorn, Sinkhorn: SinkhornOptions{Reg: reg}})
			if err != nil {
				t.Fatal(err)
			}
			line += fmt.Sprintf(" %v |", best(func() {
				for _, cost := range costs {
					if _, err := cp.Pair(p, cost, c.n, nil, u); err != nil {
						t.Fatal(err)
					}
				}
			}).Round(10*time.Microsecond))
		}
		fmt.Println(line)
	}
}
