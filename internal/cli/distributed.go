package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/fmgpu/fmgpu/collective"
	"github.com/fmgpu/fmgpu/gpu"
	"github.com/fmgpu/fmgpu/internal/cudadriver"
	"github.com/fmgpu/fmgpu/train"
)

// A data-parallel `fmgpu train` (docs/distributed.md): every rank runs the
// same command; collective.DetectLaunch finds its place from the
// launcher's environment (mpirun, srun, torchrun-style variables). Rank 0
// does what a single process does; the other ranks compute their share of
// every step, write nothing and print only their errors.

// detectLaunch reads the launch from the environment; its error names the
// variable at fault.
func detectLaunch() (collective.Launch, error) {
	l, err := collective.DetectLaunch(os.Getenv)
	if err != nil {
		return l, fmt.Errorf("%w (the launcher's environment; docs/distributed.md)", err)
	}
	return l, nil
}

// oneProcessNote warns when a command other than train starts as one
// rank of several (its launcher's variables set, by mpirun, srun or
// torchrun, or inherited by a script a rank runs): it does all of its
// work in each rank that runs it, and each writes the same outputs. A
// note, not a refusal: a job's rank 0 may well run it on purpose.
func oneProcessNote(c *ucli.Context) {
	l, err := collective.DetectLaunch(os.Getenv)
	if err != nil || !l.Distributed() {
		return
	}
	fmt.Fprintf(c.App.ErrWriter, "fmgpu %s: note: started as rank %d of %d (%s launch); only train is data-parallel: %s runs as one process, whole in every rank that runs it\n",
		c.Command.Name, l.Rank, l.Size, l.Launcher, c.Command.Name)
}

// EnvCollectiveTimeout bounds the rendezvous of a distributed run and each
// collective, MPI's or NCCL's (a Go duration: 90s, 10m; default 10
// minutes, as PyTorch's).
const EnvCollectiveTimeout = "FMGPU_COLLECTIVE_TIMEOUT"

// commOptions are the collective options of a run of launch l.
func commOptions(l collective.Launch) (collective.Options, error) {
	o := collective.Options{Launch: &l}
	if v := os.Getenv(EnvCollectiveTimeout); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return o, fmt.Errorf("%s=%q: want a positive duration such as 90s or 10m", EnvCollectiveTimeout, v)
		}
		o.Timeout = d
	}
	return o, nil
}

// describeParallel is what a distributed run's first line says of it: the
// engine and its library, world_size and the launcher.
func describeParallel(c collective.Comm, l collective.Launch) string {
	d := strings.TrimSuffix(collective.Describe(c), fmt.Sprintf(", %d ranks", c.Size()))
	return fmt.Sprintf("; data-parallel: world_size %d, engine %s, %s launch", c.Size(), d, l.Launcher)
}

// openRankBackend is openBackend for a rank of a distributed run: on GPUs,
// the device of its local rank (collective.Launch.DeviceOrdinal).
func openRankBackend(l collective.Launch, device string, threads int) (gpu.Backend, error) {
	if !l.Distributed() || device == "cpu" || gpu.Flavor == "kernelsim" {
		return openBackend(device, threads)
	}
	if device != "cuda" && device != "auto" {
		return openBackend(device, threads) // the usage error
	}
	n, err := cudaDevices()
	if err != nil {
		if device == "auto" {
			return openBackend(device, threads) // the CPU, saying why
		}
		return nil, fmt.Errorf("--device cuda: %w", err)
	}
	ord, err := l.DeviceOrdinal(n)
	if err != nil {
		return nil, fmt.Errorf("--device %s: %w", device, err)
	}
	b, err := gpu.NewCUDADriver(gpu.CUDAOptions{Device: ord})
	if err != nil {
		if device == "auto" {
			return openBackend(device, threads)
		}
		return nil, fmt.Errorf("--device cuda (device %d of rank %d): %w", ord, l.Rank, err)
	}
	return b, nil
}

// cudaDevices is the number of CUDA devices this process sees.
func cudaDevices() (int, error) {
	drv, err := cudadriver.Open("")
	if err != nil {
		return 0, err
	}
	if err := drv.Init(); err != nil {
		return 0, err
	}
	return drv.DeviceCount()
}

// endComm ends this rank's membership after the run: Close when every
// rank ended the same way (completed, interrupted together, or stopped on
// the same non-finite step), else Abort, so that the others stop instead
// of waiting for this rank in the next collective. Under an MPI launcher
// Abort ends the job and does not return, so the error is written, and
// beforeAbort run (the output directory's lock and cleanup), first.
func endComm(c collective.Comm, l collective.Launch, runErr error, stderr io.Writer, beforeAbort func()) error {
	var nf *train.NonFiniteError
	if l.ByMPI() && (errors.Is(runErr, context.Canceled) || errors.Is(runErr, errInterrupted)) {
		// The launcher is ending the job (mpirun sends SIGTERM, then
		// SIGKILL a second later): MPI_Finalize would wait for it, and the
		// rank be killed before it exits with its own status.
		return runErr
	}
	if runErr == nil || errors.Is(runErr, context.Canceled) || errors.Is(runErr, errInterrupted) || errors.As(runErr, &nf) {
		if err := c.Close(); err != nil && runErr == nil {
			return fmt.Errorf("rank %d: %w", c.Rank(), err)
		}
		return runErr
	}
	runErr = fmt.Errorf("rank %d: %w", c.Rank(), runErr)
	if l.ByMPI() {
		fmt.Fprintf(stderr, "fmgpu: %s\n", oneLine(runErr.Error()))
	}
	beforeAbort()
	c.Abort(abortReason{runErr})
	return runErr
}

// abortReason is an error on one line that keeps its chain, so that the
// MPI engine ends the job with its exit status (2 for a usage error, as a
// single process exits).
type abortReason struct{ err error }

func (r abortReason) Error() string { return oneLine(r.err.Error()) }
func (r abortReason) Unwrap() error { return r.err }

// configKeys are the names of train.Config's settings in its JSON form,
// those omitted at their zero value included.
func configKeys() []string {
	var keys []string
	t := reflect.TypeFor[train.Config]()
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" && t.Field(i).IsExported() {
			keys = append(keys, name)
		}
	}
	return keys
}

// agreeSettings checks that every rank was started with the same settings
// (its train.Config, the data and the run's logging and checkpoint steps,
// which fix when the ranks meet in collectives): otherwise one rank's
// weights were broadcast into another's buffers of other sizes (a heap
// corruption), or the ranks trained apart and exited 0, or met at
// different steps and waited for each other until the collective timeout.
// Each setting is hashed into two 12-bit parts, summed over the ranks in
// float32 (exact: size x 4095 < 2^24), and a part whose sum is not size
// times this rank's names its setting.
func agreeSettings(c collective.Comm, o trainOptions) error {
	js, err := json.Marshal(o.cfg)
	if err != nil {
		return err
	}
	values := map[string]json.RawMessage{}
	if err := json.Unmarshal(js, &values); err != nil {
		return err
	}
	for _, name := range configKeys() {
		if _, ok := values[name]; !ok {
			// left out at its zero value: every rank must hash the same
			// list of settings, or the sums below pair different ones
			values[name] = json.RawMessage("null")
		}
	}
	for name, v := range map[string]any{"log-every": o.logEvery, "checkpoint-every": o.checkpointEvery,
		"stop-after": o.stopAfter, "data": o.data, "n-data": o.nData, "out": o.out} {
		if values[name], err = json.Marshal(v); err != nil {
			return err
		}
	}
	names := make([]string, 0, len(values))
	for n := range values {
		names = append(names, n)
	}
	sort.Strings(names)
	parts := make([]float32, 2*len(names))
	for i, n := range names {
		h := fnv.New32a()
		h.Write(values[n])
		s := h.Sum32()
		parts[2*i], parts[2*i+1] = float32(s&0xfff), float32(s>>12&0xfff)
	}
	sums := slices.Clone(parts)
	if err := c.AllReduceSum(collective.Host(sums)); err != nil {
		return err
	}
	size := float32(c.Size())
	var differ []string
	for i, n := range names {
		if sums[2*i] != size*parts[2*i] || sums[2*i+1] != size*parts[2*i+1] {
			what := "--" + n
			if fs := settingFlags[n]; len(fs) == 1 {
				what = "--" + fs[0]
			} else if len(fs) > 1 {
				what = fmt.Sprintf("the %s (--%s)", n, strings.Join(fs, ", --"))
			}
			differ = append(differ, what)
		}
	}
	if len(differ) > 0 {
		return usagef("the ranks were started with different settings: %s; every rank must get the same command line", strings.Join(differ, "; "))
	}
	return nil
}
