package gpu

import (
	"fmt"
	"strings"
)

// Precision is how a backend computes its matrix products: Gemm (the
// Products family), the products inside Linear and LinearBackward (the
// Dense family) and the implicit products of Conv2D, Conv2DBackwardData
// and Conv2DBackwardFilter (the Conv family; the bias gradient is a sum of
// dy, unrounded in every precision). Everything else (GemmBatched, the
// elementwise ops, the norms, the optimizer) computes in float32 whatever
// the precision. A backend starts at PrecisionFP32; SetPrecision changes
// it.
//
// Error of an element c = sum_l a_l b_l of a product, relative to sum_l
// |a_l||b_l| (the scale of the conformance suite's bound, gpu/gputest):
//   - fp32: float32 accumulation, about sqrt(k) 2^-24 typically (the
//     conformance bound is 1e-4);
//   - tf32x3: about 2^-21 (the dropped a_lo b_lo and the rounding of the
//     lo parts), plus the float32 accumulation's: within the same 1e-4;
//   - tf32: each operand rounded to tf32 (relative error <= 2^-11), so each
//     product to within 2^-10 and the sum to within 2^-10 of sum |a||b|
//     (worst case; with random signs the errors add as a random walk,
//     about 2^-11 sqrt(k) times a typical |a_l b_l|);
//   - bf16: each operand rounded to bf16 (8 significant bits, round to
//     nearest even: relative error <= 2^-8), so each product to within
//     2^-7 + 2^-16 and the sum to within that of sum |a||b| (worst case;
//     typically about 2^-9 sqrt(k) times a typical |a_l b_l|), plus the
//     float32 accumulation's.
//
// bf16 here means bf16 products, not bf16 storage: activations, weights,
// gradients, the optimizer's state, the loss and checkpoints stay float32
// in memory, and the kernels round the operands as they build the tensor
// cores' fragments. Mixed-precision training as PyTorch's autocast does it
// also stores activations in bf16, halving their memory traffic; that is
// not done here (kernels/README.md, "Numerics").
type Precision uint8

const (
	// PrecisionFP32: float32 operands, float32 or float64 accumulation;
	// the device backend's SIMT kernels (one FMA a multiply-add), the CPU
	// backend's sgemm. The default.
	PrecisionFP32 Precision = iota
	// PrecisionTF32x3: float32 accuracy on the tensor cores, by the
	// 3xTF32 split (kernels/gemm_tc.cuh): three tf32 products a multiply-
	// add. The CPU backend accepts it and computes in float32, which has
	// that accuracy.
	PrecisionTF32x3
	// PrecisionTF32: one tf32 product on the tensor cores (operands rounded
	// to 10 mantissa bits, float32 accumulation), as PyTorch's
	// allow_tf32. Device backends only: the CPU backend refuses it.
	PrecisionTF32
	// PrecisionBF16: one bf16 product on the tensor cores (operands rounded
	// to 8 significant bits as the fragments are built, float32
	// accumulation and storage). Device backends only: the CPU backend
	// refuses it.
	PrecisionBF16
)

var precisionNames = [...]string{PrecisionFP32: "fp32", PrecisionTF32x3: "tf32x3", PrecisionTF32: "tf32", PrecisionBF16: "bf16"}

func (p Precision) String() string {
	if int(p) < len(precisionNames) {
		return precisionNames[p]
	}
	return fmt.Sprintf("Precision(%d)", p)
}

// Precisions lists every precision, the default first.
func Precisions() []Precision {
	return []Precision{PrecisionFP32, PrecisionTF32x3, PrecisionTF32, PrecisionBF16}
}

// ParsePrecision reads a precision's name (fp32, tf32x3, tf32, bf16).
func ParsePrecision(s string) (Precision, error) {
	for _, p := range Precisions() {
		if s == p.String() {
			return p, nil
		}
	}
	return 0, fmt.Errorf("unknown precision %q (want %s)", s, precisionList())
}

// MarshalText writes the precision's name (checkpoints record it:
// train.Config.Precision).
func (p Precision) MarshalText() ([]byte, error) {
	if int(p) >= len(precisionNames) {
		return nil, fmt.Errorf("gpu: unknown precision %d", p)
	}
	return []byte(p.String()), nil
}

// UnmarshalText reads a precision's name; an unknown one is an error.
func (p *Precision) UnmarshalText(b []byte) error {
	q, err := ParsePrecision(string(b))
	if err != nil {
		return err
	}
	*p = q
	return nil
}

func precisionList() string {
	var names []string
	for _, p := range Precisions() {
		names = append(names, p.String())
	}
	return strings.Join(names, ", ")
}

// precisioned is a backend with a product precision.
type precisioned interface {
	setPrecision(p Precision) error
	precision() Precision
}

// SetPrecision sets b's product precision for the ops that follow; an
// error (and no change) when b does not offer it. Backends that do not
// know precisions offer PrecisionFP32 only.
func SetPrecision(b Backend, p Precision) error {
	if int(p) >= len(precisionNames) {
		return fmt.Errorf("gpu: unknown precision %d", p)
	}
	if s, ok := b.(precisioned); ok {
		return s.setPrecision(p)
	}
	if p != PrecisionFP32 {
		return fmt.Errorf("gpu: precision %s: the %s backend computes in fp32 only", p, b.Info().Backend)
	}
	return nil
}

// PrecisionOf is b's product precision.
func PrecisionOf(b Backend) Precision {
	if s, ok := b.(precisioned); ok {
		return s.precision()
	}
	return PrecisionFP32
}

// errCPUTF32 is why the CPU backend refuses PrecisionTF32: it would have to
// round every operand in a separate pass to mimic the tensor cores, which
// only slows it down (the conformance suite's tf32 reference rounds in
// float64 itself).
var errCPUTF32 = fmt.Errorf("gpu: precision tf32 is for a GPU's tensor cores: the CPU backend computes products in fp32 (use fp32)")

// errCPUBF16 is why the CPU backend refuses PrecisionBF16, as errCPUTF32:
// rounding the operands in a separate pass would only slow it down, and
// its float32 products gain nothing from bf16.
var errCPUBF16 = fmt.Errorf("gpu: precision bf16 is for a GPU's tensor cores: the CPU backend computes products in fp32 (use fp32)")

func (c *CPU) setPrecision(p Precision) error {
	switch p {
	case PrecisionTF32:
		return errCPUTF32
	case PrecisionBF16:
		return errCPUBF16
	}
	c.prec = p
	return nil
}

func (c *CPU) precision() Precision { return c.prec }

func (d *DeviceBackend) setPrecision(p Precision) error {
	d.prec = p
	return nil
}

func (d *DeviceBackend) precision() Precision { return d.prec }
