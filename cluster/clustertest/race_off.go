//go:build !race

package clustertest

// raceSlack stretches Raft's timeouts under the race detector (race_on.go).
const raceSlack = 1
