package fsm

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	statev1 "github.com/rationhq/ration/api/ration/state/v1"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

// The replay golden files hold a recorded log (testdata/replay/log.bin) and
// what applying it gave when it was recorded: the state's snapshot
// (state.snap) and a hash of every command's answer (results.sha256). Any
// build must give exactly the same from the same log, because nodes of two
// builds apply one log during a rolling upgrade, and a new node replays an
// old log. RATION_UPDATE_GOLDEN=1 rewrites the state and the answers from
// the log (and records the log only when it is missing: it is history);
// do it only for a change of behaviour that is meant, and say so in the
// commit.
func replayDir() string { return filepath.Join("..", "testdata", "replay") }

// recordReplayLog builds the recorded log: the script, a randomized model
// run with half its commands in compact form, and entries that exercise refusals the script
// does not (owner credentials, reused request ids, a compact entry that
// does not decode, an owner token on an operation it does not reach).
func recordReplayLog(t *testing.T) []*raft.Log {
	var logs []*raft.Log
	capture := func(l *rawEntry) {
		logs = append(logs, &raft.Log{Index: uint64(len(logs) + 1), Type: raft.LogCommand, Data: l.Data})
	}
	h := newHarness(t)
	h.check, h.capture = false, capture
	script(h)
	m := &modelRun{h: h, held: map[string][]*rationv1.LeasedBucket{}}
	m.r = rand.New(rand.NewPCG(7, 99))
	m.services = []string{"dm", "gen"}
	for i := range 5 {
		m.workers = append(m.workers, fmt.Sprintf("m%d", i))
	}
	for i := range 1500 {
		h.pack = i%2 == 0
		m.step()
	}
	h.pack = false
	owner := func(op proto.Message, cred []byte) {
		c := h.command(op, "owner", nil, "")
		c.Header.OwnerCredential = cred
		h.applyCmd(c)
	}
	wrong := sha256.Sum256([]byte("not a token"))
	owner(&rationv1.AddItemsRequest{Service: "dm", Items: []string{"o1"}}, wrong[:])
	owner(&rationv1.AcquireRequest{Service: "dm", WorkerId: "w1"}, wrong[:])
	owner(&statev1.Tick{}, wrong[:])
	owner(&rationv1.CreateServiceRequest{Name: "x", Kind: "dmcheck"}, wrong[:])
	reused := h.command(&rationv1.AddItemsRequest{Service: "dm", Items: []string{"r1"}}, "admin", nil, "same")
	h.applyCmd(reused)
	h.applyCmd(h.command(&rationv1.AddItemsRequest{Service: "dm", Items: []string{"r2"}}, "admin", nil, "same"))
	hb := h.command(&statev1.HeartbeatBatch{Entries: []*statev1.HeartbeatEntry{{Request: &rationv1.HeartbeatRequest{WorkerId: "w1",
		Buckets: []*rationv1.BucketRef{{Id: 1, Epoch: 1}}}, Credential: secret("w1")}}}, "system", nil, "hb")
	h.applyCmd(hb)
	h.applyCmd(h.command(&statev1.HeartbeatBatch{Entries: []*statev1.HeartbeatEntry{{Request: &rationv1.HeartbeatRequest{WorkerId: "w1",
		Buckets: []*rationv1.BucketRef{{Id: 2, Epoch: 9}}}, Credential: secret("w1")}}}, "system", nil, "hb"))
	bad := h.command(&rationv1.SubmitRequest{WorkerId: "w1", BucketId: 3, Epoch: 1,
		Results: []*rationv1.ResultInput{{Item: "d00001", Verdict: "DM"}}}, "w1", secret("w1"), "")
	bad = packAll(bad)
	data, err := proto.Marshal(bad)
	if err != nil {
		t.Fatal(err)
	}
	// Count one more result than the bytes hold.
	cut := bytes.Clone(data)
	cut[len(cut)-1]++
	capture(&raft.Log{Data: cut})
	h.must(&statev1.SetNode{NodeId: "n2", ApiAddress: "127.0.0.1:7071"})
	h.apply(&statev1.RemoveNode{NodeId: "n9"})
	h.must(&statev1.RemoveNode{NodeId: "n2"})
	return logs
}

// replay applies logs to a fresh state machine, a few entries per batch as
// Raft hands them over, and returns the snapshot and the answers' hash.
func replay(t *testing.T, logs []*raft.Log) ([]byte, string) {
	f := New(nil)
	sum := sha256.New()
	for i := 0; i < len(logs); i += 7 {
		for _, r := range f.ApplyBatch(logs[i:min(i+7, len(logs))]) {
			b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r.(*statev1.CommandResult))
			if err != nil {
				t.Fatal(err)
			}
			sum.Write(binary.AppendUvarint(nil, uint64(len(b))))
			sum.Write(b)
		}
	}
	if err := f.State().CheckInvariants(); err != nil {
		t.Fatal(err)
	}
	var snap bytes.Buffer
	if err := f.State().WriteSnapshot(&snap); err != nil {
		t.Fatal(err)
	}
	return snap.Bytes(), hex.EncodeToString(sum.Sum(nil))
}

func TestFSM_ReplayGolden(t *testing.T) {
	dir := replayDir()
	update := os.Getenv("RATION_UPDATE_GOLDEN") == "1"
	if _, err := os.Stat(filepath.Join(dir, "log.bin")); update && os.IsNotExist(err) {
		var buf bytes.Buffer
		for _, l := range recordReplayLog(t) {
			buf.Write(binary.AppendUvarint(nil, uint64(len(l.Data))))
			buf.Write(l.Data)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "log.bin"), buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := os.ReadFile(filepath.Join(dir, "log.bin"))
	if err != nil {
		t.Fatal(err)
	}
	var logs []*raft.Log
	for r := bytes.NewReader(raw); r.Len() > 0; {
		n, err := binary.ReadUvarint(r)
		if err != nil {
			t.Fatal(err)
		}
		data := make([]byte, n)
		if _, err := io.ReadFull(r, data); err != nil {
			t.Fatal(err)
		}
		logs = append(logs, &raft.Log{Index: uint64(len(logs) + 1), Type: raft.LogCommand, Data: data})
	}
	snap, sum := replay(t, logs)
	if update {
		for name, b := range map[string][]byte{"state.snap": snap, "results.sha256": []byte(sum + "\n")} {
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	want, err := os.ReadFile(filepath.Join(dir, "state.snap"))
	if err != nil {
		t.Fatal(err)
	}
	wantSum, err := os.ReadFile(filepath.Join(dir, "results.sha256"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(snap, want) {
		t.Errorf("replaying the recorded log (%d entries) gave a %d-byte state that differs from the recorded %d bytes", len(logs), len(snap), len(want))
	}
	if sum != strings.TrimSpace(string(wantSum)) {
		t.Errorf("replaying the recorded log gave other answers: hash %s, recorded %s", sum, strings.TrimSpace(string(wantSum)))
	}
}
