//go:build !unix

package dirlock

import (
	"errors"
	"io/fs"
	"os"
)

// lock creates the lock file exclusively; one that names a process that
// no longer exists is removed and taken over.
func lock(dir, path string) (func(), error) {
	for attempt := 0; attempt < 2; attempt++ {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if err == nil {
			_, err = f.Write(pidLine())
			f.Close()
			if err != nil {
				os.Remove(path)
				return nil, err
			}
			return func() { os.Remove(path) }, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, err
		}
		b, _ := os.ReadFile(path)
		pid := readPID(b)
		if pid > 0 {
			if _, err := os.FindProcess(pid); err == nil {
				return nil, &HeldError{Dir: dir, PID: pid}
			}
		}
		os.Remove(path) // stale: its process is gone
	}
	return nil, &HeldError{Dir: dir}
}
