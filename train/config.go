// Package train runs flow-matching training on a gpu.Backend: the fused
// batch draw (or, for a streaming trainer, a batch read from a Source and
// uploaded), the network's forward and backward, the loss, gradient
// clipping and the fused Adam(W) + EMA update, with a learning-rate
// schedule, metrics and safetensors checkpoints that record everything a
// later `sample`, `likelihood` or `--resume` needs.
package train

import (
	"fmt"
	"math"
	"strings"
	"unicode"

	"github.com/fmgpu/fmgpu/flow"
	"github.com/fmgpu/fmgpu/gpu"
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

	Optimizer   Optimizer `json:"optimizer"`
	LR          float64   `json:"lr"`
	Beta1       float64   `json:"beta1"`
	Beta2       float64   `json:"beta2"`
	Eps         float64   `json:"eps"`
	WeightDecay float64   `json:"weight_decay"`
	MaxGradNorm float64   `json:"max_grad_norm"` // 0: no clipping
	Warmup      int       `json:"warmup"`        // linear warm-up steps
	Schedule    Schedule  `json:"schedule"`      // after warm-up
	MinLRFrac   float64   `json:"min_lr_frac"`   // cosine decays to LR*MinLRFrac
	EMADecay    float64   `json:"ema_decay"`     // 0: no EMA
	// ClassDropout is the probability that a class-conditional model sees
	// the null class instead of a row's label (classifier-free guidance).
	ClassDropout float64 `json:"class_dropout,omitempty"`
	// Coupling pairs the noise with the data of each batch (coupling.go);
	// checkpoints written before it was recorded have none: independent.
	Coupling Coupling `json:"coupling,omitzero"`
	// DistillSteps, when > 0, trains a student for that many Euler steps:
	// the training times are the points of its grid (DistillGrid), on
	// fixed pairs; sampling takes that solver by default.
	DistillSteps int `json:"distill_steps,omitempty"`
	// Precision is the backend's product precision while training
	// (gpu.Precision: fp32, tf32x3, tf32 or bf16), which New sets on the backend
	// (gpu.SetPrecision); the zero value, fp32, is omitted from the
	// checkpoint, as checkpoints written before it was recorded have it.
	Precision gpu.Precision `json:"precision,omitzero"`
	// Preset names the recipe the settings were taken from (the train
	// command's --preset, "cifar10"), recorded for the record; the
	// settings themselves are the fields above. Empty: none.
	Preset string `json:"preset,omitempty"`
}

// Optimizer names the update rule.
type Optimizer string

const (
	// Adam adds the weight decay to the gradient (L2 regularization).
	Adam Optimizer = "adam"
	// AdamW decays the weights directly, outside the moments (decoupled).
	AdamW Optimizer = "adamw"
)

// ParseOptimizer reads an optimizer's name.
func ParseOptimizer(s string) (Optimizer, error) {
	switch o := Optimizer(s); o {
	case Adam, AdamW:
		return o, nil
	}
	return "", fmt.Errorf("unknown optimizer %q: want adam or adamw", s)
}

// Schedule names the learning-rate schedule after the warm-up.
type Schedule string

const (
	// Cosine decays from LR to LR*MinLRFrac at the last step.
	Cosine Schedule = "cosine"
	// Constant keeps LR.
	Constant Schedule = "constant"
)

// ParseSchedule reads a schedule's name.
func ParseSchedule(s string) (Schedule, error) {
	switch sc := Schedule(s); sc {
	case Cosine, Constant:
		return sc, nil
	}
	return "", fmt.Errorf("unknown schedule %q: want cosine or constant", s)
}

// FieldError is a Config field whose value is out of range. Field is the
// field's JSON name (as a checkpoint stores it); a caller that took the
// value from elsewhere (a command-line flag) can name its own source.
type FieldError struct {
	Field  string
	Value  any
	Reason string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("%s %v: %s", e.Field, e.Value, e.Reason)
}

func fieldErr(field string, v any, reason string) error {
	return &FieldError{Field: field, Value: v, Reason: reason}
}

// Defaults fills the optimizer fields a caller left zero with fmgpu's
// defaults: Adam(0.9, 0.999, 1e-8), clipping at norm 1, cosine decay to
// 10% after 2% warm-up... chosen on the built-in 2-D sets (README).
func (c *Config) Defaults() {
	if c.Optimizer == "" {
		c.Optimizer = Adam
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
		c.Schedule = Cosine
	}
}

// Validate checks every field; an optimizer setting out of range is a
// *FieldError.
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
		return fieldErr("steps", c.Steps, "need at least 1")
	case c.Batch < 1 || c.Batch > 1<<24:
		return fieldErr("batch", c.Batch, fmt.Sprintf("need 1..%d", 1<<24))
	case c.Optimizer != Adam && c.Optimizer != AdamW:
		return fieldErr("optimizer", fmt.Sprintf("%q", string(c.Optimizer)), "want adam or adamw")
	case !(c.LR > 0) || math.IsInf(c.LR, 0):
		return fieldErr("lr", c.LR, "need a finite learning rate > 0")
	case !(c.Beta1 >= 0 && c.Beta1 < 1):
		return fieldErr("beta1", c.Beta1, "need 0 <= beta < 1")
	case !(c.Beta2 >= 0 && c.Beta2 < 1):
		return fieldErr("beta2", c.Beta2, "need 0 <= beta < 1")
	case !(c.Eps > 0):
		return fieldErr("eps", c.Eps, "need > 0")
	case !(c.WeightDecay >= 0) || math.IsInf(c.WeightDecay, 0):
		return fieldErr("weight_decay", c.WeightDecay, "need >= 0")
	case !(c.MaxGradNorm >= 0) || math.IsInf(c.MaxGradNorm, 0):
		return fieldErr("max_grad_norm", c.MaxGradNorm, "need >= 0 (0 disables)")
	case c.Warmup < 0:
		return fieldErr("warmup", c.Warmup, "need >= 0")
	case c.Schedule != Cosine && c.Schedule != Constant:
		return fieldErr("schedule", fmt.Sprintf("%q", string(c.Schedule)), "want cosine or constant")
	case !(c.MinLRFrac >= 0 && c.MinLRFrac <= 1):
		return fieldErr("min_lr_frac", c.MinLRFrac, "need 0..1")
	case !(c.EMADecay >= 0 && c.EMADecay < 1):
		return fieldErr("ema_decay", c.EMADecay, "need 0 <= decay < 1")
	case !(c.ClassDropout >= 0 && c.ClassDropout < 1):
		return fieldErr("class_dropout", c.ClassDropout, "need 0 <= p < 1")
	case len(c.Preset) > 64 || strings.IndexFunc(c.Preset, func(r rune) bool { return !unicode.IsPrint(r) || r == ' ' }) >= 0:
		return fieldErr("preset", fmt.Sprintf("%q", c.Preset), "need a name of at most 64 printable characters without spaces")
	}
	if err := c.Coupling.validate(c.Batch); err != nil {
		return err
	}
	return c.validateDistill()
}

// LRAt is the learning rate of 1-based step s: linear warm-up from LR/Warmup
// to LR over Warmup steps, then constant or a cosine from LR down to
// LR*MinLRFrac at the last step.
func (c Config) LRAt(s int) float64 {
	if s <= c.Warmup {
		return c.LR * float64(s) / float64(c.Warmup)
	}
	if c.Schedule == Constant || c.Steps <= c.Warmup {
		return c.LR
	}
	p := float64(s-c.Warmup) / float64(c.Steps-c.Warmup)
	lo := c.LR * c.MinLRFrac
	return lo + (c.LR-lo)*0.5*(1+math.Cos(math.Pi*math.Min(p, 1)))
}
