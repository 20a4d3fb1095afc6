// Package metrics measures generated samples and learned flows against
// data, each metric in float64 with its formula and noise floor in
// docs/math.md §12:
//
//   - MMD: maximum mean discrepancy with a Gaussian (RBF) kernel, median
//     heuristic bandwidth, unbiased estimate (2-D and tabular data);
//   - PathStats, PathIntegral: the straightness and kinetic energy of a
//     flow along its ODE trajectories;
//   - FrechetDistance and KID: distances between sets of features (of
//     images, through a classifier), the Fréchet distance between fitted
//     Gaussians and the kernel inception distance (a polynomial-kernel MMD
//     averaged over subsets);
//   - W2: the exact 2-Wasserstein distance (internal/wasserstein's
//     assignment).
//
// Point sets are row-major float32 slices (n x d), as the data loaders and
// samplers produce them. Bad arguments are errors of one line, never
// panics.
package metrics
