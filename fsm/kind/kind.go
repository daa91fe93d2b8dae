// Package kind holds the kinds of work a service can be: each kind validates
// a service's result settings and every result a worker submits. Kinds
// register themselves by name; adding one is adding a file to this package
// (or calling Register from an init function elsewhere).
package kind

import (
	"errors"
	"fmt"
	"sort"
	"sync"
)

// Settings are the parts of a service's config that a kind reads.
type Settings struct {
	// MaxPayloadBytes bounds one result's payload.
	MaxPayloadBytes uint32
	// Verdicts is the verdict set of a declarative (generic) service.
	Verdicts []string
	// ListTolerance is how far two id lists (followers, following) may
	// differ and still agree: the ids in one list only, over the ids in
	// either, in thousandths (0: the lists must be equal; 1000: any lists
	// agree). Lists change between two checks minutes apart.
	ListTolerance uint32
	// ComparePayload makes two generic results agree only when their
	// payloads are equal too, not their verdicts alone.
	ComparePayload bool
}

// Result is one worker's answer for one item, as a kind compares answers.
type Result struct {
	Verdict, Payload string
}

// MaxListTolerance is ListTolerance's largest value: any two lists agree.
const MaxListTolerance = 1000

// Kind validates the results of one kind of work. Implementations must be
// deterministic and pure: the state machine calls them while applying the
// replicated log, on every node.
type Kind interface {
	// Name is the name services refer to, e.g. "dmcheck".
	Name() string
	// Defaults fills zero settings with the kind's defaults.
	Defaults(s Settings) Settings
	// Check reports whether settings suit this kind.
	Check(s Settings) error
	// Validate reports whether one result is acceptable.
	Validate(s Settings, verdict, payload string) error
	// Agree reports whether two valid results for one item say the same
	// thing, as far as this kind of work can tell: when several workers
	// process an item, a result counts toward the quorum with those it
	// agrees with. It must be symmetric.
	Agree(s Settings, a, b Result) bool
}

// MaxPayloadLimit is the largest max_payload_bytes any service may set (1 MiB).
const MaxPayloadLimit = 1 << 20

var (
	mu    sync.RWMutex
	kinds = map[string]Kind{}
)

// Register makes k available by its name. It panics on a duplicate name, as
// two kinds with one name would make nodes disagree.
func Register(k Kind) {
	mu.Lock()
	defer mu.Unlock()
	if _, dup := kinds[k.Name()]; dup {
		panic(fmt.Sprintf("kind: %q registered twice", k.Name()))
	}
	kinds[k.Name()] = k
}

// Lookup returns the kind registered under name.
func Lookup(name string) (Kind, bool) {
	mu.RLock()
	defer mu.RUnlock()
	k, ok := kinds[name]
	return k, ok
}

// Names lists the registered kinds, sorted.
func Names() []string {
	mu.RLock()
	defer mu.RUnlock()
	names := make([]string, 0, len(kinds))
	for n := range kinds {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// ErrVerdict and ErrPayload classify why a result was refused.
var (
	ErrVerdict = errors.New("verdict not allowed")
	ErrPayload = errors.New("payload not allowed")
)

// checkPayloadSize is shared by the built-in kinds.
func checkPayloadSize(s Settings, payload string) error {
	if uint32(len(payload)) > s.MaxPayloadBytes {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrPayload, len(payload), s.MaxPayloadBytes)
	}
	return nil
}

// checkVerdict is shared by the built-in kinds.
func checkVerdict(verdict string, allowed []string) error {
	for _, v := range allowed {
		if v == verdict {
			return nil
		}
	}
	return fmt.Errorf("%w: %q (want one of %v)", ErrVerdict, verdict, allowed)
}

// checkMaxPayload is the common settings check: the payload limit, and
// the comparison settings only the kinds that read them may set.
func checkMaxPayload(s Settings) error {
	if s.MaxPayloadBytes > MaxPayloadLimit {
		return fmt.Errorf("max_payload_bytes %d is above the limit %d", s.MaxPayloadBytes, MaxPayloadLimit)
	}
	if s.ListTolerance > MaxListTolerance {
		return fmt.Errorf("list_tolerance %d is above %d (thousandths)", s.ListTolerance, MaxListTolerance)
	}
	return nil
}
