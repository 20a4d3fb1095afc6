package data

import (
	"bytes"
	"image"
	"image/color"
	_ "image/jpeg" // the decoders DecodeImage accepts
	_ "image/png"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
)

// Limits on one image file, checked from its header (image.DecodeConfig)
// before it is decoded.
const (
	MaxImageSide   = 16384    // pixels, width or height
	MaxImagePixels = 64 << 20 // width x height
	maxImageFile   = 1 << 28  // bytes of one file (256 MiB)
)

// imageExts are the extensions LoadImages reads; other files are skipped.
var imageExts = map[string]bool{".png": true, ".jpg": true, ".jpeg": true}

// imageFile is one image of a directory and its class (-1: unlabelled).
type imageFile struct {
	path  string
	class int
}

// loadImageDir reads the directory dir; see LoadImages.
func loadImageDir(dir string, opts ImageOptions) (*ImageSet, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fileErr(dir, err)
	}
	if !st.IsDir() {
		return nil, errorf(dir, "not a directory of images, nor mnist or fashion-mnist")
	}
	if ck := findCheckpoint(dir); ck != "" {
		return nil, errorf(dir, "holds a checkpoint (%s): a training run's output directory is never image data; move it out", quote(ck))
	}
	files, classes, skipped, err := listImages(dir)
	if err != nil {
		return nil, err
	}
	if opts.Max > 0 && opts.Max < len(files) {
		files = files[:opts.Max]
	}

	sh := opts.Shard
	if sh != nil && (sh.Size <= 1 || len(files) >= maxShardFiles) {
		sh = nil // nothing to share, or file indices that a float32 sum would round
	}
	lo, hi := sh.share(len(files))

	// First pass: every header (of this process's share, and the first
	// file's, whose size the others are compared with), so that a bad
	// file fails before anything is decoded, and the native size is known.
	size := opts.Size
	var w0, h0 int
	bad, notSame := -1, 0
	var badErr error
	for i, f := range files {
		if i != 0 && (i < lo || i >= hi) {
			continue
		}
		w, h, err := imageConfig(f.path)
		if err != nil {
			bad, badErr = i, err
			break
		}
		if i == 0 {
			w0, h0 = w, h
		}
		if w != w0 || h != h0 {
			notSame++
		}
	}
	flags, err := sh.agree(bad, float32(notSame))
	if err != nil {
		return nil, err
	}
	if err := sh.failure(files, flags, bad, badErr); err != nil {
		return nil, err
	}
	same := flags[len(flags)-1] == 0
	if size == 0 {
		size = DefaultImageSize
		if same && min(w0, h0) <= MaxImageSize {
			size = min(w0, h0)
		}
	}
	// Auto channels decode to RGB and keep one plane if all are gray.
	nc := 3
	if opts.Channels == 1 {
		nc = 1
	}
	if err := checkSetBytes(dir, len(files), nc, size*size); err != nil {
		return nil, err
	}

	// Second pass: decode and resize this process's share, in parallel;
	// the first error in file order wins.
	plane := size * size
	pixels := make([]uint8, len(files)*nc*plane)
	errs := make([]error, len(files))
	next := lo
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), hi-lo) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= hi {
					return
				}
				b, err := readImageFile(files[i].path)
				if err == nil {
					var m image.Image
					if m, err = decodeImage(b, files[i].path, MaxImageSide, MaxImagePixels); err == nil {
						imageToPlanes(m, size, nc, pixels[i*nc*plane:(i+1)*nc*plane])
					}
				}
				if err != nil {
					errs[i] = err
					mu.Lock()
					next = hi // stop the others early
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	bad, badErr = -1, nil
	for i, err := range errs {
		if err != nil {
			bad, badErr = i, err
			break
		}
	}
	colour := 0
	if opts.Channels == 0 && !allGray(pixels[lo*nc*plane:hi*nc*plane], plane) {
		colour = 1
	}
	if flags, err = sh.agree(bad, float32(colour)); err != nil {
		return nil, err
	}
	if err := sh.failure(files, flags, bad, badErr); err != nil {
		return nil, err
	}
	if err := sh.exchange(pixels); err != nil {
		return nil, err
	}

	c := nc
	if opts.Channels == 0 && flags[len(flags)-1] == 0 {
		c = 1
		gray := make([]uint8, len(files)*plane)
		for i := range files {
			copy(gray[i*plane:(i+1)*plane], pixels[i*3*plane:])
		}
		pixels = gray
	}
	var labels []int32
	if classes != nil {
		labels = make([]int32, len(files))
		for i, f := range files {
			labels[i] = int32(f.class)
		}
	}
	is := &ImageSet{
		Dataset: &Dataset{Name: dir, N: len(files), Labels: labels},
		Image:   &ImageInfo{Channels: c, Height: size, Width: size, Classes: classes, Pixels: pixels},
		Skipped: skipped,
	}
	is.finish()
	return is, nil
}

// maxShardFiles bounds the files of a directory read in shards: their
// indices pass through float32 sums, exact below 2^24.
const maxShardFiles = 1 << 24

// shardChunk is how many pixels one exchange of a sharded read carries
// (64 MiB of float32).
const shardChunk = 1 << 24

// share is the files [lo, hi) of n that this process reads: all of them
// without a shard.
func (s *ImageShard) share(n int) (lo, hi int) {
	if s == nil {
		return 0, n
	}
	q, m := n/s.Size, n%s.Size
	lo = s.Rank*q + min(s.Rank, m)
	hi = lo + q
	if s.Rank < m {
		hi++
	}
	return lo, hi
}

// agree sums, over the processes, one slot per process holding 1 + the
// index of its first failing file (0: none) and a count of its own; it
// returns the slots and the summed count last. Without a shard, no
// exchange.
func (s *ImageShard) agree(bad int, count float32) ([]float32, error) {
	if s == nil {
		return []float32{float32(bad + 1), count}, nil
	}
	flags := make([]float32, s.Size+1)
	flags[s.Rank] = float32(bad + 1)
	flags[s.Size] = count
	return flags, s.Reduce(flags)
}

// failure is the load's error after agree: nil when no process failed;
// the first failing file's error on the process that read it (or failed
// on the same file); on the others, the file and the process that read it.
func (s *ImageShard) failure(files []imageFile, flags []float32, bad int, err error) error {
	first, by := -1, -1
	for r, v := range flags[:len(flags)-1] {
		if i := int(v) - 1; i >= 0 && (first < 0 || i < first) {
			first, by = i, r
		}
	}
	switch {
	case first < 0:
		return nil
	case first == bad:
		return err
	}
	return errorf(files[first].path, "could not be read or decoded by rank %d of %d, which says why", by, s.Size)
}

// exchange sums the processes' pixels, each with zeros where the others'
// images are: every process gets every image, exactly (0..255 are exact
// in float32).
func (s *ImageShard) exchange(pixels []uint8) error {
	if s == nil {
		return nil
	}
	buf := make([]float32, min(len(pixels), shardChunk))
	for off := 0; off < len(pixels); off += len(buf) {
		part := pixels[off:min(len(pixels), off+len(buf))]
		x := buf[:len(part)]
		for i, p := range part {
			x[i] = float32(p)
		}
		if err := s.Reduce(x); err != nil {
			return err
		}
		for i, v := range x {
			part[i] = uint8(v)
		}
	}
	return nil
}

// listImages walks dir: the image files in sorted path order, the class
// names (nil when unlabelled) and the count of skipped files.
func listImages(dir string) (files []imageFile, classes []string, skipped int, err error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, 0, fileErr(dir, err)
	}
	var top []string // image files directly in dir
	var sub []string // class folders
	for _, e := range entries {
		name := e.Name()
		isDir := e.IsDir()
		if e.Type()&fs.ModeSymlink != 0 { // a link to a class folder counts as one
			st, err := os.Stat(filepath.Join(dir, name))
			isDir = err == nil && st.IsDir()
		}
		switch {
		case strings.HasPrefix(name, "."):
			if !isDir {
				skipped++
			}
		case isDir:
			sub = append(sub, name)
		case isImageName(name):
			top = append(top, filepath.Join(dir, name))
		default:
			skipped++
		}
	}
	switch {
	case len(top) > 0 && len(sub) > 0:
		return nil, nil, 0, errorf(dir, "holds both image files (%s) and subfolders (%s): put every image in a class folder, or none", quote(filepath.Base(top[0])), quote(sub[0]))
	case len(sub) == 0:
		if len(top) == 0 {
			return nil, nil, 0, errorf(dir, "no PNG or JPEG images (.png, .jpg, .jpeg)")
		}
		for _, p := range top {
			files = append(files, imageFile{p, -1})
		}
		return files, nil, skipped, nil
	}
	sort.Strings(sub)
	for k, name := range sub {
		before := len(files)
		root := filepath.Join(dir, name)
		// The trailing separator makes WalkDir enter a linked folder; links
		// below it are not followed.
		err := filepath.WalkDir(root+string(filepath.Separator), func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return fileErr(p, err)
			}
			base := d.Name()
			if filepath.Clean(p) != root && strings.HasPrefix(base, ".") {
				if d.IsDir() {
					return filepath.SkipDir
				}
				skipped++
				return nil
			}
			switch {
			case d.IsDir():
			case isImageName(base):
				files = append(files, imageFile{p, k})
			default:
				skipped++
			}
			return nil
		})
		if err != nil {
			return nil, nil, 0, err
		}
		if len(files) == before {
			return nil, nil, 0, errorf(root, "class folder holds no PNG or JPEG images (.png, .jpg, .jpeg)")
		}
	}
	return files, sub, skipped, nil
}

// findCheckpoint returns the path, relative to dir, of a .safetensors file
// in dir or below it ("" when there is none): a run's output directory
// (fmgpu train --out) that sits in an image folder must not become a class
// of it, nor its sample grids training images.
func findCheckpoint(dir string) string {
	found := ""
	filepath.WalkDir(dir+string(filepath.Separator), func(p string, d fs.DirEntry, err error) error {
		if err != nil || found != "" {
			return filepath.SkipDir
		}
		if d.IsDir() && filepath.Clean(p) != filepath.Clean(dir) && strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir // as listImages skips it
		}
		if !d.IsDir() && strings.EqualFold(filepath.Ext(d.Name()), ".safetensors") {
			found, _ = filepath.Rel(dir, p)
			return filepath.SkipAll
		}
		return nil
	})
	return found
}

func isImageName(name string) bool {
	return imageExts[strings.ToLower(filepath.Ext(name))]
}

// imageConfig reads the header of the image file at path and checks its
// dimensions.
func imageConfig(path string) (w, h int, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, fileErr(path, err)
	}
	defer f.Close()
	cfg, err := checkConfig(f, path, MaxImageSide, MaxImagePixels)
	if err != nil {
		return 0, 0, err
	}
	return cfg.Width, cfg.Height, nil
}

func readImageFile(path string) ([]byte, error) {
	f, size, err := openData(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if size > maxImageFile {
		return nil, errorf(path, "%d bytes: image files over %d MiB are refused", size, maxImageFile>>20)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxImageFile+1))
	if err != nil {
		return nil, readErr(path, err)
	}
	if len(b) > maxImageFile {
		return nil, errorf(path, "image files over %d MiB are refused", maxImageFile>>20)
	}
	return b, nil
}

// DecodeImage decodes one PNG or JPEG image after checking, from its
// header, that it is one and that its width and height are at most
// MaxImageSide and their product at most MaxImagePixels. name appears in
// every error, which is one line.
func DecodeImage(b []byte, name string) (image.Image, error) {
	return decodeImage(b, name, MaxImageSide, MaxImagePixels)
}

func decodeImage(b []byte, name string, maxSide, maxPixels int) (image.Image, error) {
	cfg, err := checkConfig(bytes.NewReader(b), name, maxSide, maxPixels)
	if err != nil {
		return nil, err
	}
	m, _, err := image.Decode(bytes.NewReader(b))
	if err != nil {
		return nil, errorf(name, "decode: %s", oneLine(err.Error()))
	}
	if r := m.Bounds(); r.Dx() != cfg.Width || r.Dy() != cfg.Height {
		return nil, errorf(name, "decoded %d x %d, header says %d x %d", r.Dx(), r.Dy(), cfg.Width, cfg.Height)
	}
	return m, nil
}

func checkConfig(r io.Reader, name string, maxSide, maxPixels int) (image.Config, error) {
	cfg, format, err := image.DecodeConfig(r)
	if err != nil {
		if err == image.ErrFormat {
			return cfg, errorf(name, "not a PNG or JPEG image")
		}
		return cfg, errorf(name, "image header: %s", oneLine(err.Error()))
	}
	if format != "png" && format != "jpeg" {
		return cfg, errorf(name, "%s image: want PNG or JPEG", quote(format))
	}
	switch w, h := cfg.Width, cfg.Height; {
	case w < 1 || h < 1:
		return cfg, errorf(name, "image is %d x %d: empty", w, h)
	case w > maxSide || h > maxSide:
		return cfg, errorf(name, "image is %d x %d: sides over %d pixels are refused", w, h, maxSide)
	case int64(w)*int64(h) > int64(maxPixels):
		return cfg, errorf(name, "image is %d x %d: over %d megapixels are refused", w, h, maxPixels>>20)
	}
	return cfg, nil
}

// imageToPlanes resizes m to size x size (image_resize.go) into out: nc = 3
// planes of size*size, red, green and blue, or nc = 1, the luma of
// color.GrayModel (19595 R + 38470 G + 7471 B) / 65536, computed before
// resizing; alpha composited onto black.
func imageToPlanes(m image.Image, size, nc int, out []uint8) {
	b := m.Bounds()
	r := newResampler(b.Dx(), b.Dy(), size)
	var rgb [3][]float32
	if nc == 1 {
		for c := range rgb {
			rgb[c] = make([]float32, r.s)
		}
	}
	r.resample(nc, func(y int, lines [][]float32) {
		if nc == 3 {
			rowRGB(m, b.Min.X+r.x0, b.Min.Y+y, [3][]float32(lines))
			return
		}
		rowRGB(m, b.Min.X+r.x0, b.Min.Y+y, rgb)
		for i := range lines[0] {
			lines[0][i] = (19595*rgb[0][i] + 38470*rgb[1][i] + 7471*rgb[2][i]) / 65536
		}
	}, out)
}

// rowRGB fills rgb[c][i] with channel c of pixel (x0+i, y) of m, in 0..255.
func rowRGB(m image.Image, x0, y int, rgb [3][]float32) {
	n := len(rgb[0])
	switch m := m.(type) {
	case *image.Gray:
		p := m.Pix[m.PixOffset(x0, y):]
		for i := range n {
			v := float32(p[i])
			rgb[0][i], rgb[1][i], rgb[2][i] = v, v, v
		}
	case *image.RGBA:
		p := m.Pix[m.PixOffset(x0, y):]
		for i := range n {
			rgb[0][i], rgb[1][i], rgb[2][i] = float32(p[4*i]), float32(p[4*i+1]), float32(p[4*i+2])
		}
	case *image.YCbCr:
		for i := range n {
			c := m.YCbCrAt(x0+i, y)
			r, g, b := color.YCbCrToRGB(c.Y, c.Cb, c.Cr)
			rgb[0][i], rgb[1][i], rgb[2][i] = float32(r), float32(g), float32(b)
		}
	default:
		for i := range n {
			r, g, b, _ := m.At(x0+i, y).RGBA() // alpha-premultiplied: onto black
			rgb[0][i], rgb[1][i], rgb[2][i] = float32(r)/257, float32(g)/257, float32(b)/257
		}
	}
}

// allGray reports whether every image of rgb (3 planes each) has equal
// red, green and blue planes.
func allGray(rgb []uint8, plane int) bool {
	for i := 0; i < len(rgb); i += 3 * plane {
		r, g, b := rgb[i:i+plane], rgb[i+plane:i+2*plane], rgb[i+2*plane:i+3*plane]
		if !bytes.Equal(r, g) || !bytes.Equal(r, b) {
			return false
		}
	}
	return true
}
