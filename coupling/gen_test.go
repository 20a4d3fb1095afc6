package coupling

import (
	"testing"

	"github.com/fmgpu/fmgpu/internal/gencheck"
)

// TestGeneratedCurrent: assign_amd64.s and its stubs are what asm/
// generates (go generate in this package).
func TestGeneratedCurrent(t *testing.T) {
	gencheck.Current(t, "coupling", "assign_amd64.s", "assign_stubs_amd64.go")
}
