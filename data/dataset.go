// Package data provides the training sets of fmgpu: built-in 2-D toy
// distributions, user files in .npy and .csv form, and image sets (MNIST
// and Fashion-MNIST from their idx files, folders of PNG and JPEG images)
// as rows of NCHW pixels scaled to [-1, 1], with their class labels. It
// also holds what the likelihood needs from the data: the per-dimension
// standardization whose log-Jacobian must be added (docs/math.md §9.5)
// and, for 8-bit images, the dequantization and bits per dimension
// (docs/math.md §9.6); and the writers of results (.npy, .csv, image
// grids).
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
