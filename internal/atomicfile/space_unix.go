//go:build unix

package atomicfile

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// CheckSpace fails early when the file system holding dir has fewer than
// need bytes free for unprivileged writers, so that a run does not train
// for hours and then fail to write its checkpoint.
func CheckSpace(dir string, need int64) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return nil // unknown: the writes themselves will report
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	if free < need {
		return fmt.Errorf("%s has %d bytes free, a checkpoint needs about %d", dir, free, need)
	}
	return nil
}
