// Package gpu holds the Backend interface through which every tensor
// operation of fmgpu runs, the pure-Go CPU backend (always built), and, under
// the build tag cuda, the CUDA backend. Both implement the same operations on
// float32 buffers, row-major, and must agree op by op (gpu/gputest).
//
// Operations are queued, not necessarily finished, when a method returns;
// Download and Sync wait. Errors are sticky: an op that fails records the
// first error, later ops are skipped, and Sync (or Err) returns it. Invalid
// arguments (lengths, shapes) are programming errors and panic.
package gpu

import (
	"github.com/fmgpu/fmgpu/flow"
)

// Buffer is a float32 array owned by a Backend. A view made with Slice
// shares storage with its parent; it must not outlive the parent's Free.
// Implementations are pointer types, so Buffers compare with == (the same
// view object), which lets callers cache views of a buffer they are given.
type Buffer interface {
	Len() int
	// Slice returns elements [off, off+n) as a Buffer sharing storage.
	Slice(off, n int) Buffer
}

// Act is an activation function applied by the fused bias ops. Its value is
// part of the CUDA kernels' ABI.
type Act int32

const (
	ActNone Act = 0 // identity
	ActSiLU Act = 1 // silu(z) = z sigmoid(z)
)

// TimeEmbedding describes how the network sees t. With Freqs = 0 the input
// gets t itself (one column). Otherwise it gets 2*Freqs columns
// [sin(Scale t w_j)..., cos(Scale t w_j)...] with w_j = MaxPeriod^(-j/Freqs),
// j = 0..Freqs-1: the transformer/DDPM sinusoidal embedding.
type TimeEmbedding struct {
	Freqs     int     `json:"freqs"`
	Scale     float32 `json:"scale"`
	MaxPeriod float32 `json:"max_period"`
}

// Width is the number of input columns the embedding occupies.
func (e TimeEmbedding) Width() int {
	if e.Freqs == 0 {
		return 1
	}
	return 2 * e.Freqs
}

// AdamStep holds the scalars of one fused optimizer step (see Backend.AdamEMA).
type AdamStep struct {
	LR          float32
	Beta1       float32
	Beta2       float32
	Eps         float32
	WeightDecay float32
	Decoupled   bool    // AdamW: decay applied to the weights, not the gradient
	BiasCorr1   float32 // 1 - beta1^step
	BiasCorr2   float32 // 1 - beta2^step
	EMADecay    float32 // 0: EMA not updated
	MaxGradNorm float32 // 0: no clipping
	Step        int     // 1-based step number, recorded in the status buffer on a non-finite gradient
}

// BatchDraw describes one fused training-batch draw (Backend.DrawBatch).
type BatchDraw struct {
	Path flow.Spec
	Time flow.TimeSampler
	Seed uint64
	// Step selects the Philox stream: batch draws for different steps are
	// independent, and the same (Seed, Step) gives the same batch.
	Step uint64
}

// DeviceInfo is what a backend reports about its device.
type DeviceInfo struct {
	Backend           string // "cpu", "cuda", "kernelsim"
	Name              string
	ComputeCapability string
	MemoryBytes       int64
	Driver            string
	Threads           int
	// Device figures for rates against peak (CUDA only; 0 when unknown).
	Multiprocessors int
	ClockKHz        int // SM clock
	MemoryClockKHz  int
	MemoryBusBits   int
}

// Backend is the set of operations fmgpu's trainer, models and samplers run
// on. All matrices are float32, row-major, with explicit row strides (ld)
// where an operation may work on a sub-matrix.
type Backend interface {
	ImageOps

	Info() DeviceInfo

	// Alloc returns a zeroed buffer of n elements.
	Alloc(n int) Buffer
	Free(b Buffer)
	Upload(dst Buffer, src []float32)
	Download(dst []float32, src Buffer)
	Copy(dst, src Buffer)
	Fill(dst Buffer, v float32)
	// Sync waits for queued work and returns the first error since the last
	// Sync, clearing it.
	Sync() error
	Close() error

	// Gemm is C = alpha op(A) op(B) + beta C: op(A) is m x k (A is stored
	// k x m when transA), op(B) is k x n (stored n x k when transB), with row
	// strides lda, ldb, ldc. beta = 0 means C is not read.
	Gemm(transA, transB bool, m, n, k int, alpha float32, a Buffer, lda int, b Buffer, ldb int, beta float32, c Buffer, ldc int)

	// Linear is the fused layer forward: pre = x W^T + bias, y = act(pre),
	// x rows x in (row stride ldx), W out x in (PyTorch layout), bias out,
	// pre and y rows x out. pre may be nil when not needed (inference); y may
	// equal pre only when act is ActNone.
	Linear(rows, in, out int, x Buffer, ldx int, w, bias Buffer, act Act, pre, y Buffer)

	// BiasActBackward: dPre = dY * act'(pre) elementwise, and
	// dBias = column sums of dPre (overwritten), for rows x cols matrices.
	// dPre may alias dY. dBias may be nil.
	BiasActBackward(act Act, rows, cols int, dY, pre, dPre, dBias Buffer)

	// EmbedInput builds the network input: out (rows x (d + emb.Width()))
	// holds x (rows x d) in its first d columns and the time embedding of
	// t (rows) in the rest. With d = 0, x may be nil.
	EmbedInput(rows, d int, x, t Buffer, emb TimeEmbedding, out Buffer)

	// MSELoss: grad = 2 scale (pred - target), loss[0] = scale sum (pred -
	// target)^2 over n = pred.Len() elements (sum accumulated in at least
	// float32 pairwise precision). grad may alias pred.
	MSELoss(pred, target Buffer, scale float32, grad, loss Buffer)

	// SumSquares writes sum x_i^2 into out[0].
	SumSquares(x, out Buffer)

	// AdamEMA is one fused optimizer step over n = params.Len() parameters.
	// With c = min(1, MaxGradNorm / (sqrt(gradSumSq[0]) + 1e-6)) when
	// clipping (else 1), g = c grads (+ WeightDecay params unless
	// Decoupled): m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
	// params -= LR (m/BiasCorr1 / (sqrt(v/BiasCorr2) + Eps) + [Decoupled]
	// WeightDecay params); ema = d ema + (1-d) params when EMADecay = d > 0.
	// If gradSumSq[0] is not finite nothing is updated and, if status[0] is
	// 0, status[0] = Step: the host learns of it at its next read.
	AdamEMA(s AdamStep, params, grads, m, v, ema, gradSumSq, status Buffer)

	// PathTarget is flow.Target on the device: xt = sigma_t x0 + alpha_t x1,
	// ut = sigma'_t x0 + alpha'_t x1 for rows x d inputs and t (rows).
	PathTarget(p flow.Spec, rows, d int, x0, x1, t, xt, ut Buffer)

	// DrawBatch is the fused training draw: for each of rows rows it draws a
	// data index i (uniform over nData rows of data, nData x d), a time t
	// (dr.Time, clamped to the path's range) and x0 ~ N(0, PriorStd^2 I)
	// with Philox-4x32-10 (streams in philox.go), gathers x1 = data[i] and
	// writes x0, x1, t, xt, ut as PathTarget would. x0 and x1 may be nil.
	DrawBatch(dr BatchDraw, data Buffer, nData, d, rows int, x0, x1, t, xt, ut Buffer)

	// RandNormal fills dst with std * N(0, 1) draws of Philox stream
	// (seed, stream); RandRademacher with +-1.
	RandNormal(dst Buffer, seed, stream uint64, std float32)
	RandRademacher(dst Buffer, seed, stream uint64)

	// Axpy is y += alpha x (the Euler step x <- x + h v).
	Axpy(alpha float32, x, y Buffer)
	// LinComb is dst = x + h sum_i coef[i] ks[i] over len(ks) <= MaxStages
	// stage buffers (the RK and Dopri5 stage updates); dst may alias x.
	// A zero coefficient skips its buffer.
	LinComb(dst, x Buffer, h float32, coef []float32, ks []Buffer)
	// ErrorNorm writes into out[0] sum_i (e_i / (atol + rtol max(|x_i|,
	// |xNew_i|)))^2 with e = h sum_j coef[j] ks[j]: Dopri5's error estimate
	// before the root mean square.
	ErrorNorm(x, xNew Buffer, h float32, coef []float32, ks []Buffer, rtol, atol float32, out Buffer)
	// RowDot is out[r] = beta out[r] + alpha sum_c a[r, c] b[r, c] for rows x
	// cols a and b (the divergence accumulation of the likelihood ODE);
	// beta = 0 means out is not read.
	RowDot(rows, cols int, alpha float32, a, b Buffer, beta float32, out Buffer)
	// UnitColumn sets e (rows x cols) to zero with ones in column j.
	UnitColumn(rows, cols, j int, e Buffer)
}

// MaxStages is the most stage buffers LinComb and ErrorNorm take (Dopri5
// has seven).
const MaxStages = 7
