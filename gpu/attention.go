package gpu

// Attention are the pieces of self-attention besides its batched products
// (Products.GemmBatched): the row-wise softmax and its gradient.
type Attention interface {
	// Softmax: y = exp(x - max) / sum exp(x - max) over each row of a rows x
	// cols matrix; y may alias x.
	Softmax(rows, cols int, x, y Buffer)
	// SoftmaxBackward: dx = y (dy - sum_j dy_j y_j) per row; dx may alias dy.
	SoftmaxBackward(rows, cols int, y, dy, dx Buffer)
}

// checkSoftmax returns rows x cols.
func checkSoftmax(rows, cols int, x, y Buffer) int {
	n := count2("Softmax", rows, cols)
	need("Softmax", "x", x, n)
	need("Softmax", "y", y, n)
	return n
}

// checkSoftmaxBackward returns rows x cols.
func checkSoftmaxBackward(rows, cols int, y, dy, dx Buffer) int {
	n := count2("SoftmaxBackward", rows, cols)
	need("SoftmaxBackward", "y", y, n)
	need("SoftmaxBackward", "dy", dy, n)
	need("SoftmaxBackward", "dx", dx, n)
	return n
}
