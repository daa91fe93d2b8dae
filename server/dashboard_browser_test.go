package server_test

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"connectrpc.com/connect"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
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
// worker submits, and saves a screenshot in the test's temp dir.
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
	// The page reads its own node's state (stale reads): let the follower catch up.
	caughtUp := func() { c.WaitApplied(c.Leader().State().Index()) }
	doneCell := regexp.MustCompile(`<td>dash</td><td>dmcheck</td><td><span class="badge">active</span></td>(?:<td class="num">\d+</td>){3}<td class="num">(\d+)</td>` +
		`(?:<td class="num">\d+</td>){4}<td class="num">(\d+) \((\d+ B)\)</td><td class="num">(\d+) / \d+</td>`)
	url := "http://" + follower + "/"

	submitOne()
	caughtUp()
	m := doneCell.FindStringSubmatch(browse(t, bin, url, ""))
	if m == nil || m[1] != "3" || m[2] != "3" || m[3] == "0 B" || m[4] != "0" {
		t.Fatalf("dashboard before: done, unacked, unacked bytes, acked through cells %v", m)
	}
	submitOne()
	caughtUp()
	m = doneCell.FindStringSubmatch(browse(t, bin, url, ""))
	if m == nil || m[1] != "6" {
		t.Fatalf("dashboard after a submit: done cell %v", m)
	}
	shot := filepath.Join(t.TempDir(), "dashboard.png")
	browse(t, bin, url, shot)
	if fi, err := os.Stat(shot); err != nil || fi.Size() < 10000 {
		t.Fatalf("screenshot: %v %v", fi, err)
	}
	t.Logf("screenshot saved to %s", shot)
}

func results(items []string) []*rationv1.ResultInput {
	out := make([]*rationv1.ResultInput, len(items))
	for i, it := range items {
		out[i] = &rationv1.ResultInput{Item: it, Verdict: "DM"}
	}
	return out
}
