//go:build race

package cluster_test

// raceEnabled is set when the race detector is on, which slows the
// cluster tests about fourfold; the heaviest ones then do less work.
const raceEnabled = true
