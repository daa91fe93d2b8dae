//go:build race

package server_test

// raceEnabled is true when tests run under the race detector, which slows
// every goroutine several times over and makes latency comparisons
// meaningless.
const raceEnabled = true
