package gpu

import "fmt"

// Norm is group normalization and its gradient.
type Norm interface {
	// GroupNorm: for each image b and group g, over its C/Groups channels
	// and HW positions, mean and rstd = 1/sqrt(biased variance + Eps);
	// y = (x - mean) rstd gamma[c] + beta[c]. mean and rstd (Batch x
	// Groups) are written for the backward pass. y may alias x.
	GroupNorm(s GroupNormShape, x, gamma, beta, y, mean, rstd Buffer)
	// GroupNormBackward overwrites dx, dgamma and dbeta with the gradients
	// of sum(dy * y), from the forward pass's x, mean and rstd.
	GroupNormBackward(s GroupNormShape, dy, x, gamma, mean, rstd, dx, dgamma, dbeta Buffer)

	// GroupNormAct is GroupNorm that also writes a = act(y) elementwise
	// (as Activate) when a is not nil: the normalization and the
	// activation after it in one pass. When xBias (Batch x C) is not nil
	// it is added to x first, in place (as AddChannelBias(x, xBias, x)),
	// and the normalization is of the sum. y may be nil (a not nil): y is
	// then not kept, only a, mean and rstd (and the sum in x) are
	// written. y may alias x; a aliases neither.
	GroupNormAct(s GroupNormShape, act Act, x, xBias, gamma, beta, y, a, mean, rstd Buffer)

	// GroupNormActBackward is the gradient through a = act(y), y =
	// GroupNorm(x): with dy = dA act'(y) elementwise (as BiasActBackward;
	// y is not read for ActNone), dgamma and dbeta are overwritten with
	// GroupNormBackward's, and dx with its input gradient plus add when
	// add is not nil (one float32 addition: what Axpy(1, gradient, add)
	// leaves in add). When dxSum (Batch x C) is not nil it receives the
	// sums of dx over each image's channels (as ChannelSum(dx)). y may be
	// nil: it is then recomputed from x, mean, rstd, gamma and beta, bit
	// for bit what GroupNorm (and GroupNormAct) write for them (beta is
	// read only then: nil otherwise). dA is a workspace: its values
	// afterwards are unspecified. dx may alias dA or add, not y.
	GroupNormActBackward(s GroupNormShape, act Act, dA, y, x, gamma, beta, mean, rstd, add, dx, dgamma, dbeta, dxSum Buffer)
}

// GroupNormShape describes group normalization over a batch of NCHW
// images: C channels of HW positions split into Groups groups of C/Groups
// consecutive channels.
type GroupNormShape struct {
	Batch, C, HW, Groups int
	Eps                  float32
}

// Validate reports shapes no backend can run.
func (s GroupNormShape) Validate() error {
	if s.Batch < 0 || s.C < 1 || s.HW < 1 || s.Groups < 1 || s.C%s.Groups != 0 || !(s.Eps > 0) {
		return fmt.Errorf("gpu: bad group norm %+v (channels must divide into groups, eps > 0)", s)
	}
	return nil
}

// groupNormLens checks s and returns the element counts of the images and
// of the statistics.
func groupNormLens(op string, s GroupNormShape) (n, stats int) {
	if err := s.Validate(); err != nil {
		panic(fmt.Sprintf("gpu: %s: %v", op, err))
	}
	return count3(op, s.Batch, s.C, s.HW), count2(op, s.Batch, s.Groups)
}

func checkGroupNorm(s GroupNormShape, x, gamma, beta, y, mean, rstd Buffer) {
	const op = "GroupNorm"
	n, stats := groupNormLens(op, s)
	need(op, "x", x, n)
	need(op, "gamma", gamma, s.C)
	need(op, "beta", beta, s.C)
	need(op, "y", y, n)
	need(op, "mean", mean, stats)
	need(op, "rstd", rstd, stats)
}

func checkGroupNormAct(s GroupNormShape, act Act, x, xBias, gamma, beta, y, a, mean, rstd Buffer) {
	const op = "GroupNormAct"
	checkAct(op, act)
	n, stats := groupNormLens(op, s)
	need(op, "x", x, n)
	if xBias != nil {
		need(op, "xBias", xBias, count2(op, s.Batch, s.C))
	}
	need(op, "gamma", gamma, s.C)
	need(op, "beta", beta, s.C)
	if y == nil && a == nil {
		panic("gpu: GroupNormAct: neither y nor a")
	}
	if y != nil {
		need(op, "y", y, n)
	}
	if a != nil {
		need(op, "a", a, n)
	}
	need(op, "mean", mean, stats)
	need(op, "rstd", rstd, stats)
}

func checkGroupNormActBackward(s GroupNormShape, act Act, dA, y, x, gamma, beta, mean, rstd, add, dx, dgamma, dbeta, dxSum Buffer) {
	const op = "GroupNormActBackward"
	checkAct(op, act)
	n, stats := groupNormLens(op, s)
	need(op, "dA", dA, n)
	if act != ActNone {
		if y != nil {
			need(op, "y", y, n)
		} else {
			need(op, "beta (y recomputed)", beta, s.C)
		}
	}
	need(op, "x", x, n)
	need(op, "gamma", gamma, s.C)
	need(op, "mean", mean, stats)
	need(op, "rstd", rstd, stats)
	if add != nil {
		need(op, "add", add, n)
	}
	need(op, "dx", dx, n)
	need(op, "dgamma", dgamma, s.C)
	need(op, "dbeta", dbeta, s.C)
	if dxSum != nil {
		need(op, "dxSum", dxSum, count2(op, s.Batch, s.C))
	}
}

func checkGroupNormBackward(s GroupNormShape, dy, x, gamma, mean, rstd, dx, dgamma, dbeta Buffer) {
	const op = "GroupNormBackward"
	n, stats := groupNormLens(op, s)
	need(op, "dy", dy, n)
	need(op, "x", x, n)
	need(op, "gamma", gamma, s.C)
	need(op, "mean", mean, stats)
	need(op, "rstd", rstd, stats)
	need(op, "dx", dx, n)
	need(op, "dgamma", dgamma, s.C)
	need(op, "dbeta", dbeta, s.C)
}
