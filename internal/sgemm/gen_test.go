package sgemm

import (
	"testing"

	"github.com/fmgpu/fmgpu/internal/gencheck"
)

// TestGeneratedCurrent: kernels_amd64.s and its stubs are what asm/
// generates (go generate in this package).
func TestGeneratedCurrent(t *testing.T) {
	gencheck.Current(t, "sgemm", "kernels_amd64.s", "kernels_amd64.go")
}
