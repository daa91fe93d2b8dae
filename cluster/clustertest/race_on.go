//go:build race

package clustertest

// raceSlack stretches Raft's timeouts under the race detector, which slows
// a 2-core machine enough that a leader misses 100 ms heartbeats and steps
// down in the middle of a test.
const raceSlack = 3
