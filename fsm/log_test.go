package fsm

import "github.com/hashicorp/raft"

type rawEntry = raft.Log

func rawLog(index uint64, data []byte) *raft.Log {
	return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: data}
}
