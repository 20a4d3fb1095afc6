// Command ring shows package fmgpu from a program of one's own: it trains
// a flow-matching model on a stream of points of a noisy ring, made on
// demand, then writes samples of the trained model as CSV to the standard
// output. It builds with CGO_ENABLED=0 and runs on a GPU when there is one
// (-device auto).
//
//	go run ./examples/ring -steps 2000 -n 1000 > samples.csv
package main

import (
	"context"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/signal"

	"github.com/fmgpu/fmgpu"
	"github.com/fmgpu/fmgpu/train"
)

func main() {
	steps := flag.Int("steps", 2000, "training steps")
	n := flag.Int("n", 1000, "samples to write")
	device := flag.String("device", fmgpu.DeviceAuto, "auto, cpu or cuda")
	out := flag.String("out", "", "also keep the run's checkpoint and metrics in this directory")
	flag.Parse()
	if err := run(*steps, *n, *device, *out); err != nil {
		fmt.Fprintln(os.Stderr, "ring:", err)
		os.Exit(1)
	}
}

func run(steps, n int, device, out string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	dev, err := fmgpu.OpenDevice(device, 0)
	if err != nil {
		return err
	}
	defer dev.Close()
	fmt.Fprintln(os.Stderr, "ring: on", dev)

	rng := rand.New(rand.NewPCG(1, 2))
	ring := fmgpu.SourceFunc(2, func(_ context.Context, x []float32, _ []int32) error {
		for i := 0; i < len(x); i += 2 {
			a := 2 * math.Pi * rng.Float64()
			r := 3 + 0.1*rng.NormFloat64()
			x[i], x[i+1] = float32(r*math.Cos(a)), float32(r*math.Sin(a))
		}
		return nil
	})
	cfg := fmgpu.DefaultConfig(2)
	cfg.Steps, cfg.Warmup = steps, min(200, steps/5)
	m, err := fmgpu.Train(ctx, cfg, ring, fmgpu.TrainOptions{Device: dev, OutDir: out, OnLog: func(m train.Metric) {
		fmt.Fprintf(os.Stderr, "ring: step %d loss %.4f\n", m.Step, m.Loss)
	}})
	if err != nil {
		return err
	}
	defer m.Close()
	x, err := m.Sample(ctx, n, fmgpu.SampleOptions{Seed: 1})
	if err != nil {
		return err
	}
	for i := 0; i < len(x); i += 2 {
		fmt.Printf("%g,%g\n", x[i], x[i+1])
	}
	return nil
}
