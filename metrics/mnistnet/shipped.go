package mnistnet

import (
	_ "embed"
	"sync"

	"github.com/fmgpu/fmgpu/data"
)

// shippedWeights is the network fmgpu ships, written by
// `go run ./scripts/mnistnet-train` (its Info records the command, the
// date and the accuracy; docs/metrics.md).
//
//go:embed mnistnet.safetensors
var shippedWeights []byte

var shipped = sync.OnceValues(func() (*Net, error) {
	n, info, err := Read(shippedWeights)
	shippedInfo = info
	return n, err
})

var shippedInfo Info

// Shipped returns the network fmgpu ships and what it records about its
// training. The network is shared: do not modify it.
func Shipped() (*Net, Info, error) {
	n, err := shipped()
	return n, shippedInfo, err
}

// RoundToPixels returns x with each value rounded to the nearest of the
// 256 values 8-bit pixels take in fmgpu's scaling (2p/255 - 1, values
// outside [-1, 1] clamped): generated images as a PNG would store them,
// and as the data the classifier was trained on are.
func RoundToPixels(x []float32) []float32 {
	out := make([]float32, len(x))
	for i, v := range x {
		out[i] = data.PixelToFloat(data.FloatToPixel(v))
	}
	return out
}
