//go:build race

package ginoauth_test

// raceDetector is whether the race detector is on: it multiplies the CPU
// cost of every request, so the flood test does not time logins under it.
const raceDetector = true
