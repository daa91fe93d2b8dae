package chaos

import (
	"strings"
	"testing"
	"time"
)

// The wait check must catch a late write, excuse the stopped node's own
// writes only while it is stopped, and refuse to pass having seen nothing
// in a run that took the leader away often enough.
func TestWaits_Check(t *testing.T) {
	s := func(f float64) int64 { return int64(f * float64(time.Second)) }
	stop := event{Kind: "stop-leader", Node: "n1", Leader: true, At: s(10), End: s(12.5)}
	later := event{Kind: "kill-follower", Node: "n3", At: s(14), End: s(15)}
	elected := []election{{At: s(1), Term: 2, Node: "n1"}, {At: s(10.6), Term: 3, Node: "n2"}}
	add := func(node string, call, ret float64) op {
		return op{Kind: "add", Client: directClient, Node: node, Call: s(call), Return: s(ret), Outcome: outOK}
	}
	tests := []struct {
		name     string
		ops      []op
		problems []string // each expected problem contains this
	}{
		{"prompt", []op{add("n2", 10.2, 11), add("n3", 11, 11.1)}, nil},
		{"forwarded to the frozen leader", []op{add("n2", 10.2, 12.7)}, []string{"waited 2.1s past the election"}},
		{"to the stopped node", []op{add("n1", 10.2, 12.7), add("n3", 11, 11.1)}, nil},
		{"to the stopped node, late after SIGCONT", []op{add("n1", 10.2, 15), add("n3", 11, 11.1)}, []string{"past SIGCONT"}},
		{"after the next event", []op{add("n2", 14.5, 17)}, []string{"no write was checked"}},
		{"in flight since before", []op{add("n2", 9, 13)}, []string{"waited 2.4s"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, problems := checkWaits(tc.ops, []event{stop, later}, elected)
			if len(problems) != len(tc.problems) {
				t.Fatalf("problems %q, want %d", problems, len(tc.problems))
			}
			for i, p := range problems {
				if !strings.Contains(p, tc.problems[i]) {
					t.Errorf("problem %q, want one with %q", p, tc.problems[i])
				}
			}
		})
	}
	// No election after an event: noted; after minLeaderLosses of them,
	// with nothing checked, a failure.
	r, problems := checkWaits([]op{add("n2", 10.2, 11)}, []event{stop}, elected[:1])
	if len(r.notes) != 1 || r.stats["stop-leader"].unelected != 1 || len(problems) != 0 {
		t.Errorf("one event: notes %q problems %q", r.notes, problems)
	}
	stops := []event{stop, {Kind: "stop-leader", Node: "n1", Leader: true, At: s(20), End: s(22)},
		{Kind: "kill-leader", Node: "n1", Leader: true, At: s(30), End: s(31)}}
	r, problems = checkWaits([]op{add("n2", 10.2, 11)}, stops, elected[:1])
	if len(r.notes) != 3 || len(problems) != 1 || !strings.Contains(problems[0], "no election was seen after any of the 3 events") {
		t.Errorf("three events: notes %q problems %q", r.notes, problems)
	}
	// An isolated follower takes no leader away: nothing to hold.
	if r, problems := checkWaits(nil, []event{{Kind: "partition", Node: "n3", At: s(1), End: s(2)}}, elected); len(problems) != 0 ||
		r.stats["partition"].events != 0 {
		t.Errorf("problems %q", problems)
	}
}
