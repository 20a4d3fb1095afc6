//go:build simasan

package fakecuda

// The simasan build (make kernel-check-asan): the harness itself checked by
// AddressSanitizer and UBSan; the test binary that loads the library is
// built with -asan, so the AddressSanitizer runtime is already there.
// -O1 -g1 after build's -O2 -g: as kernels/sim_asan.go, minutes less per
// kernel file, with the line tables kept.
var (
	sanitizeFlags     = []string{"-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer", "-O1", "-g1"}
	sanitizeLinkFlags = []string{"-fsanitize=address,undefined"}
)
