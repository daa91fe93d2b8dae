package fsm

import (
	"fmt"
	"regexp"
	"time"
	"unicode"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/durationpb"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/fsm/kind"
)

// Defaults and limits of a service's config. Each limit is inclusive.
const (
	DefaultBucketSize           = 180
	DefaultMaxBucketsPerAcquire = 10
	DefaultLeaseTTL             = 2 * time.Hour
	DefaultReleaseGrace         = 15 * time.Minute
	DefaultMaxAttempts          = 5
	DefaultMaxItemsPerAdd       = 18000
	DefaultWorkerInactiveAfter  = 24 * time.Hour
	DefaultPriorityAging        = time.Minute
	DefaultMaxLeasesPerWorker   = 100
	DefaultResultRetention      = 24 * time.Hour
	DefaultMaxUnackedResults    = 1_000_000

	MaxBucketSize         = 10000
	MaxBucketsPerAcquire  = 1000
	MinLeaseTTL           = time.Second
	MaxLeaseTTL           = 7 * 24 * time.Hour
	MaxReleaseGrace       = 7 * 24 * time.Hour
	MaxAttemptsLimit      = 1000
	MaxItemsPerAddLimit   = 100000
	MinWorkerInactive     = time.Minute
	MaxWorkerInactive     = 365 * 24 * time.Hour
	MinPriorityAging      = time.Second
	MaxPriorityAging      = 30 * 24 * time.Hour
	MaxLeasesPerWorkerCap = 100000
	MaxResultRetention    = 3650 * 24 * time.Hour
	MinUnackedRetention   = time.Minute
	MinRefreshAfter       = time.Minute
	MaxUnackedResultsCap  = 1_000_000_000

	// MinPriority and MaxPriority bound an item's priority.
	MinPriority = -1000000
	MaxPriority = 1000000
	// MaxServiceNameLength is the longest service name.
	MaxServiceNameLength = 64
	// MaxIDLength bounds worker and item ids, in bytes.
	MaxIDLength = 256
	// MaxNameLength bounds display names and reasons, in bytes.
	MaxNameLength = 256
	// SecretHashLength is the length of a worker secret's hash (SHA-256).
	SecretHashLength = 32
)

var serviceName = regexp.MustCompile(`^[a-z0-9-]{1,64}$`)

func checkServiceName(name string) error {
	if !serviceName.MatchString(name) {
		return fmt.Errorf("service name %q: want 1 to %d of a-z, 0-9 and '-': %w", name, MaxServiceNameLength, ErrInvalidArgument)
	}
	return nil
}

// checkID validates a worker or item id: 1 to 256 bytes of UTF-8 without
// control characters or white space.
func checkID(field, id string) error {
	if p := idProblem(id); p != "" {
		return fmt.Errorf("%s %s: %w", field, p, ErrInvalidArgument)
	}
	return nil
}

// idProblem says what is wrong with an id, or "" if nothing is. It does not
// allocate for a good id, so checking 18,000 ids costs no garbage.
func idProblem(id string) string {
	if id == "" {
		return "is empty"
	}
	if len(id) > MaxIDLength {
		return fmt.Sprintf("is %d bytes, limit %d", len(id), MaxIDLength)
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c == 0x7f {
			return fmt.Sprintf("%q has a control or space character", id)
		} else if c >= utf8.RuneSelf {
			return idProblemSlow(id)
		}
	}
	return ""
}

func idProblemSlow(id string) string {
	if !utf8.ValidString(id) {
		return "is not valid UTF-8"
	}
	for _, r := range id {
		if unicode.IsControl(r) || unicode.IsSpace(r) {
			return fmt.Sprintf("%q has a control or space character", id)
		}
	}
	return ""
}

// checkText validates free text (names, reasons): at most 256 bytes of
// UTF-8 without control characters.
func checkText(field, s string) error {
	if len(s) > MaxNameLength {
		return fmt.Errorf("%s is %d bytes, limit %d: %w", field, len(s), MaxNameLength, ErrInvalidArgument)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s is not valid UTF-8: %w", field, ErrInvalidArgument)
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return fmt.Errorf("%s has a control character: %w", field, ErrInvalidArgument)
		}
	}
	return nil
}

// configFromProto fills defaults and checks every field against its limit.
func configFromProto(k kind.Kind, pc *rationv1.ServiceConfig) (Config, error) {
	c := Config{
		BucketSize:           orU32(pc.GetBucketSize(), DefaultBucketSize),
		MaxBucketsPerAcquire: orU32(pc.GetMaxBucketsPerAcquire(), DefaultMaxBucketsPerAcquire),
		MaxAttempts:          orU32(pc.GetMaxAttempts(), DefaultMaxAttempts),
		MaxItemsPerAdd:       orU32(pc.GetMaxItemsPerAdd(), DefaultMaxItemsPerAdd),
		MaxLeasesPerWorker:   orU32(pc.GetMaxLeasesPerWorker(), DefaultMaxLeasesPerWorker),
	}
	var err error
	durations := []struct {
		name     string
		in       *durationpb.Duration
		out      *time.Duration
		def      time.Duration
		min, max time.Duration
	}{
		{"lease_ttl", pc.GetLeaseTtl(), &c.LeaseTTL, DefaultLeaseTTL, MinLeaseTTL, MaxLeaseTTL},
		{"release_grace", pc.GetReleaseGrace(), &c.ReleaseGrace, DefaultReleaseGrace, 0, MaxReleaseGrace},
		{"worker_inactive_after", pc.GetWorkerInactiveAfter(), &c.WorkerInactiveAfter, DefaultWorkerInactiveAfter, MinWorkerInactive, MaxWorkerInactive},
		{"priority_aging", pc.GetPriorityAging(), &c.PriorityAging, DefaultPriorityAging, MinPriorityAging, MaxPriorityAging},
	}
	for _, d := range durations {
		if d.in == nil {
			*d.out = d.def
			continue
		}
		if err = d.in.CheckValid(); err != nil {
			return c, fmt.Errorf("config.%s: %v: %w", d.name, err, ErrInvalidConfig)
		}
		v := d.in.AsDuration()
		if v == 0 {
			v = d.def
		}
		if v < d.min || v > d.max {
			return c, fmt.Errorf("config.%s is %s, want %s to %s: %w", d.name, v, d.min, d.max, ErrInvalidConfig)
		}
		*d.out = v
	}
	limits := []struct {
		name     string
		v        uint32
		min, max uint32
	}{
		{"bucket_size", c.BucketSize, 1, MaxBucketSize},
		{"max_buckets_per_acquire", c.MaxBucketsPerAcquire, 1, MaxBucketsPerAcquire},
		{"max_attempts", c.MaxAttempts, 1, MaxAttemptsLimit},
		{"max_items_per_add", c.MaxItemsPerAdd, 1, MaxItemsPerAddLimit},
		{"max_leases_per_worker", c.MaxLeasesPerWorker, 1, MaxLeasesPerWorkerCap},
	}
	for _, l := range limits {
		if l.v < l.min || l.v > l.max {
			return c, fmt.Errorf("config.%s is %d, want %d to %d: %w", l.name, l.v, l.min, l.max, ErrInvalidConfig)
		}
	}
	if err := retentionFromProto(pc, &c); err != nil {
		return c, err
	}
	if c.Validation, err = validationFromProto(pc.GetValidation()); err != nil {
		return c, err
	}
	s := k.Defaults(kind.Settings{MaxPayloadBytes: pc.GetMaxPayloadBytes(), Verdicts: pc.GetVerdicts(),
		ListTolerance: c.Validation.ListTolerance, ComparePayload: c.Validation.ComparePayload})
	if err := k.Check(s); err != nil {
		return c, fmt.Errorf("config: %v: %w", err, ErrInvalidConfig)
	}
	c.MaxPayloadBytes = s.MaxPayloadBytes
	c.Verdicts = append([]string(nil), s.Verdicts...)
	return c, nil
}

// retentionFromProto fills and checks the settings that bound what a
// service keeps. Unlike the other durations, 0s is a value here:
// result_retention 0s trims at acknowledgment; unset is the default.
func retentionFromProto(pc *rationv1.ServiceConfig, c *Config) error {
	c.ResultRetention = DefaultResultRetention
	if d := pc.GetResultRetention(); d != nil {
		if err := d.CheckValid(); err != nil {
			return fmt.Errorf("config.result_retention: %v: %w", err, ErrInvalidConfig)
		}
		if c.ResultRetention = d.AsDuration(); c.ResultRetention < 0 || c.ResultRetention > MaxResultRetention {
			return fmt.Errorf("config.result_retention is %s, want 0s to %s: %w", c.ResultRetention, MaxResultRetention, ErrInvalidConfig)
		}
	}
	if d := pc.GetUnackedResultRetention(); d != nil {
		if err := d.CheckValid(); err != nil {
			return fmt.Errorf("config.unacked_result_retention: %v: %w", err, ErrInvalidConfig)
		}
		v := d.AsDuration()
		if v != 0 && (v < MinUnackedRetention || v > MaxResultRetention) {
			return fmt.Errorf("config.unacked_result_retention is %s, want %s to %s, or 0s for never: %w", v, MinUnackedRetention, MaxResultRetention, ErrInvalidConfig)
		}
		c.UnackedResultRetention = v
	}
	c.DoneRetention = RememberForever
	if d := pc.GetDoneRetention(); d != nil {
		if err := d.CheckValid(); err != nil {
			return fmt.Errorf("config.done_retention: %v: %w", err, ErrInvalidConfig)
		}
		if c.DoneRetention = d.AsDuration(); c.DoneRetention < 0 || c.DoneRetention > MaxResultRetention {
			return fmt.Errorf("config.done_retention is %s, want 0s to %s: %w", c.DoneRetention, MaxResultRetention, ErrInvalidConfig)
		}
	}
	c.RefreshAfter = NeverRefresh
	if d := pc.GetRefreshAfter(); d != nil {
		if err := d.CheckValid(); err != nil {
			return fmt.Errorf("config.refresh_after: %v: %w", err, ErrInvalidConfig)
		}
		if c.RefreshAfter = d.AsDuration(); c.RefreshAfter < MinRefreshAfter || c.RefreshAfter > MaxResultRetention {
			return fmt.Errorf("config.refresh_after is %s, want %s to %s, or unset for never: %w", c.RefreshAfter, MinRefreshAfter, MaxResultRetention, ErrInvalidConfig)
		}
	}
	c.MaxUnackedResults = pc.GetMaxUnackedResults()
	if c.MaxUnackedResults == 0 {
		c.MaxUnackedResults = DefaultMaxUnackedResults
	}
	if c.MaxUnackedResults > MaxUnackedResultsCap {
		return fmt.Errorf("config.max_unacked_results is %d, want 1 to %d: %w", c.MaxUnackedResults, MaxUnackedResultsCap, ErrInvalidConfig)
	}
	return nil
}

func orU32(v, def uint32) uint32 {
	if v == 0 {
		return def
	}
	return v
}

// Proto returns the config as its API message.
func (c Config) Proto() *rationv1.ServiceConfig {
	p := &rationv1.ServiceConfig{
		BucketSize:           c.BucketSize,
		MaxBucketsPerAcquire: c.MaxBucketsPerAcquire,
		LeaseTtl:             durationpb.New(c.LeaseTTL),
		ReleaseGrace:         durationpb.New(c.ReleaseGrace),
		MaxAttempts:          c.MaxAttempts,
		MaxItemsPerAdd:       c.MaxItemsPerAdd,
		WorkerInactiveAfter:  durationpb.New(c.WorkerInactiveAfter),
		PriorityAging:        durationpb.New(c.PriorityAging),
		MaxPayloadBytes:      c.MaxPayloadBytes,
		Verdicts:             append([]string(nil), c.Verdicts...),
		MaxLeasesPerWorker:   c.MaxLeasesPerWorker,
		ResultRetention:      durationpb.New(c.ResultRetention),
		MaxUnackedResults:    c.MaxUnackedResults,
		Validation:           c.Validation.proto(),
	}
	if c.UnackedResultRetention > 0 {
		p.UnackedResultRetention = durationpb.New(c.UnackedResultRetention)
	}
	if c.DoneRetention != RememberForever {
		p.DoneRetention = durationpb.New(c.DoneRetention)
	}
	if c.RefreshAfter != NeverRefresh {
		p.RefreshAfter = durationpb.New(c.RefreshAfter)
	}
	return p
}

func (c Config) settings() kind.Settings {
	return kind.Settings{MaxPayloadBytes: c.MaxPayloadBytes, Verdicts: c.Verdicts,
		ListTolerance: c.Validation.ListTolerance, ComparePayload: c.Validation.ComparePayload}
}
