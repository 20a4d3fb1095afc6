package cli

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	ucli "github.com/urfave/cli/v2"

	"github.com/fmgpu/fmgpu/model"
)

// A preset is a published training recipe as train flag values: --preset
// NAME gives every flag it names that value unless the flag is given too
// (an explicit flag wins). The checkpoint records the preset's name
// (train.Config.Preset) beside the settings themselves.
type preset struct {
	name, usage string
	flags       [][2]string // flag name, value, in the order of the help text
}

// presets are the recipes --preset takes.
var presets = []preset{
	{
		// TorchCFM's CIFAR-10 recipe (examples/images/cifar10: the
		// ADM U-Net of 128 channels, multipliers 1,2,2,2, two residual
		// blocks a level, attention at 16x16 and in the middle with
		// heads of 64 channels, dropout 0.1; Adam at 2e-4 after 5000
		// warm-up steps, batch 128, EMA 0.9999, gradients clipped at 1,
		// 400000 steps, a checkpoint every 20000). GroupNorm has 32
		// groups and the sinusoid 128 features (64 frequencies) as in
		// ADM. TorchCFM trains it unconditionally: --unconditional.
		name:  "cifar10",
		usage: "TorchCFM's CIFAR-10 recipe (U-Net 128 channels, mults 1,2,2,2, 2 res-blocks, attention at 16x16 with 4 heads, dropout 0.1, lr 2e-4 constant after 5000 warm-up steps, batch 128, EMA 0.9999, clip 1)",
		flags: [][2]string{
			{"model", "unet"}, {"base", "128"}, {"mults", "1,2,2,2"}, {"res-blocks", "2"},
			{"attention", "true"}, {"attention-res", "16"}, {"heads", "4"}, {"dropout", "0.1"}, {"groups", "32"},
			{"time-freqs", "64"},
			{"lr", "2e-4"}, {"warmup", "5000"}, {"schedule", "constant"}, {"batch", "128"}, {"ema", "0.9999"},
			{"clip-grad", "1"}, {"steps", "400000"}, {"checkpoint-every", "20000"},
		},
	},
}

func presetNames() []string {
	var n []string
	for _, p := range presets {
		n = append(n, p.name)
	}
	return n
}

// presetFlags are --preset and the U-Net flags of the blocks the presets
// use beyond the basic U-Net.
func presetFlags() []ucli.Flag {
	return []ucli.Flag{
		&ucli.StringFlag{Name: "preset", Category: catModel, Usage: "a published recipe's settings (" + strings.Join(presetNames(), ", ") + "); flags given too override them. " + presets[0].name + ": " + presets[0].usage},
		&ucli.StringFlag{Name: "attention-res", Category: catModel, DefaultText: "none", Usage: "unet: image heights (e.g. 16) at whose level every residual block is followed by self-attention"},
		&ucli.IntFlag{Name: "heads", Value: 1, Category: catModel, Usage: "unet: attention heads (divide the width of every level with attention)"},
		&ucli.Float64Flag{Name: "dropout", Category: catModel, Usage: "unet: dropout probability in the residual blocks while training (never when sampling)"},
	}
}

// applyPreset sets the flags of --preset that were not given; with
// --resume it sets nothing (the checkpoint's settings apply, and a
// --preset other than the checkpoint's is refused like any setting).
func applyPreset(c *ucli.Context) error {
	name := c.String("preset")
	if name == "" || c.Bool("resume") {
		return nil
	}
	i := slices.IndexFunc(presets, func(p preset) bool { return p.name == name })
	if i < 0 {
		return usagef("--preset %q: want %s", name, strings.Join(presetNames(), " or "))
	}
	for _, f := range presets[i].flags {
		if c.IsSet(f[0]) {
			continue
		}
		if f[0] == "warmup" && c.IsSet("steps") {
			// a shorter run than the recipe's warms up over at most its
			// steps
			if w, err := strconv.Atoi(f[1]); err == nil && w > c.Int("steps") {
				f[1] = strconv.Itoa(max(c.Int("steps"), 0))
			}
		}
		if err := c.Set(f[0], f[1]); err != nil {
			return fmt.Errorf("--preset %s: setting --%s %s: %w", name, f[0], f[1], err)
		}
	}
	return nil
}

// unetBlocksFrom reads --attention-res, --heads and --dropout into u.
func unetBlocksFrom(c *ucli.Context, u *model.UNetConfig) error {
	if s := c.String("attention-res"); s != "" {
		res, err := model.ParseHidden(s)
		if err != nil {
			return usagef("--attention-res: %v", err)
		}
		u.AttentionRes = res
	}
	u.Heads = c.Int("heads")
	if u.Heads < 1 {
		return usagef("--heads %d: need at least 1", u.Heads)
	}
	if u.Heads == 1 {
		u.Heads = 0 // one head: stored as before heads existed
	}
	u.Dropout = c.Float64("dropout")
	if !(u.Dropout >= 0 && u.Dropout < 1) {
		return usagef("--dropout %g: need 0 <= p < 1", u.Dropout)
	}
	return nil
}
