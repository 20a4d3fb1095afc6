// Package coupling pairs a batch of noise with a batch of data before the
// flow-matching path is built from them: independently (the batch as
// drawn), by exact minibatch optimal transport under squared Euclidean cost
// (an assignment, Assigner), or by an entropic plan (Sinkhorn) from which
// the pairs are drawn. With class labels, pairs are made within each class
// only. docs/math.md §11 gives the definitions.
package coupling
