package gpu

import "fmt"

// Layout are the ops over the axes of NCHW feature maps and matrices: a
// per-channel bias broadcast over positions and its reduction, 2x
// up-sampling, channel-range copies and transposes.
type Layout interface {
	// AddChannelBias: y[b,c,p] = x[b,c,p] + bias[b,c] for p < hw (a
	// per-image channel bias: the time embedding added to feature maps);
	// y may alias x.
	AddChannelBias(batch, c, hw int, x, bias, y Buffer)
	// ChannelSum overwrites out[b,c] with sum_p x[b,c,p] (AddChannelBias's
	// backward for the bias).
	ChannelSum(batch, c, hw int, x, out Buffer)

	// Upsample2x is nearest-neighbour upsampling: y (batch, c, 2h, 2w) from
	// x (batch, c, h, w); y must not alias x.
	Upsample2x(batch, c, h, w int, x, y Buffer)
	// Upsample2xBackward overwrites dx[b,c,i,j] with the sum of dy over the
	// 2 x 2 block it was copied to: (dy[2i,2j] + dy[2i,2j+1]) +
	// (dy[2i+1,2j] + dy[2i+1,2j+1]) in float32.
	Upsample2xBackward(batch, c, h, w int, dy, dx Buffer)

	// CopyChannels: dst[b, dstOff+k, p] = src[b, srcOff+k, p] for k < n and
	// p < hw, where src has srcC channels and dst dstC (the U-Net's skip
	// concatenation, and in reverse its backward split).
	CopyChannels(batch, hw, n int, src Buffer, srcC, srcOff int, dst Buffer, dstC, dstOff int)

	// Transpose: for each of batch matrices, y_i (cols x rows) = x_i^T with
	// x_i (rows x cols); y must not alias x.
	Transpose(batch, rows, cols int, x, y Buffer)
}

// checkChannels checks x (batch, c, hw) and the per-channel operand
// (batch, c) of AddChannelBias and ChannelSum and returns batch c.
func checkChannels(op string, batch, c, hw int, x Buffer) int {
	rows := count2(op, batch, c)
	need(op, "x", x, count2(op, rows, hw))
	return rows
}

// checkAddChannelBias returns batch c.
func checkAddChannelBias(batch, c, hw int, x, bias, y Buffer) int {
	rows := checkChannels("AddChannelBias", batch, c, hw, x)
	need("AddChannelBias", "bias", bias, rows)
	need("AddChannelBias", "y", y, rows*hw)
	return rows
}

// checkChannelSum returns batch c.
func checkChannelSum(batch, c, hw int, x, out Buffer) int {
	rows := checkChannels("ChannelSum", batch, c, hw, x)
	need("ChannelSum", "out", out, rows)
	return rows
}

// checkUpsample checks the operands of Upsample2x (small x, large y) and
// its backward (large dy, small dx) and returns batch c, the planes.
func checkUpsample(op string, batch, c, h, w int, small, large Buffer, smallName, largeName string) int {
	planes := count2(op, batch, c)
	n := count3(op, planes, h, w)
	need(op, smallName, small, n)
	need(op, largeName, large, count2(op, 4, n))
	return planes
}

func checkCopyChannels(batch, hw, n int, src Buffer, srcC, srcOff int, dst Buffer, dstC, dstOff int) {
	const op = "CopyChannels"
	if batch < 0 || hw < 0 || n < 0 || srcOff < 0 || dstOff < 0 || srcOff+n > srcC || dstOff+n > dstC {
		panic(fmt.Sprintf("gpu: %s of %d channels from %d of %d to %d of %d (batch %d, %d positions)",
			op, n, srcOff, srcC, dstOff, dstC, batch, hw))
	}
	need(op, "src", src, count3(op, batch, srcC, hw))
	need(op, "dst", dst, count3(op, batch, dstC, hw))
}

// checkTranspose returns rows x cols, one matrix.
func checkTranspose(batch, rows, cols int, x, y Buffer) int {
	n := count2("Transpose", rows, cols)
	total := count2("Transpose", batch, n)
	need("Transpose", "x", x, total)
	need("Transpose", "y", y, total)
	return n
}
