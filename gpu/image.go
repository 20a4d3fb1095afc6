package gpu

import "fmt"

// Image tensors are stored NCHW: a batch of images, each channel a
// row-major H x W plane, channels one after another.

// ConvShape describes a 2-D convolution over a batch of NCHW images with
// square K x K filters, the same stride and zero padding in both
// directions.
type ConvShape struct {
	Batch, InC, H, W     int
	OutC, K, Stride, Pad int
}

// OutH is the output height, (H + 2 Pad - K) / Stride + 1.
func (s ConvShape) OutH() int { return (s.H+2*s.Pad-s.K)/s.Stride + 1 }

// OutW is the output width.
func (s ConvShape) OutW() int { return (s.W+2*s.Pad-s.K)/s.Stride + 1 }

// Validate reports shapes no backend can run.
func (s ConvShape) Validate() error {
	if s.Batch < 0 || s.InC < 1 || s.H < 1 || s.W < 1 || s.OutC < 1 || s.K < 1 || s.Stride < 1 || s.Pad < 0 {
		return fmt.Errorf("gpu: bad convolution %+v", s)
	}
	if s.OutH() < 1 || s.OutW() < 1 {
		return fmt.Errorf("gpu: convolution %+v has an empty output", s)
	}
	return nil
}

// GroupNormShape describes group normalization over a batch of NCHW
// images: C channels of HW positions split into Groups groups of C/Groups
// consecutive channels.
type GroupNormShape struct {
	Batch, C, HW, Groups int
	Eps                  float32
}

// Validate reports shapes no backend can run.
func (s GroupNormShape) Validate() error {
	if s.Batch < 0 || s.C < 1 || s.HW < 1 || s.Groups < 1 || s.C%s.Groups != 0 || !(s.Eps > 0) {
		return fmt.Errorf("gpu: bad group norm %+v (channels must divide into groups, eps > 0)", s)
	}
	return nil
}

// ImageOps are the operations the U-Net needs beyond the MLP's. Every
// Backend implements them (the interface is embedded in Backend); they are
// specified by their float64 references in gpu/gputest.
type ImageOps interface {
	// Conv2D: y[b,o,i,j] = bias[o] + sum_{c,u,v} w[o,c,u,v]
	// x[b,c,i*Stride+u-Pad, j*Stride+v-Pad] (zero outside the image), with
	// x (Batch, InC, H, W), w (OutC, InC, K, K), bias (OutC) or nil,
	// y (Batch, OutC, OutH, OutW).
	Conv2D(s ConvShape, x, w, bias, y Buffer)
	// Conv2DBackwardData overwrites dx (shaped as x) with the gradient of
	// sum(dy * y) with respect to x.
	Conv2DBackwardData(s ConvShape, dy, w, dx Buffer)
	// Conv2DBackwardFilter overwrites dw (shaped as w) and, when not nil,
	// dbias (OutC) with the gradients of sum(dy * y).
	Conv2DBackwardFilter(s ConvShape, x, dy, dw, dbias Buffer)

	// GroupNorm: for each image b and group g, over its C/Groups channels
	// and HW positions, mean and rstd = 1/sqrt(biased variance + Eps);
	// y = (x - mean) rstd gamma[c] + beta[c]. mean and rstd (Batch x
	// Groups) are written for the backward pass.
	GroupNorm(s GroupNormShape, x, gamma, beta, y, mean, rstd Buffer)
	// GroupNormBackward overwrites dx, dgamma and dbeta with the gradients
	// of sum(dy * y), from the forward pass's x, mean and rstd.
	GroupNormBackward(s GroupNormShape, dy, x, gamma, mean, rstd, dx, dgamma, dbeta Buffer)

	// Activate is y = act(x) elementwise over x.Len() elements; y may alias
	// x. Its backward is BiasActBackward(act, 1, n, dy, x, dx, nil).
	Activate(act Act, x, y Buffer)

	// AddChannelBias: y[b,c,p] = x[b,c,p] + bias[b,c] for p < hw (a
	// per-image channel bias: the time embedding added to feature maps);
	// y may alias x.
	AddChannelBias(batch, c, hw int, x, bias, y Buffer)
	// ChannelSum overwrites out[b,c] with sum_p x[b,c,p] (AddChannelBias's
	// backward for the bias).
	ChannelSum(batch, c, hw int, x, out Buffer)

	// Upsample2x is nearest-neighbour upsampling: y (batch, c, 2h, 2w) from
	// x (batch, c, h, w).
	Upsample2x(batch, c, h, w int, x, y Buffer)
	// Upsample2xBackward overwrites dx[b,c,i,j] with the sum of dy over the
	// 2 x 2 block it was copied to.
	Upsample2xBackward(batch, c, h, w int, dy, dx Buffer)

	// CopyChannels: dst[b, dstOff+k, p] = src[b, srcOff+k, p] for k < n and
	// p < hw, where src has srcC channels and dst dstC (the U-Net's skip
	// concatenation, and in reverse its backward split).
	CopyChannels(batch, hw, n int, src Buffer, srcC, srcOff int, dst Buffer, dstC, dstOff int)

	// GemmBatched is Gemm for i < batch over A_i = a[i strideA:],
	// B_i = b[i strideB:], C_i = c[i strideC:] (attention's per-image
	// products).
	GemmBatched(transA, transB bool, batch, m, n, k int, alpha float32, a Buffer, lda, strideA int, b Buffer, ldb, strideB int, beta float32, c Buffer, ldc, strideC int)

	// Softmax: y = exp(x - max) / sum exp(x - max) over each row of a rows x
	// cols matrix; y may alias x.
	Softmax(rows, cols int, x, y Buffer)
	// SoftmaxBackward: dx = y (dy - sum_j dy_j y_j) per row; dx may alias dy.
	SoftmaxBackward(rows, cols int, y, dy, dx Buffer)

	// Transpose: for each of batch matrices, y_i (cols x rows) = x_i^T with
	// x_i (rows x cols); y must not alias x.
	Transpose(batch, rows, cols int, x, y Buffer)

	// OneHot overwrites out (rows x classes) with 1 at column labels[r]
	// (labels hold small non-negative integers as float32) and 0 elsewhere;
	// a label outside [0, classes) gives a zero row.
	OneHot(rows, classes int, labels, out Buffer)

	// DrawLabels writes the class labels of the rows DrawBatch draws for the
	// same dr, nData and rows: y[r] = labels[i_r] with i_r the row index of
	// Philox stream (dr.Seed, PurposeIndex, dr.Step), replaced by null when
	// the uniform of stream (dr.Seed, PurposeLabelDrop, dr.Step), element
	// r, is below dropout (classifier-free guidance's label dropout).
	DrawLabels(dr BatchDraw, labels Buffer, nData, rows int, dropout, null float32, y Buffer)
}
