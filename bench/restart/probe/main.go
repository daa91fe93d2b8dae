// Command probe polls ration nodes after a restart and prints when each milestone
// is first reached, in seconds since -start (unix ns).
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

type status struct {
	NodeID       string `json:"nodeId"`
	State        string `json:"state"`
	LeaderID     string `json:"leaderId"`
	Term         string `json:"term"`
	CommitIndex  string `json:"commitIndex"`
	AppliedIndex string `json:"appliedIndex"`
}

func u(s string) uint64 { v, _ := strconv.ParseUint(s, 10, 64); return v }
func z(s string) string {
	if s == "" {
		return "0"
	}
	return s
}

var (
	mu     sync.Mutex
	events = map[string]float64{}
	start  time.Time
	hc     = &http.Client{Timeout: 400 * time.Millisecond}
)

func mark(name string) {
	mu.Lock()
	defer mu.Unlock()
	if _, ok := events[name]; !ok {
		events[name] = time.Since(start).Seconds()
		fmt.Printf("%7.3f %s\n", events[name], name)
	}
}
func has(name string) bool { mu.Lock(); defer mu.Unlock(); _, ok := events[name]; return ok }

func getStatus(addr string) (*status, error) {
	resp, err := hc.Post("http://"+addr+"/ration.v1.ClusterService/Status", "application/json", strings.NewReader("{}"))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	var s status
	return &s, json.Unmarshal(b, &s)
}

func get(addr, path string) int {
	resp, err := hc.Get("http://" + addr + path)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func main() {
	addrsF := flag.String("addrs", "", "API addresses; node names n1.. in order")
	startF := flag.Int64("start", 0, "start time, unix ns")
	target := flag.Uint64("target", 0, "applied index each node must reach")
	watch := flag.String("watch", "", "comma-separated node numbers (1-based) to wait for; default all")
	write := flag.String("write", "", "service to AddItems one new item into, once a leader is known (empty: no write)")
	timeout := flag.Duration("timeout", 180*time.Second, "give up after")
	every := flag.Duration("every", 50*time.Millisecond, "poll interval")
	flag.Parse()
	start = time.Unix(0, *startF)
	if *startF == 0 {
		start = time.Now()
	}
	addrs := strings.Split(*addrsF, ",")
	watched := map[int]bool{}
	for _, w := range strings.Split(*watch, ",") {
		if w != "" {
			i, _ := strconv.Atoi(w)
			watched[i-1] = true
		}
	}
	if len(watched) == 0 {
		for i := range addrs {
			watched[i] = true
		}
	}
	deadline := time.Now().Add(*timeout)
	var wg sync.WaitGroup
	for i, a := range addrs {
		if watched[i] {
			wg.Go(func() { watchNode(fmt.Sprintf("n%d", i+1), a, *target, deadline, *every) })
		}
	}
	if *write != "" {
		wg.Go(func() { firstWrite(addrs, *write, deadline, *every) })
	}
	wg.Wait()
	out, _ := json.Marshal(events)
	fmt.Fprintf(os.Stderr, "%s\n", out)
}

// watchNode polls one node until it has applied target and says ready,
// marking each milestone the first time it is seen.
func watchNode(name, a string, target uint64, deadline time.Time, every time.Duration) {
	for time.Now().Before(deadline) {
		if get(a, "/livez") == 200 {
			mark(name + " livez")
		}
		if has(name + " livez") {
			if get(a, "/readyz") == 200 {
				mark(name + " readyz-200")
			}
			if s, err := getStatus(a); err == nil {
				markStatus(name, s, target)
			}
		}
		if has(fmt.Sprintf("%s applied>=target(%d)", name, target)) && has(name+" readyz-200") {
			return
		}
		time.Sleep(every)
	}
	mark(name + " TIMEOUT")
}

// markStatus marks what a node's status shows.
func markStatus(name string, s *status, target uint64) {
	if s.LeaderID != "" {
		mark(name + " knows-leader(" + s.LeaderID + ")")
	}
	if s.State == "Leader" {
		mark(name + " is-leader")
		mark("leader-elected")
	}
	if u(s.AppliedIndex) >= target {
		mark(fmt.Sprintf("%s applied>=target(%d)", name, target))
	}
	if has(name+" readyz-200") && !has(name+" readyz-lag") {
		mark(fmt.Sprintf("%s at-readyz-200: applied=%s commit=%s target=%d", name, z(s.AppliedIndex), z(s.CommitIndex), target))
		mark(name + " readyz-lag")
	}
}

// firstWrite adds one new item to service through any node, and marks when
// the first write is accepted.
func firstWrite(addrs []string, service string, deadline time.Time, every time.Duration) {
	id := strconv.FormatInt(9e18+time.Now().UnixNano()%1e17, 10)
	body := fmt.Sprintf(`{"service":%q,"items":[%q]}`, service, id)
	hc := &http.Client{Timeout: 2 * time.Second}
	for time.Now().Before(deadline) {
		for i, a := range addrs {
			resp, err := hc.Post("http://"+a+"/ration.v1.OwnerService/AddItems", "application/json", bytes.NewReader([]byte(body)))
			if err != nil {
				continue
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				mark(fmt.Sprintf("first-write-accepted (via n%d)", i+1))
				return
			}
		}
		time.Sleep(every)
	}
	mark("write TIMEOUT")
}
