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

// RemovePending, called in the middle of a write (a process about to exit
// on a second Ctrl-C), removes its temporary file and leaves the old file
// as it was.
func TestRemovePending(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "checkpoint.safetensors")
	if err := WriteBytes(p, []byte("old")); err != nil {
		t.Fatal(err)
	}
	inFill, resume := make(chan struct{}), make(chan struct{})
	done := make(chan error)
	go func() {
		done <- Write(p, func(w io.Writer) error {
			if _, err := w.Write([]byte("half of the new")); err != nil {
				return err
			}
			close(inFill)
			<-resume
			return nil
		})
	}()
	<-inFill
	temps, _ := filepath.Glob(filepath.Join(dir, ".checkpoint.safetensors*"))
	if len(temps) != 1 {
		t.Fatalf("temporary files during the write: %v", temps)
	}
	RemovePending()
	if _, err := os.Stat(temps[0]); !os.IsNotExist(err) {
		t.Errorf("%s still there after RemovePending: %v", temps[0], err)
	}
	close(resume)
	<-done // the process would have exited: any result will do
	if got, err := os.ReadFile(p); err != nil || string(got) != "old" {
		t.Errorf("%s holds %q (%v), want the old contents", p, got, err)
	}
	RemovePending() // nothing in progress: nothing to do
}
