package server_test

import (
	"context"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/api/ration/v1/rationv1connect"
)

// chromium returns the path of Debian's headless-capable Chromium. CI
// installs it (.ci/run); elsewhere the test is skipped without it.
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("Chromium is missing: .ci/run installs Debian's chromium package")
	}
	t.Skip("no Chromium here (apt-get install chromium)")
	return ""
}

// browse loads url in headless Chromium, lets its scripts run, and returns
// the resulting DOM; with shot set it also saves a screenshot.
func browse(t *testing.T, bin, url, shot string) string {
	t.Helper()
	args := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + t.TempDir(), "--window-size=1400,1000", "--virtual-time-budget=4000"}
	if shot != "" {
		args = append(args, "--screenshot="+shot)
	} else {
		args = append(args, "--dump-dom")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, append(args, url)...).Output()
	if err != nil {
		t.Fatalf("chromium: %v", err)
	}
	return string(out)
}

// TestServer_DashboardInChromium loads the dashboard of a live 3-node
// cluster in a real headless Chromium, sees the done count change after a
// worker submits, sees a validating service's numbers and its workers'
// trust, and saves a screenshot in the test's temp dir.
func TestServer_DashboardInChromium(t *testing.T) {
	bin := chromium(t)
	c := newTestCluster(t, 3, "")
	follower := c.addrOf(c.Followers()[0])
	cl := newClients(http.DefaultClient, follower, nil, "", workerSecret)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err := cl.owner.CreateService(ctx(t), connect.NewRequest(&rationv1.CreateServiceRequest{Name: "dash", Kind: "dmcheck",
		Config: &rationv1.ServiceConfig{BucketSize: 3}}))
	must(err)
	_, err = cl.owner.AddItems(ctx(t), connect.NewRequest(&rationv1.AddItemsRequest{Service: "dash", Items: []string{"1", "2", "3", "4", "5", "6"}}))
	must(err)
	_, err = cl.worker.Register(ctx(t), connect.NewRequest(&rationv1.RegisterRequest{Service: "dash", WorkerId: "w7"}))
	must(err)
	submitOne := func() {
		acq, err := cl.worker.Acquire(ctx(t), connect.NewRequest(&rationv1.AcquireRequest{Service: "dash", WorkerId: "w7"}))
		must(err)
		b := acq.Msg.Buckets[0]
		_, err = cl.worker.Submit(ctx(t), connect.NewRequest(&rationv1.SubmitRequest{WorkerId: "w7", BucketId: b.Id, Epoch: b.Lease.Epoch,
			Results: results(b.Items)}))
		must(err)
	}
	validate(t, cl.owner, follower)
	// The page reads its own node's state (stale reads): let the follower catch up.
	caughtUp := func() { c.WaitApplied(c.Leader().State().Index()) }
	doneCell := regexp.MustCompile(`<td>dash</td><td>dmcheck</td><td><span class="badge">active</span></td>(?:<td class="num">\d+</td>){2}<td class="num">(\d+)</td>` +
		`(?:<td class="num">\d+</td>){5}<td class="num">(\d+) \((\d+ B)\)</td><td class="num">(\d+) / \d+</td>`)
	url := "http://" + follower + "/"

	submitOne()
	caughtUp()
	m := doneCell.FindStringSubmatch(browse(t, bin, url, ""))
	if m == nil || m[1] != "3" || m[2] != "3" || m[3] == "0 B" || m[4] != "0" {
		t.Fatalf("dashboard before: done, unacked, unacked bytes, acked through cells %v", m)
	}
	submitOne()
	caughtUp()
	dom := browse(t, bin, url, "")
	m = doneCell.FindStringSubmatch(dom)
	if m == nil || m[1] != "6" {
		t.Fatalf("dashboard after a submit: done cell %v", m)
	}
	// canon: 2 items canonical, 2 awaiting a second vote, one canary
	// answered wrong; 6 results received for 2 settled. dash validates
	// nothing: its validation cells are empty.
	const numCell = `<td class="num">([^<]*)</td>`
	canonRow := regexp.MustCompile(`<td>canon</td>.*?<td class="num">\d+ / \d+</td>` + strings.Repeat(numCell, 4))
	if m := canonRow.FindStringSubmatch(dom); m == nil || strings.Join(m[1:], " ") != "2 0 1 +200%" {
		t.Errorf("dashboard: canon's awaiting quorum, inconclusive, canaries failed, overhead cells %q", m)
	}
	dashRow := regexp.MustCompile(`<td>dash</td>.*?<td class="num">\d+ / \d+</td>` + strings.Repeat(numCell, 4))
	if m := dashRow.FindStringSubmatch(dom); m == nil || strings.Join(m[1:], " ") != "– – – –" {
		t.Errorf("dashboard: dash's validation cells %q", m)
	}
	for worker, want := range map[string]string{"w8": "4 no 100.0%", "w9": "2 no 100.0%", "w7": "– – –"} {
		trust := regexp.MustCompile(`<td>` + worker + `</td><td>active</td>(?:<td class="num">\d+</td>){5}` + numCell + `<td(?: title="[^"]*")?>([^<]*)</td>` + numCell)
		if m := trust.FindStringSubmatch(dom); m == nil || strings.Join(m[1:], " ") != want {
			t.Errorf("dashboard: %s's trust cells %q, want %s", worker, m, want)
		}
	}
	if !strings.Contains(dom, `title="run 4; validation is not adaptive: every bucket is replicated">no</td>`) {
		t.Errorf("dashboard: w8's trusted cell does not say why")
	}
	// Each member's build, and the cluster version.
	member := regexp.MustCompile(`<td>n\d</td><td>Voter</td><td>[^<]*</td><td>[^<]*</td><td>([^<]*)</td><td>([^<]*)</td>`)
	ms := member.FindAllStringSubmatch(dom, -1)
	if len(ms) == 0 {
		t.Errorf("dashboard: no member rows with a release and protocols")
	}
	for _, m := range ms {
		if m[1] == "" || m[2] != "1-2" {
			t.Errorf("dashboard: member release %q, protocols %q; want a release and 1-2", m[1], m[2])
		}
	}
	if !strings.Contains(dom, "cluster version 2") {
		t.Errorf("dashboard: the cluster version is not shown")
	}
	checkAlignment(t, bin, follower)
	shot := filepath.Join(t.TempDir(), "dashboard.png")
	browse(t, bin, url, shot)
	if fi, err := os.Stat(shot); err != nil || fi.Size() < 10000 {
		t.Fatalf("screenshot: %v %v", fi, err)
	}
	t.Logf("screenshot saved to %s", shot)
}

// validate makes a service, canon, that validates (replicas 2, a canary in
// every lease) and has two workers vote: w8 on both buckets, w9 on one,
// answering its canary wrong.
func validate(t *testing.T, owner rationv1connect.OwnerServiceClient, addr string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err := owner.CreateService(ctx(t), connect.NewRequest(&rationv1.CreateServiceRequest{Name: "canon", Kind: "dmcheck",
		Config: &rationv1.ServiceConfig{BucketSize: 2, Validation: &rationv1.ValidationPolicy{Replicas: 2, CanaryRate: 500}}}))
	must(err)
	_, err = owner.AddCanaries(ctx(t), connect.NewRequest(&rationv1.AddCanariesRequest{Service: "canon",
		Canaries: []*rationv1.Canary{{Item: "known", Verdict: "DM"}}}))
	must(err)
	_, err = owner.AddItems(ctx(t), connect.NewRequest(&rationv1.AddItemsRequest{Service: "canon", Items: []string{"a", "b", "c", "d"}}))
	must(err)
	vote := func(worker string, buckets uint32, canary string) {
		wk := newClients(http.DefaultClient, addr, nil, "", workerSecret+"-"+worker).worker
		_, err := wk.Register(ctx(t), connect.NewRequest(&rationv1.RegisterRequest{Service: "canon", WorkerId: worker}))
		must(err)
		acq, err := wk.Acquire(ctx(t), connect.NewRequest(&rationv1.AcquireRequest{Service: "canon", WorkerId: worker, MaxBuckets: buckets}))
		must(err)
		if len(acq.Msg.Buckets) != int(buckets) {
			t.Fatalf("%s leased %d buckets, want %d", worker, len(acq.Msg.Buckets), buckets)
		}
		for _, b := range acq.Msg.Buckets {
			res := results(b.Items)
			for _, r := range res {
				if r.Item == "known" {
					r.Verdict = canary
				}
			}
			_, err = wk.Submit(ctx(t), connect.NewRequest(&rationv1.SubmitRequest{WorkerId: worker, BucketId: b.Id, Epoch: b.Lease.Epoch, Results: res}))
			must(err)
		}
	}
	vote("w8", 2, "DM")
	vote("w9", 1, "NON_DM")
}

func results(items []string) []*rationv1.ResultInput {
	out := make([]*rationv1.ResultInput, len(items))
	for i, it := range items {
		out[i] = &rationv1.ResultInput{Item: it, Verdict: "DM"}
	}
	return out
}

// alignPage loads the dashboard in a frame of the same origin and, once it
// has drawn its tables, writes one line per value cell of every row of the
// services and workers tables and of the activity table's first row: its
// header, its text, and whether the text lines up with the header's (left
// or right edge), as a reader's eye would check.
const alignPage = `<!doctype html><html><body>
<iframe id="f" src="/" style="width:1400px;height:1000px;border:0"></iframe><pre id="out">not measured</pre>
<script>
setTimeout(() => {
  const d = document.getElementById("f").contentDocument, lines = [];
  const text = el => { const r = d.createRange(); r.selectNodeContents(el); return r.getBoundingClientRect(); };
  for (const sel of ["#services", "#workers", "#activity table"]) {
    const t = d.querySelector(sel);
    const heads = [...t.tHead.querySelectorAll("th")].filter(h => !h.classList.contains("group") && h.textContent.trim());
    const rows = sel === "#activity table" ? [...t.tBodies[0].rows].slice(0, 1) : [...t.tBodies[0].rows];
    if (!rows.length) { lines.push(sel + " has no rows"); continue; }
    for (const row of rows) for (const td of row.cells) {
      if (!td.textContent.trim() || td.querySelector("button, span")) continue;
      const box = td.getBoundingClientRect(), mid = (box.left + box.right) / 2;
      const th = heads.find(h => { const b = h.getBoundingClientRect(); return b.left <= mid && mid <= b.right; });
      if (!th) { lines.push(sel + " ? " + td.textContent + " OFF (no header above)"); continue; }
      const a = text(th), v = text(td);
      const lined = Math.abs(a.left - v.left) < 3 || Math.abs(a.right - v.right) < 3;
      lines.push(sel + " " + th.textContent.trim() + " " + td.textContent.trim() + (lined ? " UNDER" : " OFF"));
    }
  }
  document.getElementById("out").textContent = lines.join("\n");
}, 3000);
</script></body></html>`

// checkAlignment checks that every value on the dashboard sits under its
// column's header: a right-aligned count under a left-aligned header reads
// as belonging to the next column.
func checkAlignment(t *testing.T, bin, node string) {
	t.Helper()
	target, _ := url.Parse("http://" + node)
	mux := http.NewServeMux()
	mux.Handle("/", httputil.NewSingleHostReverseProxy(target))
	mux.HandleFunc("/align.html", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, alignPage) })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	dom := browse(t, bin, srv.URL+"/align.html", "")
	m := regexp.MustCompile(`(?s)<pre id="out">(.*?)</pre>`).FindStringSubmatch(dom)
	if m == nil {
		t.Fatalf("no alignment report in the page")
	}
	lines := strings.Split(html.UnescapeString(m[1]), "\n")
	under := map[string]int{}
	for _, l := range lines {
		if !strings.HasSuffix(l, " UNDER") {
			t.Errorf("dashboard: %s", l)
			continue
		}
		under[strings.SplitN(l, " ", 2)[0]]++
	}
	// Each row has this many cells with a value to check: services and
	// workers in every row (2 services, 3 workers), activity in its first.
	for table, want := range map[string]int{"#services": 2 * 16, "#workers": 3 * 12, "#activity": 6} {
		if under[table] < want {
			t.Errorf("dashboard: %d cells of %s line up with their header, want %d: %q", under[table], table, want, lines)
		}
	}
}
