package atomicfile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// A write that fails midway (a full disk, say) leaves the previous file
// whole and no temporary file behind.
func TestFailedWriteKeepsOldFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "ck.safetensors")
	if err := WriteBytes(p, []byte("old contents")); err != nil {
		t.Fatal(err)
	}
	err := Write(p, func(w io.Writer) error {
		w.Write([]byte("half of the new"))
		return syscall.ENOSPC
	})
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("error %v, want ENOSPC", err)
	}
	got, _ := os.ReadFile(p)
	if string(got) != "old contents" {
		t.Errorf("file now %q", got)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the file", len(entries))
	}
}

// Temporary files of a killed write are removed by the next write of the
// same file, and only those.
func TestStaleTemporariesRemoved(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "metrics.jsonl")
	stale := filepath.Join(dir, ".metrics.jsonl123456789")
	keep := []string{filepath.Join(dir, ".metrics.jsonl.bak"), filepath.Join(dir, ".other123")}
	for _, f := range append(keep, stale) {
		os.WriteFile(f, []byte("x"), 0o644)
	}
	if err := WriteBytes(p, []byte("new")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale temporary still there: %v", err)
	}
	for _, f := range keep {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("%s was removed", f)
		}
	}
}

func TestCheckWritable(t *testing.T) {
	if err := CheckWritable(t.TempDir()); err != nil {
		t.Error(err)
	}
	if err := CheckWritable(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("a missing directory passed")
	}
}

func TestCheckSpace(t *testing.T) {
	if err := CheckSpace(t.TempDir(), 1); err != nil {
		t.Errorf("1 byte: %v", err)
	}
	if err := CheckSpace(t.TempDir(), 1<<62); err == nil {
		t.Error("4 EiB reported as available")
	}
}
