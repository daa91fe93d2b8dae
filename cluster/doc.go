// Package cluster runs the state machine under hashicorp/raft: storage and
// the data dir, bootstrap and membership, group commit of proposals, read
// indexes, the leader's ticker, and mutual TLS between nodes.
package cluster
