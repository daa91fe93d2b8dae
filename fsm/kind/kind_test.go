package kind

import (
	"fmt"
	"strings"
	"testing"
)

func list(ids ...int) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, id := range ids {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%q", fmt.Sprint(id))
	}
	b.WriteByte(']')
	return b.String()
}

func span(from, to int) []int {
	var out []int
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

// TestAgree: when two results for one item say the same thing, per kind.
func TestAgree(t *testing.T) {
	dm, _ := Lookup("dmcheck")
	fol, _ := Lookup("followers")
	gen, _ := Lookup("generic")
	exact := Settings{}
	fivePct := Settings{ListTolerance: 50}
	for _, tc := range []struct {
		name string
		k    Kind
		s    Settings
		a, b Result
		want bool
	}{
		{"dmcheck: same verdict, other notes", dm, exact, Result{"DM", "open"}, Result{"DM", ""}, true},
		{"dmcheck: other verdicts", dm, exact, Result{"DM", ""}, Result{"NON_DM", ""}, false},

		{"followers: other verdicts", fol, fivePct, Result{"OK", list(1)}, Result{"NOT_FOUND", ""}, false},
		{"followers: both not found", fol, exact, Result{"NOT_FOUND", ""}, Result{"NOT_FOUND", ""}, true},
		{"followers: equal lists, other order", fol, exact, Result{"OK", list(1, 2, 3)}, Result{"OK", list(3, 1, 2)}, true},
		{"followers: two empty lists", fol, exact, Result{"OK", "[]"}, Result{"OK", "[]"}, true},
		{"followers: one id apart, exact", fol, exact, Result{"OK", list(1, 2, 3)}, Result{"OK", list(1, 2)}, false},
		// 100 ids in both, 2 in one only, 3 in the other only: 5 of 105 differ
		// (47.6 thousandths), within 50.
		{"followers: 5 of 105 differ, 5% tolerance", fol, fivePct,
			Result{"OK", list(append(span(0, 100), 1000, 1001)...)}, Result{"OK", list(append(span(0, 100), 2000, 2001, 2002)...)}, true},
		// 6 of 106 (56.6 thousandths): beyond 50.
		{"followers: 6 of 106 differ, 5% tolerance", fol, fivePct,
			Result{"OK", list(append(span(0, 100), 1000, 1001, 1002)...)}, Result{"OK", list(append(span(0, 100), 2000, 2001, 2002)...)}, false},
		// Exactly at the bound: 5 of 100 ids differ.
		{"followers: 5 of 100 differ, at the bound", fol, fivePct,
			Result{"OK", list(span(0, 95)...)}, Result{"OK", list(span(0, 100)...)}, true},
		{"followers: empty against one id", fol, fivePct, Result{"OK", "[]"}, Result{"OK", list(7)}, false},
		{"followers: any lists at 1000", fol, Settings{ListTolerance: MaxListTolerance}, Result{"OK", list(1)}, Result{"OK", list(2)}, true},

		{"generic: same verdict", gen, exact, Result{"A", "x"}, Result{"A", "y"}, true},
		{"generic: payloads compared", gen, Settings{ComparePayload: true}, Result{"A", "x"}, Result{"A", "y"}, false},
		{"generic: payloads compared, equal", gen, Settings{ComparePayload: true}, Result{"A", "x"}, Result{"A", "x"}, true},
		{"generic: other verdicts", gen, exact, Result{"A", "x"}, Result{"B", "x"}, false},
	} {
		if got := tc.k.Agree(tc.s, tc.a, tc.b); got != tc.want {
			t.Errorf("%s: Agree = %v, want %v", tc.name, got, tc.want)
		}
		if got := tc.k.Agree(tc.s, tc.b, tc.a); got != tc.want {
			t.Errorf("%s: Agree is not symmetric", tc.name)
		}
	}
}

// TestCheck_ComparisonSettings: a kind refuses the comparison settings it
// does not read, and list_tolerance is at most 1000.
func TestCheck_ComparisonSettings(t *testing.T) {
	dm, _ := Lookup("dmcheck")
	fol, _ := Lookup("following")
	gen, _ := Lookup("generic")
	verdicts := []string{"A", "B"}
	for _, tc := range []struct {
		name string
		k    Kind
		s    Settings
		want string
	}{
		{"dmcheck, list_tolerance", dm, Settings{ListTolerance: 1}, "do not apply"},
		{"dmcheck, compare_payload", dm, Settings{ComparePayload: true}, "do not apply"},
		{"following, compare_payload", fol, Settings{ComparePayload: true}, "does not apply"},
		{"following, tolerance 1000", fol, Settings{ListTolerance: 1000}, ""},
		{"following, tolerance 1001", fol, Settings{ListTolerance: 1001}, "above 1000"},
		{"generic, list_tolerance", gen, Settings{Verdicts: verdicts, ListTolerance: 5}, "does not apply"},
		{"generic, compare_payload", gen, Settings{Verdicts: verdicts, ComparePayload: true}, ""},
	} {
		err := tc.k.Check(tc.k.Defaults(tc.s))
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}
