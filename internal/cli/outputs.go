package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/fmgpu/fmgpu/internal/atomicfile"
)

// output is an output file and the flag that named it.
type output struct{ flag, path string }

// checkOutputs fails before any computation when an output cannot be
// written: its directory is missing or read-only, the path is a directory,
// or two flags name the same file.
func checkOutputs(outs ...output) error {
	seen := map[string]string{}
	var dirs []string
	dirFlag := map[string]string{}
	for _, o := range outs {
		if o.path == "" {
			continue
		}
		abs, err := filepath.Abs(o.path)
		if err != nil {
			return usagef("--%s %s: %v", o.flag, o.path, err)
		}
		if other, ok := seen[abs]; ok {
			return usagef("--%s and --%s name the same file %s", other, o.flag, o.path)
		}
		seen[abs] = o.flag
		if st, err := os.Stat(o.path); err == nil && st.IsDir() {
			return usagef("--%s %s is a directory; want a file name", o.flag, o.path)
		}
		dir := filepath.Dir(abs)
		if _, ok := dirFlag[dir]; !ok {
			dirFlag[dir] = o.flag
			dirs = append(dirs, dir)
		}
	}
	sort.Strings(dirs)
	for _, dir := range dirs {
		st, err := os.Stat(dir)
		switch {
		case err != nil:
			return fmt.Errorf("--%s: directory %s: %w", dirFlag[dir], dir, unwrapPath(err))
		case !st.IsDir():
			return fmt.Errorf("--%s: %s is not a directory", dirFlag[dir], dir)
		}
		if err := atomicfile.CheckWritable(dir); err != nil {
			return fmt.Errorf("--%s: %w", dirFlag[dir], err)
		}
	}
	return nil
}

func unwrapPath(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}
