// Package cluster will run the state machine under hashicorp/raft: storage,
// bootstrap and membership, leader forwarding, read consistency and the
// leader's ticker. It is not built yet (see the project's issues).
package cluster
