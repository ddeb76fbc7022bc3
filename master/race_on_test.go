//go:build race

package master

// raceEnabled scales load tests down under the race detector, which slows
// the masters about tenfold.
const raceEnabled = true
