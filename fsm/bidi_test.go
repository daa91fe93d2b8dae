package fsm

import (
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

// TestCheckRequest_RefusesBidiControlsInIDs: the edge refuses ids that
// could display as other ids; right-to-left letters themselves are fine.
// Apply keeps accepting them, so an old log replays unchanged.
func TestCheckRequest_RefusesBidiControlsInIDs(t *testing.T) {
	for _, tt := range []struct {
		req  proto.Message
		want bool // refused
	}{
		{&rationv1.RegisterRequest{Service: "dm", WorkerId: "w\u202e1"}, true},
		{&rationv1.AcquireRequest{Service: "dm", WorkerId: "\u2066w"}, true},
		{&rationv1.AddItemsRequest{Service: "dm", Items: []string{"ok", "a\u200fb"}}, true},
		{&rationv1.SubmitRequest{WorkerId: "w", BucketId: 1, Results: []*rationv1.ResultInput{{Item: "\u061cx", Verdict: "DM"}}}, true},
		{&rationv1.HeartbeatRequest{WorkerId: "w\u202a", Buckets: []*rationv1.BucketRef{{Id: 1}}}, true},
		{&rationv1.RegisterRequest{Service: "dm", WorkerId: "مرحبا-ünï"}, false},
		{&rationv1.AddItemsRequest{Service: "dm", Items: []string{"שלום", "x"}}, false},
	} {
		err := CheckRequest(tt.req)
		if got := err != nil; got != tt.want || (got && !errors.Is(err, ErrInvalidArgument)) {
			t.Errorf("CheckRequest(%v) = %v, want refused %v", tt.req, err, tt.want)
		}
	}
	if err := CheckRequestID("id\u202e"); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("CheckRequestID with an RLO: %v", err)
	}
	h := newHarness(t)
	h.createService("dm", "dmcheck", nil)
	h.add("dm", 0, "a\u202eb")
}
