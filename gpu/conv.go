package gpu

import "fmt"

// Image tensors are stored NCHW: a batch of images, each channel a
// row-major H x W plane, channels one after another.

// Conv are the 2-D convolution and its gradients.
type Conv interface {
	// Conv2D: y[b,o,i,j] = bias[o] + sum_{c,u,v} w[o,c,u,v]
	// x[b,c,i*Stride+u-Pad, j*Stride+v-Pad] (zero outside the image), with
	// x (Batch, InC, H, W), w (OutC, InC, K, K), bias (OutC) or nil,
	// y (Batch, OutC, OutH, OutW); y must not alias x.
	Conv2D(s ConvShape, x, w, bias, y Buffer)
	// Conv2DBackwardData overwrites dx (shaped as x) with the gradient of
	// sum(dy * y) with respect to x.
	Conv2DBackwardData(s ConvShape, dy, w, dx Buffer)
	// Conv2DBackwardFilter overwrites dw (shaped as w) and, when not nil,
	// dbias (OutC) with the gradients of sum(dy * y).
	Conv2DBackwardFilter(s ConvShape, x, dy, dw, dbias Buffer)
}

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

// convLens checks s and returns the element counts of x, w and y.
func convLens(op string, s ConvShape) (nx, nw, ny int) {
	if err := s.Validate(); err != nil {
		panic(fmt.Sprintf("gpu: %s: %v", op, err))
	}
	return count4(op, s.Batch, s.InC, s.H, s.W), count4(op, s.OutC, s.InC, s.K, s.K), count4(op, s.Batch, s.OutC, s.OutH(), s.OutW())
}

func checkConv2D(s ConvShape, x, w, bias, y Buffer) {
	const op = "Conv2D"
	nx, nw, ny := convLens(op, s)
	need(op, "x", x, nx)
	need(op, "w", w, nw)
	if bias != nil {
		need(op, "bias", bias, s.OutC)
	}
	need(op, "y", y, ny)
}

func checkConv2DBackwardData(s ConvShape, dy, w, dx Buffer) {
	const op = "Conv2DBackwardData"
	nx, nw, ny := convLens(op, s)
	need(op, "dy", dy, ny)
	need(op, "w", w, nw)
	need(op, "dx", dx, nx)
}

func checkConv2DBackwardFilter(s ConvShape, x, dy, dw, dbias Buffer) {
	const op = "Conv2DBackwardFilter"
	nx, nw, ny := convLens(op, s)
	need(op, "x", x, nx)
	need(op, "dy", dy, ny)
	need(op, "dw", dw, nw)
	if dbias != nil {
		need(op, "dbias", dbias, s.OutC)
	}
}
