package train

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/fmgpu/fmgpu/data"
	"github.com/fmgpu/fmgpu/gpu"
)

// opKey names one op of a step and its shape.
type opKey struct {
	op      string
	m, n, k int
}

// timedBackend adds up the wall time of each op of the MLP training step
// (a synchronous backend, the CPU one, is assumed). It allocates nothing
// per call once every key has been seen.
type timedBackend struct {
	gpu.Backend
	t map[opKey]time.Duration
}

func (b *timedBackend) rec(k opKey, start time.Time) { b.t[k] += time.Since(start) }

var gemmOpNames = [4]string{"gemmNN", "gemmNT", "gemmTN", "gemmTT"}

func gemmOpName(ta, tb bool) string {
	i := 0
	if ta {
		i += 2
	}
	if tb {
		i++
	}
	return gemmOpNames[i]
}

func (b *timedBackend) Gemm(ta, tb bool, m, n, k int, alpha float32, a gpu.Buffer, lda int, bb gpu.Buffer, ldb int, beta float32, c gpu.Buffer, ldc int) {
	defer b.rec(opKey{gemmOpName(ta, tb), m, n, k}, time.Now())
	b.Backend.Gemm(ta, tb, m, n, k, alpha, a, lda, bb, ldb, beta, c, ldc)
}

func (b *timedBackend) Linear(rows, in, out int, x gpu.Buffer, ldx int, w, bias gpu.Buffer, act gpu.Act, pre, y gpu.Buffer) {
	defer b.rec(opKey{"linear", rows, out, in}, time.Now())
	b.Backend.Linear(rows, in, out, x, ldx, w, bias, act, pre, y)
}

func (b *timedBackend) LinearBackward(rows, in, out int, dPre, x gpu.Buffer, ldx int, w, dW, dBias gpu.Buffer, cols int, act gpu.Act, preX gpu.Buffer, beta float32, dX gpu.Buffer) {
	defer b.rec(opKey{"linearBackward", rows, out, in}, time.Now())
	b.Backend.LinearBackward(rows, in, out, dPre, x, ldx, w, dW, dBias, cols, act, preX, beta, dX)
}

func (b *timedBackend) BiasActBackward(act gpu.Act, rows, cols int, dY, pre, dPre, dBias gpu.Buffer) {
	defer b.rec(opKey{"biasActBackward", rows, cols, int(act)}, time.Now())
	b.Backend.BiasActBackward(act, rows, cols, dY, pre, dPre, dBias)
}

func (b *timedBackend) EmbedInput(rows, d int, x, t gpu.Buffer, emb gpu.TimeEmbedding, out gpu.Buffer) {
	defer b.rec(opKey{op: "embedInput"}, time.Now())
	b.Backend.EmbedInput(rows, d, x, t, emb, out)
}

func (b *timedBackend) MSELoss(p, t gpu.Buffer, s float32, g, l gpu.Buffer) {
	defer b.rec(opKey{op: "mseLoss"}, time.Now())
	b.Backend.MSELoss(p, t, s, g, l)
}

func (b *timedBackend) SumSquares(x, o gpu.Buffer) {
	defer b.rec(opKey{op: "sumSquares"}, time.Now())
	b.Backend.SumSquares(x, o)
}

func (b *timedBackend) AdamEMA(s gpu.AdamStep, p, g, m, v, e, gs, st gpu.Buffer) {
	defer b.rec(opKey{op: "adamEMA"}, time.Now())
	b.Backend.AdamEMA(s, p, g, m, v, e, gs, st)
}

func (b *timedBackend) DrawBatch(dr gpu.BatchDraw, d gpu.Buffer, nData, dd, rows int, x0, x1, t, xt, ut gpu.Buffer) {
	defer b.rec(opKey{op: "drawBatch"}, time.Now())
	b.Backend.DrawBatch(dr, d, nData, dd, rows, x0, x1, t, xt, ut)
}

func (b *timedBackend) Axpy(a float32, x, y gpu.Buffer) {
	defer b.rec(opKey{op: "axpy"}, time.Now())
	b.Backend.Axpy(a, x, y)
}

// BenchmarkStepOps runs BenchmarkStep's workloads through a backend that
// times each op, and logs where a step's wall time goes (-v shows it):
//
//	go test ./train -run - -bench StepOps -v
func BenchmarkStepOps(b *testing.B) {
	ds, _ := data.Builtin("8gaussians", 100000, 1)
	for _, w := range peerWorkloads {
		b.Run(w.name(), func(b *testing.B) {
			c := w.config()
			cpu := gpu.NewCPU(0)
			defer cpu.Close()
			be := &timedBackend{Backend: cpu, t: map[opKey]time.Duration{}}
			tr, err := New(be, c, ds.X, ds.N)
			if err != nil {
				b.Fatal(err)
			}
			for i := 0; i < 3; i++ {
				tr.Step()
			}
			clear(be.t)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				tr.Step()
			}
			b.StopTimer()
			var keys []opKey
			var sum time.Duration
			for k, v := range be.t {
				keys = append(keys, k)
				sum += v
			}
			sort.Slice(keys, func(i, j int) bool { return be.t[keys[i]] > be.t[keys[j]] })
			perStep := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 / float64(b.N) }
			var sb strings.Builder
			fmt.Fprintf(&sb, "%.1f us/step, %.1f in ops:\n", perStep(b.Elapsed()), perStep(sum))
			for _, k := range keys {
				name := k.op
				if k.m != 0 || k.n != 0 {
					name = fmt.Sprintf("%s %dx%dx%d", k.op, k.m, k.n, k.k)
				}
				fmt.Fprintf(&sb, "  %-32s %9.1f us\n", name, perStep(be.t[k]))
			}
			b.Log(sb.String())
		})
	}
}
