package data

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strings"
)

// Image data sets: "mnist" and "fashion-mnist" (see mnist.go for where
// their files come from) and directories of PNG and JPEG files (see
// image_dir.go). Every image becomes one row of Dataset.X, C*H*W values in
// NCHW order (each channel a row-major H x W plane, channels one after
// another), the layout of the U-Net's input.
//
// Scaling. An 8-bit pixel value p in 0..255 becomes x = 2p/255 - 1, so
// that 0 is -1 and 255 is +1 exactly; the 8-bit values themselves are kept
// in ImageInfo.Pixels.
//
// Likelihoods (bits per dimension). The model's density p_X is over
// continuous x, but the data are integers, so the likelihood is that of the
// usual uniform dequantization (Theis et al. 2016; FFJORD, Flow Matching):
// each pixel p becomes v = p + u, u ~ U[0, 1) independently, a point of
// [0, 256)^D, mapped to x = 2v/256 - 1 in [-1, 1)^D (Dequantize). The
// map has dx/dv = 2/256 = 1/128 in each of the D dimensions, so
// log p_V(v) = log p_X(x) - D ln 128, and, by Jensen's inequality,
// -log2 P(p) <= E_u[-log2 p_V(p + u)]: the bits per dimension
//
//	bpd = E_u[-ln p_X(x)] / (D ln 2) + log2(128)    (log2 128 = 7)
//
// (BitsPerDim) bound the negative log-likelihood of the discrete pixels
// from above. The dequantized x differ from the training scaling 2p/255 - 1
// by less than half a bin (1/256 against a bin width of 1/128): the
// training points are the bins' near-centres, and a model trained on them
// is evaluated on the whole bins. A standardization applied before the
// model adds its own log-Jacobian to -ln p_X, as for any data set.

// ImageInfo describes a data set whose rows are images.
type ImageInfo struct {
	Channels, Height, Width int
	// Classes names the labels 0 to len(Classes)-1; nil when unlabelled.
	Classes []string
	// Pixels holds the 8-bit values, N x C*H*W in the layout of X, from
	// which X = 2p/255 - 1 was made and which Dequantize takes.
	Pixels []uint8
}

// ImageSet is an image data set: Dataset holds the images as rows in
// [-1, 1] and Labels (class indices into Image.Classes, nil when
// unlabelled); Image their shape, class names and 8-bit pixels.
type ImageSet struct {
	*Dataset
	Image *ImageInfo
	// Skipped counts the files of a directory that were passed over as not
	// images (see LoadImages).
	Skipped int
}

// ImageOptions are the choices LoadImages leaves open.
type ImageOptions struct {
	// Size is the side of the square images produced (see image_resize.go),
	// 1 to MaxImageSize. 0 keeps the native size: 28 for MNIST; for a
	// directory, the short side when every image has the same width and
	// height, else DefaultImageSize.
	Size int
	// Channels is 1 (gray, by the luma weights of the standard library's
	// color.GrayModel) or 3 (RGB; a gray image is repeated). 0 is the
	// native count: 1 for MNIST; for a directory, 1 when every image is
	// gray after resizing (red = green = blue everywhere), else 3.
	Channels int
	// Max keeps only the first Max images (0: all), in the files' order:
	// the idx file's, or a directory's sorted paths (class by class).
	Max int
	// Dir is the directory holding the idx files of mnist or
	// fashion-mnist, searched instead of the default places (mnist.go),
	// or the CIFAR-10 batches (cifar10.go).
	Dir string
	// Shard, for a directory read by several processes at once (the ranks
	// of a data-parallel run), has each decode only its share of the
	// files and the processes exchange what they decoded: every one ends
	// with the whole set, as if it had read it alone. Nil: read it all.
	Shard *ImageShard
}

// ImageShard is one process's part in reading a directory of images
// together with others (ImageOptions.Shard): process Rank of Size reads
// the headers of, and decodes, only its contiguous share of the sorted
// files (Size shares, the first len mod Size one file longer), and the
// processes sum what they decoded (each has zeros where the others'
// images go) with Reduce, so that the pixels are exact. Errors agree: a
// file that fails on one process fails the load on every one (the one
// that read it names the reason; the others name the file and that
// process).
type ImageShard struct {
	Rank, Size int
	// Reduce replaces x, on every process, by the elementwise sum of
	// every process's x (an all-reduce). The load calls it the same number
	// of times with the same lengths on every process, whatever it finds.
	Reduce func(x []float32) error
}

// DefaultImageSize is the side images from a directory are resized to when
// they differ in size and ImageOptions.Size is 0.
const DefaultImageSize = 32

// MaxImageSize bounds ImageOptions.Size.
const MaxImageSize = 1024

// maxSetBytes bounds the 8-bit pixels of a whole set (X takes four times
// as much): 1 GiB, 20 times MNIST's training set.
const maxSetBytes = 1 << 30

// BitsPerDimOffset is log2(128), the bits per dimension that the map
// x = 2(p+u)/256 - 1 from dequantized pixels to [-1, 1) adds.
const BitsPerDimOffset = 7

// BitsPerDim converts the negative log-likelihood in nats of one image of d
// dimensions, -ln p_X(x) for x = Dequantize's output in [-1, 1)^d, into
// bits per dimension of the 8-bit pixels: nll/(d ln 2) + 7.
func BitsPerDim(nllNats float64, d int) float64 {
	return nllNats/(float64(d)*math.Ln2) + BitsPerDimOffset
}

// Dequantize writes x = 2(p + u)/256 - 1 into dst for the pixels p, each u
// drawn from U[0, 1) by rng. len(dst) must be len(pixels).
func Dequantize(dst []float32, pixels []uint8, rng *rand.Rand) {
	dst = dst[:len(pixels)]
	for i, p := range pixels {
		dst[i] = float32((float64(p)+rng.Float64())/128 - 1)
	}
}

// PixelToFloat is the training scaling, 2p/255 - 1.
func PixelToFloat(p uint8) float32 { return pixelScale[p] }

// FloatToPixel inverts PixelToFloat: x in [-1, 1] to the nearest of 0..255,
// clamped, NaN to 0.
func FloatToPixel(x float32) uint8 {
	return roundPixel((x + 1) * 127.5)
}

var pixelScale = func() (t [256]float32) {
	for p := range t {
		t[p] = float32(2*float64(p)/255 - 1)
	}
	return t
}()

// splitNames are the splits of mnist and fashion-mnist.
var splitNames = []string{"train", "test"}

// IsImageData reports whether spec names image data that LoadImages reads:
// mnist or fashion-mnist with or without a ":split" (a bad split is then
// LoadImages's error), or an existing directory. Names win over
// directories: a directory called moons or mnist is "./moons", "./mnist".
func IsImageData(spec string) bool {
	if IsBuiltin(spec) {
		return false
	}
	name, _, _ := strings.Cut(spec, ":")
	if _, ok := idxSets[name]; ok || IsCIFAR10(spec) {
		return true
	}
	st, err := os.Stat(spec)
	return err == nil && st.IsDir()
}

// IsImageDir reports whether spec is image data read from a directory of
// image files (the data ImageOptions.Shard applies to), not a named set.
func IsImageDir(spec string) bool {
	name, _, _ := strings.Cut(spec, ":")
	if _, ok := idxSets[name]; ok || IsCIFAR10(spec) {
		return false
	}
	return IsImageData(spec)
}

// ImageDataNames lists the named image sets with their splits, for usage
// text: mnist, mnist:test, fashion-mnist, fashion-mnist:test.
func ImageDataNames() []string {
	return []string{"mnist", "mnist:test", "fashion-mnist", "fashion-mnist:test", "cifar10", "cifar10:test"}
}

// LoadImages reads image data and returns it scaled to [-1, 1].
// "cifar10" and "cifar10:test" are LoadCIFAR10's.
//
// spec is "mnist" or "fashion-mnist", the training split (60000 images of
// 28 x 28, 10 classes), or the same followed by ":train" or ":test" (the
// 10000 test images, which are kept apart for likelihoods); or a
// directory. In a directory, each subfolder is a class (named after it,
// in sorted order; every image below it belongs to it) and images directly
// in the directory are unlabelled; having both is an error, as is a class
// folder without images. Files ending .png, .jpg or .jpeg (any case) must
// decode, as PNG or JPEG, or the load fails naming the file; other files,
// and names starting with a dot, are skipped and counted in Skipped.
// Images are read in sorted path order, decoded, resized and cropped to
// Size x Size and converted to Channels (see ImageOptions), alpha
// composited onto black.
func LoadImages(spec string, opts ImageOptions) (*ImageSet, error) {
	if opts.Size < 0 || opts.Size > MaxImageSize {
		return nil, errorf(spec, "image size %d: want 1 to %d, or 0 for the native size", opts.Size, MaxImageSize)
	}
	if opts.Channels != 0 && opts.Channels != 1 && opts.Channels != 3 {
		return nil, errorf(spec, "%d channels: want 1 (gray) or 3 (RGB), or 0 for the native count", opts.Channels)
	}
	if opts.Max < 0 {
		return nil, errorf(spec, "max %d images: want 0 (all) or more", opts.Max)
	}
	if IsCIFAR10(spec) {
		return LoadCIFAR10(spec, opts)
	}
	name, split, hasSplit := strings.Cut(spec, ":")
	set, ok := idxSets[name]
	if !ok {
		return loadImageDir(spec, opts)
	}
	if !hasSplit {
		split = "train"
	}
	if _, ok := idxFiles[split]; !ok {
		return nil, errorf(spec, "unknown split %s: want %s", quote(split), strings.Join(splitNames, " or "))
	}
	is, err := loadIDXSet(set, split, spec, opts)
	if err != nil {
		return nil, err
	}
	img := is.Image
	size, c := opts.Size, cmp0(opts.Channels, 1)
	if size == 0 || size == img.Height && size == img.Width {
		size = 0 // no resizing: images may stay rectangular
	}
	if size != 0 || c != 1 {
		sh, sw := img.Height, img.Width
		oh, ow := sh, sw
		if size != 0 {
			oh, ow = size, size
		}
		if err := checkSetBytes(spec, is.N, c, oh*ow); err != nil {
			return nil, err
		}
		src := img.Pixels
		img.Pixels = make([]uint8, is.N*c*oh*ow)
		plane := oh * ow
		var r *resampler
		if size != 0 {
			r = newResampler(sw, sh, size)
		}
		for i := range is.N {
			im := src[i*sh*sw : (i+1)*sh*sw]
			out := img.Pixels[i*c*plane : (i+1)*c*plane]
			if r == nil {
				copy(out, im)
			} else {
				r.resample(1, func(y int, lines [][]float32) {
					for x := range lines[0] {
						lines[0][x] = float32(im[y*sw+r.x0+x])
					}
				}, out[:plane])
			}
			for k := 1; k < c; k++ {
				copy(out[k*plane:(k+1)*plane], out[:plane])
			}
		}
		img.Channels, img.Height, img.Width = c, oh, ow
	}
	is.finish()
	return is, nil
}

// cmp0 is v, or def when v is 0.
func cmp0(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

// checkSetBytes refuses a set whose pixels would pass maxSetBytes.
func checkSetBytes(spec string, n, c, plane int) error {
	if int64(n)*int64(c)*int64(plane) > maxSetBytes {
		return errorf(spec, "%d images of %d channels of %d pixels are more than %d MiB: use a smaller size or fewer images", n, c, plane, maxSetBytes>>20)
	}
	return nil
}

// finish sets D and X from the pixels.
func (is *ImageSet) finish() {
	img := is.Image
	is.Dataset.Image = img
	is.D = img.Channels * img.Height * img.Width
	is.X = make([]float32, len(img.Pixels))
	for i, p := range img.Pixels {
		is.X[i] = pixelScale[p]
	}
}

// loadImageData is Load's entry for image data: the first n images (all
// when n <= 0 or n is larger) of a named set; a directory whole, n being
// for built-in sets only.
func loadImageData(spec string, n int, opts ImageOptions) (*Dataset, error) {
	opts.Max = 0
	if name, _, _ := strings.Cut(spec, ":"); idxSets[name].name != "" || IsCIFAR10(spec) {
		opts.Max = max(n, 0)
	}
	is, err := LoadImages(spec, opts)
	if err != nil {
		return nil, err
	}
	return is.Dataset, nil
}

// String describes the set in one line: "mnist:test: 10000 images 1x28x28, 10 classes".
func (is *ImageSet) String() string {
	s := fmt.Sprintf("%s: %d images %dx%dx%d", displayName(is.Name), is.N, is.Image.Channels, is.Image.Height, is.Image.Width)
	if len(is.Image.Classes) > 0 {
		s += fmt.Sprintf(", %d classes", len(is.Image.Classes))
	}
	if is.Skipped > 0 {
		s += fmt.Sprintf(", %d non-image files skipped", is.Skipped)
	}
	return s
}
