//go:build cuda

package gpu_test

import (
	"testing"
	"time"
)

// The image ops' device report at the U-Net's GPU sizes (batch 128): each
// op's error against the CPU backend and its GB/s or TFLOP/s.
func TestCUDAImageReport(t *testing.T) {
	if testing.Short() {
		t.Skip("GPU-sized buffers and CPU references")
	}
	be := newCUDA(t)
	defer be.Close()
	runImageReport(t, be, 1, 50*time.Millisecond)
}
