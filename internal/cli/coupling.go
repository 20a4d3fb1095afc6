package cli

import (
	"strings"

	ucli "github.com/urfave/cli/v2"

	"github.com/fmgpu/fmgpu/train"
)

// defaultOTReg is --ot-reg: TorchCFM's default for its Sinkhorn plan.
const defaultOTReg = 0.05

// couplingFromFlags reads --coupling and --ot-reg (which only sinkhorn
// takes).
func couplingFromFlags(c *ucli.Context) (train.Coupling, error) {
	k := c.String("coupling")
	ok := false
	for _, n := range train.CouplingNames() {
		ok = ok || k == n
	}
	if !ok {
		return train.Coupling{}, usagef("--coupling %q: want %s", k, strings.Join(train.CouplingNames(), ", "))
	}
	cp := train.Coupling{Kind: k}
	if k != "sinkhorn" {
		if c.IsSet("ot-reg") {
			return cp, usagef("--ot-reg applies to --coupling sinkhorn, not %s", k)
		}
		return cp, nil
	}
	cp.Reg = c.Float64("ot-reg")
	if r := cp.Reg; !(r > 0) || r > 1e6 {
		return cp, usagef("--ot-reg %g: need 0 < reg <= 1e6", r)
	}
	return cp, nil
}

// checkTrainResumable refuses to continue with `train` a run that
// `reflow` or `distill` made: its pairs are theirs to load.
func checkTrainResumable(ck *train.Checkpoint, out string) error {
	if ck.Meta.Config.Coupling.Kind == train.CouplingPairs {
		return usagef("--resume: %s was trained on fixed pairs by fmgpu reflow or distill; run the same command again to continue it", out)
	}
	return nil
}
