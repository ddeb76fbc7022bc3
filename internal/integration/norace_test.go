//go:build !race

package integration_test

// raceEnabled reports whether the race detector is on; tests move less
// data under it.
const raceEnabled = false
