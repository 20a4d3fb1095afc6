package gpu

import "fmt"

// Dense are the dense layers of the networks: the fused linear layer, the
// activations and their gradient, the encodings of the network's inputs
// (the time embedding, one-hot class labels) and the MSE loss.
type Dense interface {
	// Linear is the fused layer forward: pre = x W^T + bias, y = act(pre),
	// x rows x in (row stride ldx), W out x in (PyTorch layout), bias out,
	// pre and y rows x out. bias may be nil (no bias); pre may be nil when
	// not needed (inference); y may equal pre only when act is ActNone.
	Linear(rows, in, out int, x Buffer, ldx int, w, bias Buffer, act Act, pre, y Buffer)

	// BiasActBackward: dPre = dY * act'(pre) elementwise, and
	// dBias = column sums of dPre (overwritten), for rows x cols matrices.
	// dPre may alias dY. dBias may be nil; pre is not read for ActNone.
	BiasActBackward(act Act, rows, cols int, dY, pre, dPre, dBias Buffer)

	// LinearBackward is Linear's backward once its activation's is done:
	// with dPre (rows x out) the gradient of the layer's pre-activation,
	// x (rows x in, row stride ldx) its input and W (out x in) its weight,
	//   dW = dPre^T x (out x in) and dBias = column sums of dPre (out),
	//     when dW is not nil (dBias may be nil; with dW nil it must be);
	//   dX = act'(preX) * ((dPre W)[:, :cols] + beta dX) elementwise
	//     (rows x cols, cols <= in), when dX is not nil: the gradient of
	//     the previous layer's pre-activation preX (rows x cols; not read
	//     for ActNone, when dX is that of the network's input, its first
	//     cols columns, or when beta accumulates a gradient); dX is not
	//     read when beta = 0.
	// It computes what BiasActBackward(ActNone, ..., dBias), Gemm for dW,
	// Gemm for dX and BiasActBackward(act, ...) on dX would, in fewer
	// passes. dX must not overlap dPre, dW or dBias.
	LinearBackward(rows, in, out int, dPre, x Buffer, ldx int, w, dW, dBias Buffer, cols int, act Act, preX Buffer, beta float32, dX Buffer)

	// Activate is y = act(x) elementwise over x.Len() elements; y may alias
	// x. Its backward is BiasActBackward(act, 1, n, dy, x, dx, nil).
	Activate(act Act, x, y Buffer)

	// EmbedInput builds the network input: out (rows x (d + emb.Width()))
	// holds x (rows x d) in its first d columns and the time embedding of
	// t (rows) in the rest. With d = 0, x may be nil.
	EmbedInput(rows, d int, x, t Buffer, emb TimeEmbedding, out Buffer)

	// OneHot overwrites out (rows x classes) with 1 at column labels[r]
	// and 0 elsewhere; a label that is not one of 0, 1, ..., classes-1
	// exactly (negative, too large, fractional, NaN) gives a zero row.
	OneHot(rows, classes int, labels, out Buffer)

	// MSELoss: grad = 2 scale (pred - target), loss[0] = scale sum (pred -
	// target)^2 over n = pred.Len() elements (sum accumulated in at least
	// float32 pairwise precision). grad may alias pred.
	MSELoss(pred, target Buffer, scale float32, grad, loss Buffer)

	// MSELossAccumulate is MSELoss adding the loss into lossSum[0]
	// instead of overwriting it: lossSum[0] += l in float32, with l the
	// float32 loss MSELoss would write (the trainer's running loss, with
	// no launch of its own).
	MSELossAccumulate(pred, target Buffer, scale float32, grad, lossSum Buffer)
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

func checkLinear(rows, in, out int, x Buffer, ldx int, w, bias Buffer, act Act, pre, y Buffer) {
	const op = "Linear"
	if rows < 0 || in < 0 || out < 0 {
		panic(fmt.Sprintf("gpu: %s with rows, in, out = %d, %d, %d", op, rows, in, out))
	}
	checkLd(op, "ldx", ldx, in)
	checkAct(op, act)
	if rows == 0 || out == 0 {
		return
	}
	n := count2(op, rows, out)
	need(op, "y", y, n)
	if pre != nil {
		need(op, "pre", pre, n)
	}
	if bias != nil {
		need(op, "bias", bias, out)
	}
	if in > 0 {
		need(op, "x", x, matrixLen(op, rows, in, ldx))
		need(op, "W", w, count2(op, out, in))
	}
}

func checkLinearBackward(rows, in, out int, dPre, x Buffer, ldx int, w, dW, dBias Buffer, cols int, act Act, preX Buffer, beta float32, dX Buffer) {
	const op = "LinearBackward"
	if rows < 0 || in < 0 || out < 0 || cols < 0 || cols > in {
		panic(fmt.Sprintf("gpu: %s with rows, in, out, cols = %d, %d, %d, %d", op, rows, in, out, cols))
	}
	checkLd(op, "ldx", ldx, in)
	checkAct(op, act)
	if dBias != nil && dW == nil {
		panic("gpu: LinearBackward: dBias without dW")
	}
	need(op, "dPre", dPre, count2(op, rows, out))
	if dW != nil {
		need(op, "x", x, matrixLen(op, rows, in, ldx))
		need(op, "dW", dW, count2(op, out, in))
		if dBias != nil {
			need(op, "dBias", dBias, out)
		}
	}
	if dX != nil {
		need(op, "W", w, count2(op, out, in))
		need(op, "dX", dX, count2(op, rows, cols))
		if act != ActNone {
			need(op, "preX", preX, count2(op, rows, cols))
		}
	}
}

// checkBiasActBackward returns rows x cols.
func checkBiasActBackward(act Act, rows, cols int, dY, pre, dPre, dBias Buffer) int {
	const op = "BiasActBackward"
	checkAct(op, act)
	n := count2(op, rows, cols)
	need(op, "dY", dY, n)
	need(op, "dPre", dPre, n)
	if act != ActNone {
		need(op, "pre", pre, n)
	}
	if dBias != nil {
		need(op, "dBias", dBias, cols)
	}
	return n
}

// checkActivate returns x.Len().
func checkActivate(act Act, x, y Buffer) int {
	checkAct("Activate", act)
	n := lenOf(x)
	need("Activate", "y", y, n)
	return n
}

// checkEmbedInput returns the width of out's rows.
func checkEmbedInput(rows, d int, x, t Buffer, emb TimeEmbedding, out Buffer) int {
	const op = "EmbedInput"
	if rows < 0 || d < 0 || emb.Freqs < 0 {
		panic(fmt.Sprintf("gpu: %s with rows, d, freqs = %d, %d, %d", op, rows, d, emb.Freqs))
	}
	w := d + emb.Width()
	need(op, "x", x, count2(op, rows, d))
	need(op, "t", t, rows)
	need(op, "out", out, count2(op, rows, w))
	return w
}

// checkOneHot returns rows x classes.
func checkOneHot(rows, classes int, labels, out Buffer) int {
	n := count2("OneHot", rows, classes)
	need("OneHot", "labels", labels, rows)
	need("OneHot", "out", out, n)
	return n
}

// checkMSELoss returns pred.Len().
func checkMSELoss(pred, target, grad, loss Buffer) int {
	n := lenOf(pred)
	need("MSELoss", "target", target, n)
	need("MSELoss", "grad", grad, n)
	need("MSELoss", "loss", loss, 1)
	return n
}
