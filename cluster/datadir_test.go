package cluster_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/cluster"
	"github.com/rationhq/ration/cluster/clustertest"
)

// stoppedNode runs a one-node cluster, writes to it (and snapshots it when
// asked), stops it, and returns its config for a restart.
func stoppedNode(t *testing.T, id string, snapshot bool) cluster.Config {
	t.Helper()
	cfg := clustertest.FastConfig(t, id)
	cfg.Bootstrap = true
	n, err := cluster.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	clustertest.WaitFor(t, 10*time.Second, func() error {
		if !n.IsLeader() {
			return errors.New("not leader yet")
		}
		return nil
	})
	setupService(t, n, &rationv1.ServiceConfig{BucketSize: 10})
	for i := range 20 {
		apply(t, n, &rationv1.AddItemsRequest{Service: "dm", Items: []string{fmt.Sprintf("i%d", i)}}, "")
	}
	if snapshot {
		_, rc, err := n.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		rc.Close()
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// startFails starts a node on cfg and returns the error it must fail with;
// the file at path must be byte for byte what it was.
func startFails(t *testing.T, cfg cluster.Config, path string) error {
	t.Helper()
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n, err := cluster.New(cfg)
	if err == nil {
		n.Close()
		t.Fatalf("node started on a data dir with a damaged %s", path)
	}
	after, rerr := os.ReadFile(path)
	if rerr != nil {
		t.Fatalf("%s after the failed start: %v", path, rerr)
	}
	if !bytes.Equal(before, after) {
		t.Fatalf("%s changed: %d bytes before, %d after", path, len(before), len(after))
	}
	if !strings.Contains(err.Error(), path) {
		t.Fatalf("error does not name %s: %v", path, err)
	}
	return err
}

func TestDataDir_RecordsIdentity(t *testing.T) {
	cfg := stoppedNode(t, "n1", false)
	fi, err := os.Stat(cfg.DataDir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("data dir mode %v, %v; want 0700", fi.Mode().Perm(), err)
	}
	var rec struct {
		NodeID    string `json:"node_id"`
		ClusterID string `json:"cluster_id"`
	}
	data, err := os.ReadFile(filepath.Join(cfg.DataDir, cluster.IdentityFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &rec); err != nil || rec.NodeID != "n1" || len(rec.ClusterID) != 32 {
		t.Fatalf("identity %s: %+v %v", data, rec, err)
	}
	n, err := cluster.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if n.ClusterID() != rec.ClusterID {
		t.Fatalf("restarted with cluster id %q, recorded %q", n.ClusterID(), rec.ClusterID)
	}
}

func TestDataDir_RefusesAnotherNodeID(t *testing.T) {
	cfg := stoppedNode(t, "n1", false)
	cfg.NodeID = "n2"
	file := filepath.Join(cfg.DataDir, cluster.IdentityFile)
	err := startFails(t, cfg, file)
	if !errors.Is(err, cluster.ErrOtherNode) || !strings.Contains(err.Error(), `"n1"`) || !strings.Contains(err.Error(), `"n2"`) {
		t.Fatalf("start as n2 on n1's dir: %v", err)
	}
	// Its own id still starts.
	cfg.NodeID = "n1"
	n, err := cluster.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	n.Close()
}

func TestDataDir_IdentityFile(t *testing.T) {
	t.Run("unreadable", func(t *testing.T) {
		cfg := stoppedNode(t, "n1", false)
		file := filepath.Join(cfg.DataDir, cluster.IdentityFile)
		if err := os.WriteFile(file, []byte("n1\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := startFails(t, cfg, file); !errors.Is(err, cluster.ErrCorrupt) {
			t.Fatal(err)
		}
	})
	// A data dir from before the identity file: the node records its id,
	// and the cluster id stays unknown until a peer tells it.
	t.Run("missing", func(t *testing.T) {
		cfg := stoppedNode(t, "n1", false)
		file := filepath.Join(cfg.DataDir, cluster.IdentityFile)
		if err := os.Remove(file); err != nil {
			t.Fatal(err)
		}
		n, err := cluster.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer n.Close()
		if n.ClusterID() != "" {
			t.Fatalf("made up cluster id %q for existing data", n.ClusterID())
		}
		if data, err := os.ReadFile(file); err != nil || !strings.Contains(string(data), `"n1"`) {
			t.Fatalf("identity file: %s %v", data, err)
		}
	})
}

func TestDataDir_NodeOfAnotherClusterCannotJoin(t *testing.T) {
	a := clustertest.New(t, 2, clustertest.Options{})
	b := clustertest.New(t, 1, clustertest.Options{})
	la, lb := a.Leader(), b.Leader()
	if la.ClusterID() == lb.ClusterID() || la.ClusterID() == "" {
		t.Fatalf("cluster ids %q and %q", la.ClusterID(), lb.ClusterID())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := la.Join(ctx, "n9", lb.RaftAddr(), "api-n9")
	if !errors.Is(err, cluster.ErrUnreachable) || !errors.Is(err, cluster.ErrOtherCluster) ||
		!strings.Contains(err.Error(), lb.ClusterID()) || !strings.Contains(err.Error(), la.ClusterID()) {
		t.Fatalf("join of another cluster's node: %v", err)
	}
	if got := memberIDs(la); got != "n1,n2" {
		t.Fatalf("members of a: %s", got)
	}
	if got := memberIDs(lb); got != "n1" {
		t.Fatalf("members of b: %s", got)
	}
	// Neither side adopted the other's id, on disk either.
	b.Kill(0)
	nb := b.Restart(0)
	if nb.ClusterID() == la.ClusterID() {
		t.Fatal("b's node took a's cluster id")
	}
}

func TestDataDir_CorruptRaftDBRefusesToStart(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func([]byte) []byte
		want string
	}{
		{"garbage", func(b []byte) []byte {
			for i := range b {
				b[i] = byte(i*7 + 3)
			}
			return b
		}, "not a BoltDB file"},
		// BoltDB grows its file ahead of its data; three pages keep both
		// meta pages and lose the data after them.
		{"truncated", func(b []byte) []byte { return b[:3*os.Getpagesize()] }, "truncated"},
		{"short", func(b []byte) []byte { return b[:100] }, "truncated"},
		{"empty", func(b []byte) []byte { return b[:0] }, "empty"},
		{"pages overwritten", func(b []byte) []byte {
			page := os.Getpagesize()
			for i := 2 * page; i < len(b); i++ {
				b[i] = 0xAB
			}
			return b
		}, "cannot be read"}, // BoltDB panics on these pages
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := stoppedNode(t, "n1", false)
			path := filepath.Join(cfg.DataDir, cluster.RaftDBFile)
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, tc.edit(data), 0o600); err != nil {
				t.Fatal(err)
			}
			err = startFails(t, cfg, path)
			if !errors.Is(err, cluster.ErrCorrupt) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%v; want %v saying %q", err, cluster.ErrCorrupt, tc.want)
			}
		})
	}
}

func TestDataDir_CorruptSnapshotRefusesToStart(t *testing.T) {
	snapDir := func(t *testing.T, cfg cluster.Config) string {
		t.Helper()
		dirs, err := filepath.Glob(filepath.Join(cfg.DataDir, cluster.SnapshotsDir, "*"))
		if err != nil || len(dirs) != 1 {
			t.Fatalf("snapshots: %v %v", dirs, err)
		}
		return dirs[0]
	}
	t.Run("state", func(t *testing.T) {
		cfg := stoppedNode(t, "n1", true)
		path := filepath.Join(snapDir(t, cfg), "state.bin")
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		data[len(data)/2] ^= 0xFF
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := startFails(t, cfg, path); !errors.Is(err, cluster.ErrCorrupt) || !strings.Contains(err.Error(), "checksum") {
			t.Fatal(err)
		}
	})
	t.Run("meta", func(t *testing.T) {
		cfg := stoppedNode(t, "n1", true)
		path := filepath.Join(snapDir(t, cfg), "meta.json")
		if err := os.WriteFile(path, []byte("{garbage"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := startFails(t, cfg, path); !errors.Is(err, cluster.ErrCorrupt) {
			t.Fatal(err)
		}
	})
	// A snapshot whose checksum is right but whose content the state
	// machine refuses (written by a newer version, say): Raft would fall
	// back to older state without a word.
	t.Run("undecodable", func(t *testing.T) {
		cfg := stoppedNode(t, "n1", true)
		dir := snapDir(t, cfg)
		state := []byte("not a ration snapshot")
		if err := os.WriteFile(filepath.Join(dir, "state.bin"), state, 0o600); err != nil {
			t.Fatal(err)
		}
		metaPath := filepath.Join(dir, "meta.json")
		var meta map[string]any
		data, err := os.ReadFile(metaPath)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(data, &meta); err != nil {
			t.Fatal(err)
		}
		h := crc64.New(crc64.MakeTable(crc64.ECMA))
		h.Write(state)
		meta["CRC"], meta["Size"] = h.Sum(nil), len(state)
		if data, err = json.Marshal(meta); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(metaPath, data, 0o600); err != nil {
			t.Fatal(err)
		}
		err = startFails(t, cfg, filepath.Join(dir, "state.bin"))
		if !errors.Is(err, cluster.ErrCorrupt) || !strings.Contains(err.Error(), "does not restore") {
			t.Fatal(err)
		}
	})
}

func TestDataDir_LockedByAnotherNode(t *testing.T) {
	cfg := stoppedNode(t, "n1", false)
	n, err := cluster.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	start := time.Now()
	second, err := cluster.New(cfg)
	took := time.Since(start)
	if err == nil {
		second.Close()
		t.Fatal("a second node started on a data dir in use")
	}
	if !strings.Contains(err.Error(), "locked") {
		t.Fatalf("second node: %v", err)
	}
	// BoltDB gives up within one retry (50ms) of the timeout.
	if took < cluster.DataDirLockTimeout-100*time.Millisecond || took > cluster.DataDirLockTimeout+5*time.Second {
		t.Fatalf("refused after %s, want %s", took, cluster.DataDirLockTimeout)
	}
}
