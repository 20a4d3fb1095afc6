// Package fmgpu trains flow-matching generative models and uses them, from
// Go: the library under the fmgpu command line, for a Go program that
// draws samples on request, scores points by their likelihood, or trains
// on rows it produces itself (a generator, a file, a database cursor).
//
// The common cases take a few calls:
//
//	m, err := fmgpu.Load(ctx, "runs/moons/checkpoint.safetensors", fmgpu.LoadOptions{})
//	x, err := m.Sample(ctx, 1000, fmgpu.SampleOptions{Seed: 1})  // 1000 x m.Dim() values
//	lp, err := m.LogProb(ctx, x, fmgpu.LogProbOptions{})         // log p(x) in nats, one per row
//
//	cfg := fmgpu.DefaultConfig(2)
//	m, err := fmgpu.Train(ctx, cfg, fmgpu.SourceFunc(2, next), fmgpu.TrainOptions{OutDir: "runs/mine"})
//
// A Trainer takes its rows from a Source: rows in memory (Rows,
// LabeledRows, DatasetRows) are uploaded once and batches drawn on the
// device, which makes a resumed run exact; any other Source is streamed,
// each step's batch read on the host and uploaded (see Trainer for what a
// stream guarantees). Options left zero take the command line's defaults,
// and a checkpoint written here is one `fmgpu sample`, `fmgpu likelihood`
// and `fmgpu train --resume` read (given the same rows as --data; a
// streamed run resumes here only), and the other way round.
//
// Devices are chosen as the command line's --device: DeviceAuto uses the
// GPU when the NVIDIA driver loads and a device answers and says why not
// otherwise (Device.Fallback). The driver is loaded at run time: a program
// importing fmgpu builds with CGO_ENABLED=0 and without the CUDA toolkit.
//
// Every call that can take long (Load, NewTrainer, Run, Save, Sample,
// LogProb) takes a context and stops when it is done, between solver or
// training steps, returning its error; errors are values (bad arguments
// included, never a panic or an exit), and nothing is printed.
//
// The velocity network is a model.Net: the MLP and the U-Net are built in,
// and a network of one's own, written over the backend's operations with
// its backward pass, trains, saves and loads like them once registered
// with model.Register (see the custom-network example).
//
// Below this package, each piece is a package of its own, usable
// directly: gpu (the backend's operations by family, the CPU and CUDA
// backends), model (the networks), flow (probability paths), train (the
// training loop, streaming trainer, checkpoints), sampler (ODE solvers,
// likelihoods), generate (from a network to samples and log-likelihoods in
// data units), data (data sets and standardization), metrics and coupling.
package fmgpu
