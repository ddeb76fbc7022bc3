//go:build !race

package fusefs_test

// raceEnabled is set when the race detector is on, which slows the data
// path (hashing, encoding) by an order of magnitude.
const raceEnabled = false
