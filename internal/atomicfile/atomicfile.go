// Package atomicfile writes every file fmgpu produces (checkpoints, samples,
// plots, metrics) so that a crash or a kill at any moment leaves either the
// previous file whole or the new one whole: a temporary file in the same
// directory, fsync, rename over the destination, fsync of the directory.
package atomicfile

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/google/renameio/v2"
)

// pending holds the temporary files of the writes in progress.
var pending sync.Map

// RemovePending removes the temporary files of the writes in progress,
// leaving their destinations as they were: for a process about to exit in
// the middle of one (a second Ctrl-C while a checkpoint is written), which
// would otherwise leave a hidden file as large as the checkpoint until the
// next write of the same file.
func RemovePending() {
	pending.Range(func(name, _ any) bool {
		os.Remove(name.(string))
		return true
	})
}

// Write creates or replaces path with what fill writes. If fill fails, the
// temporary file is removed and path is untouched.
func Write(path string, fill func(w io.Writer) error) error {
	removeStale(path)
	// The temporary file lives beside its destination: the rename is then
	// within one file system, and what a kill leaves is found (and removed
	// by the next write of the same file) where the user looks.
	pf, err := renameio.NewPendingFile(path, renameio.WithPermissions(0o644), renameio.WithTempDir(filepath.Dir(path)))
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	defer pf.Cleanup()
	pending.Store(pf.Name(), nil)
	defer pending.Delete(pf.Name())
	if err := fill(pf); err != nil {
		return err
	}
	if err := pf.CloseAtomicallyReplace(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}

// WriteBytes is Write of a byte slice.
func WriteBytes(path string, data []byte) error {
	return Write(path, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// removeStale deletes the temporary files that writes of path killed
// before their rename left behind: "." + base name + decimal digits, the
// names renameio gives them.
func removeStale(path string) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	matches, _ := filepath.Glob(filepath.Join(dir, "."+globEscape(base)+"[0-9]*"))
	for _, m := range matches {
		suffix := strings.TrimPrefix(filepath.Base(m), "."+base)
		if suffix != "" && strings.Trim(suffix, "0123456789") == "" {
			os.Remove(m)
		}
	}
}

func globEscape(s string) string {
	r := strings.NewReplacer("*", `\*`, "?", `\?`, "[", `\[`, `\`, `\\`)
	return r.Replace(s)
}

// syncDir makes the rename itself durable: without it a power loss after
// the rename may bring back the directory entry of the old file.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// CheckWritable fails early, with a clear error, when dir cannot hold new
// files: it creates and removes a probe file there.
func CheckWritable(dir string) error {
	f, err := os.CreateTemp(dir, ".fmgpu-probe-*")
	if err != nil {
		return fmt.Errorf("output directory %s is not writable: %w", dir, err)
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}

// MkdirAll makes dir and its missing parents, as os.MkdirAll, and returns
// undo, which removes what it made again, deepest first, as long as each
// is empty: a run refused before it wrote anything leaves no directories
// behind.
func MkdirAll(dir string) (undo func(), err error) {
	var made []string
	for d := filepath.Clean(dir); ; {
		if _, err := os.Lstat(d); !errors.Is(err, os.ErrNotExist) {
			break
		}
		made = append(made, d)
		p := filepath.Dir(d)
		if p == d {
			break
		}
		d = p
	}
	undo = func() {
		for _, d := range made {
			if os.Remove(d) != nil {
				return
			}
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		undo()
		return func() {}, err
	}
	return undo, nil
}
