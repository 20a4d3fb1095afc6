//go:build race

package fmgpu

// raceDetector: the tests run under -race, whose exit waits forever on the
// threads of the fake libcuda's simulator once it is loaded (as in every
// package's tests that load it), so the tests that load it skip.
const raceDetector = true
