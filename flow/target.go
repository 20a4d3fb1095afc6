package flow

// Float is the element type of the batched routines: float32 for the
// backends, float64 for references.
type Float interface{ ~float32 | ~float64 }

// Target is the batched flow-matching target, the operation the backends
// fuse: for B rows of width d (x0, x1, xt, ut row-major B x d, t of length
// B) it writes
//
//	xt = sigma_t x0 + alpha_t x1,   ut = sigma'_t x0 + alpha'_t x1
//
// (the x0 form: no division by sigma_t). Coefficients are evaluated once per
// row in float64; nothing is allocated. xt and ut must not alias x0 or x1.
func Target[F Float](p Path, d int, x0, x1, t, xt, ut []F) {
	b := len(t)
	if len(x0) < b*d || len(x1) < b*d || len(xt) < b*d || len(ut) < b*d {
		panic("flow.Target: buffer shorter than len(t)*d")
	}
	for r := 0; r < b; r++ {
		c := p.At(float64(t[r]))
		TargetRow(c, x0[r*d:r*d+d], x1[r*d:r*d+d], xt[r*d:r*d+d], ut[r*d:r*d+d])
	}
}

// TargetRow applies one row's coefficients; the backends' CPU kernels share
// it so that there is one definition of the arithmetic.
func TargetRow[F Float](c Coef, x0, x1, xt, ut []F) {
	s, a, ds, da := F(c.Sigma), F(c.Alpha), F(c.DSigma), F(c.DAlpha)
	x1 = x1[:len(x0)]
	xt = xt[:len(x0)]
	ut = ut[:len(x0)]
	for j, z := range x0 {
		y := x1[j]
		xt[j] = s*z + a*y
		ut[j] = ds*z + da*y
	}
}

// VelocityXBatch is the x-form conditional field u_t(x | x1) over a batch,
// for tests and closed forms: out = sigma'/sigma (x - alpha x1) + alpha' x1.
func VelocityXBatch[F Float](p Path, d int, x, x1, t, out []F) {
	for r := range t {
		c := p.At(float64(t[r]))
		k := c.DSigma / c.Sigma
		for j := r * d; j < r*d+d; j++ {
			out[j] = F(k*(float64(x[j])-c.Alpha*float64(x1[j])) + c.DAlpha*float64(x1[j]))
		}
	}
}

// Loss is the minibatch CFM loss (docs/math.md §4.2), mean over the B rows
// of the squared Euclidean distance ||pred - target||^2 (summed over the d
// columns), and, when grad is not nil, its gradient with respect to pred:
// grad = 2 (pred - target) / B. The sum is accumulated in float64.
func Loss[F Float](rows int, pred, target, grad []F) float64 {
	if rows <= 0 {
		return 0
	}
	n := len(pred)
	if len(target) < n || (grad != nil && len(grad) < n) {
		panic("flow.Loss: buffer lengths differ")
	}
	inv := 1 / float64(rows)
	g := F(2 * inv)
	sum := 0.0
	for i, p := range pred {
		e := p - target[i]
		sum += float64(e) * float64(e)
		if grad != nil {
			grad[i] = g * e
		}
	}
	return sum * inv
}
