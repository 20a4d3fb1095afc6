//go:build unix

package dirlock

import (
	"errors"
	"io"
	"os"
	"syscall"
)

// lock holds an flock(2) on the lock file: the kernel drops it when the
// process ends however it ends, so a dead holder's lock is free to take
// and its file (which names it) is overwritten.
func lock(dir, path string) (func(), error) {
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return nil, err
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			b, _ := io.ReadAll(io.LimitReader(f, 64))
			f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				return nil, &HeldError{Dir: dir, PID: readPID(b)}
			}
			return nil, err
		}
		// The holder before us removes the file as it releases: if it did
		// between our open and our flock, we hold a lock on a file no other
		// process will open, and must start again.
		fst, err1 := f.Stat()
		pst, err2 := os.Stat(path)
		if err1 != nil || err2 != nil || !os.SameFile(fst, pst) {
			f.Close()
			continue
		}
		if err := f.Truncate(0); err != nil {
			f.Close()
			return nil, err
		}
		if _, err := f.WriteAt(pidLine(), 0); err != nil {
			f.Close()
			return nil, err
		}
		return func() {
			os.Remove(path) // while still holding the lock, see above
			f.Close()
		}, nil
	}
}
