package sgemm

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
)

type benchShape struct {
	ta, tb  bool
	m, n, k int
}

func (s benchShape) String() string {
	return fmt.Sprintf("ta=%v,tb=%v/m=%d,n=%d,k=%d", s.ta, s.tb, s.m, s.n, s.k)
}

// mlpShapes are the products of one training step of an MLP with weights
// W stored out x in: forward Y = X W^T, backward dX = dY W, dW = dY^T X.
func mlpShapes() []benchShape {
	var s []benchShape
	for _, batch := range []int{256, 4096} {
		for _, h := range []int{256, 512} {
			s = append(s,
				benchShape{false, true, batch, h, h},  // forward
				benchShape{false, false, batch, h, h}, // dX
				benchShape{true, false, h, h, batch},  // dW
			)
		}
		// Input (3 -> 256) and output (256 -> 2) layers.
		s = append(s,
			benchShape{false, true, batch, 256, 3},  // forward, input layer
			benchShape{true, false, 256, 3, batch},  // dW, input layer
			benchShape{false, true, batch, 2, 256},  // forward, output layer
			benchShape{false, false, batch, 256, 2}, // dX, output layer
			benchShape{true, false, 2, 256, batch},  // dW, output layer
		)
	}
	return s
}

func benchOperands(s benchShape) (a []float32, lda int, b []float32, ldb int, c []float32) {
	r := rand.New(rand.NewPCG(1, 1))
	ar, ac := s.m, s.k
	if s.ta {
		ar, ac = s.k, s.m
	}
	br, bc := s.k, s.n
	if s.tb {
		br, bc = s.n, s.k
	}
	return randSlice(r, ar*ac), ac, randSlice(r, br*bc), bc, make([]float32, s.m*s.n)
}

// reportGFLOPS reports wall-clock GFLOP/s and, since the machine may be
// shared, GFLOP per CPU-second of this process (per-core efficiency,
// insensitive to other load).
func reportGFLOPS(b *testing.B, s benchShape, elapsed, cpu time.Duration) {
	flop := 2 * float64(s.m) * float64(s.n) * float64(s.k) * float64(b.N)
	b.ReportMetric(flop/elapsed.Seconds()/1e9, "GFLOP/s")
	if cpu > 0 {
		b.ReportMetric(flop/cpu.Seconds()/1e9, "GFLOP/cpu-s")
	}
}

// BenchmarkGemm: go test -run - -bench Gemm ./internal/sgemm
func BenchmarkGemm(b *testing.B) {
	defer SetKernel("")
	for _, name := range Kernels() {
		for _, s := range mlpShapes() {
			b.Run("kernel="+name+"/"+s.String(), func(b *testing.B) {
				if name == "generic" && s.m*s.n*s.k > 1<<26 {
					b.Skip("generic kernel: large shapes skipped")
				}
				SetKernel(name)
				a, lda, bb, ldb, c := benchOperands(s)
				Gemm(s.ta, s.tb, s.m, s.n, s.k, 1, a, lda, bb, ldb, 0, c, s.n)
				b.ReportAllocs()
				b.ResetTimer()
				start, cpu0 := time.Now(), cpuTime()
				for i := 0; i < b.N; i++ {
					Gemm(s.ta, s.tb, s.m, s.n, s.k, 1, a, lda, bb, ldb, 0, c, s.n)
				}
				reportGFLOPS(b, s, time.Since(start), cpuTime()-cpu0)
			})
		}
	}
}

// BenchmarkEpilogue measures the fused forward layer Y = silu(X W^T + b).
func BenchmarkEpilogue(b *testing.B) {
	defer SetKernel("")
	for _, name := range Kernels() {
		for _, h := range []int{256, 512} {
			s := benchShape{false, true, 4096, h, h}
			b.Run("kernel="+name+"/"+s.String(), func(b *testing.B) {
				if name == "generic" {
					b.Skip("generic")
				}
				SetKernel(name)
				a, lda, bb, ldb, c := benchOperands(s)
				pre := make([]float32, len(c))
				ep := &Epilogue{Bias: make([]float32, h), Act: ActSiLU, Pre: pre, LdPre: h}
				b.ReportAllocs()
				b.ResetTimer()
				start, cpu0 := time.Now(), cpuTime()
				for i := 0; i < b.N; i++ {
					GemmEpilogue(s.ta, s.tb, s.m, s.n, s.k, 1, a, lda, bb, ldb, 0, c, s.n, ep)
				}
				reportGFLOPS(b, s, time.Since(start), cpuTime()-cpu0)
			})
		}
	}
}

// BenchmarkGonum runs gonum's blas32.Gemm on the same shapes, for reference.
func BenchmarkGonum(b *testing.B) {
	tr := func(t bool) blas.Transpose {
		if t {
			return blas.Trans
		}
		return blas.NoTrans
	}
	for _, s := range mlpShapes() {
		b.Run(s.String(), func(b *testing.B) {
			a, lda, bb, ldb, c := benchOperands(s)
			ar, ac := s.m, s.k
			if s.ta {
				ar, ac = s.k, s.m
			}
			br, bc := s.k, s.n
			if s.tb {
				br, bc = s.n, s.k
			}
			A := blas32.General{Rows: ar, Cols: ac, Stride: lda, Data: a}
			B := blas32.General{Rows: br, Cols: bc, Stride: ldb, Data: bb}
			C := blas32.General{Rows: s.m, Cols: s.n, Stride: s.n, Data: c}
			b.ReportAllocs()
			b.ResetTimer()
			start, cpu0 := time.Now(), cpuTime()
			for i := 0; i < b.N; i++ {
				blas32.Gemm(tr(s.ta), tr(s.tb), 1, A, B, 0, C)
			}
			reportGFLOPS(b, s, time.Since(start), cpuTime()-cpu0)
		})
	}
}

// BenchmarkMLPStep runs every product of one training step of the MLP
// 3 -> h x4 -> 2 (weights out x in, SiLU hidden layers fused through the
// epilogue): the forward pass, then dW and dX for each layer (the
// elementwise SiLU backward is not included). GFLOP/s counts the products.
//
//	go test -run - -bench MLPStep ./internal/sgemm
func BenchmarkMLPStep(b *testing.B) {
	defer SetKernel("")
	for _, name := range Kernels() {
		if name == "generic" {
			continue
		}
		for _, batch := range []int{256, 4096} {
			for _, h := range []int{256, 512} {
				b.Run(fmt.Sprintf("kernel=%s/mlp%dx4-b%d", name, h, batch), func(b *testing.B) {
					SetKernel(name)
					benchMLPStep(b, batch, h)
				})
			}
		}
	}
}

func benchMLPStep(b *testing.B, batch, h int) {
	r := rand.New(rand.NewPCG(5, 5))
	dims := []int{3, h, h, h, h, 2}
	L := len(dims) - 1
	w := make([][]float32, L)
	bias := make([][]float32, L)
	act := make([][]float32, L+1) // act[0] = input, act[l+1] = layer l output
	pre := make([][]float32, L)
	dact := make([][]float32, L+1)
	dw := make([][]float32, L)
	act[0] = randSlice(r, batch*dims[0])
	dact[0] = make([]float32, batch*dims[0])
	var flop float64
	for l := 0; l < L; l++ {
		in, out := dims[l], dims[l+1]
		w[l] = randSlice(r, out*in)
		bias[l] = randSlice(r, out)
		act[l+1] = make([]float32, batch*out)
		pre[l] = make([]float32, batch*out)
		dact[l+1] = randSlice(r, batch*out)
		dw[l] = make([]float32, out*in)
		flop += 3 * 2 * float64(batch) * float64(in) * float64(out)
	}
	flop -= 2 * float64(batch) * float64(dims[0]) * float64(dims[1]) // no dX for the input
	step := func() {
		for l := 0; l < L; l++ {
			in, out := dims[l], dims[l+1]
			ep := &Epilogue{Bias: bias[l], Act: ActSiLU, Pre: pre[l], LdPre: out}
			if l == L-1 {
				ep = &Epilogue{Bias: bias[l]}
			}
			GemmEpilogue(false, true, batch, out, in, 1, act[l], in, w[l], in, 0, act[l+1], out, ep)
		}
		for l := L - 1; l >= 0; l-- {
			in, out := dims[l], dims[l+1]
			Gemm(true, false, out, in, batch, 1, dact[l+1], out, act[l], in, 0, dw[l], in)
			if l > 0 {
				Gemm(false, false, batch, in, out, 1, dact[l+1], out, w[l], in, 0, dact[l], in)
			}
		}
	}
	step()
	b.ReportAllocs()
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	for i := 0; i < b.N; i++ {
		step()
	}
	el, cpu := time.Since(start), cpuTime()-cpu0
	b.ReportMetric(flop*float64(b.N)/el.Seconds()/1e9, "GFLOP/s")
	b.ReportMetric(flop*float64(b.N)/cpu.Seconds()/1e9, "GFLOP/cpu-s")
}
