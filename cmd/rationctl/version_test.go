package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/rationhq/ration/server/servertest"
)

// version prints this build's release and formats, and the cluster's version
// and members' builds from a node; --local needs no node.
func TestVersion_BuildAndCluster(t *testing.T) {
	local := mustRun(t, map[string]string{envAddr: deadAddr(t)}, "", "version", "--local")
	for _, want := range []string{"release:", "protocol:  applies log protocol 1 to 2", "snapshots: reads formats 1 to 3, writes 3"} {
		if !strings.Contains(local, want) {
			t.Errorf("version --local printed %q, missing %q", local, want)
		}
	}
	c := servertest.StartWith(t, 1, servertest.Options{InMemory: true})
	env := map[string]string{envAddr: c.Addrs[0]}
	out := mustRun(t, env, "", "version")
	if !strings.Contains(out, "cluster version 2 (the log protocol every member applies)") || !strings.Contains(out, "1-2") {
		t.Fatalf("version printed:\n%s", out)
	}
	var js struct {
		Build struct {
			Release     string `json:"release"`
			MaxProtocol int    `json:"max_protocol"`
		} `json:"build"`
		Cluster struct {
			ClusterVersion int `json:"cluster_version"`
		} `json:"cluster"`
	}
	if err := json.Unmarshal([]byte(mustRun(t, env, "", "version", "-o", "json")), &js); err != nil {
		t.Fatal(err)
	}
	if js.Build.Release == "" || js.Build.MaxProtocol != 2 || js.Cluster.ClusterVersion != 2 {
		t.Fatalf("version -o json: %+v", js)
	}
	status := mustRun(t, env, "", "cluster", "status")
	if !strings.Contains(status, "cluster version 2; this node runs") || !strings.Contains(status, "PROTOCOLS") {
		t.Fatalf("cluster status printed:\n%s", status)
	}
}
