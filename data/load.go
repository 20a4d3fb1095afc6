package data

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unicode"
)

// Load returns the built-in set pathOrName (n points drawn with seed) or
// else reads the file pathOrName by its extension, .npy or .csv in any
// case; n and seed matter only for built-in sets. A built-in name wins over
// a file or directory of the same name (which is then "./name").
func Load(pathOrName string, n int, seed uint64) (*Dataset, error) {
	return LoadWith(pathOrName, LoadOptions{N: n, Seed: seed})
}

// LoadOptions are the choices of LoadWith.
type LoadOptions struct {
	// N and Seed are the points drawn for a built-in set; N is also the
	// most images read from mnist, fashion-mnist or cifar10 (0: all).
	N    int
	Seed uint64
	// CSV are the options of a .csv file.
	CSV CSVOptions
	// Image are the size, channels and idx directory of image data (its
	// Max is N for a named set, unused for a directory).
	Image ImageOptions
}

// LoadWith is Load with the options of every kind of data.
func LoadWith(pathOrName string, o LoadOptions) (*Dataset, error) {
	n := o.N
	if IsBuiltin(pathOrName) {
		return Builtin(pathOrName, n, o.Seed)
	}
	if IsImageData(pathOrName) { // mnist[:split], fashion-mnist[:split], cifar10[:split] (first n images) or a directory: LoadImages
		return loadImageData(pathOrName, n, o.Image)
	}
	names := strings.Join(builtinNames, ", ")
	switch ext := strings.ToLower(filepath.Ext(pathOrName)); ext {
	case ".npy":
		return LoadNPY(pathOrName)
	case ".csv":
		return LoadCSVWith(pathOrName, o.CSV)
	case "":
		if _, err := os.Stat(pathOrName); err != nil && strings.ContainsAny(pathOrName, `/\`) {
			return nil, errorf(pathOrName, "no such file or directory (want a folder of images, a .npy or .csv file, or a built-in set: %s)", names)
		}
		return nil, errorf(pathOrName, "not a built-in data set (%s), an image set (%s), a folder of images, nor a .npy or .csv file", names, strings.Join(ImageDataNames(), ", "))
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
