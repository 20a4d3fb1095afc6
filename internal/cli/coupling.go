package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/fmgpu/fmgpu/data"
	"github.com/fmgpu/fmgpu/gpu"
	"github.com/fmgpu/fmgpu/train"
)

// defaultOTReg is --ot-reg: TorchCFM's default for its Sinkhorn plan.
const defaultOTReg = 0.05

// couplingFlags are --coupling, --ot-reg and --coupling-blocks, and
// which of them were given.
type couplingFlags struct {
	kind                       string
	reg                        float64
	blocks                     int
	kindSet, regSet, blocksSet bool
}

func couplingFlagsFrom(c *ucli.Context) couplingFlags {
	return couplingFlags{kind: c.String("coupling"), reg: c.Float64("ot-reg"), blocks: c.Int("coupling-blocks"),
		kindSet: c.IsSet("coupling"), regSet: c.IsSet("ot-reg"), blocksSet: c.IsSet("coupling-blocks")}
}

// given reports whether any of the coupling's flags was given.
func (f couplingFlags) given() bool { return f.kindSet || f.regSet || f.blocksSet }

// coupling is the coupling the flags ask for: --coupling, --ot-reg (which
// only sinkhorn takes) and --coupling-blocks (ot and sinkhorn), over base
// where a flag is not given. base is the zero Coupling for a new run and
// the checkpoint's for a resumed one, whose kind, regularization and
// blocks then stand unless given (a resume with --ot-reg or
// --coupling-blocks alone was refused as if it asked for the independent
// coupling, and --coupling sinkhorn alone compared the default --ot-reg).
func (f couplingFlags) coupling(base train.Coupling) (train.Coupling, error) {
	base = base.Normalized()
	k := f.kind
	if !f.kindSet {
		k = base.Kind
	}
	ok := false
	for _, n := range train.CouplingNames() {
		ok = ok || k == n
	}
	if !ok {
		return train.Coupling{}, usagef("--coupling %q: want %s", k, strings.Join(train.CouplingNames(), ", "))
	}
	cp := train.Coupling{Kind: k}
	if base.Kind == k {
		cp.Reg, cp.Blocks = base.Reg, base.Blocks
	}
	if f.blocksSet {
		if k != "ot" && k != "sinkhorn" {
			return cp, usagef("--coupling-blocks applies to --coupling ot and sinkhorn, not %s", k)
		}
		if f.blocks < 1 {
			return cp, usagef("--coupling-blocks %d: need 1..--batch", f.blocks)
		}
		cp.Blocks = 0
		if f.blocks > 1 {
			cp.Blocks = f.blocks
		}
	}
	if k != "sinkhorn" {
		if f.regSet {
			return cp, usagef("--ot-reg applies to --coupling sinkhorn, not %s", k)
		}
		if cp.IsIndependent() {
			// the zero value, which the checkpoint omits: the metadata of
			// a default run stays what it was, and the library's
			cp = train.Coupling{}
		}
		return cp, nil
	}
	if f.regSet || cp.Reg == 0 {
		cp.Reg = f.reg
	}
	if r := cp.Reg; !(r > 0) || r > 1e6 {
		return cp, usagef("--ot-reg %g: need 0 < reg <= 1e6", r)
	}
	return cp, nil
}

// describeCoupling names a coupling for a message: "sinkhorn, reg 0.1, 2
// blocks".
func describeCoupling(c train.Coupling) string {
	c = c.Normalized()
	s := c.Kind
	if c.Reg != 0 {
		s += fmt.Sprintf(", reg %g", c.Reg)
	}
	if c.Blocks > 1 {
		s += fmt.Sprintf(", %d blocks", c.Blocks)
	}
	return s
}

// checkTrainResumable refuses to continue with `train` a run that
// `reflow` or `distill` made: its pairs are theirs to load.
func checkTrainResumable(ck *train.Checkpoint, out string) error {
	if ck.Meta.Config.Coupling.Kind == train.CouplingPairs {
		return usagef("--resume: %s was trained on fixed pairs by fmgpu reflow or distill; run the same command again to continue it", out)
	}
	return nil
}

// The coupling workloads of `fmgpu bench`: mlp256-b256's training step
// with and without the coupling, on the same data.
const (
	couplingWorkloadPrefix = "coupling-"
	couplingBenchSteps     = 100
	couplingBenchReg       = 0.5 // Sinkhorn's regularization for bench
)

func isCouplingWorkload(name string) bool {
	k, ok := strings.CutPrefix(name, couplingWorkloadPrefix)
	return ok && (k == "ot" || k == "sinkhorn")
}

// benchCoupling times steps of mlp256-b256 with the independent coupling
// and with the workload's, interleaved in rounds so that a shared
// machine's load falls on both, and reports the coupling's cost against
// the independent step (issue 13 asks for at most 5% for ot at batch
// 256): step_ms and coupled_step_ms are the best rounds' mean step, and
// pairing_ms the best round's host share of a coupled step (the cost
// download, the solve, the reordered rows' upload).
func benchCoupling(ctx context.Context, w io.Writer, b gpu.Backend, ds *data.Dataset, name string, steps int, seed uint64) error {
	if steps == 0 {
		steps = couplingBenchSteps
	}
	wl := benchWorkloads[0]
	const rounds = 5
	per := max(1, steps/rounds)
	total := 2*per*rounds + 10
	cfgI := benchConfig(wl, total, seed)
	cfgI.Precision = gpu.PrecisionOf(b) // --precision (runBench set it)
	cfgC := cfgI
	cfgC.Coupling = train.Coupling{Kind: strings.TrimPrefix(name, couplingWorkloadPrefix)}
	if cfgC.Coupling.Kind == "sinkhorn" {
		cfgC.Coupling.Reg = couplingBenchReg
	}
	ind, err := train.New(b, cfgI, ds.X, ds.N)
	if err != nil {
		return err
	}
	defer ind.Close()
	cpl, err := train.New(b, cfgC, ds.X, ds.N)
	if err != nil {
		return err
	}
	defer cpl.Close()
	timed := func(tr *train.Trainer, n int) (time.Duration, error) {
		start := time.Now()
		for range n {
			if err := ctx.Err(); err != nil {
				return 0, err
			}
			tr.Step()
		}
		_, err := tr.Read()
		return time.Since(start), err
	}
	for _, tr := range []*train.Trainer{ind, cpl} { // warm-up: buffers, graphs
		if _, err := timed(tr, 5); err != nil {
			return err
		}
	}
	bestI, bestC, bestP := time.Duration(1<<62), time.Duration(1<<62), time.Duration(1<<62)
	for range rounds {
		di, err := timed(ind, per)
		if err != nil {
			return err
		}
		_, spent0, _ := cpl.CouplingStats()
		dc, err := timed(cpl, per)
		if err != nil {
			return err
		}
		_, spent, _ := cpl.CouplingStats()
		bestI, bestC, bestP = min(bestI, di), min(bestC, dc), min(bestP, spent-spent0)
	}
	ms := func(d time.Duration) float64 { return d.Seconds() * 1e3 / float64(per) }
	pairing := ms(bestP)
	stepI, stepC := ms(bestI), ms(bestC)
	fmt.Fprintf(w, "workload=%s-b%d step_ms=%.3f coupled_step_ms=%.3f pairing_ms=%.3f cost_pct=%.1f goal_pct=5 device=%s\n",
		name, wl.batch, stepI, stepC, pairing, 100*(stepC-stepI)/stepI, strings.TrimSpace(b.Info().Backend))
	return nil
}
