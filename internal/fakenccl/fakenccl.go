// Package fakenccl builds, for tests, the fake libnccl.so.2 of src/libnccl.c:
// NCCL's entry points reducing over POSIX shared memory between the
// processes of one machine, so that the NCCL engine of package collective
// (its binding, its bootstrap, its stream arguments) runs without a GPU.
//
// The library is compiled once per version of its source with the host C
// compiler ($CC, else cc) into the user's cache directory, and reused by
// every test binary after that.
package fakenccl

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

var (
	once    sync.Once
	libPath string
	libErr  error
)

// Library returns the path of the fake libnccl.so.2, building it if
// needed; a build failure fails the test.
func Library(tb testing.TB) string {
	tb.Helper()
	p, err := Build()
	if err != nil {
		tb.Fatalf("fake libnccl: %v", err)
	}
	return p
}

// Build returns the path of the fake libnccl.so.2, building it if needed.
func Build() (string, error) {
	once.Do(func() { libPath, libErr = build() })
	return libPath, libErr
}

func source() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", fmt.Errorf("cannot locate the source")
	}
	src := filepath.Join(filepath.Dir(file), "src", "libnccl.c")
	_, err := os.Stat(src)
	return src, err
}

func build() (string, error) {
	src, err := source()
	if err != nil {
		return "", err
	}
	code, err := os.ReadFile(src)
	if err != nil {
		return "", err
	}
	cc := os.Getenv("CC")
	if cc == "" {
		cc = "cc"
	}
	flags := []string{"-std=c11", "-O2", "-g", "-fPIC", "-shared", "-pthread", "-Wall", "-Wextra", "-Werror"}
	h := sha256.New()
	fmt.Fprintln(h, cc, strings.Join(flags, " "))
	h.Write(code)
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	outDir := filepath.Join(cache, "fmgpu", "fakenccl-"+hex.EncodeToString(h.Sum(nil))[:16])
	out := filepath.Join(outDir, "libnccl.so.2")
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return "", err
	}
	// Several test binaries may build at once: each writes its own file
	// and renames it into place.
	tmp, err := os.CreateTemp(outDir, "libnccl-*.so")
	if err != nil {
		return "", err
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	args := append(flags, "-o", tmp.Name(), src, "-lrt")
	if msg, err := exec.Command(cc, args...).CombinedOutput(); err != nil {
		return "", fmt.Errorf("%s: %v\n%s", cc, err, msg)
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return "", err
	}
	return out, nil
}
