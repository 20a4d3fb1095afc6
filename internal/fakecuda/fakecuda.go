// Package fakecuda builds, for tests, the fake libcuda.so.1 of
// kernels/fakecuda: the CUDA driver API answered by the kernelsim harness,
// so that the real CUDA launcher (package gpu over internal/cudadriver)
// runs its kernels on a machine without a GPU.
//
// The library is compiled once per version of its sources with the host
// C++ compiler ($CXX, else g++) into the user's cache directory, and reused
// by every test binary after that.
package fakecuda

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
)

var (
	once    sync.Once
	libPath string
	libErr  error
)

// Library returns the path of the fake libcuda.so.1, building it if
// needed; a build failure fails the test.
func Library(tb testing.TB) string {
	tb.Helper()
	p, err := Build()
	if err != nil {
		tb.Fatalf("fake libcuda: %v", err)
	}
	return p
}

// Build returns the path of the fake libcuda.so.1, building it if needed.
func Build() (string, error) {
	once.Do(func() { libPath, libErr = build() })
	return libPath, libErr
}

// kernelsDir is the repository's kernels directory, found from this file.
func kernelsDir() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", fmt.Errorf("cannot locate the sources")
	}
	dir := filepath.Join(filepath.Dir(file), "..", "..", "kernels")
	if _, err := os.Stat(filepath.Join(dir, "fakecuda", "libcuda.cc")); err != nil {
		return "", err
	}
	return dir, nil
}

// sources are the files the library is built from (the hash covers them
// all: kernels, harness, fake driver, the ptxas report it checks launches
// against).
func sources(dir string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(dir, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch filepath.Ext(p) {
		case ".cu", ".cuh", ".cc", ".h", ".txt":
			files = append(files, p)
		}
		return nil
	})
	sort.Strings(files)
	return files, err
}

func build() (string, error) {
	dir, err := kernelsDir()
	if err != nil {
		return "", err
	}
	files, err := sources(dir)
	if err != nil {
		return "", err
	}
	cxx := os.Getenv("CXX")
	if cxx == "" {
		cxx = "g++"
	}
	flags := []string{"-std=c++17", "-O2", "-g", "-fPIC", "-pthread",
		"-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter", "-Wno-unused-function",
		"-Wno-maybe-uninitialized", // as kernels/sim.go: the unrolled staging loops
		"-I" + dir}
	// The kernels' access checks (kernels/sim_checks.go) or, in the
	// simasan build, AddressSanitizer and UBSan over the whole library.
	flags = append(flags, sanitizeFlags...)
	// The library's own references bind to its own definitions, even in a
	// test binary that links the kernelsim harness statically.
	linkFlags := append([]string{"-shared", "-pthread", "-Wl,-Bsymbolic"}, sanitizeLinkFlags...)
	h := sha256.New()
	fmt.Fprintln(h, cxx, strings.Join(flags, " "), strings.Join(linkFlags, " "))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		fmt.Fprintln(h, filepath.Base(f), len(b))
		h.Write(b)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	outDir := filepath.Join(cache, "fmgpu", "fakecuda-"+hex.EncodeToString(h.Sum(nil))[:16])
	out := filepath.Join(outDir, "libcuda.so.1")
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return "", err
	}
	// Several test binaries may build at once: each builds in its own
	// directory and renames the library into place.
	tmp, err := os.MkdirTemp(outDir, "build-*")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	// The ptxas report, compiled in: the fake driver checks every launch
	// against it as the harness does, and answers cuFuncGetAttribute.
	report, err := os.ReadFile(filepath.Join(dir, "ptxas-report.txt"))
	if err != nil {
		return "", err
	}
	if strings.Contains(string(report), ")FMGPU\"") {
		return "", fmt.Errorf("ptxas-report.txt cannot be quoted")
	}
	reportSrc := filepath.Join(tmp, "ptxas_report.cc")
	if err := os.WriteFile(reportSrc, []byte("extern \"C\" const char fmgpu_fake_ptxas_report[] = R\"FMGPU("+string(report)+")FMGPU\";\n"), 0o644); err != nil {
		return "", err
	}
	// Compiled file by file, several at once (the kernels' translation
	// units take minutes each with the sanitizers), then linked: the
	// ThreadSanitizer instrumentation of the checks is wanted at compile
	// time only (no runtime is linked). Linked in the sources' order, which
	// keeps the kernels' translation units (sim_kernels*.cc) next to each
	// other: the harness takes their static shared variables (thread-local)
	// for one span of memory, and another file's thread-local variables
	// inside it would read as shared memory.
	var srcs []string
	for _, f := range files {
		if b := filepath.Base(f); filepath.Dir(f) == dir && strings.HasPrefix(b, "sim_") && strings.HasSuffix(b, ".cc") {
			srcs = append(srcs, f)
		}
	}
	srcs = append(srcs, filepath.Join(dir, "fakecuda", "libcuda.cc"), reportSrc)
	// The op families with tensor-core kernels (sim_kernels_*.cc) start
	// first, products (the longest) to conv: started last, one of them
	// would leave a core idle while it finishes.
	order := make([]int, len(srcs))
	for k := range order {
		order[k] = k
	}
	heavy := func(k int) bool { return strings.HasPrefix(filepath.Base(srcs[k]), "sim_kernels_") }
	slices.SortStableFunc(order, func(a, b int) int {
		switch {
		case heavy(a) && heavy(b):
			return b - a
		case heavy(a):
			return -1
		case heavy(b):
			return 1
		}
		return 0
	})
	objs := make([]string, len(srcs))
	errs := make([]error, len(srcs))
	slots := make(chan struct{}, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for _, k := range order {
		objs[k] = filepath.Join(tmp, strings.TrimSuffix(filepath.Base(srcs[k]), ".cc")+".o")
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			if msg, err := exec.Command(cxx, append(append([]string{}, flags...), "-c", "-o", objs[k], srcs[k])...).CombinedOutput(); err != nil {
				errs[k] = fmt.Errorf("%s %s: %v\n%s", cxx, filepath.Base(srcs[k]), err, msg)
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return "", err
		}
	}
	lib := filepath.Join(tmp, "libcuda.so.1")
	if msg, err := exec.Command(cxx, append(append(append([]string{}, linkFlags...), "-o", lib), objs...)...).CombinedOutput(); err != nil {
		return "", fmt.Errorf("%s: linking: %v\n%s", cxx, err, msg)
	}
	if err := os.Rename(lib, out); err != nil {
		return "", err
	}
	return out, nil
}
