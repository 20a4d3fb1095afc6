package data

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"unicode"
)

// Load returns the built-in set pathOrName (n points drawn with seed) or
// else reads the file pathOrName by its extension, .npy or .csv in any
// case; n and seed matter only for built-in sets. A built-in name wins over
// a file of the same name, which could only be a file without an extension.
func Load(pathOrName string, n int, seed uint64) (*Dataset, error) {
	if IsBuiltin(pathOrName) {
		return Builtin(pathOrName, n, seed)
	}
	if IsImageData(pathOrName) { // mnist[:split], fashion-mnist[:split] (first n images) or a directory: LoadImages
		return loadImageData(pathOrName, n)
	}
	names := strings.Join(builtinNames, ", ")
	switch ext := strings.ToLower(filepath.Ext(pathOrName)); ext {
	case ".npy":
		return LoadNPY(pathOrName)
	case ".csv":
		return LoadCSV(pathOrName)
	case "":
		return nil, errorf(pathOrName, "not a built-in data set (%s) nor a .npy or .csv file", names)
	default:
		return nil, errorf(pathOrName, "unknown data file type %s: want .npy or .csv, or a built-in set (%s)", quote(ext), names)
	}
}

// errorf builds the loaders' one-line error "name: reason". Everything taken
// from the input in reason goes through quote, so only the name could bring
// a line break, and displayName quotes it when it would.
func errorf(name, format string, args ...any) error {
	return fmt.Errorf("%s: %w", displayName(name), fmt.Errorf(format, args...))
}

// fileErr reports an os error once with the path, not twice as
// *fs.PathError's "open path: reason" inside "path: ..." would.
func fileErr(path string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return fmt.Errorf("%s: %w", displayName(path), err)
}

func readErr(name string, err error) error {
	return fmt.Errorf("%s: read: %w", displayName(name), err)
}

func isEOF(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

func displayName(name string) string {
	if name == "" || strings.ContainsFunc(name, func(r rune) bool { return !unicode.IsPrint(r) }) {
		return strconv.Quote(name)
	}
	return name
}

// quote shows input text in an error: quoted, escaped and cut short, so that
// a hostile file can neither break the line nor flood the terminal.
func quote(s string) string {
	const show = 40
	if len(s) > show {
		return strconv.Quote(s[:show]) + "..."
	}
	return strconv.Quote(s)
}
