package data

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// sumGroup sums float32 buffers over goroutine "processes", in rank order,
// as an all-reduce does; it counts the calls.
type sumGroup struct {
	n     int
	mu    sync.Mutex
	cond  *sync.Cond
	bufs  [][]float32
	in    int
	gen   int
	calls int
}

func newSumGroup(n int) *sumGroup {
	g := &sumGroup{n: n, bufs: make([][]float32, n)}
	g.cond = sync.NewCond(&g.mu)
	return g
}

func (g *sumGroup) barrier() {
	g.mu.Lock()
	defer g.mu.Unlock()
	gen := g.gen
	if g.in++; g.in == g.n {
		g.in, g.gen = 0, g.gen+1
		g.cond.Broadcast()
		return
	}
	for gen == g.gen {
		g.cond.Wait()
	}
}

func (g *sumGroup) reduce(r int) func([]float32) error {
	return func(x []float32) error {
		g.mu.Lock()
		g.bufs[r] = slices.Clone(x)
		if r == 0 {
			g.calls++
		}
		g.mu.Unlock()
		g.barrier()
		for i := range x {
			var s float32
			for k := range g.n {
				if len(g.bufs[k]) != len(x) {
					return fmt.Errorf("rank %d reduced %d values, rank %d %d", r, len(x), k, len(g.bufs[k]))
				}
				s += g.bufs[k][i]
			}
			x[i] = s
		}
		g.barrier()
		return nil
	}
}

// loadSharded loads dir on n goroutine ranks, each reading its share.
func loadSharded(dir string, opts ImageOptions, n int) ([]*ImageSet, []error) {
	g := newSumGroup(n)
	sets, errs := make([]*ImageSet, n), make([]error, n)
	var wg sync.WaitGroup
	for r := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := opts
			o.Shard = &ImageShard{Rank: r, Size: n, Reduce: g.reduce(r)}
			sets[r], errs[r] = LoadImages(dir, o)
		}()
	}
	wg.Wait()
	return sets, errs
}

// A directory read in shards by several processes gives each the set one
// process reads alone, bit for bit: pixels, labels, size and channel
// choices (made from every share's headers and colours).
func TestLoadImageDirSharded(t *testing.T) {
	colourDir := t.TempDir()
	for i := range 11 { // 11 images over 3 and 4 ranks: uneven shares
		m := image.NewRGBA(image.Rect(0, 0, 5, 5))
		for p := range 25 {
			v := uint8(i*20 + p)
			c := color.RGBA{v, v, v, 255}
			if i == 9 { // one colour image, in the last rank's share: RGB for all
				c.R = 255 - v
			}
			m.Set(p%5, p/5, c)
		}
		writeFile(t, filepath.Join(colourDir, fmt.Sprintf("c%d", i%2), fmt.Sprintf("%02d.png", i)), pngBytes(t, m))
	}
	grayDir := t.TempDir()
	for i := range 7 { // sizes differ from the last share on: the default size for all
		side := 6
		if i >= 5 {
			side = 9
		}
		writeFile(t, filepath.Join(grayDir, fmt.Sprintf("%02d.png", i)), pngBytes(t, grayImage(side, side, bytes.Repeat([]byte{uint8(30 * i)}, side*side)...)))
	}
	for _, c := range []struct {
		dir  string
		opts ImageOptions
	}{{colourDir, ImageOptions{}}, {colourDir, ImageOptions{Channels: 1, Size: 4}}, {grayDir, ImageOptions{}}, {imageTree(t), ImageOptions{Size: 2}}} {
		want, err := LoadImages(c.dir, c.opts)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range []int{2, 3, 4, 13} { // 13: more ranks than images
			sets, errs := loadSharded(c.dir, c.opts, n)
			for r, got := range sets {
				if errs[r] != nil {
					t.Fatalf("%s, %d ranks: rank %d: %v", c.dir, n, r, errs[r])
				}
				if got.N != want.N || got.D != want.D || !sameImageInfo(got.Image, want.Image) ||
					!slices.Equal(got.Labels, want.Labels) || !sameBits(got.X, want.X) || got.Skipped != want.Skipped {
					t.Fatalf("%s, %d ranks: rank %d read %s, one process %s", c.dir, n, r, got, want)
				}
			}
		}
	}
	if want, _ := LoadImages(colourDir, ImageOptions{}); want.Image.Channels != 3 {
		t.Fatalf("the colour directory reads as %d channels", want.Image.Channels)
	}
	if want, _ := LoadImages(grayDir, ImageOptions{}); want.Image.Channels != 1 || want.Image.Height != DefaultImageSize {
		t.Fatalf("the gray directory reads as %s", want)
	}
}

func sameImageInfo(a, b *ImageInfo) bool {
	return a.Channels == b.Channels && a.Height == b.Height && a.Width == b.Width &&
		slices.Equal(a.Classes, b.Classes) && bytes.Equal(a.Pixels, b.Pixels)
}

// A file that fails fails every rank: the rank whose share holds it says
// why, the others name the file and that rank; the first failing file in
// order wins, as for one process.
func TestLoadImageDirShardedErrors(t *testing.T) {
	good := pngBytes(t, grayImage(2, 2, 1, 2, 3, 4))
	for _, c := range []struct {
		bad  []int  // the files that fail
		mode string // "header": not an image; "decode": a truncated PNG
	}{{[]int{4}, "header"}, {[]int{5, 2}, "decode"}, {[]int{0}, "header"}} {
		dir := t.TempDir()
		for i := range 6 {
			b := good
			if slices.Contains(c.bad, i) {
				b = []byte("not a png")
				if c.mode == "decode" {
					b = good[:len(good)-20]
				}
			}
			writeFile(t, filepath.Join(dir, fmt.Sprintf("%d.png", i)), b)
		}
		_, want := LoadImages(dir, ImageOptions{})
		first := slices.Min(c.bad)
		path := filepath.Join(dir, fmt.Sprintf("%d.png", first))
		owner := first / 2 // 6 files over 3 ranks: 2 each
		_, errs := loadSharded(dir, ImageOptions{}, 3)
		for r, err := range errs {
			switch {
			case err == nil:
				t.Errorf("%v: rank %d loaded", c.bad, r)
			case r == owner || first == 0: // file 0's header is read by every rank
				if err.Error() != want.Error() {
					t.Errorf("%v: rank %d: %v, want one process's %v", c.bad, r, err, want)
				}
			default:
				if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), fmt.Sprintf("by rank %d of 3, which says why", owner)) {
					t.Errorf("%v: rank %d: %v", c.bad, r, err)
				}
			}
		}
	}
}
