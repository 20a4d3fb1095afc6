//go:build simasan

package fakecuda

// The simasan build (make kernel-check-asan): the harness itself checked by
// AddressSanitizer and UBSan; the test binary that loads the library is
// built with -asan, so the AddressSanitizer runtime is already there.
var (
	sanitizeFlags     = []string{"-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer"}
	sanitizeLinkFlags = []string{"-fsanitize=address,undefined"}
)
