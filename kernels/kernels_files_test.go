package kernels_test

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"

	// An external test package (with the package's names in scope): an
	// internal one would compile the C++ harness a second time, for minutes.
	. "github.com/fmgpu/fmgpu/kernels"
)

// These need neither nvcc nor the harness: they check the committed build
// products against the sources.

// kernelDecl matches a kernel declaration in the sources.
var kernelDecl = regexp.MustCompile(`extern "C" __global__ void\s+(?:__launch_bounds__\((\d+)(?:,\s*\d+)?\)\s+)?(\w+)\s*\(`)

// sourceKernels lists the kernels declared in *.cu (the fatbin's) and in
// sim_selftest.h (the harness's own).
func sourceKernels(t *testing.T) (fatbin, selftest []string) {
	t.Helper()
	paths, err := filepath.Glob("*.cu")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no kernel sources: %v", err)
	}
	for _, path := range paths {
		src, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range kernelDecl.FindAllSubmatch(src, -1) {
			if len(m[1]) == 0 {
				t.Errorf("%s: kernel %s declares no __launch_bounds__", path, m[2])
			}
			fatbin = append(fatbin, string(m[2]))
		}
	}
	src, err := os.ReadFile("sim_selftest.h")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range kernelDecl.FindAllSubmatch(src, -1) {
		selftest = append(selftest, string(m[2]))
	}
	slices.Sort(fatbin)
	slices.Sort(selftest)
	return fatbin, selftest
}

// Static shared variables are declared with FM_SHARED (common.cuh), which
// registers them with the kernelsim harness (poisoning, bounds and race
// checks, their names in messages); a bare __shared__ declaration would
// escape those checks.
func TestSharedDeclarations(t *testing.T) {
	paths, err := filepath.Glob("*.cu*")
	if err != nil {
		t.Fatal(err)
	}
	paths = append(paths, "sim_selftest.h")
	bare := regexp.MustCompile(`^\s*(static\s+)?__shared__\s`)
	for _, path := range paths {
		src, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range bytes.Split(src, []byte("\n")) {
			if bare.Match(line) {
				t.Errorf("%s:%d: %s: declare static shared memory with FM_SHARED(type, name, dims)", path, i+1, bytes.TrimSpace(line))
			}
		}
	}
}

// Every kernel is named <op>_<direction>_kernel and declares its launch
// bounds (sourceKernels checks those).
func TestKernelNames(t *testing.T) {
	fatbin, _ := sourceKernels(t)
	naming := regexp.MustCompile(`^[a-z0-9]+(_[a-z0-9]+)*_(forward|backward|update|reduce)_kernel$`)
	for _, k := range fatbin {
		if !naming.MatchString(k) {
			t.Errorf("kernel %s is not named <op>_<forward|backward|update|reduce>_kernel", k)
		}
	}
}

// The committed ptxas report (written with the fatbin by `make kernels`)
// names the same kernels as the sources, for sm_80 and sm_90, and no kernel
// spills registers: a stale fatbin shows here without nvcc.
func TestPtxasReportMatchesSources(t *testing.T) {
	fatbin, _ := sourceKernels(t)
	f, err := os.Open("ptxas-report.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	entry := regexp.MustCompile(`Compiling entry function '(\w+)' for '(sm_\d+)'`)
	spill := regexp.MustCompile(`(\d+) bytes spill stores, (\d+) bytes spill loads`)
	got := map[string][]string{}
	var last string
	s := bufio.NewScanner(f)
	for s.Scan() {
		if m := entry.FindStringSubmatch(s.Text()); m != nil {
			got[m[2]] = append(got[m[2]], m[1])
			last = m[1] + " on " + m[2]
		}
		if m := spill.FindStringSubmatch(s.Text()); m != nil && (m[1] != "0" || m[2] != "0") {
			t.Errorf("%s spills registers: %s", last, m[0])
		}
	}
	for _, arch := range []string{"sm_80", "sm_90"} {
		k := slices.Sorted(slices.Values(got[arch]))
		if !slices.Equal(k, fatbin) {
			t.Errorf("ptxas-report.txt lists for %s\n  %v\nthe sources declare\n  %v\n(run make kernels)", arch, k, fatbin)
		}
	}
	if len(Fatbin) == 0 || !bytes.HasPrefix(Fatbin, []byte{0x50, 0xed, 0x55, 0xba}) {
		t.Errorf("fmgpu.fatbin does not start with the fatbin magic 0xba55ed50")
	}
}
