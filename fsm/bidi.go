package fsm

import (
	"fmt"
	"unicode"
	"unicode/utf8"

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
	if r, ok := req.(interface{ GetItems() []string }); ok {
		for i, id := range r.GetItems() {
			if hasBidi(id) {
				return checkBidi(fmt.Sprintf("items[%d]", i), id)
			}
		}
	}
	if r, ok := req.(interface {
		GetResults() []*rationv1.ResultInput
	}); ok {
		for i, res := range r.GetResults() {
			if hasBidi(res.GetItem()) {
				return checkBidi(fmt.Sprintf("results[%d].item", i), res.GetItem())
			}
		}
	}
	return nil
}

func checkBidi(field, id string) error {
	if c, ok := firstBidi(id); ok {
		return fmt.Errorf("%s %q has a bidirectional control character (U+%04X): %w", field, id, c, ErrInvalidArgument)
	}
	return nil
}

func hasBidi(id string) bool {
	_, ok := firstBidi(id)
	return ok
}

// firstBidi returns the first bidirectional control character in id. Those
// are all outside ASCII, so the ASCII prefix is skipped without decoding.
func firstBidi(id string) (rune, bool) {
	i := 0
	for i < len(id) && id[i] < utf8.RuneSelf {
		i++
	}
	for _, c := range id[i:] {
		if unicode.Is(unicode.Bidi_Control, c) {
			return c, true
		}
	}
	return 0, false
}
