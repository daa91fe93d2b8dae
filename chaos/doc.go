// Package chaos is ration's robustness suite, in the spirit of etcd's
// tests/robustness and Jepsen: real rationd processes under a concurrent
// worker load while a nemesis kills, pauses and partitions them; the
// recorded history is then checked for linearizability against a model of
// the lease rules (porcupine) and the final states for the invariants.
// Everything lives in its tests; run them with `go test ./chaos`.
package chaos
