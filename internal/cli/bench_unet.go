package cli

import (
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"

	ucli "github.com/urfave/cli/v2"

	"github.com/fmgpu/fmgpu/data"
	"github.com/fmgpu/fmgpu/gpu"
	"github.com/fmgpu/fmgpu/train"
)

// The image workloads of `fmgpu bench` time the full training step (the
// draw, forward, backward, clipping, Adam and EMA) of the network and
// recipe that `fmgpu train` trains with the workload's flags, read by
// train's own flag parsing (presets and image defaults included):
//   - unet-mnist-b64: `--data mnist`, the U-Net of base 32, mults 1,2,2,
//     one residual block a level and 8 groups, class-conditional on 10
//     classes with class dropout 0.1, batch 64, Adam at lr 1e-3 with
//     gradient clipping, warm-up, the cosine schedule and the EMA;
//     unet-mnist-b64-attn adds --attention;
//   - unet-cifar10-b128: `--data cifar10 --preset cifar10 --unconditional`,
//     TorchCFM's CIFAR-10 recipe as TorchCFM trains it (the U-Net of 128
//     channels, mults 1,2,2,2, two residual blocks a level, 4-head
//     attention at 16x16 and in the middle, dropout 0.1, batch 128).
//
// Like the PyTorch peer (peers/torch_unet.py) they train on random pixels
// in [-1, 1] with random labels: the cost does not depend on the pixels,
// and the bench needs no data files.
const (
	benchImages     = 1024
	benchUNetSteps  = 20 // timed steps, the peer's default
	benchCIFARSteps = 5  // timed steps: some 15 s each on two cores
)

// benchImage is an image workload's data and the train flags it times.
type benchImage struct {
	channels, side, classes int // the images' shape; classes: their labels
	trainFlags              []string
	warm                    int // untimed steps before the timed ones (0: bench's default)
}

var (
	benchMNIST          = benchImage{channels: 1, side: 28, classes: 10, trainFlags: []string{"--data", "mnist"}}
	benchMNISTAttention = benchImage{channels: 1, side: 28, classes: 10, trainFlags: []string{"--data", "mnist", "--attention"}}
	benchCIFAR          = benchImage{channels: 3, side: 32, classes: 10, warm: 2,
		trainFlags: []string{"--data", "cifar10", "--preset", "cifar10", "--unconditional"}}
)

// benchImageData is wl's data set: benchImages random images with random
// labels.
func benchImageData(wl benchWorkload, seed uint64) *data.Dataset {
	im := wl.image
	d := im.channels * im.side * im.side
	r := rand.New(rand.NewPCG(seed, 14))
	x := make([]float32, benchImages*d)
	for i := range x {
		x[i] = 2*r.Float32() - 1
	}
	labels := make([]int32, benchImages)
	for i := range labels {
		labels[i] = int32(r.IntN(im.classes))
	}
	classes := make([]string, im.classes)
	for i := range classes {
		classes[i] = strconv.Itoa(i)
	}
	return &data.Dataset{Name: wl.name, X: x, N: benchImages, D: d, Labels: labels,
		Image: &data.ImageInfo{Channels: im.channels, Height: im.side, Width: im.side, Classes: classes}}
}

// benchImageConfig is the configuration `fmgpu train` trains with given
// wl's flags on wl's data (ds): the train command's own parsing, presets,
// image defaults and model fitting. Its --out is never written.
func benchImageConfig(wl benchWorkload, ds *data.Dataset, seed uint64) (train.Config, error) {
	var cfg train.Config
	cmd := trainCommand()
	cmd.Action = func(c *ucli.Context) error {
		o, err := trainOptionsFrom(c)
		if err != nil {
			return err
		}
		if err := o.fitData(ds); err != nil {
			return err
		}
		cfg = o.cfg
		return cfg.Validate()
	}
	app := &ucli.App{Name: "fmgpu", Commands: []*ucli.Command{cmd}, Writer: io.Discard, ErrWriter: io.Discard,
		ExitErrHandler: func(*ucli.Context, error) {}}
	args := append([]string{"fmgpu", "train", "--out", "unused", "--seed", strconv.FormatUint(seed, 10)}, wl.image.trainFlags...)
	if err := app.Run(args); err != nil {
		return train.Config{}, fmt.Errorf("bench %s: train %s: %w", wl.name, strings.Join(wl.image.trainFlags, " "), err)
	}
	return cfg, nil
}

// newBenchTrainer builds the trainer of workload wl for total steps (the
// MLPs train on ds) and returns it with the data dimension.
func newBenchTrainer(b gpu.Backend, wl benchWorkload, total int, seed uint64, ds *data.Dataset) (*train.Trainer, int, error) {
	if wl.image == nil {
		cfg := benchConfig(wl, total, seed)
		cfg.Precision = gpu.PrecisionOf(b) // --precision (runBench set it)
		tr, err := train.New(b, cfg, ds.X, ds.N)
		return tr, ds.D, err
	}
	images := benchImageData(wl, seed)
	cfg, err := benchImageConfig(wl, images, seed)
	if err != nil {
		return nil, 0, err
	}
	cfg.Precision = gpu.PrecisionOf(b)
	var tr *train.Trainer
	if cfg.Model.Classes > 0 {
		tr, err = train.NewConditional(b, cfg, images.X, images.Labels, images.N)
	} else {
		tr, err = train.New(b, cfg, images.X, images.N)
	}
	return tr, images.D, err
}
