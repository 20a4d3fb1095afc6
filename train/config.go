// Package train runs flow-matching training on a gpu.Backend: the fused
// batch draw, the network's forward and backward, the loss, gradient
// clipping and the fused Adam(W) + EMA update, with a learning-rate
// schedule, metrics and safetensors checkpoints that record everything a
// later `sample`, `likelihood` or `--resume` needs.
package train

import (
	"fmt"
	"math"

	"github.com/fmgpu/fmgpu/flow"
	"github.com/fmgpu/fmgpu/model"
)

// Config is the whole training configuration; a checkpoint stores it.
type Config struct {
	Model model.Config     `json:"model"`
	Path  flow.Spec        `json:"path"`
	Time  flow.TimeSampler `json:"time"`

	Steps int    `json:"steps"`
	Batch int    `json:"batch"`
	Seed  uint64 `json:"seed"`

	Optimizer   string  `json:"optimizer"` // "adam" or "adamw"
	LR          float64 `json:"lr"`
	Beta1       float64 `json:"beta1"`
	Beta2       float64 `json:"beta2"`
	Eps         float64 `json:"eps"`
	WeightDecay float64 `json:"weight_decay"`
	MaxGradNorm float64 `json:"max_grad_norm"` // 0: no clipping
	Warmup      int     `json:"warmup"`        // linear warm-up steps
	Schedule    string  `json:"schedule"`      // "cosine" or "constant" after warm-up
	MinLRFrac   float64 `json:"min_lr_frac"`   // cosine decays to LR*MinLRFrac
	EMADecay    float64 `json:"ema_decay"`     // 0: no EMA
	// ClassDropout is the probability that a class-conditional model sees
	// the null class instead of a row's label (classifier-free guidance).
	ClassDropout float64 `json:"class_dropout,omitempty"`
}

// Defaults fills the optimizer fields a caller left zero with fmgpu's
// defaults: Adam(0.9, 0.999, 1e-8), clipping at norm 1, cosine decay to
// 10% after 2% warm-up... chosen on the built-in 2-D sets (README).
func (c *Config) Defaults() {
	if c.Optimizer == "" {
		c.Optimizer = "adam"
	}
	if c.Beta1 == 0 {
		c.Beta1 = 0.9
	}
	if c.Beta2 == 0 {
		c.Beta2 = 0.999
	}
	if c.Eps == 0 {
		c.Eps = 1e-8
	}
	if c.Schedule == "" {
		c.Schedule = "cosine"
	}
}

// Validate checks every field, naming the CLI flag a user would fix.
func (c Config) Validate() error {
	if err := c.Model.Validate(); err != nil {
		return err
	}
	if _, err := flow.New(c.Path); err != nil {
		return err
	}
	if err := c.Time.Validate(); err != nil {
		return err
	}
	switch {
	case c.Steps < 1:
		return fmt.Errorf("--steps %d: need at least 1", c.Steps)
	case c.Batch < 1 || c.Batch > 1<<24:
		return fmt.Errorf("--batch %d: need 1..%d", c.Batch, 1<<24)
	case c.Optimizer != "adam" && c.Optimizer != "adamw":
		return fmt.Errorf("--optimizer %q: want adam or adamw", c.Optimizer)
	case !(c.LR > 0) || math.IsInf(c.LR, 0):
		return fmt.Errorf("--lr %g: need a finite learning rate > 0", c.LR)
	case !(c.Beta1 >= 0 && c.Beta1 < 1) || !(c.Beta2 >= 0 && c.Beta2 < 1):
		return fmt.Errorf("--beta1 %g, --beta2 %g: need 0 <= beta < 1", c.Beta1, c.Beta2)
	case !(c.Eps > 0):
		return fmt.Errorf("--adam-eps %g: need > 0", c.Eps)
	case !(c.WeightDecay >= 0) || math.IsInf(c.WeightDecay, 0):
		return fmt.Errorf("--weight-decay %g: need >= 0", c.WeightDecay)
	case !(c.MaxGradNorm >= 0) || math.IsInf(c.MaxGradNorm, 0):
		return fmt.Errorf("--clip-grad %g: need >= 0 (0 disables)", c.MaxGradNorm)
	case c.Warmup < 0:
		return fmt.Errorf("--warmup %d: need >= 0", c.Warmup)
	case c.Schedule != "cosine" && c.Schedule != "constant":
		return fmt.Errorf("--schedule %q: want cosine or constant", c.Schedule)
	case !(c.MinLRFrac >= 0 && c.MinLRFrac <= 1):
		return fmt.Errorf("--min-lr-frac %g: need 0..1", c.MinLRFrac)
	case !(c.EMADecay >= 0 && c.EMADecay < 1):
		return fmt.Errorf("--ema %g: need 0 <= decay < 1", c.EMADecay)
	case !(c.ClassDropout >= 0 && c.ClassDropout < 1):
		return fmt.Errorf("--class-dropout %g: need 0 <= p < 1", c.ClassDropout)
	}
	return nil
}

// LRAt is the learning rate of 1-based step s: linear warm-up from LR/Warmup
// to LR over Warmup steps, then constant or a cosine from LR down to
// LR*MinLRFrac at the last step.
func (c Config) LRAt(s int) float64 {
	if s <= c.Warmup {
		return c.LR * float64(s) / float64(c.Warmup)
	}
	if c.Schedule == "constant" || c.Steps <= c.Warmup {
		return c.LR
	}
	p := float64(s-c.Warmup) / float64(c.Steps-c.Warmup)
	lo := c.LR * c.MinLRFrac
	return lo + (c.LR-lo)*0.5*(1+math.Cos(math.Pi*math.Min(p, 1)))
}
