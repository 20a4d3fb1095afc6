// Package gencheck checks that a package's avo-generated assembly and
// stubs are what its generator writes today, so that a change to a
// generator cannot land without the code it generates.
package gencheck

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Current builds the generator in the test's package directory (./asm),
// runs it as `go generate` does (-out asm -stubs stubs -pkg pkg) in a
// temporary directory, and fails t unless what it writes equals the
// committed files. It skips in -short mode and where the go command is
// missing.
func Current(t *testing.T, pkg, asm, stubs string) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: the generator is not run")
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to run the generator")
	}
	dir := t.TempDir()
	gen := filepath.Join(dir, "gen")
	if b, err := exec.Command(gobin, "build", "-o", gen, "./asm").CombinedOutput(); err != nil {
		t.Fatalf("go build ./asm: %v\n%s", err, b)
	}
	// The same file names as go generate's: the header names them.
	cmd := exec.Command(gen, "-out", asm, "-stubs", stubs, "-pkg", pkg)
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("./asm: %v\n%s", err, b)
	}
	for _, f := range [][2]string{{asm, filepath.Join(dir, asm)}, {stubs, filepath.Join(dir, stubs)}} {
		want, err := os.ReadFile(f[0])
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(f[1])
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is not what ./asm generates today: run go generate in this package", f[0])
		}
	}
}
