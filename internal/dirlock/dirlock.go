// Package dirlock keeps two processes from writing into one directory at
// once: Lock holds a lock file there, naming the holder's process id,
// until the returned release is called or the process ends. A lock left
// by a process that has died is taken over.
package dirlock

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Name is the lock file Lock keeps in the directory.
const Name = ".fmgpu.lock"

// HeldError reports a directory locked by another live process.
type HeldError struct {
	Dir string
	PID int // the holder's process id, 0 when its file does not say
}

func (e *HeldError) Error() string {
	who := "another process"
	switch {
	case e.PID == os.Getpid():
		who = "this process (another run in it holds the directory)"
	case e.PID > 0:
		who = fmt.Sprintf("another fmgpu process (pid %d)", e.PID)
	}
	return fmt.Sprintf("%s is in use by %s", e.Dir, who)
}

// Lock locks dir (which must exist) for this process.
func Lock(dir string) (release func(), err error) {
	return lock(dir, filepath.Join(dir, Name))
}

// readPID reads the process id a lock file names (0 if none).
func readPID(b []byte) int {
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid < 1 {
		return 0
	}
	return pid
}

func pidLine() []byte { return []byte(strconv.Itoa(os.Getpid()) + "\n") }
