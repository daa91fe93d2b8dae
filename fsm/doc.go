// Package fsm is ration's replicated state machine: services, workers,
// items, buckets and leases, results and the activity log, and every rule
// that governs them. Every node applies the same log through it and reaches
// the same state, byte for byte.
//
// The package knows nothing of networks, Raft's transport or clocks: time and
// randomness come from the header the proposing node stamps on each command.
// Reads go through State, an immutable version that never blocks Apply.
// DESIGN.md beside this file explains the mechanisms and trade-offs.
package fsm
