package cli

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY opens a pseudo-terminal pair; the replica has no window size
// until one is set.
func openPTY(t *testing.T) (primary, replica *os.File) {
	t.Helper()
	p, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(p.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		p.Close()
		t.Skipf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetInt(int(p.Fd()), unix.TIOCGPTN)
	if err != nil {
		p.Close()
		t.Skipf("ptsname: %v", err)
	}
	r, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		p.Close()
		t.Skipf("open the replica: %v", err)
	}
	t.Cleanup(func() { r.Close(); p.Close() })
	return p, r
}

// Under a pseudo-terminal without a window size the bar would draw
// nothing: the report falls back to plain lines, and draws the bar once
// the terminal has a size (item 12).
func TestProgressOnPTYWithoutSize(t *testing.T) {
	p, r := openPTY(t)
	if !isTerminal(r) {
		t.Fatal("the replica is not a terminal")
	}
	if canDrawBar(r) {
		t.Fatal("a terminal of width 0 counted as one a bar draws on")
	}
	pr := newProgress(r, false, "fmgpu sample", "samples", 0, 10)
	if pr.bar != nil {
		t.Fatal("a bar on a terminal without a size")
	}
	pr.lastLine = time.Now().Add(-plainEvery)
	pr.step(4)
	buf := make([]byte, 256)
	p.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := p.Read(buf)
	if err != nil || !strings.Contains(string(buf[:n]), "fmgpu sample: samples 4/10") {
		t.Errorf("read %q, %v", buf[:n], err)
	}
	if err := unix.IoctlSetWinsize(int(r.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 24, Col: 80}); err != nil {
		t.Fatal(err)
	}
	if !canDrawBar(r) {
		t.Error("a terminal of 80 columns cannot draw a bar")
	}
}
