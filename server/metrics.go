package server

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"

	gometrics "github.com/hashicorp/go-metrics/compat"
	gometricsprom "github.com/hashicorp/go-metrics/compat/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/fsm"
)

// Metrics served on /metrics, in three groups:
//
//   - raft_*: hashicorp/raft's and raft-boltdb's own telemetry (commit and
//     apply times, last contact, state transitions, replication), which they
//     emit through go-metrics' process-wide global; InstallRaftMetrics routes
//     it to a Prometheus sink. Timings are in milliseconds.
//   - ration_node_*: this node's view of Raft (indexes, term, leadership),
//     read from Store.Status at scrape time.
//   - ration_*: the domain, computed at scrape time from the node's local
//     state (possibly stale on a follower, never waiting for apply), by
//     service. Labels are bounded: service, state and verdict only, never an
//     item or a worker id.
//
// Config.Collectors adds others (rationd's ration_backup_*).

var (
	raftOnce      sync.Once
	raftCollector prometheus.Collector
	raftErr       error
)

// InstallRaftMetrics makes the process-wide go-metrics global (the one
// hashicorp/raft v1.7 writes to through go-metrics/compat, whichever of
// armon/go-metrics or hashicorp/go-metrics the build selects) a Prometheus
// sink, and returns that sink as a collector to register. Only the first
// call installs; later calls return the same collector. Every node in the
// process shares it, so a test running several nodes in one process sees
// their raft metrics mixed; a deployment runs one node per process.
//
// Raft emits from the moment it starts: call this before cluster.New to
// count the first election as well. Server.MetricsHandler calls it too.
func InstallRaftMetrics() (prometheus.Collector, error) {
	raftOnce.Do(func() {
		sink, err := gometricsprom.NewPrometheusSinkFrom(gometricsprom.PrometheusOpts{
			// Never expire: raft's names are a fixed set (plus one label per
			// peer), and a counter that vanishes between rare events, such
			// as leader changes, breaks rate().
			Expiration: 0,
			Name:       "ration_raft_sink",
			// The sink registers itself; a private registry keeps it off
			// the default one. Each Server's registry registers it again.
			Registerer: prometheus.NewRegistry(),
		})
		if err != nil {
			raftErr = fmt.Errorf("prometheus sink for raft metrics: %w", err)
			return
		}
		cfg := gometrics.DefaultConfig("")
		cfg.EnableHostname = false       // no hostname prefix in the names
		cfg.EnableRuntimeMetrics = false // the Go collector covers the runtime
		// Raft also emits its per-peer timings under names that end in the
		// peer's id (raft_replication_heartbeat_n2), duplicating the same
		// names with a peer_id label; keep only the labelled ones.
		cfg.BlockedPrefixes = []string{"raft.replication.heartbeat.", "raft.replication.appendEntries.rpc.",
			"raft.replication.appendEntries.logs.", "raft.replication.installSnapshot."}
		if _, err := gometrics.NewGlobal(cfg, sink); err != nil {
			raftErr = fmt.Errorf("install raft metrics sink: %w", err)
			return
		}
		raftCollector = sink
	})
	return raftCollector, raftErr
}

// MetricsHandler returns the Prometheus handler for /metrics: a registry of
// its own (so any number of Servers live in one process) holding the Go and
// process collectors, raft's metrics and this node's.
func (s *Server) MetricsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	cs := []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newNodeCollector(s.store, &s.refused),
	}
	cs = append(cs, s.cfg.Collectors...)
	if rc, err := InstallRaftMetrics(); err != nil {
		s.log.Warn("raft metrics unavailable", "error", err)
	} else {
		cs = append(cs, rc)
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			var dup prometheus.AlreadyRegisteredError
			if !errors.As(err, &dup) {
				s.log.Warn("cannot register metrics collector", "error", err)
			}
		}
	}
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		// A bad family (say, raft emitting one name with two label sets)
		// must not hide every other metric.
		ErrorHandling:       promhttp.ContinueOnError,
		ErrorLog:            promLogger{s},
		MaxRequestsInFlight: 4,
		Registry:            reg,
	})
}

type promLogger struct{ s *Server }

func (l promLogger) Println(v ...any) {
	l.s.log.Warn("metrics scrape error", "error", fmt.Sprint(v...))
}

// nodeCollector computes the ration_node_* and domain metrics at scrape
// time. It reads the latest published state (immutable, lock-free), so a
// scrape never blocks apply and apply never blocks a scrape.
type nodeCollector struct {
	store   Store
	refused *refusals // this node's edge refusals, added to the rejected counters

	appliedIndex, commitIndex, term, isLeader, leaderKnown, contactAge, members *prometheus.Desc
	logEntries, logBytes, trailingLogs, clockOffset                             *prometheus.Desc
	nodeInfo, clusterVersion                                                    *prometheus.Desc

	services, items, buckets, workers *prometheus.Desc
	unacked, unackedBytes             *prometheus.Desc
	awaitingQuorum                    *prometheus.Desc
	counters                          []counterDesc
	resultsAccepted                   *prometheus.Desc
	rejectedByReason                  *prometheus.Desc
}

// counterDesc is one cumulative per-service counter of fsm.Counters.
type counterDesc struct {
	desc  *prometheus.Desc
	value func(*fsm.Counters) uint64
}

func newNodeCollector(store Store, refused *refusals) *nodeCollector {
	node := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("ration_node_"+name, help, nil, nil)
	}
	svc := []string{"service"}
	counter := func(name, help string, value func(*fsm.Counters) uint64) counterDesc {
		return counterDesc{prometheus.NewDesc("ration_"+name+"_total", help, svc, nil), value}
	}
	return &nodeCollector{
		store:        store,
		refused:      refused,
		appliedIndex: node("applied_index", "Raft index of the last entry this node's state machine applied."),
		commitIndex:  node("commit_index", "Raft commit index as this node knows it."),
		term:         node("term", "This node's current Raft term."),
		isLeader:     node("is_leader", "1 if this node is the Raft leader, else 0."),
		leaderKnown:  node("leader_known", "1 if this node knows a leader, else 0."),
		contactAge:   node("leader_contact_age_seconds", "Seconds since this node last heard from the leader (0 on the leader; absent while it knows no leader)."),
		members:      node("members", "Servers in the Raft configuration as this node sees it."),
		logEntries:   node("log_entries", "Entries this node's Raft log holds (snapshots compact it)."),
		logBytes:     node("log_bytes_since_snapshot", "Bytes this node wrote to its Raft log since its newest snapshot; at --snapshot-log-bytes (or that snapshot's size, if larger) it snapshots."),
		trailingLogs: node("trailing_logs", "Log entries a snapshot leaves behind now: --trailing-logs, or fewer to stay within --trailing-log-bytes."),
		clockOffset:  node("clock_offset_seconds", "This node's wall clock minus the majority's, as last measured (absent until measured, or when older than 10s); beyond --max-clock-offset the node is not ready and will not lead."),

		nodeInfo: prometheus.NewDesc("ration_node_info", "1, labelled with this node's build: its release (version), commit and the log protocols it applies.",
			[]string{"version", "commit", "min_protocol", "max_protocol"}, nil),
		clusterVersion: prometheus.NewDesc("ration_cluster_version", "The cluster version: the log protocol every member applies, as this node's state says.", nil, nil),

		services: prometheus.NewDesc("ration_services", "Services by state.", []string{"state"}, nil),
		items:    prometheus.NewDesc("ration_items", "Items by service and state.", []string{"service", "state"}, nil),
		buckets:  prometheus.NewDesc("ration_buckets", "Buckets by service and state.", []string{"service", "state"}, nil),
		workers:  prometheus.NewDesc("ration_workers", "Registered workers by service and state (active, inactive).", []string{"service", "state"}, nil),
		unacked: prometheus.NewDesc("ration_results_unacked", "Results the service holds that its owner has not acknowledged (AckResults); at max_unacked_results, Acquire waits.",
			[]string{"service"}, nil),
		unackedBytes: prometheus.NewDesc("ration_results_unacked_bytes", "Bytes of those results (item, verdict and payload).", []string{"service"}, nil),
		awaitingQuorum: prometheus.NewDesc("ration_items_awaiting_quorum", "Pending or leased items that hold votes and wait for more (validation); they count in ration_items too.",
			[]string{"service"}, nil),
		counters: []counterDesc{
			counter("leases_granted", "Buckets leased.", func(c *fsm.Counters) uint64 { return c.LeasesGranted }),
			counter("leases_expired", "Leases whose deadline passed without a heartbeat (the bucket turned dead).", func(c *fsm.Counters) uint64 { return c.LeasesExpired }),
			counter("leases_released", "Leases given back with Release.", func(c *fsm.Counters) uint64 { return c.LeasesReleased }),
			counter("leases_ended", "Leases cut by revocation, deactivation or unregistration.", func(c *fsm.Counters) uint64 { return c.LeasesEnded }),
			counter("buckets_done", "Buckets closed by a submit.", func(c *fsm.Counters) uint64 { return c.BucketsDone }),
			counter("dead_released", "Dead buckets released back to the pool.", func(c *fsm.Counters) uint64 { return c.DeadReleased }),
			counter("results_trimmed", "Results trimmed after their retention.", func(c *fsm.Counters) uint64 { return c.ResultsTrimmed }),
			counter("results_dropped", "Results dropped without an acknowledgment (unacked_result_retention).", func(c *fsm.Counters) uint64 { return c.ResultsDropped }),
			counter("items_forgotten", "Done items forgotten after done_retention.", func(c *fsm.Counters) uint64 { return c.ItemsForgotten }),
			counter("items_refreshed", "Done items queued again after refresh_after.", func(c *fsm.Counters) uint64 { return c.ItemsRefreshed }),
			counter("late_submits", "Submits accepted after the lease deadline (before release).", func(c *fsm.Counters) uint64 { return c.LateSubmits }),
			counter("commands_rejected", "Commands on the service refused (wrong holder or epoch, invalid results, inactive worker...), submits among them: those the state machine refused, plus those this node refused before proposing them.", func(c *fsm.Counters) uint64 { return c.Rejected }),
			counter("heartbeats", "Lease extensions.", func(c *fsm.Counters) uint64 { return c.Heartbeats }),
			counter("items_added", "Items that became pending through AddItems.", func(c *fsm.Counters) uint64 { return c.ItemsAdded }),
			counter("items_requeued", "Items of submitted buckets left without a result.", func(c *fsm.Counters) uint64 { return c.ItemsRequeued }),
			counter("items_quarantined", "Items quarantined at max_attempts.", func(c *fsm.Counters) uint64 { return c.ItemsQuarantined }),
			counter("results_reverted", "Results marked reverted.", func(c *fsm.Counters) uint64 { return c.ResultsReverted }),
			counter("results_validated", "Items whose result a quorum of workers agreed on (validation): canonical results.", func(c *fsm.Counters) uint64 { return c.ResultsValidated }),
			counter("results_disagreed", "Workers' results that disagreed with the canonical one (validation).", func(c *fsm.Counters) uint64 { return c.ResultsDisagreed }),
			counter("results_unvalidated", "Items believed on one result under validation: a trusted worker's bucket spared replication.", func(c *fsm.Counters) uint64 { return c.ResultsUnvalidated }),
			counter("items_inconclusive", "Items that reached max_replicas without a quorum (validation).", func(c *fsm.Counters) uint64 { return c.ItemsInconclusive }),
			counter("canaries_passed", "Canary answers that agreed with the known answer.", func(c *fsm.Counters) uint64 { return c.CanariesPassed }),
			counter("canaries_failed", "Canary answers that did not.", func(c *fsm.Counters) uint64 { return c.CanariesFailed }),
		},
		resultsAccepted:  prometheus.NewDesc("ration_results_accepted_total", "Results stored, by verdict.", []string{"service", "verdict"}, nil),
		rejectedByReason: prometheus.NewDesc("ration_commands_rejected_by_reason_total", "Commands on the service refused, by machine-readable reason (e.g. LEASE_LOST, INVALID_RESULT): those the state machine refused (replicated: the same on every node), plus those this node refused before proposing them (its own, since it started).", []string{"service", "reason"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.appliedIndex, c.commitIndex, c.term, c.isLeader, c.leaderKnown, c.contactAge,
		c.members, c.logEntries, c.logBytes, c.trailingLogs, c.clockOffset, c.nodeInfo, c.clusterVersion, c.services, c.items, c.buckets, c.workers, c.unacked, c.unackedBytes, c.awaitingQuorum, c.resultsAccepted, c.rejectedByReason} {
		ch <- d
	}
	for _, cd := range c.counters {
		ch <- cd.desc
	}
}

var (
	itemStates = []rationv1.ItemState{rationv1.ItemState_ITEM_STATE_PENDING, rationv1.ItemState_ITEM_STATE_LEASED,
		rationv1.ItemState_ITEM_STATE_DONE, rationv1.ItemState_ITEM_STATE_QUARANTINED, rationv1.ItemState_ITEM_STATE_INCONCLUSIVE}
	bucketStates = []rationv1.BucketState{rationv1.BucketState_BUCKET_STATE_UNASSIGNED, rationv1.BucketState_BUCKET_STATE_LEASED,
		rationv1.BucketState_BUCKET_STATE_DEAD, rationv1.BucketState_BUCKET_STATE_DONE}
)

// Label values for states: the enum name without its prefix, lower case.
var (
	itemStateLabel    = map[rationv1.ItemState]string{1: "pending", 2: "leased", 3: "done", 4: "quarantined", 5: "inconclusive"}
	bucketStateLabel  = map[rationv1.BucketState]string{1: "unassigned", 2: "leased", 3: "dead", 4: "done"}
	serviceStateLabel = map[rationv1.ServiceState]string{1: "active", 2: "revoked"}
)

// collectLog reports this node's Raft log and clock.
func (c *nodeCollector) collectLog(gauge func(*prometheus.Desc, float64, ...string)) {
	log := c.store.LogSize()
	if log.Last >= log.First && log.First > 0 {
		gauge(c.logEntries, float64(log.Last-log.First+1))
	} else {
		gauge(c.logEntries, 0)
	}
	gauge(c.logBytes, float64(log.BytesSinceSnapshot))
	gauge(c.trailingLogs, float64(log.TrailingLogs))
	if o := c.store.ClockOffset(); o.Fresh() {
		gauge(c.clockOffset, o.Offset.Seconds())
	}
}

// Collect implements prometheus.Collector.
func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}

	st := c.store.Status()
	gauge(c.appliedIndex, float64(st.AppliedIndex))
	gauge(c.commitIndex, float64(st.CommitIndex))
	gauge(c.term, float64(st.Term))
	gauge(c.isLeader, b2f(c.store.IsLeader()))
	gauge(c.leaderKnown, b2f(st.LeaderID != ""))
	if st.LeaderContactAge >= 0 {
		gauge(c.contactAge, st.LeaderContactAge.Seconds())
	}
	gauge(c.members, float64(len(st.Members)))
	own := c.store.OwnVersion()
	gauge(c.nodeInfo, 1, own.Release, own.Commit, strconv.Itoa(int(own.MinProtocol)), strconv.Itoa(int(own.MaxProtocol)))
	gauge(c.clusterVersion, float64(st.ClusterVersion))
	c.collectLog(gauge)

	state := c.store.State()
	byState := map[string]float64{"active": 0, "revoked": 0}
	for _, svc := range state.Services() {
		name := svc.Name
		if l, ok := serviceStateLabel[svc.State]; ok {
			byState[l]++
		}
		for _, s := range itemStates {
			gauge(c.items, float64(svc.Items[s]), name, itemStateLabel[s])
		}
		for _, s := range bucketStates {
			gauge(c.buckets, float64(svc.Buckets[s]), name, bucketStateLabel[s])
		}
		// A refusal is counted where it happened: by the state machine if
		// it was proposed, else by the node that refused it at the edge.
		edge := c.refused.of(name)
		counters := svc.Counters
		for _, n := range edge {
			counters.Rejected += n
		}
		for _, cd := range c.counters {
			ch <- prometheus.MustNewConstMetric(cd.desc, prometheus.CounterValue, float64(cd.value(&counters)), name)
		}
		for _, v := range svc.Counters.Verdicts {
			ch <- prometheus.MustNewConstMetric(c.resultsAccepted, prometheus.CounterValue, float64(v.Count), name, v.Key)
		}
		for _, r := range svc.Counters.RejectedBy {
			n := r.Count + edge[r.Key]
			delete(edge, r.Key)
			ch <- prometheus.MustNewConstMetric(c.rejectedByReason, prometheus.CounterValue, float64(n), name, r.Key)
		}
		for reason, n := range edge {
			ch <- prometheus.MustNewConstMetric(c.rejectedByReason, prometheus.CounterValue, float64(n), name, reason)
		}
		active, inactive := countWorkers(state, name)
		gauge(c.workers, float64(active), name, "active")
		gauge(c.unacked, float64(svc.UnackedResults), name)
		gauge(c.unackedBytes, float64(svc.UnackedBytes), name)
		gauge(c.awaitingQuorum, float64(state.AwaitingQuorum(svc)), name)
		gauge(c.workers, float64(inactive), name, "inactive")
	}
	for l, n := range byState {
		gauge(c.services, n, l)
	}
}

// countWorkers counts a service's registrations by state, a page at a time.
func countWorkers(st *fsm.State, service string) (active, inactive int) {
	const page = 1000
	after := ""
	for {
		regs := st.Registrations(service, after, page)
		for _, r := range regs {
			if r.Active() {
				active++
			} else {
				inactive++
			}
		}
		if len(regs) < page {
			return active, inactive
		}
		after = regs[len(regs)-1].Worker
	}
}
