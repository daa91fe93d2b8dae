package chaos

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/rationhq/ration/api/client"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/api/ration/v1/rationv1connect"
)

// How long a client-visible write may wait past the election of a new
// leader, after the nemeses that take the leader away.
const waitBound = 2 * time.Second

// waitKinds are the nemeses whose writes are held to waitBound (a
// partition only when it isolated the leader).
var waitKinds = []string{"kill-leader", "stop-leader", "partition"}

// directClient is the first client id of the direct writers.
const directClient = 100

// election is the first sighting of a node leading in a term higher than
// any seen leading before.
type election struct {
	At   int64  `json:"at"`
	Term uint64 `json:"term"`
	Node string `json:"node"`
}

func (r *recorder) elect(e election) {
	r.mu.Lock()
	r.elections = append(r.elections, e)
	r.mu.Unlock()
}

// directWriter adds fresh items through node p alone, as curl would: one
// attempt, with no retry and no timeout but a generous bound that keeps the
// test from hanging, every other write without a request id. Its writes
// are recorded with the node they went to. It writes to the services
// without validation (the owner feeds the validated one, at its pace).
func (l *load) directWriter(ctx context.Context, id int, p *proc) {
	owner := rationv1connect.NewOwnerServiceClient(&http.Client{}, "http://"+p.api)
	plain := slices.DeleteFunc(slices.Clone(l.services), func(s string) bool { return s == validatedService })
	for n := 0; ctx.Err() == nil; n++ {
		svc := plain[n%len(plain)]
		req := &rationv1.AddItemsRequest{Service: svc, Items: l.freshItems(5)}
		if n%2 == 0 {
			req.RequestId = client.NewRequestID()
		}
		o := op{Client: id, Kind: "add", Service: svc, Items: req.Items, Node: p.id, Call: l.rec.now()}
		// Not ctx: a write in flight when the run ends is waited for.
		cctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		_, err := owner.AddItems(cctx, connect.NewRequest(req))
		cancel()
		o.Return, o.Outcome = l.rec.now(), outcome(err)
		l.rec.add(o)
		sleep(ctx, 150*time.Millisecond)
	}
}

// watchElections polls every running node's status until ctx ends and
// records each node it sees leading in a term higher than any seen leading
// before, at the time the answer arrived (so an election is never dated
// earlier than it happened).
func watchElections(ctx context.Context, c *testCluster, rec *recorder) {
	var mu sync.Mutex
	var top uint64
	var wg sync.WaitGroup
	for _, p := range c.procs {
		wg.Go(func() {
			cl := p.clusterClient()
			for ctx.Err() == nil {
				if p.running() {
					pctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
					res, err := cl.Status(pctx, connect.NewRequest(&rationv1.StatusRequest{}))
					cancel()
					at := rec.now()
					if err == nil && res.Msg.State == "Leader" {
						mu.Lock()
						if res.Msg.Term > top {
							top = res.Msg.Term
							rec.elect(election{At: at, Term: res.Msg.Term, Node: p.id})
						}
						mu.Unlock()
					}
				}
				sleep(ctx, 25*time.Millisecond)
			}
		})
	}
	wg.Wait()
}

// leaderLoss is one nemesis event that took the leader away, with the
// first election another node won after it (before the next event).
type leaderLoss struct {
	e       event
	next    int64 // when the next event began
	elected election
	checked int           // writes held to it
	longest time.Duration // their longest wait past the election
}

// waitStats are the figures of one nemesis kind.
type waitStats struct {
	events, unelected int
	waits             []time.Duration // of every write checked
	worst             op              // the write that waited longest
	worstLoss         *leaderLoss
	worstWait         time.Duration
	excluded          int
	afterCont         time.Duration // longest wait of an excluded write past SIGCONT
}

// leaderLosses finds the events of waitKinds that took the leader away and
// the election that ended each; notes names those with no election seen.
func leaderLosses(events []event, els []election, stats map[string]*waitStats) (losses []*leaderLoss, notes []string) {
	for i, e := range events {
		st := stats[e.Kind]
		if st == nil || !e.Leader {
			continue
		}
		st.events++
		next := int64(math.MaxInt64)
		if i+1 < len(events) {
			next = events[i+1].At
		}
		j := slices.IndexFunc(els, func(x election) bool { return x.At > e.At && x.At < next && x.Node != e.Node })
		if j < 0 {
			st.unelected++
			notes = append(notes, fmt.Sprintf("%s of %s at %s: no other node was seen elected before the next event", e.Kind, e.Node, ms(e.At)))
			continue
		}
		losses = append(losses, &leaderLoss{e: e, next: next, elected: els[j]})
	}
	return losses, notes
}

// stoppedTarget returns the stop-leader event, if any, during which a
// direct write sent to the stopped node itself was in flight.
func stoppedTarget(o op, events []event) (event, bool) {
	for _, e := range events {
		if e.Kind == "stop-leader" && o.Node != "" && o.Node == e.Node && o.Call < e.End && o.Return > e.At {
			return e, true
		}
	}
	return event{}, false
}

// checkWaits holds every write to waitBound past the election that ended
// the latest leader loss before it returned, if the write was invoked
// before the next event: wait = return - max(call, election). A direct
// write to a stopped node is excluded from that (the process cannot
// answer), but is held to waitBound past SIGCONT. It returns the figures by
// kind and by event, and the violations; a check that covered nothing is
// one.
func checkWaits(ops []op, events []event, els []election) (waitReport, []string) {
	events = slices.Clone(events)
	sort.Slice(events, func(i, j int) bool { return events[i].At < events[j].At })
	els = slices.Clone(els)
	sort.Slice(els, func(i, j int) bool { return els[i].At < els[j].At })
	stats := map[string]*waitStats{}
	for _, k := range waitKinds {
		stats[k] = &waitStats{}
	}
	losses, notes := leaderLosses(events, els, stats)
	var problems []string
	for _, o := range ops {
		if s, ok := stoppedTarget(o, events); ok {
			st := stats[s.Kind]
			st.excluded++
			w := time.Duration(o.Return - max(o.Call, s.End))
			st.afterCont = max(st.afterCont, w)
			if w > waitBound {
				problems = append(problems, fmt.Sprintf("%s waited %s past SIGCONT of %s (stopped %s-%s)",
					describe(o), w.Round(time.Millisecond), s.Node, ms(s.At), ms(s.End)))
			}
			continue
		}
		k := -1
		for i, l := range losses {
			if l.elected.At < o.Return {
				k = i
			}
		}
		if k < 0 || o.Call >= losses[k].next {
			continue
		}
		l := losses[k]
		st := stats[l.e.Kind]
		w := time.Duration(o.Return - max(o.Call, l.elected.At))
		st.waits = append(st.waits, w)
		l.checked++
		l.longest = max(l.longest, w)
		if w >= st.worstWait {
			st.worst, st.worstLoss, st.worstWait = o, l, w
		}
		if w > waitBound {
			problems = append(problems, fmt.Sprintf("%s waited %s past the election after %s", describe(o), w.Round(time.Millisecond), l))
		}
	}
	problems = append(problems, vacuous(losses, stats)...)
	return waitReport{stats, losses, notes}, problems
}

// waitReport is what the wait check found, to log.
type waitReport struct {
	stats  map[string]*waitStats
	losses []*leaderLoss
	notes  []string
}

// minLeaderLosses is how many events that took the leader away a run needs
// for a wait check that covered nothing to count as a violation; a run
// with fewer (a short run, or one whose nemeses drew mostly other kinds)
// only says so in the log.
const minLeaderLosses = 3

// vacuous says why the wait check covered nothing, if it did not.
func vacuous(losses []*leaderLoss, stats map[string]*waitStats) []string {
	checked, events := 0, 0
	for _, st := range stats {
		checked += len(st.waits)
		events += st.events
	}
	switch {
	case len(losses) > 0 && checked == 0:
		return []string{"wait check: no write was checked"}
	case len(losses) == 0 && events >= minLeaderLosses:
		return []string{fmt.Sprintf("wait check: no election was seen after any of the %d events that took the leader away", events)}
	}
	return nil // too few events to hold the run to: logWaits says so
}

func (l *leaderLoss) String() string {
	return fmt.Sprintf("%s of %s at %s (%s won term %d at %s)", l.e.Kind, l.e.Node, ms(l.e.At), l.elected.Node, l.elected.Term, ms(l.elected.At))
}

func describe(o op) string {
	to := ""
	if o.Node != "" {
		to = " sent to " + o.Node
	}
	return fmt.Sprintf("%s by client %d%s (called %s, returned %s, %s)", o.Kind, o.Client, to, ms(o.Call), ms(o.Return), o.Outcome)
}

// ms formats a recorder time.
func ms(t int64) string { return time.Duration(t).Round(time.Millisecond).String() }

// logWaits reports the wait check's figures by nemesis kind, then by event.
func logWaits(t *testing.T, r waitReport) {
	total := 0
	for _, st := range r.stats {
		total += st.events
	}
	if total < minLeaderLosses {
		t.Logf("wait check: %d events took the leader away, fewer than the %d it needs to fail a run that checked nothing", total, minLeaderLosses)
	}
	for _, k := range waitKinds {
		st := r.stats[k]
		if st.events == 0 {
			continue
		}
		line := fmt.Sprintf("writes past the election after %s: %d events (%d without an election seen), %d writes checked",
			k, st.events, st.unelected, len(st.waits))
		if len(st.waits) > 0 {
			w := slices.Sorted(slices.Values(st.waits))
			var per []time.Duration
			for _, l := range r.losses {
				if l.e.Kind == k {
					per = append(per, l.longest)
				}
			}
			slices.Sort(per)
			line += fmt.Sprintf(", median %s, longest %s: %s after %s; per event longest: median %s",
				w[len(w)/2].Round(time.Millisecond), st.worstWait.Round(time.Millisecond), describe(st.worst), st.worstLoss,
				per[len(per)/2].Round(time.Millisecond))
		}
		if k == "stop-leader" {
			line += fmt.Sprintf("; %d direct writes to the stopped node excluded (longest past SIGCONT %s)", st.excluded, st.afterCont.Round(time.Millisecond))
		}
		t.Logf("%s", line)
	}
	for _, l := range r.losses {
		t.Logf("wait check: %s, lasting %s: %d writes checked, longest wait past the election %s",
			l, time.Duration(l.e.End-l.e.At).Round(time.Millisecond), l.checked, l.longest.Round(time.Millisecond))
	}
	for _, n := range r.notes {
		t.Logf("wait check: %s", n)
	}
}
