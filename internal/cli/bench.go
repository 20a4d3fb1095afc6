package cli

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/fmgpu/fmgpu/data"
	"github.com/fmgpu/fmgpu/flow"
	"github.com/fmgpu/fmgpu/gpu"
	"github.com/fmgpu/fmgpu/model"
	"github.com/fmgpu/fmgpu/sampler"
	"github.com/fmgpu/fmgpu/train"
)

// benchWorkload is one of the PyTorch peer's workloads (a torch
// conditional flow-matching script; docs/performance.md), with exactly its
// configuration.
type benchWorkload struct {
	name   string
	hidden []int
	batch  int
	steps  int // timed steps, as the peer's defaults
	// image: the image workloads' data and training flags
	// (bench_unet.go); nil: an MLP
	image *benchImage
}

var benchWorkloads = []benchWorkload{
	{"mlp256-b256", []int{256, 256, 256}, 256, 400, nil},
	{"mlp256-b4096", []int{256, 256, 256}, 4096, 40, nil},
	{"mlp512x4-b4096", []int{512, 512, 512, 512}, 4096, 40, nil},
	{"unet-mnist-b64", nil, imageBatch, benchUNetSteps, &benchMNIST},
	{"unet-mnist-b64-attn", nil, imageBatch, benchUNetSteps, &benchMNISTAttention},
	{"unet-cifar10-b128", nil, 128, benchCIFARSteps, &benchCIFAR},
}

const (
	benchDataRows    = 100000
	benchSamplePts   = 20000
	benchSampleSteps = 100
)

// launchCounter is implemented by device backends that count kernel
// launches (the kernels run, replays of recorded graphs included) and
// graph launches.
type launchCounter interface {
	Launches() int64
	GraphLaunches() int64
}

// launchFields are bench's counts over steps steps since the counts l0, g0:
// launches_per_step (the name earlier versions printed) and
// kernels_per_step are the kernels run, graph_launches_per_step the
// replays of recorded graphs (each runs many of those kernels with one
// launch).
func launchFields(lc launchCounter, l0, g0 int64, steps int) string {
	k := float64(lc.Launches()-l0) / float64(steps)
	return fmt.Sprintf(" launches_per_step=%.1f kernels_per_step=%.1f graph_launches_per_step=%.2f",
		k, k, float64(lc.GraphLaunches()-g0)/float64(steps))
}

// benchOptions are the settings of `fmgpu bench`.
type benchOptions struct {
	workloads []string // names, "all" expanded
	dev       deviceOptions
	steps     int // timed steps, 0: the peer's per workload
	seed      uint64
}

func benchCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "bench",
		Usage: "time the PyTorch peer's workloads (training steps/s, sampling points/s)",
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "workload", Value: "all", Usage: "mlp256-b256, mlp256-b4096, mlp512x4-b4096, sample-euler, unet-mnist-b64, unet-mnist-b64-attn, unet-cifar10-b128, coupling-ot, coupling-sinkhorn, or all (the first four and coupling-ot)"},
			&ucli.StringFlag{Name: "device", Value: "auto", Usage: "auto, cpu or cuda"},
			&ucli.IntFlag{Name: "steps", Value: 0, DefaultText: "the peer's per workload", Usage: "timed steps: training steps, or sample-euler's Euler steps (100)"},
			&ucli.IntFlag{Name: "threads", Value: 0, Usage: "CPU worker threads (0: all cores)"},
			precisionFlag(""),
			&ucli.Uint64Flag{Name: "seed", Value: 1, Usage: "random seed"},
		},
		Action: func(c *ucli.Context) error {
			oneProcessNote(c)
			o, err := benchOptionsFrom(c)
			if err != nil {
				return err
			}
			return runBench(c.Context, o, c.App.Writer, c.App.ErrWriter)
		},
	}
}

func benchOptionsFrom(c *ucli.Context) (benchOptions, error) {
	o := benchOptions{workloads: []string{c.String("workload")}, steps: c.Int("steps"), seed: c.Uint64("seed"),
		dev: deviceOptions{device: c.String("device"), threads: c.Int("threads")}}
	if o.workloads[0] == "all" {
		o.workloads = []string{"mlp256-b256", "mlp256-b4096", "mlp512x4-b4096", "sample-euler", "coupling-ot"}
	}
	for _, n := range o.workloads {
		if n != "sample-euler" && !isCouplingWorkload(n) && findWorkload(n) == nil {
			return o, usagef("--workload %q: want mlp256-b256, mlp256-b4096, mlp512x4-b4096, sample-euler, unet-mnist-b64, unet-mnist-b64-attn, unet-cifar10-b128, coupling-ot, coupling-sinkhorn or all", n)
		}
	}
	if o.steps < 0 {
		return o, usagef("--steps %d: need >= 0 (0: the peer's per workload)", o.steps)
	}
	if o.dev.threads < 0 {
		return o, usagef("--threads %d: need >= 0 (0: all cores)", o.dev.threads)
	}
	var err error
	if o.dev.precision, err = precisionFrom(c); err != nil {
		return o, err
	}
	return o, nil
}

func runBench(ctx context.Context, o benchOptions, stdout, stderr io.Writer) error {
	b, err := openBackend(o.dev.device, o.dev.threads)
	if err != nil {
		return err
	}
	defer b.Close()
	if err := setPrecision(b, o.dev.precision); err != nil {
		return err
	}
	ds, _ := data.Builtin("8gaussians", benchDataRows, o.seed)
	fmt.Fprintf(stderr, "fmgpu bench on %s%s\n", describeBackend(b), precisionNote(b))
	for _, n := range o.workloads {
		if err := ctx.Err(); err != nil {
			return err
		}
		switch {
		case n == "sample-euler":
			err = benchSample(ctx, stdout, b, ds, o.steps, o.seed)
		case isCouplingWorkload(n):
			err = benchCoupling(ctx, stdout, b, ds, n, o.steps, o.seed)
		default:
			err = benchTrain(ctx, stdout, b, ds, *findWorkload(n), o.steps, o.seed)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func findWorkload(name string) *benchWorkload {
	for i := range benchWorkloads {
		if benchWorkloads[i].name == name {
			return &benchWorkloads[i]
		}
	}
	return nil
}

// benchConfig is the peer's setup: input [x_t, t] with no time embedding,
// SiLU, Adam lr 1e-3 with no clipping, schedule or EMA, ot path, t ~ U(0,1).
func benchConfig(w benchWorkload, steps int, seed uint64) train.Config {
	c := train.Config{
		Model: model.Config{Kind: "mlp", Dim: 2, Hidden: w.hidden},
		Path:  flow.DefaultSpec(flow.KindOT), Time: flow.DefaultTimeSampler(flow.TimeUniform),
		Steps: steps, Batch: w.batch, Seed: seed, LR: 1e-3, Schedule: "constant",
	}
	c.Defaults()
	return c
}

// benchTrain times a training workload. Its loops look at ctx between
// steps, so that a signal stops a workload of minutes (the U-Net's on a
// CPU) at once, and the command exits 130 rather than print a figure
// after it (as benchSample's and benchCoupling's).
func benchTrain(ctx context.Context, w io.Writer, b gpu.Backend, ds *data.Dataset, wl benchWorkload, steps int, seed uint64) error {
	if steps == 0 {
		steps = wl.steps
	}
	warm := max(5, steps/10)
	if wl.image != nil && wl.image.warm > 0 {
		warm = wl.image.warm
	}
	tr, dim, err := newBenchTrainer(b, wl, warm+steps, seed, ds)
	if err != nil {
		return err
	}
	defer tr.Close()
	for i := 0; i < warm; i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		tr.Step()
	}
	if _, err := tr.Read(); err != nil {
		return err
	}
	lc, counts := b.(launchCounter)
	var l0, g0 int64
	if counts {
		l0, g0 = lc.Launches(), lc.GraphLaunches()
	}
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	start := time.Now()
	for i := 0; i < steps; i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		tr.Step()
	}
	p, err := tr.Read()
	if err != nil {
		return err
	}
	el := time.Since(start).Seconds()
	runtime.ReadMemStats(&ms1)
	sps := float64(steps) / el
	// forward 2*B*sum(in*out) flops, backward twice that (dW and dX)
	gflops := 3 * float64(tr.Net().FLOPsPerRow()) * float64(wl.batch) * sps / 1e9
	extra := fmt.Sprintf("allocs_per_step=%.1f", float64(ms1.Mallocs-ms0.Mallocs)/float64(steps))
	if counts {
		extra += launchFields(lc, l0, g0, steps)
	}
	// loss_mean: over the timed steps, and per element (fmgpu's loss sums
	// the D dimensions; torch_cfm.py's .mean() averages them), so that it
	// reads beside the peer's loss values.
	prec := ""
	if q := gpu.PrecisionOf(b); q != gpu.PrecisionFP32 {
		prec = " precision=" + q.String() // absent for fp32: the line as before
	}
	// a step of seconds (the CIFAR-10 U-Net on a CPU) keeps 3 digits
	rate := strconv.FormatFloat(sps, 'f', 2, 64)
	if sps < 1 {
		rate = strconv.FormatFloat(sps, 'g', 3, 64)
	}
	fmt.Fprintf(w, "workload=%s steps_per_s=%s gflops=%.1f loss_mean=%.4f %s%s device=%s%s\n",
		wl.name, rate, gflops, p.Loss/float64(dim), extra, peakFields(b, gflops), b.Info().Backend, prec)
	return nil
}

func benchSample(ctx context.Context, w io.Writer, b gpu.Backend, ds *data.Dataset, steps int, seed uint64) error {
	if steps == 0 {
		steps = benchSampleSteps
	}
	// The peer samples with the mlp256 network after 50 training steps;
	// the weights do not change the cost.
	cfg := benchConfig(benchWorkloads[0], 55, seed)
	cfg.Precision = gpu.PrecisionOf(b) // --precision (runBench set it)
	tr, err := train.New(b, cfg, ds.X, ds.N)
	if err != nil {
		return err
	}
	defer tr.Close()
	for i := 0; i < 55; i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		tr.Step()
	}
	if _, err := tr.Read(); err != nil {
		return err
	}
	net := tr.Net()
	x := b.Alloc(benchSamplePts * 2)
	defer b.Free(x)
	b.RandNormal(x, seed, 0, 1)
	// every solve stops between steps on a signal (ctx), as sample does
	o := sampler.Options{Method: sampler.Euler, Steps: steps, T0: 0, T1: 1, Stop: ctx.Err}
	if _, err := sampler.Solve(b, net, x, benchSamplePts, sampler.Options{Method: sampler.Euler, Steps: 2, T0: 0, T1: 1, Stop: ctx.Err}); err != nil {
		return err
	}
	if gpu.CanCapture(b) {
		// The timed solve replays a recorded graph: one solve op by op,
		// one recorded first.
		rec := sampler.NewRecorder(b)
		defer rec.Close()
		o.Recorder = rec
		for i := 0; i < 2; i++ {
			if _, err := sampler.Solve(b, net, x, benchSamplePts, o); err != nil {
				return err
			}
		}
	}
	b.RandNormal(x, seed, 1, 1)
	if err := b.Sync(); err != nil {
		return err
	}
	lc, counts := b.(launchCounter)
	var l0, g0 int64
	if counts {
		l0, g0 = lc.Launches(), lc.GraphLaunches()
	}
	start := time.Now()
	st, err := sampler.Solve(b, net, x, benchSamplePts, o)
	if err != nil {
		return err
	}
	if err := b.Sync(); err != nil {
		return err
	}
	el := time.Since(start).Seconds()
	if err := ctx.Err(); err != nil {
		return err // interrupted: no figure
	}
	gflops := float64(net.FLOPsPerRow()) * benchSamplePts * float64(st.NFE) / el / 1e9
	extra := ""
	if counts {
		extra = launchFields(lc, l0, g0, steps)
	}
	fmt.Fprintf(w, "workload=sample-euler points_per_s=%.0f gflops=%.1f nfe=%d%s%s device=%s\n",
		float64(benchSamplePts)/el, gflops, st.NFE, extra, peakFields(b, gflops), strings.TrimSpace(b.Info().Backend))
	return nil
}
