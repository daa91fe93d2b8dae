package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rationhq/ration/api/client"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

// Lease timing the checks hold every run to. A lease may expire no
// earlier than its grant plus the lease ttl less the clock offset a
// trusted node may have (rationd's default --max-clock-offset), and no
// later than that plus expiryLateSlack: the failover grace after each new
// leader, elections and ticks in between.
const (
	chaosLeaseTTL   = 3 * time.Second
	maxClockOffset  = time.Second
	expiryLateSlack = 8 * time.Second
)

func TestChaos_Clocks(t *testing.T) {
	runChaos(t, 3, duration(t, 30*time.Second), []string{"clock-leader", "clock-follower", "clock-strobe", "kill-leader", "stop-leader"})
}

// setClock moves node p's wall clock by d (rationd's test-only clock file).
func (p *proc) setClock(d time.Duration) {
	if err := os.WriteFile(p.clockFile, []byte(d.String()), 0o644); err != nil {
		p.t.Errorf("set %s's clock: %v", p.id, err)
	}
}

// clockBumps are the steps the clock nemesis makes: within the offset
// limit (a trusted clock), minutes, and hours, both ways.
var clockBumps = []time.Duration{500 * time.Millisecond, -500 * time.Millisecond, 2 * time.Minute, -2 * time.Minute, 3 * time.Hour, -3 * time.Hour}

// clockNemesis runs one clock fault: a step of the leader's or a
// follower's wall clock for a while, or a strobe (a node's clock jumping
// between hours ahead and behind every 100ms). Every clock is set right
// after.
func clockNemesis(ctx context.Context, c *testCluster, r *rand.Rand, kind string, leader, follower int, pause time.Duration, e *event) {
	switch kind {
	case "clock-leader", "clock-follower":
		i := follower
		if kind == "clock-leader" {
			i, e.Leader = leader, true
		}
		d := clockBumps[r.IntN(len(clockBumps))]
		e.Node = fmt.Sprintf("%s %+v", c.procs[i].id, d)
		c.procs[i].setClock(d)
		sleep(ctx, pause+time.Second)
		c.procs[i].setClock(0)
	case "clock-strobe":
		i := r.IntN(len(c.procs))
		e.Node = c.procs[i].id
		for k := 0; k < 20 && ctx.Err() == nil; k++ {
			c.procs[i].setClock([]time.Duration{3 * time.Hour, -3 * time.Hour}[k%2])
			sleep(ctx, 100*time.Millisecond)
		}
		c.procs[i].setClock(0)
	}
}

// expiry is a lease-expired record (its bucket and the lease's epoch),
// when the harness received it.
type expiry struct {
	bucket, epoch uint64
	at            int64
}

// abandon is a lease a worker let run out.
type abandon struct {
	bucket, epoch uint64
	call, ret     int64 // the Acquire's call and return
}

// leaseLog collects lease expiries and abandoned leases.
type leaseLog struct {
	mu        sync.Mutex
	expiries  []expiry
	abandoned []abandon
}

func (g *leaseLog) abandon(a abandon) {
	g.mu.Lock()
	g.abandoned = append(g.abandoned, a)
	g.mu.Unlock()
}

// watchExpiries follows the activity log's lease-expired records from any
// node until ctx ends, resuming after the last one seen.
func (l *load) watchExpiries(ctx context.Context) {
	c, err := client.New(client.Config{Addrs: l.addrs, RetryFor: 5 * time.Second})
	if err != nil {
		panic(err)
	}
	var after uint64
	for ctx.Err() == nil {
		_ = c.WatchActivity(ctx, &rationv1.WatchActivityRequest{Action: "lease-expired", AfterSeq: after},
			func(res *rationv1.WatchActivityResponse) error {
				now := l.rec.now()
				l.leases.mu.Lock()
				for _, a := range res.Activity {
					if a.Seq > after {
						after = a.Seq
						var epoch uint64
						fmt.Sscanf(a.Message, "epoch %d", &epoch)
						l.leases.expiries = append(l.leases.expiries, expiry{bucket: a.BucketId, epoch: epoch, at: now})
					}
				}
				l.leases.mu.Unlock()
				return nil
			})
		sleep(ctx, 100*time.Millisecond)
	}
}

// expiryReport is what the expiry check found.
type expiryReport struct {
	checked, early, late int
	earliest, latest     time.Duration // least and most time from grant to expiry seen
}

// checkExpiries holds lease expiries to real time. Early: an expiry
// received before its grant's Acquire was even called plus the ttl less
// the offset limit (the grant came after the call; the expiry before its
// receipt). Late: an abandoned lease whose expiry arrived more than the ttl,
// the offset limit and expiryLateSlack after the Acquire returned, or not
// at all though the run went on that long.
func checkExpiries(g *leaseLog, ops []op, end int64) (expiryReport, []string) {
	var rep expiryReport
	rep.earliest = time.Duration(1<<62 - 1)
	var problems []string
	type lease struct{ bucket, epoch uint64 }
	grants := map[lease]op{} // the Acquire that granted each lease
	for _, o := range ops {
		if o.Kind == "acquire" && o.Outcome == outOK {
			for _, gr := range o.Grants {
				grants[lease{gr.Bucket, gr.Epoch}] = o
			}
		}
	}
	for _, e := range g.expiries {
		grant, ok := grants[lease{e.bucket, e.epoch}]
		if !ok {
			continue // granted by an Acquire whose outcome was unknown
		}
		rep.checked++
		d := time.Duration(e.at - grant.Call)
		rep.earliest = min(rep.earliest, d)
		if d < chaosLeaseTTL-maxClockOffset {
			rep.early++
			problems = append(problems, fmt.Sprintf("bucket %d's lease expired %s after the Acquire that granted it was called (ttl %s)",
				e.bucket, d.Round(time.Millisecond), chaosLeaseTTL))
		}
	}
	limit := chaosLeaseTTL + maxClockOffset + expiryLateSlack
	for _, a := range g.abandoned {
		k := slices.IndexFunc(g.expiries, func(e expiry) bool { return e.bucket == a.bucket && e.epoch == a.epoch })
		switch {
		case k < 0 && time.Duration(end-a.ret) > limit:
			rep.late++
			problems = append(problems, fmt.Sprintf("bucket %d's abandoned lease (epoch %d, granted by %s) never expired in the %s the run went on",
				a.bucket, a.epoch, ms(a.ret), time.Duration(end-a.ret).Round(time.Millisecond)))
		case k >= 0:
			d := time.Duration(g.expiries[k].at - a.ret)
			rep.latest = max(rep.latest, d)
			if d > limit {
				rep.late++
				problems = append(problems, fmt.Sprintf("bucket %d's abandoned lease (epoch %d) expired %s after it was granted (limit %s)",
					a.bucket, a.epoch, d.Round(time.Millisecond), limit))
			}
		}
	}
	return rep, problems
}

// logExpiries reports the expiry check's figures.
func logExpiries(t *testing.T, rep expiryReport, g *leaseLog) {
	if rep.checked == 0 {
		t.Logf("lease expiries: none matched to a known grant (%d seen, %d leases abandoned)", len(g.expiries), len(g.abandoned))
		return
	}
	t.Logf("lease expiries: %d matched to their grant by bucket and epoch, %d leases abandoned; earliest %s after the Acquire was called (bound %s), latest %s after it returned (bound %s); %d early, %d late",
		rep.checked, len(g.abandoned), rep.earliest.Round(time.Millisecond), chaosLeaseTTL-maxClockOffset,
		rep.latest.Round(time.Millisecond), chaosLeaseTTL+maxClockOffset+expiryLateSlack, rep.early, rep.late)
}
