package kind

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// Generic is the declarative kind: its verdict set and payload limit are
// given when the service is created, so new kinds of work need no rebuild.
// The payload is opaque text.
type Generic struct{}

// Limits of a generic service's verdict set.
const (
	MaxVerdicts      = 64
	MaxVerdictLength = 64
)

func init() { Register(Generic{}) }

// Name implements Kind.
func (Generic) Name() string { return "generic" }

// Defaults implements Kind: payloads up to 16 KiB.
func (Generic) Defaults(s Settings) Settings {
	if s.MaxPayloadBytes == 0 {
		s.MaxPayloadBytes = 16 << 10
	}
	return s
}

// Check implements Kind: 1 to 64 distinct verdicts of 1 to 64 printable bytes.
func (Generic) Check(s Settings) error {
	if len(s.Verdicts) == 0 {
		return errors.New("kind generic needs verdicts: the set of verdicts a result may carry")
	}
	if len(s.Verdicts) > MaxVerdicts {
		return fmt.Errorf("verdicts: %d given, limit %d", len(s.Verdicts), MaxVerdicts)
	}
	seen := make(map[string]bool, len(s.Verdicts))
	for i, v := range s.Verdicts {
		if v == "" || len(v) > MaxVerdictLength || !utf8.ValidString(v) {
			return fmt.Errorf("verdicts[%d]: want 1 to %d bytes of UTF-8", i, MaxVerdictLength)
		}
		for _, r := range v {
			if r < 0x21 || r == 0x7f {
				return fmt.Errorf("verdicts[%d]: %q has a space or control character", i, v)
			}
		}
		if seen[v] {
			return fmt.Errorf("verdicts[%d]: %q repeated", i, v)
		}
		seen[v] = true
	}
	if s.ListTolerance > 0 {
		return errors.New("kind generic has no id lists: list_tolerance does not apply")
	}
	return checkMaxPayload(s)
}

// Agree implements Kind: the verdicts are equal, and with ComparePayload
// the payloads too.
func (Generic) Agree(s Settings, a, b Result) bool {
	return a.Verdict == b.Verdict && (!s.ComparePayload || a.Payload == b.Payload)
}

// Validate implements Kind.
func (Generic) Validate(s Settings, verdict, payload string) error {
	if err := checkVerdict(verdict, s.Verdicts); err != nil {
		return err
	}
	return checkPayloadSize(s, payload)
}
