package fsm

import (
	"time"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

// The records below are what reads return. They are immutable once
// published: the state machine replaces a record to change it, and callers
// must not modify what they are given. Times are Unix nanoseconds.

// Config is a service's settings with defaults filled in.
type Config struct {
	BucketSize           uint32
	MaxBucketsPerAcquire uint32
	LeaseTTL             time.Duration
	ReleaseGrace         time.Duration
	MaxAttempts          uint32
	MaxItemsPerAdd       uint32
	WorkerInactiveAfter  time.Duration
	PriorityAging        time.Duration
	MaxPayloadBytes      uint32
	Verdicts             []string
	MaxLeasesPerWorker   uint32
	// ResultRetention keeps a result this long after it was accepted, and
	// never before it is acknowledged; 0 trims it at acknowledgment.
	ResultRetention time.Duration
	// UnackedResultRetention drops a result nobody acknowledged this long
	// after it was accepted; 0 never does.
	UnackedResultRetention time.Duration
	// MaxUnackedResults refuses Acquire while the service holds this many
	// results not yet acknowledged.
	MaxUnackedResults uint64
	// DoneRetention forgets a done item whose result was trimmed this long
	// after the result was accepted; RememberForever never does.
	DoneRetention time.Duration
	// RefreshAfter queues a done item again this long after its result was
	// accepted; NeverRefresh never does.
	RefreshAfter time.Duration
	// Validation is how results are checked before they are believed.
	Validation Validation
}

// Validation is a service's validation policy (see validation.go).
type Validation struct {
	Replicas, Quorum, MaxReplicas uint32
	Adaptive                      bool
	// SpotCheck is the least chance, in thousandths, that a trusted
	// worker's bucket is replicated anyway.
	SpotCheck  uint32
	TrustAfter uint32
	// CanaryRate is canaries per thousand leased items.
	CanaryRate                 uint32
	CanaryFailuresToDeactivate uint32
	ListTolerance              uint32
	ComparePayload             bool
}

// NeverRefresh is a RefreshAfter that never queues a done item again.
const NeverRefresh time.Duration = -1

// RememberForever is a DoneRetention that never forgets.
const RememberForever time.Duration = -1

// Service is a kind of work with its own item pool.
type Service struct {
	Ordinal   uint32
	Name      string
	Kind      string
	Config    Config
	State     rationv1.ServiceState
	Reason    string
	CreatedAt int64
	UpdatedAt int64
	// OwnerTokenHash is the SHA-256 of the service's owner token; nil when
	// it has none. Never the token itself.
	OwnerTokenHash []byte
	// Open lists unassigned buckets that still take items, one per priority.
	Open     []OpenBucket
	Counters Counters
	Items    StateCounts // by ItemState
	Buckets  StateCounts // by BucketState
	// AckedThrough is the owner's export position: every result batch with
	// a seq at or below it is acknowledged (AckResults).
	AckedThrough uint64
	// LastResultSeq is the seq of the last accepted result batch, which
	// trimming may have removed.
	LastResultSeq uint64
	// TrimmedThrough is when the newest result batch trimmed so far was
	// accepted (0: none): results accepted at or before it may be gone.
	TrimmedThrough int64
	// Canaries are items with known answers (AddCanaries), sorted by id.
	Canaries []Canary
	// Derived from the result batches, not stored in a snapshot: the
	// results (and their bytes) past AckedThrough.
	UnackedResults uint64
	UnackedBytes   uint64
}

// StateCounts counts a service's items or buckets, indexed by their
// ItemState or BucketState value.
type StateCounts [6]int64

// OpenBucket is the unassigned, not yet full bucket of one priority.
type OpenBucket struct {
	Priority int32
	Bucket   uint64
}

// Active reports whether the service accepts work.
func (s *Service) Active() bool { return s.State == rationv1.ServiceState_SERVICE_STATE_ACTIVE }

// Counters are cumulative totals for a service or a registration.
type Counters struct {
	LeasesGranted    uint64
	LeasesExpired    uint64
	LeasesReleased   uint64
	LeasesEnded      uint64
	BucketsDone      uint64
	ResultsAccepted  uint64
	ItemsRequeued    uint64
	ResultsReverted  uint64
	Rejected         uint64
	Heartbeats       uint64
	Verdicts         []KeyCount // accepted results, by verdict
	ItemsAdded       uint64
	ItemsQuarantined uint64
	LateSubmits      uint64
	DeadReleased     uint64
	// RejectedBy counts refused commands by reason.
	RejectedBy []KeyCount
	// ResultsTrimmed counts results trimmed after their retention;
	// ResultsDropped those of them dropped without an acknowledgment.
	ResultsTrimmed uint64
	ResultsDropped uint64
	// ItemsForgotten counts done items forgotten after done_retention.
	ItemsForgotten uint64
	// ItemsRefreshed counts done items queued again after refresh_after.
	ItemsRefreshed uint64
	// Validation: results that agreed with a canonical result (for a
	// service, the items made canonical by a quorum), that disagreed, and
	// that were believed on one worker's word; items that never reached a
	// quorum; canary answers right and wrong.
	ResultsValidated   uint64
	ResultsDisagreed   uint64
	ResultsUnvalidated uint64
	ItemsInconclusive  uint64
	CanariesPassed     uint64
	CanariesFailed     uint64
}

// KeyCount is one entry of a count kept by key (a verdict, a reason).
// Lists of them are sorted by key.
type KeyCount struct {
	Key   string
	Count uint64
}

// Worker is a worker id bound to the hash of its secret.
type Worker struct {
	ID         string
	SecretHash []byte
	CreatedAt  int64
}

// Registration is a worker's membership in one service.
type Registration struct {
	Service      uint32
	Worker       string
	Name         string
	State        rationv1.WorkerState
	Reason       string
	Blocked      bool
	RegisteredAt int64
	LastSeen     int64
	ChangedAt    int64
	Counters     Counters
	// Held counts the buckets (leased or dead) the worker holds in the service.
	Held uint32
	// TrustRun counts its results in a row that agreed with the canonical
	// ones (or a canary's answer); the first that does not resets it.
	TrustRun uint64
	// idleAt is when the registration turns idle (LastSeen + worker_inactive_after).
	idleAt int64
}

// Active reports whether the worker may acquire and submit.
func (r *Registration) Active() bool { return r.State == rationv1.WorkerState_WORKER_STATE_ACTIVE }

// parked reports whether the item is in no bucket: quarantined or
// inconclusive.
func (it *Item) parked() bool { return it.Quarantined || it.Inconclusive }

// parkedState is the state of an item in no bucket.
func (it *Item) parkedState() rationv1.ItemState {
	if it.Inconclusive {
		return inconclusive
	}
	return quarantined
}

// Item is one unit of work. Its state follows from its bucket's state unless
// it is quarantined; State on a read view computes it.
type Item struct {
	// Fields are ordered so that the struct packs into 48 bytes.
	ID          string
	Bucket      uint64
	Since       int64
	Service     uint32
	Priority    int32
	Attempts    uint32
	Quarantined bool
	// Inconclusive: its workers never reached a quorum (Bucket is 0).
	Inconclusive bool
}

// Bucket is a group of items leased as a whole.
type Bucket struct {
	ID         uint64
	Service    uint32
	State      rationv1.BucketState
	Priority   int32
	ReadySince int64
	Items      []string
	Holder     string
	Epoch      uint64
	LeasedAt   int64
	Deadline   int64
	DeadAt     int64
	ReleaseAt  int64
	ClosedAt   int64
	// ResultSeq is the result batch that closed a done bucket; 0 once it
	// was trimmed (the bucket stays, for its items' done_retention).
	ResultSeq uint64
	// Packed are the ids of the items a trimmed done bucket remembers
	// (see remember.go); Items then holds only its other done ids.
	Packed []uint64
	// Votes are the results of the workers who processed its items so far
	// without a quorum (validation); none of them may lease it again.
	Votes []Vote
	// Canaries are mixed into its current lease (validation).
	Canaries []CanaryAt
}

// awaitingQuorum reports whether the bucket's items hold votes and wait
// for more.
func (b *Bucket) awaitingQuorum() bool { return len(b.Votes) > 0 && b.State != done }

// Vote is one worker's results for a bucket's items under validation.
type Vote struct {
	Worker string
	At     int64

	n       int
	encoded string // see results.go
}

// Canary is an item with a known answer.
type Canary struct {
	ID, Verdict, Payload string
}

// CanaryAt is a canary shown to a lease's holder at a position of its items.
type CanaryAt struct {
	ID       string
	Position uint32
}

// Held reports whether a worker holds the bucket (leased or dead).
func (b *Bucket) Held() bool {
	return b.State == rationv1.BucketState_BUCKET_STATE_LEASED || b.State == rationv1.BucketState_BUCKET_STATE_DEAD
}

// ResultBatch is the results of one accepted submit. A revert reverts a
// whole batch (it takes every batch of a worker since a time).
type ResultBatch struct {
	Seq        uint64
	Service    uint32
	Worker     string
	Bucket     uint64
	Epoch      uint64
	At         int64
	RevertedAt int64
	// Validated: a quorum of distinct workers agreed on these results,
	// judged from Votes.
	Validated bool
	Votes     []Vote

	n       int
	encoded string // see results.go
}

// Result is a worker's answer for one item.
type Result struct {
	Item       string
	Verdict    string
	Payload    string
	RevertedAt int64
}

// Activity is one record of the activity log.
type Activity struct {
	Seq       uint64
	Index     uint64
	At        int64
	Actor     string
	Service   string
	Worker    string
	Action    string
	Bucket    uint64
	Reason    string
	Message   string
	Count     uint64
	RequestID string
}

// NodeAddress is a cluster member's entry in the address book: where its
// API listens, so that any node can forward to it.
type NodeAddress struct {
	ID         string
	APIAddress string
}

// request remembers a command's answer under its request id. The answer
// is kept encoded: its size is what the tick's request_max_bytes counts,
// and it holds on to nothing else in the state (an Acquire's answer would
// otherwise keep its buckets' item lists alive after they are forgotten).
type request struct {
	Key      string
	BodyHash []byte
	At       int64
	Index    uint64
	Answer   []byte // a CommandResult, encoded deterministically
}

// Actions recorded in the activity log.
const (
	ActCreateService     = "create-service"
	ActUpdateService     = "update-service"
	ActRevokeService     = "revoke-service"
	ActReinstateService  = "reinstate-service"
	ActDeleteService     = "delete-service"
	ActRegister          = "register"
	ActUnregister        = "unregister"
	ActDeactivate        = "deactivate-worker"
	ActReactivate        = "reactivate-worker"
	ActRevert            = "revert-worker"
	ActAddItems          = "add-items"
	ActAcquire           = "acquire"
	ActHeartbeat         = "heartbeat"
	ActSubmit            = "submit"
	ActRelease           = "release"
	ActLeaseExpired      = "lease-expired"
	ActDeadReleased      = "dead-released"
	ActIdle              = "worker-idle"
	ActSetNode           = "set-node"
	ActRemoveNode        = "remove-node"
	ActAckResults        = "ack-results"
	ActResultsTrimmed    = "results-trimmed"
	ActItemsForgotten    = "items-forgotten"
	ActItemsRefreshed    = "items-refreshed"
	ActAddCanaries       = "add-canaries"
	ActCanaryFailed      = "canary-failed"
	ActItemsInconclusive = "items-inconclusive"
	ActSetClusterVersion = "set-cluster-version"
	// ActTick names a refused Tick; an applied one records each transition
	// under its own action (lease-expired, dead-released, worker-idle).
	ActTick = "tick"
)

// countKey adds one to key's count in vs, which the caller owns.
func countKey(vs []KeyCount, key string) []KeyCount {
	for i := range vs {
		if vs[i].Key == key {
			vs[i].Count++
			return vs
		}
	}
	return addCount(vs, key, 1)
}

// addCount returns a copy of vs with n added to key's count.
func addCount(vs []KeyCount, key string, n uint64) []KeyCount {
	out := make([]KeyCount, 0, len(vs)+1)
	done := false
	for _, v := range vs {
		if !done && v.Key == key {
			v.Count += n
			done = true
		} else if !done && v.Key > key {
			out = append(out, KeyCount{key, n})
			done = true
		}
		out = append(out, v)
	}
	if !done {
		out = append(out, KeyCount{key, n})
	}
	return out
}
