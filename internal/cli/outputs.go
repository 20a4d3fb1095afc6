package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/fmgpu/fmgpu/internal/atomicfile"
)

// output is an output file and the flag that named it, or with input set
// a file the command reads, which no output may replace.
type output struct {
	flag, path string
	input      bool
}

// input is a file the command reads and the flag that named it; a flag
// whose value is not a file (a built-in data set) is left out.
func input(flag, path string) output { return output{flag: flag, path: path, input: true} }

// checkOutputs fails before any computation when an output cannot be
// written: its directory is missing or read-only, the path is a directory,
// two flags name the same file, or an output would replace an input (by
// name or through a link).
func checkOutputs(outs ...output) error {
	seen := map[string]string{}
	var dirs []string
	dirFlag := map[string]string{}
	type read struct {
		flag string
		st   os.FileInfo
	}
	var inputs []read
	for _, o := range outs {
		if !o.input || o.path == "" {
			continue
		}
		if st, err := os.Stat(o.path); err == nil && st.Mode().IsRegular() {
			inputs = append(inputs, read{o.flag, st})
		}
	}
	for _, o := range outs {
		if o.input || o.path == "" {
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
		st, err := os.Stat(o.path)
		if err == nil && st.IsDir() {
			return usagef("--%s %s is a directory; want a file name", o.flag, o.path)
		}
		for _, in := range inputs {
			if err == nil && os.SameFile(st, in.st) {
				return usagef("--%s %s is the file --%s reads; writing it would replace the input", o.flag, o.path, in.flag)
			}
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
