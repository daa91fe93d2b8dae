package fsm

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	statev1 "github.com/rationhq/ration/api/ration/state/v1"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

// Until the cluster version reaches validation's protocol, the edge refuses
// validation, AddCanaries is refused, and a config that carries a policy
// anyway (an older leader proposed it) applies without it, as on a member
// that does not know it.
func TestVersion_GatesValidation(t *testing.T) {
	h := newHarness(t)
	if v := h.f.State().ClusterVersion(); v != 1 {
		t.Fatalf("a new cluster's version is %d, want 1", v)
	}
	withPolicy := &rationv1.CreateServiceRequest{Name: "s", Kind: "dmcheck",
		Config: &rationv1.ServiceConfig{Validation: &rationv1.ValidationPolicy{Replicas: 2}}}
	err := CheckVersion(h.f.State().ClusterVersion(), withPolicy)
	if !errors.Is(err, ErrClusterVersion) || !strings.Contains(err.Error(), "config.validation needs cluster version 2; the cluster runs 1") {
		t.Fatalf("CheckVersion = %v", err)
	}
	if err := CheckVersion(1, &rationv1.CreateServiceRequest{Name: "t", Kind: "dmcheck"}); err != nil {
		t.Fatalf("a plain service needs no version: %v", err)
	}
	h.must(withPolicy)
	if s, _ := h.f.State().Service("s"); s.Config.Validation != defaultValidation {
		t.Fatalf("at version 1 the policy was kept: %+v", s.Config.Validation)
	}
	h.refuse(&rationv1.AddCanariesRequest{Service: "s", Canaries: []*rationv1.Canary{{Item: "c", Verdict: "DM"}}}, ErrClusterVersion)

	h.must(&statev1.SetClusterVersion{Version: 2})
	if v := h.f.State().ClusterVersion(); v != 2 {
		t.Fatalf("version %d after raising it to 2", v)
	}
	acts := h.f.State().Activity(ActivityQuery{Action: ActSetClusterVersion, Limit: 10})
	if len(acts) != 1 || acts[0].Message != "cluster version 1 -> 2" {
		t.Fatalf("activity: %+v", acts)
	}
	h.must(&statev1.SetClusterVersion{Version: 1}) // never lowers
	if v := h.f.State().ClusterVersion(); v != 2 {
		t.Fatalf("version %d after an attempt to lower it", v)
	}
	h.must(&rationv1.UpdateServiceRequest{Name: "s", Config: withPolicy.Config})
	if s, _ := h.f.State().Service("s"); s.Config.Validation.Replicas != 2 {
		t.Fatalf("at version 2 the policy was dropped: %+v", s.Config.Validation)
	}
	h.must(&rationv1.AddCanariesRequest{Service: "s", Canaries: []*rationv1.Canary{{Item: "c", Verdict: "DM"}}})
	f := h.restored()
	if v := f.State().ClusterVersion(); v != 2 {
		t.Fatalf("restored version %d", v)
	}
}

// A version this build cannot apply stops it with a message that names
// both, in the log and in a snapshot.
func TestVersion_RefusesAVersionItCannotApply(t *testing.T) {
	h := newHarness(t)
	func() {
		defer func() {
			r := recover()
			if r == nil || !strings.Contains(r.(string), "the cluster version is now 3, and this build applies protocols 1 to 2") {
				t.Fatalf("recovered %v", r)
			}
		}()
		h.apply(&statev1.SetClusterVersion{Version: MaxProtocol + 1})
	}()
	h = newHarness(t)
	h.upgrade()
	snap := h.snapshot()
	future := encodedWith(t, h, MaxProtocol+1)
	if bytes.Equal(snap, future) {
		t.Fatal("the cluster version is not in the snapshot")
	}
	err := New(nil).Restore(io.NopCloser(bytes.NewReader(future)))
	if err == nil || !strings.Contains(err.Error(), "the snapshot's cluster version is 3, and this build applies protocols 1 to 2") {
		t.Fatalf("Restore = %v", err)
	}
}

// A cluster at version 1 writes snapshots without the field, as builds
// before versions did, so they can restore them.
func TestVersion_Version1SnapshotsAsBefore(t *testing.T) {
	h := newHarness(t)
	script(h)
	if before, one := encodedWith(t, h, 0), encodedWith(t, h, 1); !bytes.Equal(before, one) {
		t.Fatal("cluster version 1 changed the snapshot's bytes")
	}
	if two := encodedWith(t, h, 2); bytes.Equal(encodedWith(t, h, 1), two) {
		t.Fatal("cluster version 2 left the snapshot's bytes as they were")
	}
}

// encodedWith is h's state as a snapshot, with the cluster version v.
func encodedWith(t *testing.T, h *harness, v uint32) []byte {
	tb := h.f.State().t.copy()
	tb.meta.clusterVersion = v
	var buf bytes.Buffer
	if err := tb.encode(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
