//go:build race

package gpu_test

// raceDetector reports a -race build, whose instrumentation allocates on
// its own: allocation counts are not the code's there.
const raceDetector = true
