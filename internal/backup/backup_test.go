package backup

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	statev1 "github.com/rationhq/ration/api/ration/state/v1"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/cluster"
	"github.com/rationhq/ration/fsm"
)

// testState returns a state machine holding a service with a few items.
func testState(t *testing.T) *fsm.FSM {
	t.Helper()
	f := fsm.New(nil)
	at := time.Date(2026, 11, 30, 9, 15, 0, 0, time.UTC)
	for i, op := range []*statev1.Command{
		must(fsm.NewCommand(&rationv1.CreateServiceRequest{Name: "dm", Kind: "dmcheck", Config: &rationv1.ServiceConfig{BucketSize: 2}})),
		must(fsm.NewCommand(&rationv1.AddItemsRequest{Service: "dm", Items: []string{"1", "2", "3"}})),
	} {
		op.Header = &statev1.CommandHeader{ProposedAt: at.UnixNano(), Seed: uint64(i), Proposer: "test", Actor: "admin"}
		if res := f.ApplyCommand(uint64(i+1), op); res.GetError() != nil {
			t.Fatal(res.GetError())
		}
	}
	return f
}

func must(c *statev1.Command, ok bool) *statev1.Command {
	if !ok {
		panic("no command")
	}
	return c
}

func names(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func TestName(t *testing.T) {
	at := time.Date(2026, 11, 30, 10, 15, 0, 999, time.FixedZone("CET", 3600))
	if got, want := Name(at, 123456), "ration-20261130T091500Z-i123456.snap"; got != want {
		t.Fatalf("Name = %q, want %q", got, want)
	}
	tm, idx, ok := ParseName("ration-20261130T091500Z-i123456.snap")
	if !ok || idx != 123456 || !tm.Equal(time.Date(2026, 11, 30, 9, 15, 0, 0, time.UTC)) {
		t.Fatalf("ParseName = %v %d %v", tm, idx, ok)
	}
	for _, n := range []string{
		"ration-20261130T091500Z-i123456.snap.tmp", ".ration-backup-n1-123.tmp", "ration-20261130T091500Z-i.snap",
		"ration-20261130T091500-i1.snap", "ration-20261399T091500Z-i1.snap", "backup.snap", "xration-20261130T091500Z-i1.snap",
		"ration-20261130T091500Z-i99999999999999999999999.snap",
	} {
		if _, _, ok := ParseName(n); ok {
			t.Errorf("ParseName(%q) accepted it", n)
		}
	}
}

// TestWrite: a backup is the state's snapshot bytes under its name, with
// nothing else left in the directory.
func TestWrite(t *testing.T) {
	dir := t.TempDir()
	st := testState(t).State()
	at := time.Date(2026, 11, 30, 9, 15, 0, 0, time.UTC)
	info, err := Write(context.Background(), dir, tempPrefix("n1"), st, at)
	if err != nil {
		t.Fatal(err)
	}
	if got := names(t, dir); !slices.Equal(got, []string{"ration-20261130T091500Z-i2.snap"}) {
		t.Fatalf("dir holds %v", got)
	}
	var want bytes.Buffer
	if err := st.WriteSnapshot(&want); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(info.Path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) || info.Size != int64(len(got)) || info.Index != 2 || !info.Time.Equal(at) {
		t.Fatalf("backup of %d bytes, info %+v; want the state's %d bytes at index 2", len(got), info, want.Len())
	}
	f := fsm.New(nil)
	if err := f.Restore(io.NopCloser(bytes.NewReader(got))); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.State().Item("dm", "3"); !ok {
		t.Fatal("the restored backup lacks item 3")
	}
}

// badSnapshot writes what it is given, then fails with err if set.
type badSnapshot struct {
	data []byte
	err  error
}

func (b badSnapshot) Index() uint64 { return 7 }
func (b badSnapshot) WriteSnapshot(w io.Writer) error {
	if _, err := w.Write(b.data); err != nil {
		return err
	}
	return b.err
}

// TestWrite_Failures: a snapshot that fails to write, one that does not
// verify, one cut short, and a write abandoned by its context all leave the
// directory as it was.
func TestWrite_Failures(t *testing.T) {
	var good bytes.Buffer
	if err := testState(t).State().WriteSnapshot(&good); err != nil {
		t.Fatal(err)
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		snap Snapshot
		want string
	}{
		{"write error", context.Background(), badSnapshot{data: good.Bytes()[:100], err: errors.New("disk on fire")}, "disk on fire"},
		{"garbage", context.Background(), badSnapshot{data: []byte("RATNSNAP\x00\x00\x00\x03garbage")}, "verify"},
		{"cut short", context.Background(), badSnapshot{data: good.Bytes()[:good.Len()-3]}, "verify"},
		{"not a snapshot", context.Background(), badSnapshot{data: []byte("hello, this is not a snapshot")}, "not a ration snapshot"},
		{"cancelled", cancelled, badSnapshot{data: good.Bytes()}, "context canceled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "keep.txt"), []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Write(tc.ctx, dir, tempPrefix("n1"), tc.snap, time.Now())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Write: %v, want an error saying %q", err, tc.want)
			}
			if got := names(t, dir); !slices.Equal(got, []string{"keep.txt"}) {
				t.Fatalf("after a failed backup the dir holds %v", got)
			}
		})
	}
}

// TestPrune keeps the newest backups by time (index breaking ties) and
// never touches a file that is not a backup.
func TestPrune(t *testing.T) {
	dir := t.TempDir()
	at := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	backups := []string{
		Name(at, 900),                  // oldest, though its index is highest: a cluster restored since
		Name(at.Add(time.Hour), 10),    //
		Name(at.Add(2*time.Hour), 20),  //
		Name(at.Add(2*time.Hour), 3),   // same second, lower index: older
		Name(at.Add(3*time.Hour), 30),  // newest
		Name(at.Add(-time.Hour), 1000), //
	}
	others := []string{"notes.txt", "ration-foo.snap", "backup.snap", ".ration-backup-n2-1.tmp", Name(at, 5) + ".tmp"}
	for _, n := range append(slices.Clone(backups), others...) {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(n), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// A directory named like a backup is not one.
	if err := os.Mkdir(filepath.Join(dir, Name(at.Add(9*time.Hour), 1)), 0o700); err != nil {
		t.Fatal(err)
	}
	removed, err := Prune(dir, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 4 {
		t.Fatalf("removed %v, want 4", removed)
	}
	want := append([]string{Name(at.Add(9*time.Hour), 1), Name(at.Add(2*time.Hour), 20), Name(at.Add(3*time.Hour), 30)}, others...)
	got := names(t, dir)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("after Prune(2):\n got %v\nwant %v", got, want)
	}
	if removed, err := Prune(dir, 2); err != nil || len(removed) != 0 {
		t.Fatalf("second Prune: %v %v", removed, err)
	}
	if _, err := Prune(dir, 0); err == nil {
		t.Fatal("Prune(0) accepted")
	}
}

// TestPrepare creates the dir, removes this node's interrupted backups
// only, and refuses a dir it cannot create or write.
func TestPrepare(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	if err := Prepare(dir, "n1"); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("dir: %v %v", fi, err)
	}
	for _, n := range []string{tempPrefix("n1") + "123.tmp", tempPrefix("n1-x") + "1.tmp", tempPrefix("n2") + "1.tmp", "other.tmp"} {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := Prepare(dir, "n1"); err != nil {
		t.Fatal(err)
	}
	want := []string{tempPrefix("n1_x") + "1.tmp", tempPrefix("n2") + "1.tmp", "other.tmp"}
	if got := names(t, dir); !slices.Equal(got, want) {
		t.Fatalf("after Prepare: %v, want %v", got, want)
	}
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Prepare(filepath.Join(file, "backups"), "n1"); err == nil {
		t.Fatal("Prepare under a file succeeded")
	}
}

// fakeNode is a node whose leadership the test sets.
type fakeNode struct {
	f      *fsm.FSM
	leader atomic.Bool
}

func (n *fakeNode) IsLeader() bool    { return n.leader.Load() }
func (n *fakeNode) State() *fsm.State { return n.f.State() }
func (n *fakeNode) LinearizableState(context.Context) (*fsm.State, error) {
	if !n.leader.Load() {
		return nil, cluster.ErrNotLeader
	}
	return n.f.State(), nil
}

// gather returns the backup metrics by name (and result label).
func gather(t *testing.T, b *Backups) map[string]float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(b.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			for _, l := range m.GetLabel() {
				name += "/" + l.GetValue()
			}
			out[name] = m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	return out
}

// TestBackups_LeaderOnlyAndMetrics: by default only the leader writes; a
// failure is counted and leaves no file; the metrics follow.
func TestBackups_LeaderOnlyAndMetrics(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	b, err := New(Config{Dir: dir, Every: time.Hour, Keep: 2, NodeID: "n1", Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	node := &fakeNode{f: testState(t)}
	b.node = node
	ctx := context.Background()
	if _, ok, err := b.Backup(ctx); ok || err != nil {
		t.Fatalf("a follower backed up: %v %v", ok, err)
	}
	if m := gather(t, b); len(m) != 2 || m["ration_backups_total/success"] != 0 {
		t.Fatalf("metrics before any backup: %v", m)
	}
	node.leader.Store(true)
	info, ok, err := b.Backup(ctx)
	if !ok || err != nil || info.Index != 2 {
		t.Fatalf("leader's backup: %+v %v %v", info, ok, err)
	}
	m := gather(t, b)
	if m["ration_backup_last_success"] != 1 || m["ration_backups_total/success"] != 1 || m["ration_backup_last_index"] != 2 ||
		m["ration_backup_last_size_bytes"] != float64(info.Size) || m["ration_backup_last_success_timestamp_seconds"] != float64(now.Unix()) {
		t.Fatalf("metrics after a backup: %v", m)
	}
	if _, ok := m["ration_backup_last_duration_seconds"]; !ok {
		t.Fatalf("no duration: %v", m)
	}
	if !b.next.Equal(now.Add(time.Hour)) {
		t.Fatalf("next backup due %v, want an hour after %v", b.next, now)
	}

	// A snapshot that does not verify fails, counted, and is retried
	// within a minute.
	now = now.Add(time.Hour)
	b.state = func(context.Context) (Snapshot, error) { return badSnapshot{data: []byte("RATNSNAP junk")}, nil }
	if _, ok, err := b.Backup(ctx); !ok || err == nil {
		t.Fatalf("a bad snapshot: %v %v", ok, err)
	}
	m = gather(t, b)
	if m["ration_backup_last_success"] != 0 || m["ration_backups_total/failure"] != 1 || m["ration_backups_total/success"] != 1 ||
		m["ration_backup_last_index"] != 2 {
		t.Fatalf("metrics after a failure: %v", m)
	}
	if !b.next.Equal(now.Add(time.Minute)) {
		t.Fatalf("retry due %v, want a minute after %v", b.next, now)
	}
	if got := names(t, dir); len(got) != 1 {
		t.Fatalf("dir after a failure: %v", got)
	}
	b.state = b.nodeState

	// Three more: two are kept.
	for range 3 {
		now = now.Add(time.Hour)
		if _, _, err := b.Backup(ctx); err != nil {
			t.Fatal(err)
		}
	}
	all, err := List(dir)
	if err != nil || len(all) != 2 || !all[1].Time.Equal(now) {
		t.Fatalf("after 4 backups with keep 2: %v %v", all, err)
	}

	// With AllNodes a follower writes too.
	b.cfg.AllNodes = true
	node.leader.Store(false)
	now = now.Add(time.Hour)
	if _, ok, err := b.Backup(ctx); !ok || err != nil {
		t.Fatalf("a follower with AllNodes: %v %v", ok, err)
	}
}

// TestBackups_Schedule: the first backup is due an interval after the
// newest one in the directory, or at once; the loop writes them on time
// and keeps the newest, and Close stops it.
func TestBackups_Schedule(t *testing.T) {
	dir := t.TempDir()
	old := time.Now().Add(-30 * time.Minute)
	if err := os.WriteFile(filepath.Join(dir, Name(old, 1)), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := New(Config{Dir: dir, Every: time.Hour, Keep: 3, NodeID: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	if want := old.Truncate(time.Second).Add(time.Hour); !b.next.Equal(want) {
		t.Fatalf("first backup due %v, want %v", b.next, want)
	}
	b.Close()

	dir = t.TempDir()
	b, err = New(Config{Dir: dir, Every: time.Second, Keep: 2, NodeID: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	node := &fakeNode{f: testState(t)}
	node.leader.Store(true)
	b.Start(node)
	t.Cleanup(b.Close)
	deadline := time.Now().Add(20 * time.Second)
	for gather(t, b)["ration_backups_total/success"] < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("backups after 20s: %v; dir %v", gather(t, b), names(t, dir))
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.Close()
	all, err := List(dir)
	if err != nil || len(all) != 2 {
		t.Fatalf("backups kept: %v %v", all, err)
	}
	if got := names(t, dir); len(got) != 2 {
		t.Fatalf("dir holds more than the backups: %v", got)
	}
}

func TestConfig_Validate(t *testing.T) {
	for _, tc := range []struct {
		c    Config
		want string
	}{
		{Config{Every: time.Hour, Keep: 1}, "no directory"},
		{Config{Dir: "d", Every: time.Millisecond, Keep: 1}, "at least 1s"},
		{Config{Dir: "d", Every: time.Hour}, "keep 0"},
	} {
		if err := tc.c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.c, err, tc.want)
		}
	}
}
