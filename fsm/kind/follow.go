package kind

import (
	"encoding/json"
	"errors"
	"fmt"
)

// Follow is the followers and following kinds: the payload lists the
// account ids found, as a JSON array of decimal strings. Verdict OK carries
// the list (possibly empty); NOT_FOUND and PROTECTED carry no payload.
type Follow struct{ name string }

var followVerdicts = []string{"OK", "NOT_FOUND", "PROTECTED"}

func init() {
	Register(Follow{name: "followers"})
	Register(Follow{name: "following"})
}

// Name implements Kind.
func (f Follow) Name() string { return f.name }

// Defaults implements Kind: payloads up to 64 KiB (about 3,000 ids).
func (Follow) Defaults(s Settings) Settings {
	if s.MaxPayloadBytes == 0 {
		s.MaxPayloadBytes = 64 << 10
	}
	return s
}

// Check implements Kind.
func (f Follow) Check(s Settings) error {
	if len(s.Verdicts) > 0 {
		return fmt.Errorf("verdicts are fixed for kind %s (OK, NOT_FOUND, PROTECTED)", f.name)
	}
	if s.ComparePayload {
		return fmt.Errorf("kind %s compares its id lists within list_tolerance: compare_payload does not apply", f.name)
	}
	return checkMaxPayload(s)
}

// Agree implements Kind: the verdicts are equal and, for OK, the two id
// lists differ by at most ListTolerance thousandths of the ids in either
// (their symmetric difference over their union; two empty lists agree).
func (Follow) Agree(s Settings, a, b Result) bool {
	if a.Verdict != b.Verdict {
		return false
	}
	if a.Verdict != "OK" {
		return true
	}
	var la, lb []string
	if json.Unmarshal([]byte(a.Payload), &la) != nil || json.Unmarshal([]byte(b.Payload), &lb) != nil {
		return a.Payload == b.Payload // not valid lists: Validate refuses them first
	}
	in := make(map[string]uint8, len(la)+len(lb))
	for _, id := range la {
		in[id] |= 1
	}
	for _, id := range lb {
		in[id] |= 2
	}
	differ := 0
	for _, m := range in {
		if m != 3 {
			differ++
		}
	}
	// Integers only: every node must reach the same answer.
	return uint64(differ)*MaxListTolerance <= uint64(s.ListTolerance)*uint64(len(in))
}

// Validate implements Kind.
func (Follow) Validate(s Settings, verdict, payload string) error {
	if err := checkVerdict(verdict, followVerdicts); err != nil {
		return err
	}
	if err := checkPayloadSize(s, payload); err != nil {
		return err
	}
	if verdict != "OK" {
		if payload != "" {
			return fmt.Errorf("%w: verdict %s takes no payload", ErrPayload, verdict)
		}
		return nil
	}
	return checkAccountList(payload)
}

// checkAccountList accepts a JSON array of account ids: decimal strings of 1
// to 20 digits.
func checkAccountList(payload string) error {
	var ids []string
	if err := json.Unmarshal([]byte(payload), &ids); err != nil {
		return fmt.Errorf("%w: want a JSON array of account id strings: %v", ErrPayload, err)
	}
	if ids == nil {
		return fmt.Errorf("%w: want a JSON array of account id strings, got null", ErrPayload)
	}
	for i, id := range ids {
		if err := checkAccountID(id); err != nil {
			return fmt.Errorf("%w: account %d: %v", ErrPayload, i, err)
		}
	}
	return nil
}

func checkAccountID(id string) error {
	if len(id) == 0 || len(id) > 20 {
		return errors.New("want 1 to 20 digits")
	}
	for i := 0; i < len(id); i++ {
		if id[i] < '0' || id[i] > '9' {
			return fmt.Errorf("%q is not decimal digits", id)
		}
	}
	return nil
}
