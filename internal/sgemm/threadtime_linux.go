package sgemm

import (
	"time"

	"golang.org/x/sys/unix"
)

// threadTime is the CPU time of the calling OS thread (the caller locks
// the goroutine to it).
func threadTime() time.Duration {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts) != nil {
		return time.Duration(time.Now().UnixNano())
	}
	return time.Duration(ts.Nano())
}
