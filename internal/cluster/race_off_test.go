//go:build !race

package cluster_test

// raceEnabled is set when the race detector is on.
const raceEnabled = false
