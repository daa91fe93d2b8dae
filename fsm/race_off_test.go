//go:build !race

package fsm

// raceEnabled is true under the race detector, which slows the state
// machine several times over.
const raceEnabled = false
