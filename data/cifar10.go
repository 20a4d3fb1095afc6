package data

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// CIFAR-10 (A. Krizhevsky, "Learning multiple layers of features from tiny
// images", 2009): 60000 RGB images of 32 x 32 in 10 classes, 50000 for
// training and 10000 for testing. No package registry reachable from a
// build carries it, so it is read from the official binary version,
// CIFAR10URL, extracted:
//
//	cifar-10-batches-bin/data_batch_1.bin ... data_batch_5.bin   (train)
//	cifar-10-batches-bin/test_batch.bin                          (test)
//
// Each file is 10000 records of 3073 bytes: the label (0 to 9), then the
// image as three 1024-byte planes (red, green, blue), each row-major 32 x
// 32: the NCHW layout of ImageInfo.Pixels, copied as it is. The directory
// is ImageOptions.Dir, else $FMGPU_CIFAR10_DIR; either may also be the
// folder that holds cifar-10-batches-bin.

// CIFAR10URL is where the binary version of CIFAR-10 is published.
const CIFAR10URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"

// EnvCIFAR10Dir names the directory holding the CIFAR-10 batches when
// ImageOptions.Dir is empty.
const EnvCIFAR10Dir = "FMGPU_CIFAR10_DIR"

// CIFAR10Classes are the class names of the labels 0 to 9.
var CIFAR10Classes = []string{"airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"}

// The record layout.
const (
	cifarSide    = 32
	cifarImage   = 3 * cifarSide * cifarSide // 3072
	cifarRecord  = 1 + cifarImage            // 3073
	cifarPerFile = 10000
	cifarSubdir  = "cifar-10-batches-bin"
)

// cifarFiles are the batch files of each split, in order.
var cifarFiles = map[string][]string{
	"train": {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"},
	"test":  {"test_batch.bin"},
}

// IsCIFAR10 reports whether spec names CIFAR-10: "cifar10" with or
// without a ":split" (a bad split is then LoadCIFAR10's error).
func IsCIFAR10(spec string) bool {
	name, _, _ := strings.Cut(spec, ":")
	return name == "cifar10"
}

// LoadCIFAR10 reads CIFAR-10 and returns it scaled to [-1, 1] like every
// image set (image.go), with its labels and 8-bit pixels. spec is
// "cifar10" or "cifar10:train" (the 50000 training images, batches 1 to 5
// in order) or "cifar10:test" (the 10000 test images). opts.Max keeps the
// first Max images; the images keep their native 3 x 32 x 32 (Size 0 or
// 32, Channels 0 or 3). A missing file is an error that says where to get
// the data; a file that is not a whole number of records, or a label
// beyond 9, is an error naming the file.
func LoadCIFAR10(spec string, opts ImageOptions) (*ImageSet, error) {
	name, split, hasSplit := strings.Cut(spec, ":")
	if name != "cifar10" {
		return nil, errorf(spec, "not CIFAR-10: want cifar10, cifar10:train or cifar10:test")
	}
	if !hasSplit {
		split = "train"
	}
	files, ok := cifarFiles[split]
	if !ok {
		return nil, errorf(spec, "unknown split %s: want train or test", quote(split))
	}
	if opts.Size != 0 && opts.Size != cifarSide {
		return nil, errorf(spec, "image size %d: CIFAR-10 is read at its native 32 x 32 only", opts.Size)
	}
	if opts.Channels != 0 && opts.Channels != 3 {
		return nil, errorf(spec, "%d channels: CIFAR-10 is read as RGB (3 channels) only", opts.Channels)
	}
	if opts.Max < 0 {
		return nil, errorf(spec, "max %d images: want 0 (all) or more", opts.Max)
	}
	dir, err := cifarDir(spec, opts.Dir, files[0])
	if err != nil {
		return nil, err
	}
	var pixels []uint8
	var labels []int32
	for _, base := range files {
		if opts.Max > 0 && len(labels) >= opts.Max {
			break
		}
		p := filepath.Join(dir, base)
		if _, err := os.Stat(p); err != nil {
			// the first batch is there: the download is incomplete
			return nil, errorf(p, "no such file or directory, though %s is there: an incomplete download? (%s)", files[0], cifarHowTo())
		}
		px, lab, err := readCIFARBatch(p, opts.Max-len(labels))
		if err != nil {
			return nil, err
		}
		pixels = append(pixels, px...)
		labels = append(labels, lab...)
	}
	n := len(labels)
	is := &ImageSet{
		Dataset: &Dataset{Name: spec, N: n, Labels: labels},
		Image:   &ImageInfo{Channels: 3, Height: cifarSide, Width: cifarSide, Classes: CIFAR10Classes, Pixels: pixels},
	}
	is.finish()
	return is, nil
}

// cifarHowTo says where the files come from and how fmgpu finds them.
func cifarHowTo() string {
	return fmt.Sprintf("download %s, extract it and pass its %s folder as the data directory (fmgpu's --data-dir) or in $%s", CIFAR10URL, cifarSubdir, EnvCIFAR10Dir)
}

// cifarDir finds the directory holding first: dir (or $FMGPU_CIFAR10_DIR
// when dir is empty), or its cifar-10-batches-bin subfolder.
func cifarDir(spec, dir, first string) (string, error) {
	howTo := cifarHowTo()
	if dir == "" {
		dir = imageEnv(EnvCIFAR10Dir)
	}
	if dir == "" {
		return "", errorf(spec, "no CIFAR-10 directory given (%s)", howTo)
	}
	for _, d := range []string{dir, filepath.Join(dir, cifarSubdir)} {
		if st, err := os.Stat(filepath.Join(d, first)); err == nil && !st.IsDir() {
			return d, nil
		}
	}
	return "", errorf(spec, "%s not found in %s (%s)", first, displayName(dir), howTo)
}

// readCIFARBatch reads one batch file: its pixels (NCHW) and labels, at
// most limit records when limit > 0.
func readCIFARBatch(path string, limit int) ([]uint8, []int32, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fileErr(path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, fileErr(path, err)
	}
	size := st.Size()
	if size == 0 || size%cifarRecord != 0 {
		return nil, nil, errorf(path, "%d bytes is not a whole number of %d-byte CIFAR-10 records (label and 3 x 32 x 32 pixels); a batch of the official set is %d bytes", size, cifarRecord, cifarPerFile*cifarRecord)
	}
	n := int(size / cifarRecord)
	if limit > 0 && limit < n {
		n = limit
	}
	buf := make([]byte, n*cifarRecord)
	if _, err := io.ReadFull(f, buf); err != nil {
		if isEOF(err) {
			return nil, nil, errorf(path, "file shrank while being read")
		}
		return nil, nil, readErr(path, err)
	}
	pixels := make([]uint8, n*cifarImage)
	labels := make([]int32, n)
	for i := range n {
		rec := buf[i*cifarRecord : (i+1)*cifarRecord]
		if int(rec[0]) >= len(CIFAR10Classes) {
			return nil, nil, errorf(path, "record %d has label %d: want 0 to %d", i, rec[0], len(CIFAR10Classes)-1)
		}
		labels[i] = int32(rec[0])
		copy(pixels[i*cifarImage:(i+1)*cifarImage], rec[1:])
	}
	return pixels, labels, nil
}
