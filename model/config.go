// Package model holds fmgpu's velocity networks v_theta(t, x [, class]),
// written over gpu.Backend with hand-written backward passes: parameters
// live in one flat buffer (so that the optimizer is one fused op over all of
// them) and every layer's weights are views into it. A network of a
// caller's own implements Net the same way and joins them with Register.
package model

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/fmgpu/fmgpu/gpu"
)

// Kind names a network architecture. Its value is what a checkpoint's
// JSON records and the train command's --model flag takes.
type Kind string

const (
	KindMLP  Kind = "mlp"
	KindUNet Kind = "unet"
)

// Kinds lists every kind.
func Kinds() []Kind { return []Kind{KindMLP, KindUNet} }

// String is the kind's name.
func (k Kind) String() string { return string(k) }

// ParseKind turns a name into a Kind.
func ParseKind(s string) (Kind, error) {
	for _, k := range Kinds() {
		if s == string(k) {
			return k, nil
		}
	}
	return "", fmt.Errorf("model kind %q: want mlp or unet", s)
}

// Config fully describes a network's shape; a checkpoint stores it as JSON
// and rebuilds the network from it with no other flag.
type Config struct {
	Kind      Kind              `json:"kind"`
	Dim       int               `json:"dim"` // data dimension D (input and output)
	Hidden    []int             `json:"hidden"`
	TimeEmbed gpu.TimeEmbedding `json:"time_embed"`
	// Classes > 0 makes the network class-conditional with a learned
	// embedding of Classes + 1 rows, the last one the null class that
	// classifier-free guidance drops labels to; 0 is unconditional.
	Classes int `json:"classes,omitempty"`

	// Image and UNet describe the U-Net (KindUNet): Dim is
	// Channels*Height*Width, rows of data are NCHW images.
	Image *ImageShape `json:"image,omitempty"`
	UNet  *UNetConfig `json:"unet,omitempty"`
}

// ImageShape is the shape of one image.
type ImageShape struct {
	Channels int `json:"channels"`
	Height   int `json:"height"`
	Width    int `json:"width"`
}

// UNetConfig is the U-Net's architecture.
type UNetConfig struct {
	// Base is the channel width of the first level; level l has
	// Base*Mults[l] channels. Each level after the first halves the
	// resolution.
	Base  int   `json:"base"`
	Mults []int `json:"mults"`
	// ResBlocks is the number of residual blocks per level on the way down
	// (the way up has one more, as in DDPM).
	ResBlocks int `json:"res_blocks"`
	// Attention adds a self-attention block at the lowest resolution.
	Attention bool `json:"attention"`
	// Groups is the GroupNorm group count; it divides every width.
	Groups int `json:"groups"`
	// AttentionRes lists image heights at which a level's residual blocks
	// (down and up) are each followed by a self-attention block, as
	// attention_resolutions in ADM's U-Net (16 for 16 x 16 of a 32 x 32
	// image); empty: none.
	AttentionRes []int `json:"attention_res,omitempty"`
	// Heads is the number of attention heads (0 stands for 1); it divides
	// the width of every level with attention.
	Heads int `json:"heads,omitempty"`
	// Dropout is the probability of zeroing an element of each residual
	// block's second convolution's input while training (DDPM's place);
	// sampling never drops.
	Dropout float64 `json:"dropout,omitempty"`
}

// HeadCount is Heads with 0 read as 1.
func (u *UNetConfig) HeadCount() int { return max(u.Heads, 1) }

// DefaultTimeEmbedding is the sinusoidal embedding the CLI trains with:
// 16 frequencies from 1 to 1/1000 cycles per unit of Scale*t, Scale 1000
// as in DDPM's integer timesteps. Chosen by measurement on the 2-D sets
// (see README: W2 against the noise floor).
var DefaultTimeEmbedding = gpu.TimeEmbedding{Freqs: 16, Scale: 1000, MaxPeriod: 10000}

// ParseHidden reads a comma-separated list of layer widths ("256,256,256").
func ParseHidden(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 || n > 1<<16 {
			return nil, fmt.Errorf("hidden widths %q: %q is not a width in 1..65536", s, f)
		}
		out = append(out, n)
	}
	return out, nil
}

// String describes the network in one line, in the terms of the train
// command's flags (fmgpu info prints it).
func (c Config) String() string {
	var b strings.Builder
	switch {
	case c.Kind == KindUNet && c.Image != nil && c.UNet != nil:
		u := c.UNet
		fmt.Fprintf(&b, "unet %dx%dx%d base %d mults %v res-blocks %d attention %t groups %d",
			c.Image.Channels, c.Image.Height, c.Image.Width, u.Base, u.Mults, u.ResBlocks, u.Attention, u.Groups)
		if len(u.AttentionRes) > 0 {
			fmt.Fprintf(&b, " attention-res %v", u.AttentionRes)
		}
		if u.Heads > 1 {
			fmt.Fprintf(&b, " heads %d", u.Heads)
		}
		if u.Dropout > 0 {
			fmt.Fprintf(&b, " dropout %g", u.Dropout)
		}
	case c.Kind == KindMLP:
		fmt.Fprintf(&b, "mlp dim %d hidden %v", c.Dim, c.Hidden)
	default:
		fmt.Fprintf(&b, "%s dim %d", c.Kind, c.Dim)
	}
	if c.Classes > 0 {
		fmt.Fprintf(&b, ", %d classes + null", c.Classes)
	}
	return b.String()
}

// Validate checks that the configuration describes a buildable network.
func (c Config) Validate() error {
	if c.Dim < 1 || c.Dim > 1<<20 {
		return fmt.Errorf("model dim %d outside 1..%d", c.Dim, 1<<20)
	}
	e := c.TimeEmbed
	finite := func(v float32) bool { return v-v == 0 }
	if e.Freqs < 0 || e.Freqs > 4096 || (e.Freqs > 0 && !(e.MaxPeriod > 1 && e.Scale > 0 && finite(e.MaxPeriod) && finite(e.Scale))) {
		return fmt.Errorf("time embedding %+v: need 0 <= freqs <= 4096 and, with freqs, finite max_period > 1 and scale > 0", e)
	}
	if c.Classes < 0 || c.Classes > 1<<16 {
		return fmt.Errorf("class count %d outside 0..65536", c.Classes)
	}
	switch c.Kind {
	case KindMLP:
		if len(c.Hidden) == 0 || len(c.Hidden) > 64 {
			return fmt.Errorf("model needs 1 to 64 hidden layers, got %d", len(c.Hidden))
		}
		for _, h := range c.Hidden {
			if h < 1 || h > 1<<16 {
				return fmt.Errorf("hidden width %d outside 1..65536", h)
			}
		}
		if c.Classes > 0 {
			return fmt.Errorf("the mlp is unconditional: class-conditional models are U-Nets (kind unet, --model unet)")
		}
		if c.Image != nil || c.UNet != nil {
			return fmt.Errorf("an mlp has no image or unet settings")
		}
		return nil
	case KindUNet:
		return validateUNet(c)
	}
	if a, ok := registered(c.Kind); ok {
		return a.Validate(c)
	}
	return fmt.Errorf("model kind %q: want mlp or unet, or a kind registered with model.Register", c.Kind)
}

// Tensor names one parameter tensor inside the flat parameter buffer.
type Tensor struct {
	Name   string
	Shape  []int
	Offset int // elements from the start of the flat buffer
}

// Size is the number of elements of the tensor.
func (t Tensor) Size() int {
	n := 1
	for _, s := range t.Shape {
		n *= s
	}
	return n
}

// TensorLayout gives the parameter tensors and total size of the network a
// configuration describes, without allocating it (checkpoint validation).
func TensorLayout(c Config) ([]Tensor, int, error) {
	if err := c.Validate(); err != nil {
		return nil, 0, err
	}
	if c.Kind == KindUNet {
		return unetTensorLayout(c)
	}
	if a, ok := registered(c.Kind); ok {
		return registeredLayout(a, c)
	}
	p := mlpParams(c)
	return p.tensors, p.size, nil
}
