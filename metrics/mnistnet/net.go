// Package mnistnet is the small MNIST digit classifier that fmgpu trains
// itself and ships (mnistnet.safetensors, embedded): its penultimate layer,
// 128 features per image, is the feature space in which `fmgpu eval`
// computes the Fréchet distance and KID of image samples (docs/metrics.md).
// Inception's weights cannot be downloaded here, and a LeNet-like network
// is the usual feature space for MNIST.
//
// The network, on 28 x 28 gray images scaled to [-1, 1] (data's scaling):
//
//	conv 5x5, 1 -> 16 channels, padding 2, ReLU, max-pool 2x2   -> 16 x 14 x 14
//	conv 5x5, 16 -> 32 channels, padding 2, ReLU, max-pool 2x2  -> 32 x 7 x 7
//	dense 1568 -> 128, ReLU                                      -> the features
//	dense 128 -> 10                                              -> the logits
//
// It is written in plain Go over float32, with the products of
// internal/sgemm (convolutions as im2col products) and the backward pass
// by hand; the tests check both against a float64 reference written
// independently (direct convolutions) and its central differences.
// Activations are channels-last (NHWC): row (image, y, x) of a matrix
// holds that position's channels, so that a convolution is one product.
package mnistnet

import (
	"context"
	"fmt"
	"math"

	"github.com/fmgpu/fmgpu/internal/sgemm"
)

// The shapes: images are Side x Side (one channel), FeatureDim features,
// Classes classes.
const (
	Side       = 28
	Pixels     = Side * Side
	FeatureDim = 128
	Classes    = 10
)

// The layers.
const (
	kSide = 5                   // convolution kernel side
	pad   = kSide / 2           // "same" padding
	ch1   = 16                  // conv1 output channels
	ch2   = 32                  // conv2 output channels
	side2 = Side / 2            // conv2's input side (after pool 1)
	side3 = side2 / 2           // after pool 2
	flat  = side3 * side3 * ch2 // fc1's input, (y, x, c) order
	k1    = kSide * kSide       // conv1's im2col width
	k2    = kSide * kSide * ch1 // conv2's im2col width
	pos1  = Side * Side         // conv1 output positions per image
	pos2  = side2 * side2       // conv2 output positions per image
	pool1 = side2 * side2 * ch1 // values per image after pool 1
	act1  = pos1 * ch1          // values per image after conv1
	act2  = pos2 * ch2          // values per image after conv2
	nPar  = ch1*k1 + ch1 + ch2*k2 + ch2 + FeatureDim*flat + FeatureDim + Classes*FeatureDim + Classes
)

// Tensor is one named parameter tensor in the flat parameter vector.
type Tensor struct {
	Name   string
	Shape  []int
	Offset int
}

// Size is the number of values.
func (t Tensor) Size() int {
	n := 1
	for _, s := range t.Shape {
		n *= s
	}
	return n
}

// Tensors is the layout of the parameters: convolution weights are
// (out channels, ky, kx, in channels), the im2col column order; dense
// weights (out, in), as PyTorch's nn.Linear; fc1's inputs are in the
// (y, x, channel) order of the pooled activations.
var Tensors = func() []Tensor {
	ts := []Tensor{
		{Name: "conv1.weight", Shape: []int{ch1, kSide, kSide, 1}},
		{Name: "conv1.bias", Shape: []int{ch1}},
		{Name: "conv2.weight", Shape: []int{ch2, kSide, kSide, ch1}},
		{Name: "conv2.bias", Shape: []int{ch2}},
		{Name: "fc1.weight", Shape: []int{FeatureDim, flat}},
		{Name: "fc1.bias", Shape: []int{FeatureDim}},
		{Name: "fc2.weight", Shape: []int{Classes, FeatureDim}},
		{Name: "fc2.bias", Shape: []int{Classes}},
	}
	off := 0
	for i := range ts {
		ts[i].Offset = off
		off += ts[i].Size()
	}
	if off != nPar {
		panic("mnistnet: parameter count")
	}
	return ts
}()

// Indices into Tensors.
const (
	tConv1W = iota
	tConv1B
	tConv2W
	tConv2B
	tFC1W
	tFC1B
	tFC2W
	tFC2B
)

// NumParams is the number of parameters.
const NumParams = nPar

// Net is the classifier's parameters (NumParams values in the layout of
// Tensors) and the scale of its features. Its methods do not modify it
// and may run concurrently.
type Net struct {
	Params []float32
	// FeatureScale divides the features (0 is taken as 1): Calibrate sets
	// it to their root mean square over the training images, so that the
	// features are O(1), the scale KID's kernel (a . b / d + 1)^3 assumes.
	FeatureScale float32
}

func (n *Net) scale() float32 {
	if n.FeatureScale > 0 {
		return n.FeatureScale
	}
	return 1
}

// New returns a network with zero parameters.
func New() *Net { return &Net{Params: make([]float32, NumParams)} }

// view returns tensor i of p.
func view(p []float32, i int) []float32 {
	t := Tensors[i]
	return p[t.Offset : t.Offset+t.Size()]
}

// work holds the activations of a batch of up to cap images, and, when
// grads is set, the buffers of the backward pass.
type work struct {
	cap                 int
	cols1, a1, p1       []float32
	arg1                []int32 // index into a1 of each pooled value
	cols2, a2, p2       []float32
	arg2                []int32
	z1, h1, logits      []float32 // fc1's output before and after its ReLU, fc2's
	dlog, dh1, dp2, da2 []float32
	dcols2, dp1, da1    []float32
	grads               bool
	biasSum             []float64
}

func newWork(capacity int, grads bool) *work {
	w := &work{cap: capacity, grads: grads,
		cols1: make([]float32, capacity*pos1*k1), a1: make([]float32, capacity*act1),
		p1: make([]float32, capacity*pool1), arg1: make([]int32, capacity*pool1),
		cols2: make([]float32, capacity*pos2*k2), a2: make([]float32, capacity*act2),
		p2: make([]float32, capacity*flat), arg2: make([]int32, capacity*flat),
		z1: make([]float32, capacity*FeatureDim), h1: make([]float32, capacity*FeatureDim), logits: make([]float32, capacity*Classes),
	}
	if grads {
		w.dlog = make([]float32, capacity*Classes)
		w.dh1 = make([]float32, capacity*FeatureDim)
		w.dp2 = make([]float32, capacity*flat)
		w.da2 = make([]float32, capacity*act2)
		w.dcols2 = make([]float32, capacity*pos2*k2)
		w.dp1 = make([]float32, capacity*pool1)
		w.da1 = make([]float32, capacity*act1)
		w.biasSum = make([]float64, flat)
	}
	return w
}

// forward runs the network on the b images x (b x Pixels) and leaves the
// activations in w: w.h1 the features, w.logits the logits.
func (n *Net) forward(w *work, x []float32, b int) {
	p := n.Params
	// conv1: im2col (b*pos1 x 25) times W1^T (25 x 16)
	im2col(w.cols1[:b*pos1*k1], x[:b*Pixels], b, Side, 1)
	sgemm.Gemm(false, true, b*pos1, ch1, k1, 1, w.cols1, k1, view(p, tConv1W), k1, 0, w.a1, ch1)
	biasReLU(w.a1[:b*act1], view(p, tConv1B))
	maxPool(w.p1[:b*pool1], w.arg1[:b*pool1], w.a1[:b*act1], b, Side, ch1)
	// conv2: im2col (b*pos2 x 400) times W2^T (400 x 32)
	im2col(w.cols2[:b*pos2*k2], w.p1[:b*pool1], b, side2, ch1)
	sgemm.Gemm(false, true, b*pos2, ch2, k2, 1, w.cols2, k2, view(p, tConv2W), k2, 0, w.a2, ch2)
	biasReLU(w.a2[:b*act2], view(p, tConv2B))
	maxPool(w.p2[:b*flat], w.arg2[:b*flat], w.a2[:b*act2], b, side2, ch2)
	// fc1, fc2
	sgemm.Gemm(false, true, b, FeatureDim, flat, 1, w.p2, flat, view(p, tFC1W), flat, 0, w.z1, FeatureDim)
	addBias(w.z1[:b*FeatureDim], view(p, tFC1B))
	for i, v := range w.z1[:b*FeatureDim] {
		w.h1[i] = max(v, 0)
	}
	sgemm.Gemm(false, true, b, Classes, FeatureDim, 1, w.h1, FeatureDim, view(p, tFC2W), FeatureDim, 0, w.logits, Classes)
	addBias(w.logits[:b*Classes], view(p, tFC2B))
}

// lossGrad computes the mean cross-entropy of the logits in w against
// labels, and (after forward) its gradient with respect to the
// parameters into g (NumParams values, overwritten).
func (n *Net) lossGrad(w *work, labels []int32, b int, g []float32) float64 {
	p := n.Params
	loss := 0.0
	inv := 1 / float64(b)
	for i := range b {
		row := w.logits[i*Classes : (i+1)*Classes]
		mx := math.Inf(-1)
		for _, v := range row {
			mx = math.Max(mx, float64(v))
		}
		s := 0.0
		for _, v := range row {
			s += math.Exp(float64(v) - mx)
		}
		lse := mx + math.Log(s)
		loss += lse - float64(row[labels[i]])
		for j, v := range row {
			d := math.Exp(float64(v) - lse)
			if int32(j) == labels[i] {
				d--
			}
			w.dlog[i*Classes+j] = float32(d * inv)
		}
	}
	// fc2
	sgemm.Gemm(true, false, Classes, FeatureDim, b, 1, w.dlog, Classes, w.h1, FeatureDim, 0, view(g, tFC2W), FeatureDim)
	colSums(view(g, tFC2B), w.dlog[:b*Classes], w.biasSum)
	sgemm.Gemm(false, false, b, FeatureDim, Classes, 1, w.dlog, Classes, view(p, tFC2W), FeatureDim, 0, w.dh1, FeatureDim)
	reluMask(w.dh1[:b*FeatureDim], w.h1)
	// fc1
	sgemm.Gemm(true, false, FeatureDim, flat, b, 1, w.dh1, FeatureDim, w.p2, flat, 0, view(g, tFC1W), flat)
	colSums(view(g, tFC1B), w.dh1[:b*FeatureDim], w.biasSum)
	sgemm.Gemm(false, false, b, flat, FeatureDim, 1, w.dh1, FeatureDim, view(p, tFC1W), flat, 0, w.dp2, flat)
	// pool 2, conv2
	unpool(w.da2[:b*act2], w.dp2[:b*flat], w.arg2[:b*flat])
	reluMask(w.da2[:b*act2], w.a2)
	sgemm.Gemm(true, false, ch2, k2, b*pos2, 1, w.da2, ch2, w.cols2, k2, 0, view(g, tConv2W), k2)
	colSums(view(g, tConv2B), w.da2[:b*act2], w.biasSum)
	sgemm.Gemm(false, false, b*pos2, k2, ch2, 1, w.da2, ch2, view(p, tConv2W), k2, 0, w.dcols2, k2)
	col2im(w.dp1[:b*pool1], w.dcols2[:b*pos2*k2], b, side2, ch1)
	// pool 1, conv1 (no gradient for the input)
	unpool(w.da1[:b*act1], w.dp1[:b*pool1], w.arg1[:b*pool1])
	reluMask(w.da1[:b*act1], w.a1)
	sgemm.Gemm(true, false, ch1, k1, b*pos1, 1, w.da1, ch1, w.cols1, k1, 0, view(g, tConv1W), k1)
	colSums(view(g, tConv1B), w.da1[:b*act1], w.biasSum)
	return loss * inv
}

// im2col writes, for each of the b images of in (side x side x c,
// channels last) and each output position (y, x) of a 5x5 convolution
// with padding 2, the row of the 5x5xc inputs around it (zeros outside),
// in (ky, kx, c) order.
func im2col(cols, in []float32, b, side, c int) {
	t := im2colTask{cols: cols, in: in, side: side, c: c}
	sgemm.ParallelFor(&t, b, sgemm.Threads())
}

type im2colTask struct {
	cols, in []float32
	side, c  int
}

func (t *im2colTask) Run(lo, hi int) {
	side, c := t.side, t.c
	width := kSide * kSide * c
	for img := lo; img < hi; img++ {
		in := t.in[img*side*side*c : (img+1)*side*side*c]
		cols := t.cols[img*side*side*width : (img+1)*side*side*width]
		for y := range side {
			for x := range side {
				row := cols[(y*side+x)*width : (y*side+x+1)*width]
				for ky := range kSide {
					iy := y + ky - pad
					seg := row[ky*kSide*c : (ky+1)*kSide*c]
					if iy < 0 || iy >= side {
						clear(seg)
						continue
					}
					for kx := range kSide {
						ix := x + kx - pad
						dst := seg[kx*c : (kx+1)*c]
						if ix < 0 || ix >= side {
							clear(dst)
							continue
						}
						copy(dst, in[(iy*side+ix)*c:(iy*side+ix+1)*c])
					}
				}
			}
		}
	}
}

// col2im is im2col's adjoint: it sums each row's entries back onto the
// inputs they were copied from (in, overwritten).
func col2im(in, cols []float32, b, side, c int) {
	clear(in)
	width := kSide * kSide * c
	for img := range b {
		dst := in[img*side*side*c : (img+1)*side*side*c]
		src := cols[img*side*side*width : (img+1)*side*side*width]
		for y := range side {
			for x := range side {
				row := src[(y*side+x)*width : (y*side+x+1)*width]
				for ky := range kSide {
					iy := y + ky - pad
					if iy < 0 || iy >= side {
						continue
					}
					for kx := range kSide {
						ix := x + kx - pad
						if ix < 0 || ix >= side {
							continue
						}
						d := dst[(iy*side+ix)*c : (iy*side+ix+1)*c]
						s := row[(ky*kSide+kx)*c : (ky*kSide+kx+1)*c]
						for k, v := range s {
							d[k] += v
						}
					}
				}
			}
		}
	}
}

// maxPool takes the maximum over each 2x2 block of the b images of in
// (side x side x c, channels last) into out (side/2 x side/2 x c), and
// the index into in of the first maximum into arg.
func maxPool(out []float32, arg []int32, in []float32, b, side, c int) {
	h := side / 2
	for img := range b {
		base := img * side * side * c
		for y := range h {
			for x := range h {
				o := ((img*h+y)*h + x) * c
				for k := range c {
					best := base + ((2*y)*side+2*x)*c + k
					for _, d := range [3][2]int{{0, 1}, {1, 0}, {1, 1}} {
						i := base + ((2*y+d[0])*side+2*x+d[1])*c + k
						if in[i] > in[best] {
							best = i
						}
					}
					out[o+k] = in[best]
					arg[o+k] = int32(best)
				}
			}
		}
	}
}

// unpool routes each pooled gradient to the input its maximum came from
// (the 2x2 blocks do not overlap, so each input receives at most one).
func unpool(din, dout []float32, arg []int32) {
	clear(din)
	for i, a := range arg {
		din[a] = dout[i]
	}
}

// biasReLU adds the bias to each row of x (rows of len(bias)) and applies
// max(0, .).
func biasReLU(x, bias []float32) {
	c := len(bias)
	for i := range x {
		v := x[i] + bias[i%c]
		if v < 0 {
			v = 0
		}
		x[i] = v
	}
}

func addBias(x, bias []float32) {
	c := len(bias)
	for i := range x {
		x[i] += bias[i%c]
	}
}

// reluMask zeroes the gradients dx where the ReLU's output y is 0 (its
// input was <= 0).
func reluMask(dx, y []float32) {
	for i := range dx {
		if y[i] <= 0 {
			dx[i] = 0
		}
	}
}

// colSums writes the column sums of the rows of x (rows of len(out)),
// accumulated in float64 in row order (acc: scratch of len(out) at least).
func colSums(out, x []float32, acc []float64) {
	c := len(out)
	acc = acc[:c]
	clear(acc)
	for i, v := range x {
		acc[i%c] += float64(v)
	}
	for j := range out {
		out[j] = float32(acc[j])
	}
}

// checkImages validates n images of x: Pixels values each, finite.
func checkImages(x []float32, n int) error {
	if n < 1 {
		return fmt.Errorf("mnistnet: %d images: want at least 1", n)
	}
	if len(x) < n*Pixels {
		return fmt.Errorf("mnistnet: %d images of %d pixels need %d values, got %d", n, Pixels, n*Pixels, len(x))
	}
	for k, v := range x[:n*Pixels] {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("mnistnet: image %d has the value %v", k/Pixels, v)
		}
	}
	return nil
}

// featureBatch is the batch of Features and Predict: every image goes
// through the same shapes of product whatever the count (the last batch
// is padded with zeros), so its features do not depend on its neighbours
// or on how many images there are.
const featureBatch = 100

// forEachBatch runs the network over the n images of x in batches and
// calls f with the first image of the batch, its count and the
// activations.
func (n *Net) forEachBatch(ctx context.Context, x []float32, count int, f func(first, b int, w *work)) error {
	if len(n.Params) != NumParams {
		return fmt.Errorf("mnistnet: %d parameters, want %d", len(n.Params), NumParams)
	}
	if err := checkImages(x, count); err != nil {
		return err
	}
	w := newWork(featureBatch, false)
	buf := make([]float32, featureBatch*Pixels)
	for first := 0; first < count; first += featureBatch {
		if err := ctx.Err(); err != nil {
			return err
		}
		b := min(featureBatch, count-first)
		copy(buf, x[first*Pixels:(first+b)*Pixels])
		clear(buf[b*Pixels:])
		n.forward(w, buf, featureBatch)
		f(first, b, w)
	}
	return nil
}

// Features returns the 128 features of each of the count images of x
// (count x Pixels values in [-1, 1], row-major 28 x 28), count x
// FeatureDim values: the penultimate layer's outputs before its ReLU,
// divided by FeatureScale. Before the ReLU, because after it 49 of the
// shipped network's 128 units are 0 on every test image (their
// coordinates would carry nothing) and the others are clipped at 0, far
// from the Gaussian that FD fits; the pre-activations are the same linear
// read-out of the convolutional features, unclipped. It checks ctx
// between batches of 100 images and returns its error once it is
// cancelled.
func (n *Net) Features(ctx context.Context, x []float32, count int) ([]float32, error) {
	out := make([]float32, count*FeatureDim)
	err := n.forEachBatch(ctx, x, count, func(first, b int, w *work) {
		inv := 1 / n.scale()
		for i, v := range w.z1[:b*FeatureDim] {
			out[first*FeatureDim+i] = v * inv
		}
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Predict returns the most likely class of each image (the first of
// equal logits).
func (n *Net) Predict(x []float32, count int) ([]int, error) {
	out := make([]int, count)
	err := n.forEachBatch(context.Background(), x, count, func(first, b int, w *work) {
		for i := range b {
			row := w.logits[i*Classes : (i+1)*Classes]
			best := 0
			for j, v := range row {
				if v > row[best] {
					best = j
				}
			}
			out[first+i] = best
		}
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Accuracy is the fraction of the count images whose predicted class is
// their label.
func (n *Net) Accuracy(x []float32, labels []int32, count int) (float64, error) {
	if len(labels) < count {
		return 0, fmt.Errorf("mnistnet: %d labels for %d images", len(labels), count)
	}
	pred, err := n.Predict(x, count)
	if err != nil {
		return 0, err
	}
	right := 0
	for i, p := range pred {
		if int32(p) == labels[i] {
			right++
		}
	}
	return float64(right) / float64(count), nil
}

// Calibrate sets FeatureScale to the root mean square of the features
// (before any scale) over the count images of x.
func (n *Net) Calibrate(ctx context.Context, x []float32, count int) error {
	n.FeatureScale = 0
	f, err := n.Features(ctx, x, count)
	if err != nil {
		return err
	}
	ss := 0.0
	for _, v := range f {
		ss += float64(v) * float64(v)
	}
	n.FeatureScale = float32(math.Sqrt(ss / float64(len(f))))
	if !(n.FeatureScale > 0) {
		return fmt.Errorf("mnistnet: the features of %d images are all zero", count)
	}
	return nil
}
