package server_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// The dashboard is served at / by every node, needs no build step, and
// calls only RPCs the node serves.
func TestServer_Dashboard(t *testing.T) {
	c := newNode(t, "")
	resp, err := http.Get("http://" + c.addrs[0] + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, rpc := range []string{"ration.v1.ClusterService/Status", "ration.v1.OwnerService/ListServices",
		"ration.v1.InsightService/ListWorkers", "ration.v1.InsightService/ListActivity", "ration.v1.OwnerService/RevokeService",
		"ration.v1.OwnerService/DeactivateWorker", "ration.v1.OwnerService/RevertWorker"} {
		if !strings.Contains(string(body), rpc) {
			t.Errorf("the dashboard does not call %s", rpc)
		}
		// Every RPC the page calls answers JSON here.
		r, err := http.Post("http://"+c.addrs[0]+"/"+rpc, "application/json", strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode == http.StatusNotFound && r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s is not served", rpc)
		}
	}
	if r, _ := http.Get("http://" + c.addrs[0] + "/nope"); r.StatusCode != http.StatusNotFound {
		t.Errorf("GET /nope: %d", r.StatusCode)
	}
}
