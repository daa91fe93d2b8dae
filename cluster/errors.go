package cluster

import "errors"

// Errors a Node returns; server maps them to RPC codes.
var (
	// ErrNotLeader: the operation needs the leader and this node is not it.
	ErrNotLeader = errors.New("not the leader")
	// ErrNoLeader: no leader is known; try again after an election.
	ErrNoLeader = errors.New("no leader known")
	// ErrNotReady: this node just became leader and has not yet applied its
	// predecessor's entries.
	ErrNotReady = errors.New("leader not ready yet")
	// ErrOutcomeUnknown: the command may or may not have been applied (the
	// leader lost leadership or the deadline passed); retry with the same
	// request id.
	ErrOutcomeUnknown = errors.New("outcome unknown: retry with the same request id")
	// ErrTooLarge: the command exceeds MaxCommandBytes.
	ErrTooLarge = errors.New("command too large")
	// ErrShutdown: the node is shutting down.
	ErrShutdown = errors.New("node is shutting down")
	// ErrLastVoter: removing the node would leave the cluster without voters.
	ErrLastVoter = errors.New("cannot remove the last voter")
	// ErrTransferFailed: a leadership transfer did not complete (the target
	// did not catch up or win in time); this node still leads.
	ErrTransferFailed = errors.New("leadership transfer did not complete")
	// ErrUnknownNode: no member has the id.
	ErrUnknownNode = errors.New("no such member")

	// ErrUnreachable: a node asked to join does not answer over Raft: it is
	// down or at another address, its certificate is not from the peer CA,
	// or its data dir belongs to another cluster. The membership is
	// unchanged.
	ErrUnreachable = errors.New("the joining node cannot be reached over Raft")

	// Data dir errors.

	// ErrCorrupt: the data dir holds data the node cannot read. The node
	// refuses to start and leaves the data as it found it.
	ErrCorrupt = errors.New("data dir holds data this node cannot read")
	// ErrOtherNode: the data dir belongs to a node with another id.
	ErrOtherNode = errors.New("data dir belongs to another node")
	// ErrOtherCluster: a peer, or the data dir of a node asked to join,
	// belongs to another cluster.
	ErrOtherCluster = errors.New("belongs to another cluster")
)
