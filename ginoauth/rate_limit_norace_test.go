//go:build !race

package ginoauth_test

// raceDetector is whether the race detector is on (see
// rate_limit_race_test.go).
const raceDetector = false
