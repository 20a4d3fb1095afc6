package gpu_test

import (
	"testing"
	"time"
)

// The image ops' device report at the U-Net's GPU sizes (batch 128): each
// op's error against the CPU backend and its GB/s or TFLOP/s.
func TestCUDAImageReport(t *testing.T) {
	if testing.Short() || *cudaLib == "" {
		t.Skip("GPU-sized buffers: run with -cuda.lib=libcuda.so.1 on a GPU host")
	}
	be := newCUDA(t)
	defer be.Close()
	runImageReport(t, be, 1, 50*time.Millisecond)
}
