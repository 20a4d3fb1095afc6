package fmgpu

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// A Go program that imports fmgpu (examples/ring) builds with cgo off and
// no C compiler to be found, links no cgo runtime, and trains and samples:
// the CUDA driver is loaded at run time, and without one the program runs
// on the CPU.
func TestProgramBuildsWithoutCgo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a program")
	}
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	env := append(os.Environ(), "CGO_ENABLED=0", "CC=/nonexistent/cc", "CXX=/nonexistent/c++")
	bin := filepath.Join(t.TempDir(), "ring")
	build := exec.Command(goTool, "build", "-o", bin, "./examples/ring")
	build.Env = env
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build with CGO_ENABLED=0: %v\n%s", err, out)
	}
	list := exec.Command(goTool, "list", "-deps", "./examples/ring")
	list.Env = env
	deps, err := list.Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range strings.Fields(string(deps)) {
		if p == "runtime/cgo" {
			t.Error("the program links runtime/cgo")
		}
	}
	run := exec.Command(bin, "-steps", "20", "-n", "4")
	run.Env = append(os.Environ(), "FMGPU_LIBCUDA="+filepath.Join(t.TempDir(), "libcuda.so.1"))
	var stderr strings.Builder
	run.Stderr = &stderr
	out, err := run.Output()
	if err != nil {
		t.Fatalf("the program: %v\n%s", err, stderr.String())
	}
	if lines := strings.Split(strings.TrimSpace(string(out)), "\n"); len(lines) != 4 || strings.Count(lines[0], ",") != 1 {
		t.Errorf("the program wrote %q, want 4 CSV lines", out)
	}
	if !strings.Contains(stderr.String(), "(no GPU: no NVIDIA driver") {
		t.Errorf("the program's device line: %q", stderr.String())
	}
}
