// Package data provides the training sets of fmgpu: built-in 2-D toy
// distributions, user files in .npy and .csv form, image sets (MNIST,
// Fashion-MNIST and folders of PNG or JPEG files) with their grids, and the
// per-dimension standardization whose log-Jacobian the likelihood must
// account for (docs/math.md).
//
// Loaders never panic on bad input: every failure is an error of one line
// that names the file (or data set) and the reason.
package data

// Dataset is N points of dimension D held as one row-major float32 slice,
// the layout the backends upload to the device in one copy.
type Dataset struct {
	Name   string
	X      []float32 // N x D row-major
	N, D   int
	Labels []int32 // optional, len N when present (mixture component for the built-in sets)
	// Image is set for image data (LoadImages): the shape of each row,
	// class names and the 8-bit pixels X was made from; nil otherwise.
	Image *ImageInfo
}

// Row returns point i as a sub-slice of X. Its capacity is clipped to D so
// that an append by the caller cannot overwrite point i+1.
func (d *Dataset) Row(i int) []float32 {
	return d.X[i*d.D : (i+1)*d.D : (i+1)*d.D]
}
