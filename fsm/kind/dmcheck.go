package kind

import "errors"

// DMCheck answers whether a source account can send a direct message to the
// item's account: verdict DM, NON_DM or UNKNOWN (the account does not exist),
// with an optional short note as payload.
type DMCheck struct{}

var dmVerdicts = []string{"DM", "NON_DM", "UNKNOWN"}

func init() { Register(DMCheck{}) }

// Name implements Kind.
func (DMCheck) Name() string { return "dmcheck" }

// Defaults implements Kind: payloads up to 1 KiB.
func (DMCheck) Defaults(s Settings) Settings {
	if s.MaxPayloadBytes == 0 {
		s.MaxPayloadBytes = 1024
	}
	return s
}

// Check implements Kind.
func (DMCheck) Check(s Settings) error {
	if len(s.Verdicts) > 0 {
		return errors.New("verdicts are fixed for kind dmcheck (DM, NON_DM, UNKNOWN)")
	}
	if s.ListTolerance > 0 || s.ComparePayload {
		return errors.New("kind dmcheck compares verdicts only: list_tolerance and compare_payload do not apply")
	}
	return checkMaxPayload(s)
}

// Agree implements Kind: the verdicts are equal (the payload is a note).
func (DMCheck) Agree(_ Settings, a, b Result) bool { return a.Verdict == b.Verdict }

// Validate implements Kind.
func (DMCheck) Validate(s Settings, verdict, payload string) error {
	if err := checkVerdict(verdict, dmVerdicts); err != nil {
		return err
	}
	return checkPayloadSize(s, payload)
}
