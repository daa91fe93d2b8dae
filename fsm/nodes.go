package fsm

import (
	"fmt"

	"google.golang.org/protobuf/types/known/emptypb"

	statev1 "github.com/rationhq/ration/api/ration/state/v1"
)

// The cluster's address book: each member's API address, kept in the
// replicated state so any node can forward to the leader.

// checkSetNode runs setNode's refusals (Precheck runs them too).
func checkSetNode(op *statev1.SetNode) error {
	if op.GetNodeId() == "" {
		return fmt.Errorf("node_id is empty: %w", ErrInvalidArgument)
	}
	return nil
}

// checkRemoveNode runs removeNode's refusals (Precheck runs them too).
func (x *txn) checkRemoveNode(op *statev1.RemoveNode) error {
	if _, ok := x.t.nodes.Get(&NodeAddress{ID: op.GetNodeId()}); !ok {
		return fmt.Errorf("node %q: %w", op.GetNodeId(), ErrNodeNotFound)
	}
	return nil
}

func (x *txn) setNode(op *statev1.SetNode) (*emptypb.Empty, error) {
	if err := checkSetNode(op); err != nil {
		return nil, err
	}
	x.t.nodes.Set(&NodeAddress{ID: op.GetNodeId(), APIAddress: op.GetApiAddress()})
	x.record(&Activity{Action: ActSetNode, Message: op.GetNodeId() + " " + op.GetApiAddress()})
	return nil, nil
}

func (x *txn) removeNode(op *statev1.RemoveNode) (*emptypb.Empty, error) {
	if err := x.checkRemoveNode(op); err != nil {
		return nil, err
	}
	x.t.nodes.Delete(&NodeAddress{ID: op.GetNodeId()})
	x.record(&Activity{Action: ActRemoveNode, Message: op.GetNodeId()})
	return nil, nil
}
