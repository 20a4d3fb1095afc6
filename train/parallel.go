package train

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"

	"github.com/fmgpu/fmgpu/collective"
	"github.com/fmgpu/fmgpu/gpu"
)

// Data-parallel training: each of N ranks runs a Trainer with the same
// configuration and seed, computes the gradient of its share of the global
// batch, and the ranks sum their flat gradients (collective.Comm's
// AllReduceSum) before the fused Adam update, so that every rank applies
// the same update to the same weights.
//
// The batch of step s is the one a single process draws: every rank draws
// the whole global batch from the counter-based generator (indexed by
// seed, step and global row) and keeps its contiguous share of the rows.
// Drawing is O(Batch x Dim), small beside the network's O(Batch x
// params) split N ways; it needs no kernel of its own. The loss is scaled
// by 1/Batch on every rank, so the sum over ranks is the single-process
// gradient up to the float32 order of the sums.
//
// A coupled batch (ot, sinkhorn) is paired as one process pairs it: every
// rank holds the whole drawn batch, so each pairs the blocks of
// Coupling.Blocks that hold its rows, the same problems on the same
// numbers as one process, and keeps its rows of the result. With one block
// (the default) every rank solves the whole global batch's plan; with as
// many blocks as ranks, each solves its own share's only. Fixed pairs
// (reflow, distillation) are drawn by global row like the independent
// batch.
//
// The sum carries one more float after the gradient: 1 from a rank whose
// run was interrupted (Ctrl-C, SIGTERM), else 0. Every rank reads it after
// the same steps (every step on CPUs, every deviceStopEvery on GPUs), so
// the ranks agree on the step to stop at without a collective of its own,
// and rank 0 saves that step's checkpoint.

// deviceStopEvery is how often a GPU rank reads the stop flags: reading
// waits for the device, which every step would keep from queuing the next
// step while one runs; a flag set before step s is in every later step's
// sum (an interrupted rank keeps setting it), so the ranks stop within
// deviceStopEvery steps of a signal. On a CPU, reading is free: every step.
const deviceStopEvery = 16

// streamBackend is a backend whose buffers live on a CUDA device
// (gpu.DeviceBackend): NCCL works on them on its stream and context thread.
type streamBackend interface {
	OnStream(f func(stream uintptr) error) error
	DevicePointer(b gpu.Buffer) uint64
}

// OpenComm joins the distributed run that opts.Launch (or the environment)
// describes, with the engine b's buffers need: MPI for a CPU backend, NCCL
// for a CUDA backend, opened on the thread where b's context is current
// (where every later call of the returned Comm runs too). A single process
// gets collective's no-op engine and loads nothing.
func OpenComm(b gpu.Backend, opts collective.Options) (collective.Comm, error) {
	sb, onDevice := b.(streamBackend)
	if !onDevice {
		return collective.Open(collective.EngineMPI, opts)
	}
	if opts.Launch == nil {
		l, err := collective.DetectLaunch(os.Getenv)
		if err != nil {
			return nil, err
		}
		opts.Launch = &l
	}
	if opts.Launch.Size <= 1 && !opts.Force {
		return collective.Open(collective.EngineNCCL, opts)
	}
	var c collective.Comm
	err := sb.OnStream(func(uintptr) error {
		var err error
		c, err = collective.Open(collective.EngineNCCL, opts)
		return err
	})
	if err != nil {
		return nil, err
	}
	if c.Size() == 1 && !opts.Force {
		return c, nil
	}
	return &threadComm{Comm: c, b: sb}, nil
}

// threadComm runs every call of an NCCL communicator on the context thread
// of its backend.
type threadComm struct {
	collective.Comm
	b streamBackend
}

func (c *threadComm) on(f func() error) error {
	return c.b.OnStream(func(uintptr) error { return f() })
}

func (c *threadComm) AllReduceSum(b collective.Buffer) error {
	return c.on(func() error { return c.Comm.AllReduceSum(b) })
}

func (c *threadComm) Broadcast(b collective.Buffer) error {
	return c.on(func() error { return c.Comm.Broadcast(b) })
}

func (c *threadComm) Barrier() error { return c.on(c.Comm.Barrier) }
func (c *threadComm) Close() error   { return c.on(c.Comm.Close) }

func (c *threadComm) Abort(reason error) {
	if c.on(func() error { c.Comm.Abort(reason); return nil }) != nil {
		c.Comm.Abort(reason) // the backend failed: abort from here
	}
}

// Unwrap is the communicator itself (collective.Describe names it).
func (c *threadComm) Unwrap() collective.Comm { return c.Comm }

// parallel is a Trainer's part of a data-parallel run.
type parallel struct {
	comm      collective.Comm
	lo, rows  int        // this rank's rows of the global batch
	sum       gpu.Buffer // the flat gradient, then the stop flag: all-reduced every step
	flag      gpu.Buffer // sum's last element
	toBuffer  func(gpu.Buffer) (collective.Buffer, error)
	stopLocal bool  // this rank's run was interrupted
	stopEvery int   // read the summed stop flags after every stopEvery-th step
	err       error // the first collective that failed; the run stops
}

// CollectiveError is a failed collective: a rank died or aborted. The
// weights of the step it happened in are not kept.
type CollectiveError struct{ Err error }

func (e *CollectiveError) Error() string { return e.Err.Error() }
func (e *CollectiveError) Unwrap() error { return e.Err }

// ErrPeerInterrupted ends the run of a rank that was not itself
// interrupted when another was: every rank stops after the same step, and
// rank 0 saves it. It matches context.Canceled.
var ErrPeerInterrupted = fmt.Errorf("another rank was interrupted: %w", context.Canceled)

// batchShare is rank r's contiguous share of b rows over n ranks: b/n
// rows, one more for the first b mod n ranks.
func batchShare(b, n, r int) (lo, rows int) {
	q, m := b/n, b%n
	return r*q + min(r, m), q + btoi(r < m)
}

func btoi(v bool) int {
	if v {
		return 1
	}
	return 0
}

// Distribute makes tr one rank of the data-parallel run of c (see the top
// of this file). Every rank calls it with the same configuration, after
// New and after Resume from the same checkpoint: it checks that the ranks
// are at the same step and sends rank 0's weights, EMA and Adam moments to
// the others (a no-op when they are the same, as they are; PyTorch's DDP
// does the same at construction). A Comm of one rank changes nothing. For
// a CUDA backend, c must come from OpenComm.
func (tr *Trainer) Distribute(c collective.Comm) error {
	if c == nil || c.Size() <= 1 {
		return nil
	}
	if tr.stream != nil {
		return errors.New("train: a streaming trainer cannot run data-parallel (its source is not split by rank)")
	}
	if tr.par != nil {
		return errors.New("train: Distribute called twice")
	}
	n, r, bs := c.Size(), c.Rank(), tr.cfg.Batch
	if bs < n {
		return &FieldError{Field: "batch", Value: bs, Reason: fmt.Sprintf("the global batch must have at least one row for each of the %d ranks", n)}
	}
	p := &parallel{comm: c}
	p.lo, p.rows = batchShare(bs, n, r)
	if sb, ok := tr.b.(streamBackend); ok {
		var stream uintptr
		if err := sb.OnStream(func(s uintptr) error { stream = s; return nil }); err != nil {
			return err
		}
		p.toBuffer = func(b gpu.Buffer) (collective.Buffer, error) {
			return collective.Device(sb.DevicePointer(b), b.Len(), stream), nil
		}
		p.stopEvery = deviceStopEvery
	} else {
		p.toBuffer = func(b gpu.Buffer) (collective.Buffer, error) {
			h, ok := gpu.HostData(b)
			if !ok {
				return collective.Buffer{}, fmt.Errorf("train: the %s backend's buffers are neither host memory nor on a CUDA stream", tr.b.Info().Backend)
			}
			return collective.Host(h), nil
		}
		p.stopEvery = 1
	}
	// The ranks start from the same state: the same step, and rank 0's
	// weights, EMA and moments.
	w := gpu.StepWords(uint64(tr.step))
	if err := c.Broadcast(collective.Host(w[:])); err != nil {
		return err
	}
	if was := uint64(math.Float32bits(w[0])) | uint64(math.Float32bits(w[1]))<<32; was != uint64(tr.step) {
		return fmt.Errorf("train: rank %d is at step %d, rank 0 at step %d: every rank must resume from the same checkpoint", r, tr.step, was)
	}
	for _, buf := range []gpu.Buffer{tr.net.Params(), tr.ema, tr.m, tr.v} {
		cb, err := p.toBuffer(buf)
		if err == nil {
			err = c.Broadcast(cb)
		}
		if err != nil {
			return err
		}
	}
	if err := tr.b.Sync(); err != nil {
		return err
	}
	// The gradient with the stop flag after it, in one buffer.
	np := tr.net.NumParams()
	p.sum = tr.b.Alloc(np + 1)
	tr.owned = append(tr.owned, p.sum)
	for i, buf := range tr.owned {
		if buf == tr.grads {
			tr.b.Free(buf)
			tr.owned = append(tr.owned[:i], tr.owned[i+1:]...)
			break
		}
	}
	tr.grads, p.flag = p.sum.Slice(0, np), p.sum.Slice(np, 1)
	if tr.labels != nil {
		tr.net.SetLabels(tr.y.Slice(p.lo, p.rows))
	}
	// The step has a collective in its middle: no recorded graph.
	tr.graph.Close()
	tr.graph, tr.noGraph = nil, true
	tr.par = p
	return tr.b.Sync()
}

// Comm is the communicator of a distributed trainer, nil otherwise.
func (tr *Trainer) Comm() collective.Comm {
	if tr.par == nil {
		return nil
	}
	return tr.par.comm
}

// writes reports whether this trainer writes the run's files: a single
// process, or rank 0.
func (tr *Trainer) writes() bool { return tr.par == nil || tr.par.comm.Rank() == 0 }

// batchRows are the rows of the drawn batch this trainer computes: all of
// them, or this rank's share.
func (tr *Trainer) batchRows() (rows int, t, xt, ut, pred, dPred gpu.Buffer) {
	p := tr.par
	if p == nil {
		return tr.cfg.Batch, tr.t, tr.xt, tr.ut, tr.pred, tr.dPred
	}
	d := tr.cfg.Model.Dim
	v := func(b gpu.Buffer) gpu.Buffer { return b.Slice(p.lo*d, p.rows*d) }
	return p.rows, tr.t.Slice(p.lo, p.rows), v(tr.xt), v(tr.ut), v(tr.pred), v(tr.dPred)
}

// sumGradients all-reduces the step's gradient and the stop flag (a no-op
// for a single process). After a failure the rest of the run's
// collectives are skipped; advance reports it.
func (tr *Trainer) sumGradients() {
	p := tr.par
	if p == nil || p.err != nil {
		return
	}
	tr.b.Upload(p.flag, []float32{float32(btoi(p.stopLocal))})
	cb, err := p.toBuffer(p.sum)
	if err == nil {
		err = p.comm.AllReduceSum(cb)
	}
	if err != nil {
		p.err = &CollectiveError{Err: err}
	}
}

// collectiveErr is the failure of the last steps' collectives, if any.
func (tr *Trainer) collectiveErr() error {
	if tr.par == nil || tr.par.err == nil {
		return nil
	}
	return tr.par.err
}

// stopAgreed reads the summed stop flag of the last step: true on every
// rank when any rank was interrupted before it.
func (tr *Trainer) stopAgreed() (bool, error) {
	var f [1]float32
	tr.b.Download(f[:], tr.par.flag)
	if err := tr.b.Sync(); err != nil {
		return false, err
	}
	return f[0] > 0, nil
}

// waitForRank0 holds every rank of an interrupted run until rank 0 has
// saved: a launcher that sees one rank exit may end the others (mpirun
// does, with SIGTERM, which rank 0 would take for a second interrupt).
func (tr *Trainer) waitForRank0() error {
	if tr.par == nil {
		return nil
	}
	if err := tr.par.comm.Barrier(); err != nil {
		return &CollectiveError{Err: err}
	}
	return nil
}

// sumHost all-reduces a few host floats (the loss of a read).
func (p *parallel) sumHost(x []float32) error {
	if p.err != nil {
		return p.err
	}
	if err := p.comm.AllReduceSum(collective.Host(x)); err != nil {
		p.err = &CollectiveError{Err: err}
	}
	return p.err
}
