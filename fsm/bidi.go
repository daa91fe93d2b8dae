package fsm

import (
	"fmt"
	"unicode"

	"google.golang.org/protobuf/proto"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

// checkBidiIDs refuses Unicode bidirectional controls (U+202E RIGHT-TO-LEFT
// OVERRIDE, U+2066 LEFT-TO-RIGHT ISOLATE and the rest of Bidi_Control) in
// the worker, item and request ids of a write request: they make an id
// display as another one in the dashboard, the CLI and logs ("Trojan
// Source"). Only the edge (CheckRequest, CheckRequestID) refuses them;
// Apply does not, so a log written before this rule replays as it did.
func checkBidiIDs(req proto.Message) error {
	if r, ok := req.(interface{ GetWorkerId() string }); ok {
		if err := checkBidi("worker_id", r.GetWorkerId()); err != nil {
			return err
		}
	}
	switch r := req.(type) {
	case *rationv1.AddItemsRequest:
		for i, id := range r.GetItems() {
			if err := checkBidi(fmt.Sprintf("items[%d]", i), id); err != nil {
				return err
			}
		}
	case *rationv1.SubmitRequest:
		for i, res := range r.GetResults() {
			if err := checkBidi(fmt.Sprintf("results[%d].item", i), res.GetItem()); err != nil {
				return err
			}
		}
	}
	return nil
}

func checkBidi(field, id string) error {
	for _, c := range id {
		if unicode.Is(unicode.Bidi_Control, c) {
			return fmt.Errorf("%s %q has a bidirectional control character (U+%04X): %w", field, id, c, ErrInvalidArgument)
		}
	}
	return nil
}
