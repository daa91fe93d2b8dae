// Package cluster runs the state machine under hashicorp/raft: storage and
// the data dir, bootstrap and membership, group commit of proposals
// (heartbeats among them), read indexes, the leader's ticker, and mutual
// TLS between nodes; and, for tests, a one-member node held in memory.
// DESIGN.md describes how.
package cluster
