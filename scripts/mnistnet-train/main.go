// Command mnistnet-train trains the MNIST classifier of package
// metrics/mnistnet, whose features are fmgpu eval's image feature space,
// and writes its weights with their accuracy (docs/metrics.md):
//
//	go run ./scripts/mnistnet-train -out metrics/mnistnet/mnistnet.safetensors
//
// It fits the first -train-images images of MNIST's training split (the
// rest stay unseen: eval's noise floor draws its training-split images
// from them) and reports the accuracy on those held-out images and on the
// 10,000 test images. The same flags give the same weights on the same
// matrix-product kernel (internal/sgemm). Ctrl-C stops it without writing.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/fmgpu/fmgpu/data"
	"github.com/fmgpu/fmgpu/internal/atomicfile"
	"github.com/fmgpu/fmgpu/internal/sgemm"
	"github.com/fmgpu/fmgpu/metrics/mnistnet"
)

func main() {
	out := flag.String("out", "metrics/mnistnet/mnistnet.safetensors", "weights file to write")
	epochs := flag.Int("epochs", mnistnet.DefaultEpochs, "passes over the training images")
	batch := flag.Int("batch", mnistnet.DefaultBatch, "images per step")
	lr := flag.Float64("lr", mnistnet.DefaultLR, "Adam's peak learning rate (cosine decay to 0)")
	seed := flag.Uint64("seed", 1, "seed of the initialization and the shuffles")
	trainN := flag.Int("train-images", mnistnet.DefaultTrainImages, "the first images of the training split to fit; the rest are held out")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *out, *trainN, mnistnet.TrainOptions{Epochs: *epochs, Batch: *batch, LR: *lr, Seed: *seed}); err != nil {
		fmt.Fprintf(os.Stderr, "mnistnet-train: %v\n", err)
		if errors.Is(err, context.Canceled) {
			os.Exit(130)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, out string, trainN int, o mnistnet.TrainOptions) error {
	tr, err := data.LoadImages("mnist", data.ImageOptions{})
	if err != nil {
		return err
	}
	te, err := data.LoadImages("mnist:test", data.ImageOptions{})
	if err != nil {
		return err
	}
	if trainN < 1 || trainN >= tr.N {
		return fmt.Errorf("-train-images %d: want 1..%d", trainN, tr.N-1)
	}
	start := time.Now()
	o.OnEpoch = func(epoch int, loss float64) {
		fmt.Printf("epoch %d: loss %.5f (%.0f s)\n", epoch, loss, time.Since(start).Seconds())
	}
	net, err := mnistnet.Train(ctx, tr.X, tr.Labels, trainN, o)
	if err != nil {
		return err
	}
	if err := net.Calibrate(ctx, tr.X, trainN); err != nil {
		return err
	}
	held, err := net.Accuracy(tr.X[trainN*mnistnet.Pixels:], tr.Labels[trainN:], tr.N-trainN)
	if err != nil {
		return err
	}
	test, err := net.Accuracy(te.X, te.Labels, te.N)
	if err != nil {
		return err
	}
	info := mnistnet.Info{TrainImages: trainN, TestAccuracy: test, HeldOutAccuracy: held,
		Epochs: cmp0(o.Epochs, mnistnet.DefaultEpochs), Batch: cmp0(o.Batch, mnistnet.DefaultBatch), LR: o.LR, Seed: o.Seed,
		Kernel: sgemm.Kernel(), Command: strings.TrimSpace("go run ./scripts/mnistnet-train " + strings.Join(os.Args[1:], " ")),
		Date: time.Now().UTC().Format("2006-01-02")}
	if info.LR == 0 {
		info.LR = mnistnet.DefaultLR
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := atomicfile.Write(out, func(w io.Writer) error { return net.Write(w, info) }); err != nil {
		return err
	}
	fmt.Printf("test_accuracy=%.4f held_out_accuracy=%.4f feature_scale=%.5g train_images=%d seconds=%.0f wrote %s\n", test, held, net.FeatureScale, trainN, time.Since(start).Seconds(), out)
	return nil
}

func cmp0(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}
