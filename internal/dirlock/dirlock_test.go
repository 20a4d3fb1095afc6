package dirlock

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// A second lock of a locked directory fails naming the holder; after the
// release the directory can be locked again and no lock file is left.
func TestLockExcludes(t *testing.T) {
	dir := t.TempDir()
	release, err := Lock(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, Name))
	if strings.TrimSpace(string(b)) != strconv.Itoa(os.Getpid()) {
		t.Errorf("lock file holds %q, want this pid", b)
	}
	_, err = Lock(dir)
	var he *HeldError
	// held by this very process (a library program's second Trainer):
	// the message says so rather than name our own pid as another's
	if !errors.As(err, &he) || he.PID != os.Getpid() || !strings.Contains(err.Error(), "in use by this process") {
		t.Fatalf("second lock: %v", err)
	}
	release()
	if _, err := os.Stat(filepath.Join(dir, Name)); !os.IsNotExist(err) {
		t.Errorf("lock file left after release: %v", err)
	}
	release2, err := Lock(dir)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	release2()
}

// The lock file of a process that has ended is taken over.
func TestStaleLockTakenOver(t *testing.T) {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skip("no true(1) to make a dead pid with")
	}
	dead := cmd.ProcessState.Pid()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, Name), []byte(strconv.Itoa(dead)+"\n"), 0o644)
	release, err := Lock(dir)
	if err != nil {
		t.Fatalf("stale lock of pid %d: %v", dead, err)
	}
	defer release()
	b, _ := os.ReadFile(filepath.Join(dir, Name))
	if strings.TrimSpace(string(b)) != strconv.Itoa(os.Getpid()) {
		t.Errorf("lock file holds %q after the takeover", b)
	}
}
