//go:build !race

package gpu_test

// raceDetector reports a -race build (race_on_test.go).
const raceDetector = false
