package server_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/api/ration/v1/rationv1connect"
	"github.com/rationhq/ration/cluster"
	"github.com/rationhq/ration/cluster/clustertest"
	"github.com/rationhq/ration/fsm"
	"github.com/rationhq/ration/server"
	"github.com/rationhq/ration/server/servertest"
)

// Credentials of the hostile test.
const (
	hAdmin  = "hostile-admin-token-0123456789"
	hStrang = "secret-of-a-stranger-000000" // a secret no registered worker holds
)

func hSecret(worker string) string { return "secret-of-" + worker + "-0123456789" }

// outcome is what a hostile request must get back. Over Connect JSON the
// test reads the HTTP answer itself; over gRPC, the connect client's error.
type outcome struct {
	code connect.Code // 0: the call succeeds
	// reason is the ErrorDetail reason; "" when ration sets none (the
	// request did not decode, so no handler ran).
	reason string
	// msg is a substring of the error message naming the problem. For a
	// heartbeat that succeeds, of every lease's error_message.
	msg string
	// beat, for a heartbeat that succeeds: every lease's error_reason.
	beat string
}

func fail(code connect.Code, reason, msg string) outcome {
	return outcome{code: code, reason: reason, msg: msg}
}

// undecodable is the answer to a body that does not decode: InvalidArgument,
// without a ration reason, naming the unmarshal failure.
func undecodable(msg string) outcome {
	return outcome{code: connect.CodeInvalidArgument, msg: msg}
}

// hostileCase is one malformed or hostile request. The JSON body goes over
// Connect (HTTP/1.1, application/json) and the protobuf body over gRPC, to
// a follower and to the leader; where one body cannot say what the other
// says (a wrong JSON type, a wrong wire type), each has its own analog and
// its own expected outcome.
type hostileCase struct {
	name     string
	proc     string
	auth     string // the Authorization header ("" for none)
	json     []byte
	pb       []byte
	jsonWant outcome
	pbWant   outcome
}

func bearer(tok string) string { return "Bearer " + tok }

// both builds a case from a message that both encodings can carry.
func both(name, proc, auth string, m proto.Message, want outcome) hostileCase {
	j, err := protojson.Marshal(m)
	if err != nil {
		panic(fmt.Sprintf("%s: %v", name, err))
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		panic(fmt.Sprintf("%s: %v", name, err))
	}
	return hostileCase{name: name, proc: proc, auth: auth, json: j, pb: b, jsonWant: want, pbWant: want}
}

// split builds a case from raw bodies.
func split(name, proc, auth, js string, jw outcome, pb []byte, pw outcome) hostileCase {
	return hostileCase{name: name, proc: proc, auth: auth, json: []byte(js), pb: pb, jsonWant: jw, pbWant: pw}
}

// Wire-level builders for protobuf bodies no Go message would produce.
func wStr(b []byte, num protowire.Number, s string) []byte {
	return protowire.AppendString(protowire.AppendTag(b, num, protowire.BytesType), s)
}

func wBytes(b []byte, num protowire.Number, v []byte) []byte {
	return protowire.AppendBytes(protowire.AppendTag(b, num, protowire.BytesType), v)
}

func wVarint(b []byte, num protowire.Number, v uint64) []byte {
	return protowire.AppendVarint(protowire.AppendTag(b, num, protowire.VarintType), v)
}

func wFixed32(b []byte, num protowire.Number, v uint32) []byte {
	return protowire.AppendFixed32(protowire.AppendTag(b, num, protowire.Fixed32Type), v)
}

func wFixed64(b []byte, num protowire.Number, v uint64) []byte {
	return protowire.AppendFixed64(protowire.AppendTag(b, num, protowire.Fixed64Type), v)
}

func pbOf(m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

// TestServer_HostileRequestsChangeNothing sends malformed and hostile
// requests over Connect JSON and gRPC to a follower and to the leader of a
// 3-node cluster, checks each answer's code, reason and message, and checks
// that every node's state machine snapshot is byte for byte what it was
// before: a refused request never reaches the log.
//
// Unknown fields are ignored, as protobuf intends for compatibility
// between versions (Connect's JSON codec discards them; binary ones are
// kept on the message but never read): such a request is judged on the
// fields this version knows. The rows below pair them with refusals.
func TestServer_HostileRequestsChangeNothing(t *testing.T) {
	// A stable leader: an election in the middle would add entries. Under
	// the race detector, decoding the 16 MiB rows stalls a 2-core machine
	// for over a second (1.5 s seen), longer than these timeouts: the leader
	// stepped down mid-test. There they are three times as long, and the
	// leader's lease is as long as Raft allows (the heartbeat timeout).
	stable := time.Second
	if raceEnabled {
		stable = 3 * time.Second
	}
	c := servertest.StartWith(t, 3, servertest.Options{Token: hAdmin, Config: func(_ int, cfg *cluster.Config) {
		cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = stable, stable, stable
		cfg.FailoverGrace = 2 * stable
	}})
	leader := c.Leader()
	follower := c.Followers()[0]
	lc := newClients(http.DefaultClient, c.AddrOf(leader), nil, hAdmin, "")
	as := func(worker string) rationv1connect.WorkerServiceClient {
		return newClients(http.DefaultClient, c.AddrOf(leader), nil, hAdmin, hSecret(worker)).worker
	}
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}

	// State to be hostile against: a service with a leased bucket, workers
	// registered, deactivated and gone, a revoked service, an empty one,
	// and remembered request ids.
	must(lc.owner.CreateService(ctx(t), connect.NewRequest(&rationv1.CreateServiceRequest{Name: "dm", Kind: "dmcheck",
		Config: &rationv1.ServiceConfig{BucketSize: 2, MaxLeasesPerWorker: 1, MaxItemsPerAdd: 10, LeaseTtl: durationpb.New(time.Hour)}})))
	must(lc.owner.CreateService(ctx(t), connect.NewRequest(&rationv1.CreateServiceRequest{Name: "old", Kind: "dmcheck"})))
	must(lc.owner.CreateService(ctx(t), connect.NewRequest(&rationv1.CreateServiceRequest{Name: "spare", Kind: "dmcheck"})))
	for _, w := range []string{"w1", "bad", "quitter"} {
		must(as(w).Register(ctx(t), connect.NewRequest(&rationv1.RegisterRequest{Service: "dm", WorkerId: w})))
	}
	must(as("w2").Register(ctx(t), connect.NewRequest(&rationv1.RegisterRequest{Service: "dm", WorkerId: "w2", RequestId: "rid-1"})))
	must(as("w1").Register(ctx(t), connect.NewRequest(&rationv1.RegisterRequest{Service: "old", WorkerId: "w1"})))
	must(lc.owner.RevokeService(ctx(t), connect.NewRequest(&rationv1.RevokeServiceRequest{Name: "old", Reason: "retired", RequestId: "rid-a"})))
	must(lc.owner.DeactivateWorker(ctx(t), connect.NewRequest(&rationv1.DeactivateWorkerRequest{Service: "dm", WorkerId: "bad", Reason: "faulty"})))
	must(as("quitter").Unregister(ctx(t), connect.NewRequest(&rationv1.UnregisterRequest{Service: "dm", WorkerId: "quitter"})))
	must(lc.owner.AddItems(ctx(t), connect.NewRequest(&rationv1.AddItemsRequest{Service: "dm", Items: []string{"a", "b"}})))
	acq, err := as("w1").Acquire(ctx(t), connect.NewRequest(&rationv1.AcquireRequest{Service: "dm", WorkerId: "w1"}))
	if err != nil || len(acq.Msg.Buckets) != 1 {
		t.Fatalf("acquire: %v %v", acq, err)
	}
	b := acq.Msg.Buckets[0]
	bid, epoch := b.Id, b.Lease.Epoch

	cases := hostileCases(bid, epoch, b.Items)
	if len(cases) < 100 {
		t.Fatalf("only %d hostile cases", len(cases))
	}

	term := leader.Status().Term
	before := fsmSnapshots(t, c.Cluster)
	if err := fsm.CheckSnapshot(bytes.NewReader(before[0])); err != nil {
		t.Fatalf("the snapshot taken is not a whole one: %v", err)
	}

	targets := []struct {
		name string
		addr string
	}{{"leader", c.AddrOf(leader)}, {"follower", c.AddrOf(follower)}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, tg := range targets {
				if err := check(sendJSON(t, tg.addr, tc), tc.jsonWant); err != nil {
					t.Errorf("connect+json to %s: %v", tg.name, err)
				}
				if err := check(sendGRPC(t, tg.addr, tc), tc.pbWant); err != nil {
					t.Errorf("grpc to %s: %v", tg.name, err)
				}
			}
		})
	}

	after := fsmSnapshots(t, c.Cluster)
	if now := c.Leader(); now != leader || now.Status().Term != term {
		t.Fatalf("leadership changed during the test (term %d, now %d): the snapshots cannot be compared", term, now.Status().Term)
	}
	for i := range before {
		if !bytes.Equal(before[i], after[i]) {
			t.Errorf("node %s: the state machine's snapshot changed (%d bytes before, %d after)", c.Nodes[i].ID(), len(before[i]), len(after[i]))
		}
	}
}

// fsmSnapshots waits until every node has applied the same index, the
// leader's (woken by each state a node applies), then returns each node's
// state machine snapshot, after checking they agree.
func fsmSnapshots(t *testing.T, c *clustertest.Cluster) [][]byte {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var sts []*fsm.State
	for settled := false; !settled; {
		if time.Now().After(deadline) {
			t.Fatalf("the nodes applied different indexes until the end: %v", indexes(sts))
		}
		want := c.Leader().State().Index()
		sts = sts[:0]
		settled = true
		for _, n := range c.Nodes {
			st := clustertest.WaitState(t, n, time.Until(deadline), func(st *fsm.State) error {
				if st.Index() < want {
					return fmt.Errorf("%s applied %d, leader %d", n.ID(), st.Index(), want)
				}
				return nil
			})
			sts = append(sts, st)
			// Past the leader's index read above: the leader moved on; read it again.
			settled = settled && st.Index() == want
		}
	}
	var out [][]byte
	for _, st := range sts {
		var buf bytes.Buffer
		if err := st.WriteSnapshot(&buf); err != nil {
			t.Fatal(err)
		}
		out = append(out, buf.Bytes())
	}
	for i := range out {
		if !bytes.Equal(out[0], out[i]) {
			t.Fatalf("%s and %s hold different states at one index", c.Nodes[0].ID(), c.Nodes[i].ID())
		}
	}
	return out
}

// indexes are the states' applied indexes.
func indexes(sts []*fsm.State) []uint64 {
	out := make([]uint64, len(sts))
	for i, st := range sts {
		out[i] = st.Index()
	}
	return out
}

// answer is what came back, whichever the protocol.
type answer struct {
	code    connect.Code
	status  int // HTTP status, over Connect JSON
	message string
	reason  string
	beats   []*rationv1.HeartbeatOutcome // a successful heartbeat's outcomes
	err     error                        // the exchange itself failed
}

func check(got answer, want outcome) error {
	if got.err != nil {
		return got.err
	}
	if got.status >= 500 {
		return fmt.Errorf("HTTP %d (%v: %s)", got.status, got.code, got.message)
	}
	if got.code != want.code || got.reason != want.reason || (want.code != 0 && !strings.Contains(got.message, want.msg)) {
		return fmt.Errorf("got %v reason %q message %q; want %v reason %q message containing %q",
			got.code, got.reason, got.message, want.code, want.reason, want.msg)
	}
	if want.code == 0 && want.beat != "" {
		if len(got.beats) == 0 {
			return fmt.Errorf("heartbeat answered no outcomes")
		}
		for _, o := range got.beats {
			if o.GetErrorReason() != want.beat || !strings.Contains(o.GetErrorMessage(), want.msg) || o.GetLease() != nil {
				return fmt.Errorf("heartbeat outcome %v; want every lease refused %s, message containing %q", o, want.beat, want.msg)
			}
		}
	}
	return nil
}

// sendJSON posts the JSON body over HTTP/1.1 and reads Connect's answer.
func sendJSON(t *testing.T, addr string, tc hostileCase) answer {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(c, http.MethodPost, "http://"+addr+tc.proc, bytes.NewReader(tc.json))
	if err != nil {
		return answer{err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	if tc.auth != "" {
		req.Header.Set("Authorization", tc.auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{err: err}
	}
	a := answer{status: resp.StatusCode}
	if resp.StatusCode == http.StatusOK {
		if tc.proc == rationv1connect.WorkerServiceHeartbeatProcedure {
			var hb rationv1.HeartbeatResponse
			if err := protojson.Unmarshal(body, &hb); err != nil {
				return answer{err: fmt.Errorf("heartbeat answer %q: %v", body, err)}
			}
			a.beats = hb.GetBuckets()
		}
		return a
	}
	var e struct {
		Code    connect.Code `json:"code"`
		Message string       `json:"message"`
		Details []struct {
			Type  string `json:"type"`
			Value string `json:"value"`
		} `json:"details"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Code == 0 {
		// Not a Connect error (the mux's 404, say): the code follows from
		// the HTTP status, as the Connect protocol says.
		a.code, a.message = httpCode(resp.StatusCode), string(body)
		return a
	}
	a.code, a.message = e.Code, e.Message
	for _, d := range e.Details {
		if d.Type != "ration.v1.ErrorDetail" {
			continue
		}
		raw, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(d.Value, "="))
		var ed rationv1.ErrorDetail
		if err != nil || proto.Unmarshal(raw, &ed) != nil {
			return answer{err: fmt.Errorf("undecodable error detail %q", d.Value)}
		}
		a.reason = ed.GetReason()
	}
	return a
}

// httpCode maps an HTTP status without a Connect error body to a code, as
// the Connect protocol specifies.
func httpCode(status int) connect.Code {
	switch status {
	case http.StatusBadRequest:
		return connect.CodeInternal
	case http.StatusUnauthorized:
		return connect.CodeUnauthenticated
	case http.StatusForbidden:
		return connect.CodePermissionDenied
	case http.StatusNotFound:
		return connect.CodeUnimplemented
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return connect.CodeUnavailable
	}
	return connect.CodeUnknown
}

// rawMsg carries protobuf bytes as they are, so a request can be anything.
type rawMsg struct{ b []byte }

// rawCodec is the "proto" codec passing rawMsg through unchanged (and
// other messages, such as error statuses, as protobuf).
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(m any) ([]byte, error) {
	if r, ok := m.(*rawMsg); ok {
		return r.b, nil
	}
	return proto.Marshal(m.(proto.Message))
}

func (rawCodec) Unmarshal(b []byte, m any) error {
	if r, ok := m.(*rawMsg); ok {
		r.b = bytes.Clone(b)
		return nil
	}
	return proto.Unmarshal(b, m.(proto.Message))
}

// sendGRPC sends the protobuf body over gRPC (HTTP/2) with a connect
// client that passes the bytes through unchanged.
func sendGRPC(t *testing.T, addr string, tc hostileCase) answer {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl := connect.NewClient[rawMsg, rawMsg](h2cClient(), "http://"+addr+tc.proc, connect.WithGRPC(), connect.WithCodec(rawCodec{}))
	req := connect.NewRequest(&rawMsg{b: tc.pb})
	if tc.auth != "" {
		req.Header().Set("Authorization", tc.auth)
	}
	resp, err := cl.CallUnary(c, req)
	if err == nil {
		var a answer
		if tc.proc == rationv1connect.WorkerServiceHeartbeatProcedure {
			var hb rationv1.HeartbeatResponse
			if err := proto.Unmarshal(resp.Msg.b, &hb); err != nil {
				return answer{err: err}
			}
			a.beats = hb.GetBuckets()
		}
		return a
	}
	a := answer{code: connect.CodeOf(err), reason: reasonOf(err)}
	var ce *connect.Error
	if errAs(err, &ce) {
		a.message = ce.Message()
	} else {
		a.message = err.Error()
	}
	return a
}

func errAs(err error, ce **connect.Error) bool {
	e, ok := err.(*connect.Error)
	if ok {
		*ce = e
	}
	return ok
}

// hostileCases are the rows of the hostile test, against the state it sets
// up: w1 holds bucket bid at epoch (items), w2 is registered and holds
// nothing, "bad" is deactivated, "quitter" unregistered, "old" revoked,
// "spare" has nobody, and w2 used request id rid-1 and the admin rid-a.
func hostileCases(bid, epoch uint64, items []string) []hostileCase {
	const (
		register   = rationv1connect.WorkerServiceRegisterProcedure
		unregister = rationv1connect.WorkerServiceUnregisterProcedure
		acquire    = rationv1connect.WorkerServiceAcquireProcedure
		heartbeat  = rationv1connect.WorkerServiceHeartbeatProcedure
		submit     = rationv1connect.WorkerServiceSubmitProcedure
		release    = rationv1connect.WorkerServiceReleaseProcedure
		mine       = rationv1connect.WorkerServiceListMyBucketsProcedure
		checkSvc   = rationv1connect.WorkerServiceCheckServiceProcedure
		create     = rationv1connect.OwnerServiceCreateServiceProcedure
		update     = rationv1connect.OwnerServiceUpdateServiceProcedure
		revoke     = rationv1connect.OwnerServiceRevokeServiceProcedure
		reinstate  = rationv1connect.OwnerServiceReinstateServiceProcedure
		addItems   = rationv1connect.OwnerServiceAddItemsProcedure
		deactivate = rationv1connect.OwnerServiceDeactivateWorkerProcedure
		reactivate = rationv1connect.OwnerServiceReactivateWorkerProcedure
		revert     = rationv1connect.OwnerServiceRevertWorkerProcedure
		restore    = rationv1connect.ClusterServiceRestoreProcedure
	)
	var (
		admin = bearer(hAdmin)
		w1    = bearer(hSecret("w1"))
		w2    = bearer(hSecret("w2"))
		bad   = bearer(hSecret("bad"))
		quit  = bearer(hSecret("quitter"))
		stray = bearer(hStrang)

		invalid   = connect.CodeInvalidArgument
		notFound  = connect.CodeNotFound
		failedPre = connect.CodeFailedPrecondition
		denied    = connect.CodePermissionDenied
		unauth    = connect.CodeUnauthenticated
		exhausted = connect.CodeResourceExhausted
		exists    = connect.CodeAlreadyExists
	)
	good := []*rationv1.ResultInput{{Item: items[0], Verdict: "DM"}}
	leaseLimit := fail(exhausted, "LEASE_LIMIT", "max_leases_per_worker")
	acqW1 := func() []byte { return wStr(wStr(nil, 1, "dm"), 2, "w1") }
	long := func(n int) string { return strings.Repeat("x", n) }
	many := func(n int, prefix string) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("%s%d", prefix, i)
		}
		return out
	}
	refs := func(n int) []*rationv1.BucketRef {
		out := make([]*rationv1.BucketRef, n)
		for i := range out {
			out[i] = &rationv1.BucketRef{Id: uint64(i + 1), Epoch: 1}
		}
		return out
	}
	results := func(n int) []*rationv1.ResultInput {
		out := make([]*rationv1.ResultInput, n)
		for i := range out {
			out[i] = &rationv1.ResultInput{Item: fmt.Sprint(i), Verdict: "DM"}
		}
		return out
	}

	return []hostileCase{
		// Wrong JSON types; over gRPC, the same field with the wrong wire
		// type, which protobuf reads as an unknown field.
		split("max_buckets is a string", acquire, w1,
			`{"service":"dm","workerId":"w1","maxBuckets":"abc"}`, undecodable(`"maxBuckets": "abc" is not a whole number from 0 to 4294967295`),
			wBytes(acqW1(), 3, []byte("abc")), leaseLimit),
		split("service is a number", acquire, w1,
			`{"service":42,"workerId":"w1"}`, undecodable(`"service": 42 is not a string`),
			wVarint(wStr(nil, 2, "w1"), 1, 42), fail(invalid, "INVALID_ARGUMENT", `service name ""`)),
		split("worker_id is an object", acquire, w1,
			`{"service":"dm","workerId":{}}`, undecodable(`"workerId": an object is not a string`),
			wFixed32(wStr(nil, 1, "dm"), 2, 7), fail(invalid, "INVALID_ARGUMENT", "worker_id is empty")),
		split("body is an array", register, w2,
			`[]`, undecodable("the body is not a JSON object"),
			[]byte{0xff, 0xff, 0xff}, undecodable("cannot parse invalid wire-format data")),
		split("body is null", register, w2,
			`null`, undecodable("the body is not a JSON object"),
			[]byte{0x08}, undecodable("cannot parse invalid wire-format data")),
		split("empty body", acquire, w1,
			``, undecodable("the body is empty"),
			nil, fail(invalid, "INVALID_ARGUMENT", `service name ""`)),
		split("results is a string", submit, w1,
			`{"workerId":"w1","bucketId":"1","epoch":"1","results":"x"}`, undecodable(`"results": "x" is not an array`),
			wVarint(wVarint(wVarint(wStr(nil, 1, "w1"), 2, bid), 3, epoch), 4, 1), fail(invalid, "INVALID_ARGUMENT", "results has 0 entries")),
		split("bucket_id is a bool", submit, w1,
			`{"workerId":"w1","bucketId":true,"results":[{"item":"a","verdict":"DM"}]}`, undecodable(`"bucketId": true is not a whole number from 0 to 18446744073709551615`),
			wBytes(wStr(nil, 1, "w1"), 2, []byte{1}), fail(invalid, "INVALID_ARGUMENT", "bucket_id is required")),
		split("buckets is an object", heartbeat, w1,
			`{"workerId":"w1","buckets":{"id":"1"}}`, undecodable(`"buckets": { is not an array`),
			wVarint(wStr(nil, 1, "w1"), 2, 1), fail(invalid, "INVALID_ARGUMENT", "buckets has 0 entries")),
		split("an item is a number", addItems, admin,
			`{"service":"old","items":["a",5]}`, undecodable(`"items": 5 is not a string`),
			wStr(wStr(wStr(nil, 1, "old"), 2, "a"), 2, "\xff"), undecodable("invalid UTF-8")),
		split("priority is a fraction", addItems, admin,
			`{"service":"old","items":["x"],"priority":1.5}`, undecodable(`"priority": 1.5 is not a whole number from -2147483648 to 2147483647`),
			wFixed64(wStr(wStr(nil, 1, "old"), 2, "x"), 3, 1), fail(failedPre, "SERVICE_REVOKED", `service "old" is revoked`)),
		split("truncated body", acquire, w1,
			`{"service":`, undecodable("unexpected EOF"),
			append(wStr(nil, 1, "dm"), 0x12, 0x40, 'w'), undecodable("cannot parse invalid wire-format data")),
		split("a field twice", acquire, w1,
			`{"service":"dm","service":"old","workerId":"w1"}`, undecodable("duplicate field"),
			wStr(wStr(acqW1(), 1, "old"), 1, "old"), fail(failedPre, "SERVICE_REVOKED", `service "old" is revoked`)),
		split("trailing garbage", acquire, w1,
			`{"service":"dm","workerId":"w1"} x`, undecodable("syntax error: invalid value x (line 1, column 34)"),
			append(acqW1(), 0x80), undecodable("cannot parse invalid wire-format data")),
		split("invalid UTF-8 in a string", acquire, w1,
			"{\"service\":\"dm\",\"workerId\":\"w\xff1\"}", undecodable("invalid UTF-8"),
			wStr(wStr(nil, 1, "dm"), 2, "w\xff1"), undecodable("invalid UTF-8")),
		split("a lone surrogate", acquire, w1,
			`{"service":"dm","workerId":"w\ud800"}`, undecodable("JSON body for ration.v1.AcquireRequest: unexpected EOF"),
			wStr(wStr(nil, 1, "dm"), 2, "w\ufffd"), fail(notFound, "WORKER_NOT_FOUND", "has never registered")),
		split("since is not a timestamp", revert, admin,
			`{"service":"dm","workerId":"w1","since":"yesterday"}`, undecodable(`"since": "yesterday" is not a time in RFC 3339`),
			wBytes(wStr(wStr(nil, 1, "dm"), 2, "w1"), 3, wVarint(nil, 1, 1<<62)), fail(invalid, "INVALID_ARGUMENT", "since:")),
		split("lease_ttl is not a duration", create, admin,
			`{"name":"dm","kind":"dmcheck","config":{"leaseTtl":"forever"}}`, undecodable(`"leaseTtl": "forever" is not a duration in seconds`),
			wBytes(wStr(wStr(nil, 1, "dm"), 2, "dmcheck"), 3, wBytes(nil, 3, wVarint(nil, 2, 2e9))), fail(invalid, "INVALID_CONFIG", "out-of-range nanos")),

		// Missing required fields.
		both("register without anything", register, w2, &rationv1.RegisterRequest{}, fail(invalid, "INVALID_ARGUMENT", `service name ""`)),
		both("register without worker_id", register, w2, &rationv1.RegisterRequest{Service: "dm"}, fail(invalid, "INVALID_ARGUMENT", "worker_id is empty")),
		both("acquire without service", acquire, w1, &rationv1.AcquireRequest{WorkerId: "w1"}, fail(invalid, "INVALID_ARGUMENT", `service name ""`)),
		both("submit without bucket_id", submit, w1, &rationv1.SubmitRequest{WorkerId: "w1", Epoch: epoch, Results: good}, fail(invalid, "INVALID_ARGUMENT", "bucket_id is required")),
		both("submit without results", submit, w1, &rationv1.SubmitRequest{WorkerId: "w1", BucketId: bid, Epoch: epoch}, fail(invalid, "INVALID_ARGUMENT", "results has 0 entries")),
		both("submit a result without verdict", submit, w1, &rationv1.SubmitRequest{WorkerId: "w1", BucketId: bid, Epoch: epoch,
			Results: []*rationv1.ResultInput{{Item: items[0]}}}, fail(invalid, "INVALID_ARGUMENT", "results[0].verdict")),
		both("submit a result without item", submit, w1, &rationv1.SubmitRequest{WorkerId: "w1", BucketId: bid, Epoch: epoch,
			Results: []*rationv1.ResultInput{{Verdict: "DM"}}}, fail(invalid, "INVALID_ARGUMENT", "results[0].item is empty")),
		both("release without bucket_id", release, w1, &rationv1.ReleaseRequest{WorkerId: "w1"}, fail(invalid, "INVALID_ARGUMENT", "bucket_id is required")),
		both("heartbeat without buckets", heartbeat, w1, &rationv1.HeartbeatRequest{WorkerId: "w1"}, fail(invalid, "INVALID_ARGUMENT", "buckets has 0 entries")),
		both("heartbeat without epoch", heartbeat, w1, &rationv1.HeartbeatRequest{WorkerId: "w1", Buckets: []*rationv1.BucketRef{{Id: bid}}},
			outcome{beat: "LEASE_LOST", msg: "epoch 0 is not the current lease's"}),
		both("add without items", addItems, admin, &rationv1.AddItemsRequest{Service: "dm"}, fail(invalid, "INVALID_ARGUMENT", "items is empty")),
		both("create without kind", create, admin, &rationv1.CreateServiceRequest{Name: "fresh"}, fail(invalid, "UNKNOWN_KIND", `kind ""`)),
		both("create without name", create, admin, &rationv1.CreateServiceRequest{Kind: "dmcheck"}, fail(invalid, "INVALID_ARGUMENT", `service name ""`)),
		both("revert without since", revert, admin, &rationv1.RevertWorkerRequest{Service: "dm", WorkerId: "w1"}, fail(invalid, "INVALID_ARGUMENT", "since is required")),
		both("deactivate without worker_id", deactivate, admin, &rationv1.DeactivateWorkerRequest{Service: "dm"}, fail(invalid, "INVALID_ARGUMENT", "worker_id is empty")),
		both("restore without data", restore, admin, &rationv1.RestoreRequest{}, fail(invalid, "INVALID_ARGUMENT", "data is empty")),

		// Huge values.
		both("worker_id of 257 bytes", acquire, w1, &rationv1.AcquireRequest{Service: "dm", WorkerId: long(257)}, fail(invalid, "INVALID_ARGUMENT", "is 257 bytes, limit 256")),
		both("item id of 257 bytes", addItems, admin, &rationv1.AddItemsRequest{Service: "dm", Items: []string{long(257)}}, fail(invalid, "INVALID_ARGUMENT", "is 257 bytes, limit 256")),
		both("request id of 129 bytes", release, w1, &rationv1.ReleaseRequest{WorkerId: "w1", BucketId: bid, Epoch: epoch, RequestId: long(129)}, fail(invalid, "INVALID_ARGUMENT", "request_id is 129 bytes, limit 128")),
		both("service name of 65 bytes", acquire, w1, &rationv1.AcquireRequest{Service: long(65), WorkerId: "w1"}, fail(invalid, "INVALID_ARGUMENT", "want 1 to 64")),
		both("display name of 257 bytes", register, w2, &rationv1.RegisterRequest{Service: "dm", WorkerId: "w2", Name: long(257)}, fail(invalid, "INVALID_ARGUMENT", "name is 257 bytes")),
		both("revoke reason of 257 bytes", revoke, admin, &rationv1.RevokeServiceRequest{Name: "dm", Reason: long(257)}, fail(invalid, "INVALID_ARGUMENT", "reason is 257 bytes")),
		both("100,001 items", addItems, admin, &rationv1.AddItemsRequest{Service: "dm", Items: many(100_001, "i")}, fail(invalid, "LIMIT_EXCEEDED", "items has 100001 ids")),
		both("items over the service's max_items_per_add", addItems, admin, &rationv1.AddItemsRequest{Service: "dm", Items: many(11, "i")}, fail(invalid, "LIMIT_EXCEEDED", "items has 11 ids, limit 10")),
		both("1,001 buckets in a heartbeat", heartbeat, w1, &rationv1.HeartbeatRequest{WorkerId: "w1", Buckets: refs(1001)}, fail(invalid, "INVALID_ARGUMENT", "buckets has 1001 entries")),
		both("10,001 results", submit, w1, &rationv1.SubmitRequest{WorkerId: "w1", BucketId: bid, Epoch: epoch, Results: results(10_001)}, fail(invalid, "INVALID_ARGUMENT", "results has 10001 entries")),
		both("a payload over 1 MiB", submit, w1, &rationv1.SubmitRequest{WorkerId: "w1", BucketId: bid, Epoch: epoch,
			Results: []*rationv1.ResultInput{{Item: items[0], Verdict: "DM", Payload: long(1<<20 + 1)}}}, fail(invalid, "INVALID_ARGUMENT", "payload is 1048577 bytes")),
		both("a payload over the service's max_payload_bytes", submit, w1, &rationv1.SubmitRequest{WorkerId: "w1", BucketId: bid, Epoch: epoch,
			Results: []*rationv1.ResultInput{{Item: items[0], Verdict: "DM", Payload: long(2000)}}}, fail(invalid, "INVALID_RESULT", "payload")),
		both("a request over MaxRequestBytes", addItems, admin, &rationv1.AddItemsRequest{Service: "dm", Items: many(server.MaxRequestBytes/250+1, long(250))},
			fail(exhausted, "", "message size")),
		split("max_buckets of 2^32", acquire, w1,
			`{"service":"dm","workerId":"w1","maxBuckets":4294967296}`, undecodable(`"maxBuckets": 4294967296 is not a whole number from 0 to 4294967295`),
			wVarint(acqW1(), 3, 1<<32), leaseLimit),
		split("max_buckets of -1", acquire, w1,
			`{"service":"dm","workerId":"w1","maxBuckets":-1}`, undecodable(`"maxBuckets": -1 is not a whole number from 0 to 4294967295`),
			wVarint(acqW1(), 3, ^uint64(0)), leaseLimit),
		split("bucket_id of 2^64", release, w1,
			`{"workerId":"w1","bucketId":"18446744073709551616","epoch":"1"}`, undecodable(`"bucketId": "18446744073709551616" is not a whole number from 0 to 18446744073709551615`),
			append(wStr(nil, 1, "w1"), 0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f), undecodable("cannot parse invalid wire-format data")),
		split("epoch of -5", release, w1,
			fmt.Sprintf(`{"workerId":"w1","bucketId":"%d","epoch":-5}`, bid), undecodable(`"epoch": -5 is not a whole number from 0 to 18446744073709551615`),
			wVarint(wVarint(wStr(nil, 1, "w1"), 2, bid), 3, uint64(1<<64-5)), fail(failedPre, "LEASE_LOST", "is not the current lease's")),
		split("priority of 2^31", addItems, admin,
			`{"service":"dm","items":["x"],"priority":2147483648}`, undecodable(`"priority": 2147483648 is not a whole number from -2147483648 to 2147483647`),
			wVarint(wStr(wStr(nil, 1, "dm"), 2, "x"), 3, 1<<31), fail(invalid, "INVALID_ARGUMENT", "priority -2147483648")),
		both("priority past the limit", addItems, admin, &rationv1.AddItemsRequest{Service: "dm", Items: []string{"x"}, Priority: 1_000_001}, fail(invalid, "INVALID_ARGUMENT", "priority 1000001")),
		both("negative priority past the limit", addItems, admin, &rationv1.AddItemsRequest{Service: "dm", Items: []string{"x"}, Priority: -1_000_001}, fail(invalid, "INVALID_ARGUMENT", "priority -1000001")),
		both("bucket_size of 2^32-1", create, admin, &rationv1.CreateServiceRequest{Name: "fresh", Kind: "dmcheck",
			Config: &rationv1.ServiceConfig{BucketSize: 1<<32 - 1}}, fail(invalid, "INVALID_CONFIG", "bucket_size")),
		both("a negative lease_ttl", update, admin, &rationv1.UpdateServiceRequest{Name: "dm",
			Config: &rationv1.ServiceConfig{LeaseTtl: durationpb.New(-time.Second)}}, fail(invalid, "INVALID_CONFIG", "lease_ttl")),
		split("since at year 10000", revert, admin,
			`{"service":"dm","workerId":"w1","since":"10000-01-01T00:00:00Z"}`, undecodable(`"since": "10000-01-01T00:00:00Z" is not a time in RFC 3339`),
			pbOf(&rationv1.RevertWorkerRequest{Service: "dm", WorkerId: "w1", Since: &timestamppb.Timestamp{Seconds: 253402300800}}), fail(invalid, "INVALID_ARGUMENT", "since:")),
		both("a huge garbage snapshot", restore, admin, &rationv1.RestoreRequest{Data: bytes.Repeat([]byte{0xa5}, 1<<20)}, fail(invalid, "INVALID_ARGUMENT", "not a ration snapshot")),
		both("a truncated snapshot", restore, admin, &rationv1.RestoreRequest{Data: []byte("RATIONSN")}, fail(invalid, "INVALID_ARGUMENT", "header")),

		// Unknown enum values (reads: refused before they read anything).
		split("consistency by an unknown name", mine, w1,
			`{"service":"dm","workerId":"w1","consistency":"CONSISTENCY_BOGUS"}`, undecodable(`"consistency": "CONSISTENCY_BOGUS" is not one of CONSISTENCY_UNSPECIFIED, CONSISTENCY_LINEARIZABLE, CONSISTENCY_STALE (line 1, column 47)`),
			wVarint(wStr(wStr(nil, 1, "dm"), 2, "w1"), 15, 99), fail(invalid, "INVALID_ARGUMENT", "consistency 99")),
		both("consistency 99", mine, w1, &rationv1.ListMyBucketsRequest{Service: "dm", WorkerId: "w1", Consistency: 99}, fail(invalid, "INVALID_ARGUMENT", "consistency 99")),
		both("consistency -1", checkSvc, "", &rationv1.CheckServiceRequest{Service: "dm", Consistency: -1}, fail(invalid, "INVALID_ARGUMENT", "consistency -1")),

		// Unknown fields: refused in JSON (written by hand, where one is a
		// typo), dropped in protobuf (a newer client's), where the request
		// is judged on the rest.
		split("an unknown field", acquire, w1,
			`{"service":"dm","workerId":"w1","bogus":{"deep":[1,2,3]}}`, undecodable(`unknown field "bogus" (line 1, column 33)`),
			wStr(acqW1(), 99, "bogus"), leaseLimit),
		split("a large unknown field", acquire, w1,
			`{"service":"dm","workerId":"w1","bogus":"`+long(1<<20)+`"}`, undecodable(`unknown field "bogus"`),
			wStr(acqW1(), 4000, long(1<<20)), leaseLimit),
		split("an unknown field in the config", create, admin,
			`{"name":"dm","kind":"dmcheck","config":{"bogus":5}}`, undecodable(`unknown field "bogus" (line 1, column 41)`),
			wBytes(wStr(wStr(nil, 1, "dm"), 2, "dmcheck"), 3, wVarint(nil, 77, 5)), fail(exists, "SERVICE_EXISTS", `service "dm"`)),

		// Other workers' buckets and stale epochs.
		both("submit another's bucket", submit, w2, &rationv1.SubmitRequest{WorkerId: "w2", BucketId: bid, Epoch: epoch, Results: good}, fail(denied, "NOT_HOLDER", "leased to another worker")),
		both("release another's bucket", release, w2, &rationv1.ReleaseRequest{WorkerId: "w2", BucketId: bid, Epoch: epoch}, fail(denied, "NOT_HOLDER", "leased to another worker")),
		both("heartbeat another's bucket", heartbeat, w2, &rationv1.HeartbeatRequest{WorkerId: "w2", Buckets: []*rationv1.BucketRef{{Id: bid, Epoch: epoch}}},
			outcome{beat: "NOT_HOLDER", msg: "leased to another worker"}),
		both("submit at a stale epoch", submit, w1, &rationv1.SubmitRequest{WorkerId: "w1", BucketId: bid, Epoch: epoch - 1, Results: good}, fail(failedPre, "LEASE_LOST", "is not the current lease's")),
		both("submit at a future epoch", submit, w1, &rationv1.SubmitRequest{WorkerId: "w1", BucketId: bid, Epoch: epoch + 1, Results: good}, fail(failedPre, "LEASE_LOST", "is not the current lease's")),
		both("release at a stale epoch", release, w1, &rationv1.ReleaseRequest{WorkerId: "w1", BucketId: bid, Epoch: epoch + 7}, fail(failedPre, "LEASE_LOST", "is not the current lease's")),
		both("heartbeat at a stale epoch", heartbeat, w1, &rationv1.HeartbeatRequest{WorkerId: "w1", Buckets: []*rationv1.BucketRef{{Id: bid, Epoch: epoch + 1}}},
			outcome{beat: "LEASE_LOST", msg: "is not the current lease's"}),
		both("heartbeat buckets that do not exist", heartbeat, w1, &rationv1.HeartbeatRequest{WorkerId: "w1", Buckets: []*rationv1.BucketRef{{Id: 999_999, Epoch: 1}, {Id: 1 << 62, Epoch: 1}}},
			outcome{beat: "BUCKET_NOT_FOUND", msg: "bucket not found"}),
		both("submit as the holder with another's secret", submit, w2, &rationv1.SubmitRequest{WorkerId: "w1", BucketId: bid, Epoch: epoch, Results: good}, fail(unauth, "BAD_CREDENTIAL", `worker "w1"`)),
		both("release as the holder with another's secret", release, w2, &rationv1.ReleaseRequest{WorkerId: "w1", BucketId: bid, Epoch: epoch}, fail(unauth, "BAD_CREDENTIAL", `worker "w1"`)),
		both("heartbeat as the holder with another's secret", heartbeat, w2, &rationv1.HeartbeatRequest{WorkerId: "w1", Buckets: []*rationv1.BucketRef{{Id: bid, Epoch: epoch}}}, fail(unauth, "BAD_CREDENTIAL", `worker "w1"`)),
		both("submit a bucket that does not exist", submit, w1, &rationv1.SubmitRequest{WorkerId: "w1", BucketId: 999_999, Epoch: 1, Results: good}, fail(notFound, "BUCKET_NOT_FOUND", "bucket 999999")),
		both("release a bucket that does not exist", release, w1, &rationv1.ReleaseRequest{WorkerId: "w1", BucketId: 1<<64 - 1, Epoch: 1}, fail(notFound, "BUCKET_NOT_FOUND", "bucket 18446744073709551615")),
		both("submit an item not in the bucket", submit, w1, &rationv1.SubmitRequest{WorkerId: "w1", BucketId: bid, Epoch: epoch,
			Results: []*rationv1.ResultInput{{Item: "zzz", Verdict: "DM"}}}, fail(invalid, "ITEM_NOT_IN_BUCKET", `item "zzz" is not in bucket`)),
		both("submit an item twice", submit, w1, &rationv1.SubmitRequest{WorkerId: "w1", BucketId: bid, Epoch: epoch,
			Results: []*rationv1.ResultInput{{Item: items[0], Verdict: "DM"}, {Item: items[0], Verdict: "NON_DM"}}}, fail(invalid, "DUPLICATE_RESULT", "has two results")),
		both("submit an unknown verdict", submit, w1, &rationv1.SubmitRequest{WorkerId: "w1", BucketId: bid, Epoch: epoch,
			Results: []*rationv1.ResultInput{{Item: items[0], Verdict: "MAYBE"}}}, fail(invalid, "INVALID_RESULT", "MAYBE")),
		both("submit a verdict with a NUL", submit, w1, &rationv1.SubmitRequest{WorkerId: "w1", BucketId: bid, Epoch: epoch,
			Results: []*rationv1.ResultInput{{Item: items[0], Verdict: "DM\x00"}}}, fail(invalid, "INVALID_RESULT", "results[0]")),
		both("an unregistered worker submits the bucket", submit, quit, &rationv1.SubmitRequest{WorkerId: "quitter", BucketId: bid, Epoch: epoch, Results: good}, fail(denied, "NOT_HOLDER", "leased to another worker")),
		both("acquire past max_leases_per_worker", acquire, w1, &rationv1.AcquireRequest{Service: "dm", WorkerId: "w1", MaxBuckets: 1000}, leaseLimit),

		// Revoked, unknown and unregistered.
		both("acquire from a revoked service", acquire, w1, &rationv1.AcquireRequest{Service: "old", WorkerId: "w1"}, fail(failedPre, "SERVICE_REVOKED", `service "old" is revoked`)),
		both("register with a revoked service", register, w2, &rationv1.RegisterRequest{Service: "old", WorkerId: "w2"}, fail(failedPre, "SERVICE_REVOKED", `service "old" is revoked`)),
		both("add items to a revoked service", addItems, admin, &rationv1.AddItemsRequest{Service: "old", Items: []string{"x"}}, fail(failedPre, "SERVICE_REVOKED", `service "old" is revoked`)),
		both("acquire from an unknown service", acquire, w1, &rationv1.AcquireRequest{Service: "nope", WorkerId: "w1"}, fail(notFound, "SERVICE_NOT_FOUND", `service "nope"`)),
		both("register with an unknown service", register, w2, &rationv1.RegisterRequest{Service: "nope", WorkerId: "w2"}, fail(notFound, "SERVICE_NOT_FOUND", `service "nope"`)),
		both("add items to an unknown service", addItems, admin, &rationv1.AddItemsRequest{Service: "nope", Items: []string{"x"}}, fail(notFound, "SERVICE_NOT_FOUND", `service "nope"`)),
		both("update an unknown service", update, admin, &rationv1.UpdateServiceRequest{Name: "nope"}, fail(notFound, "SERVICE_NOT_FOUND", `service "nope"`)),
		both("revoke an unknown service", revoke, admin, &rationv1.RevokeServiceRequest{Name: "nope"}, fail(notFound, "SERVICE_NOT_FOUND", `service "nope"`)),
		both("reinstate an unknown service", reinstate, admin, &rationv1.ReinstateServiceRequest{Name: "nope"}, fail(notFound, "SERVICE_NOT_FOUND", `service "nope"`)),
		both("deactivate in an unknown service", deactivate, admin, &rationv1.DeactivateWorkerRequest{Service: "nope", WorkerId: "w1"}, fail(notFound, "SERVICE_NOT_FOUND", `service "nope"`)),
		both("create an existing service", create, admin, &rationv1.CreateServiceRequest{Name: "dm", Kind: "dmcheck"}, fail(exists, "SERVICE_EXISTS", `service "dm"`)),
		both("create with an unknown kind", create, admin, &rationv1.CreateServiceRequest{Name: "fresh", Kind: "bogus"}, fail(invalid, "UNKNOWN_KIND", `kind "bogus"`)),
		both("acquire without registering", acquire, w2, &rationv1.AcquireRequest{Service: "spare", WorkerId: "w2"}, fail(failedPre, "NOT_REGISTERED", `worker "w2" in service "spare"`)),
		both("acquire while deactivated", acquire, bad, &rationv1.AcquireRequest{Service: "dm", WorkerId: "bad"}, fail(failedPre, "WORKER_DEACTIVATED", "faulty")),
		both("register while deactivated", register, bad, &rationv1.RegisterRequest{Service: "dm", WorkerId: "bad"}, fail(failedPre, "WORKER_DEACTIVATED", "faulty")),
		both("acquire after unregistering", acquire, quit, &rationv1.AcquireRequest{Service: "dm", WorkerId: "quitter"}, fail(failedPre, "WORKER_INACTIVE", "register again")),
		both("unregister without registering", unregister, w2, &rationv1.UnregisterRequest{Service: "spare", WorkerId: "w2"}, fail(failedPre, "NOT_REGISTERED", `worker "w2" in service "spare"`)),
		both("unregister a worker that never was", unregister, stray, &rationv1.UnregisterRequest{Service: "dm", WorkerId: "stranger"}, fail(notFound, "WORKER_NOT_FOUND", "has never registered")),
		both("reactivate a worker that never was", reactivate, admin, &rationv1.ReactivateWorkerRequest{Service: "dm", WorkerId: "stranger"}, fail(failedPre, "NOT_REGISTERED", `worker "stranger"`)),
		both("revert a worker that never was", revert, admin, &rationv1.RevertWorkerRequest{Service: "dm", WorkerId: "stranger", Since: timestamppb.New(time.Unix(0, 0))}, fail(failedPre, "NOT_REGISTERED", `worker "stranger"`)),
		both("list buckets of a worker that never was", mine, stray, &rationv1.ListMyBucketsRequest{Service: "dm", WorkerId: "stranger"}, fail(notFound, "WORKER_NOT_FOUND", "has never registered")),

		// Unicode and control characters in ids and text.
		both("NUL in a worker id", register, w2, &rationv1.RegisterRequest{Service: "dm", WorkerId: "w\x002"}, fail(invalid, "INVALID_ARGUMENT", "control or space character")),
		both("newline in a worker id", acquire, w1, &rationv1.AcquireRequest{Service: "dm", WorkerId: "w1\n"}, fail(invalid, "INVALID_ARGUMENT", "control or space character")),
		both("space in a worker id", acquire, w1, &rationv1.AcquireRequest{Service: "dm", WorkerId: "w 1"}, fail(invalid, "INVALID_ARGUMENT", "control or space character")),
		both("right-to-left override in a worker id", register, stray, &rationv1.RegisterRequest{Service: "dm", WorkerId: "w\u202e1"}, fail(invalid, "INVALID_ARGUMENT", "bidirectional control")),
		both("left-to-right isolate in an item id", addItems, admin, &rationv1.AddItemsRequest{Service: "dm", Items: []string{"x", "\u2066y"}}, fail(invalid, "INVALID_ARGUMENT", "items[1]")),
		both("right-to-left mark in a request id", register, w2, &rationv1.RegisterRequest{Service: "dm", WorkerId: "w2", RequestId: "r\u200f"}, fail(invalid, "INVALID_ARGUMENT", "request_id")),
		both("tab in an item id", addItems, admin, &rationv1.AddItemsRequest{Service: "dm", Items: []string{"a\tb"}}, fail(invalid, "INVALID_ARGUMENT", "control or space character")),
		both("DEL in an item id", addItems, admin, &rationv1.AddItemsRequest{Service: "dm", Items: []string{"a\x7fb"}}, fail(invalid, "INVALID_ARGUMENT", "control or space character")),
		both("C1 control in an item id", addItems, admin, &rationv1.AddItemsRequest{Service: "dm", Items: []string{"a\u0085b"}}, fail(invalid, "INVALID_ARGUMENT", "control or space character")),
		both("ideographic space in a worker id", acquire, w1, &rationv1.AcquireRequest{Service: "dm", WorkerId: "w\u30001"}, fail(invalid, "INVALID_ARGUMENT", "control or space character")),
		both("newline in a result's item", submit, w1, &rationv1.SubmitRequest{WorkerId: "w1", BucketId: bid, Epoch: epoch,
			Results: []*rationv1.ResultInput{{Item: "a\nb", Verdict: "DM"}}}, fail(invalid, "INVALID_ARGUMENT", "results[0].item")),
		both("combining mark in a service name", acquire, w1, &rationv1.AcquireRequest{Service: "dm\u0301", WorkerId: "w1"}, fail(invalid, "INVALID_ARGUMENT", "want 1 to 64")),
		both("upper case service name", create, admin, &rationv1.CreateServiceRequest{Name: "DM", Kind: "dmcheck"}, fail(invalid, "INVALID_ARGUMENT", "want 1 to 64")),
		both("NUL in a display name", register, w2, &rationv1.RegisterRequest{Service: "dm", WorkerId: "w2", Name: "a\x00b"}, fail(invalid, "INVALID_ARGUMENT", "name has a control character")),
		both("terminal escape in a reason", deactivate, admin, &rationv1.DeactivateWorkerRequest{Service: "dm", WorkerId: "w1", Reason: "\x1b[31mred"}, fail(invalid, "INVALID_ARGUMENT", "reason has a control character")),
		both("newline in a request id", acquire, w1, &rationv1.AcquireRequest{Service: "dm", WorkerId: "w1", RequestId: "a\nb"}, fail(invalid, "INVALID_ARGUMENT", "request_id")),
		split("invalid UTF-8 in a worker id", register, w2,
			"{\"service\":\"dm\",\"workerId\":\"\xc3\x28\"}", undecodable("invalid UTF-8"),
			wStr(wStr(nil, 1, "dm"), 2, "\xc3\x28"), undecodable("invalid UTF-8")),
		split("invalid UTF-8 in a reason", revoke, admin,
			"{\"name\":\"dm\",\"reason\":\"\xed\xa0\x80\"}", undecodable("invalid UTF-8"),
			wStr(wStr(nil, 1, "dm"), 2, "\xed\xa0\x80"), undecodable("invalid UTF-8")),
		split("invalid UTF-8 in a payload", submit, w1,
			"{\"workerId\":\"w1\",\"bucketId\":\"1\",\"results\":[{\"item\":\"a\",\"verdict\":\"DM\",\"payload\":\"\xfe\"}]}", undecodable("invalid UTF-8"),
			wVarint(wBytes(wStr(nil, 1, "w1"), 4, wStr(wStr(wStr(nil, 1, items[0]), 2, "DM"), 3, "\xfe")), 2, bid), undecodable("invalid UTF-8")),

		// A request id used again with another body.
		both("request id reused by register", register, w2, &rationv1.RegisterRequest{Service: "dm", WorkerId: "w2", Name: "other", RequestId: "rid-1"}, fail(invalid, "REQUEST_ID_REUSED", `request id "rid-1" was first used`)),
		both("request id reused by acquire", acquire, w2, &rationv1.AcquireRequest{Service: "dm", WorkerId: "w2", RequestId: "rid-1"}, fail(invalid, "REQUEST_ID_REUSED", `request id "rid-1" was first used`)),
		both("request id reused by release", release, w2, &rationv1.ReleaseRequest{WorkerId: "w2", BucketId: bid, Epoch: epoch, RequestId: "rid-1"}, fail(invalid, "REQUEST_ID_REUSED", `request id "rid-1" was first used`)),
		both("request id reused by the admin", revoke, admin, &rationv1.RevokeServiceRequest{Name: "old", Reason: "again", RequestId: "rid-a"}, fail(invalid, "REQUEST_ID_REUSED", `request id "rid-a" was first used`)),
		both("request id reused on another service", addItems, admin, &rationv1.AddItemsRequest{Service: "dm", Items: []string{"x"}, RequestId: "rid-a"}, fail(invalid, "REQUEST_ID_REUSED", `request id "rid-a" was first used`)),

		// Wrong credentials.
		both("worker call without a secret", acquire, "", &rationv1.AcquireRequest{Service: "dm", WorkerId: "w1"}, fail(unauth, "NO_CREDENTIAL", "worker calls need the worker's secret")),
		both("worker secret too short", acquire, bearer("short"), &rationv1.AcquireRequest{Service: "dm", WorkerId: "w1"}, fail(unauth, "BAD_CREDENTIAL", "worker secret is 5 bytes")),
		both("worker secret too long", acquire, bearer(long(server.MaxSecretLength+1)), &rationv1.AcquireRequest{Service: "dm", WorkerId: "w1"}, fail(unauth, "BAD_CREDENTIAL", "worker secret is 1025 bytes")),
		both("another worker's secret", acquire, w2, &rationv1.AcquireRequest{Service: "dm", WorkerId: "w1"}, fail(unauth, "BAD_CREDENTIAL", `worker "w1"`)),
		both("the admin token as a worker secret", acquire, admin, &rationv1.AcquireRequest{Service: "dm", WorkerId: "w1"}, fail(denied, "WRONG_ROLE", "never the admin token")),
		both("a Basic header as a worker secret", acquire, "Basic dzE6c2VjcmV0LW9mLXcxLTAxMjM0NTY3ODk=", &rationv1.AcquireRequest{Service: "dm", WorkerId: "w1"}, fail(unauth, "BAD_CREDENTIAL", `does not use the Bearer scheme: send "Authorization: Bearer <token>"`)),
		both("Bearer with no token", acquire, "Bearer ", &rationv1.AcquireRequest{Service: "dm", WorkerId: "w1"}, fail(unauth, "BAD_CREDENTIAL", `no token after "Bearer"`)),
		both("register an id bound to another secret", register, w2, &rationv1.RegisterRequest{Service: "dm", WorkerId: "w1"}, fail(unauth, "BAD_CREDENTIAL", "bound to another secret")),
		both("register a known id without its secret", register, stray, &rationv1.RegisterRequest{Service: "dm", WorkerId: "w2"}, fail(unauth, "BAD_CREDENTIAL", "bound to another secret")),
		both("owner call without a token", addItems, "", &rationv1.AddItemsRequest{Service: "dm", Items: []string{"x"}}, fail(unauth, "NO_CREDENTIAL", "needs the admin token")),
		both("owner call with a wrong token", addItems, bearer("not-the-admin-token"), &rationv1.AddItemsRequest{Service: "dm", Items: []string{"x"}}, fail(unauth, "BAD_CREDENTIAL", "neither the admin token nor")),
		both("owner call with a worker's secret", revoke, w1, &rationv1.RevokeServiceRequest{Name: "dm"}, fail(unauth, "BAD_CREDENTIAL", "neither the admin token nor")),
		both("cluster call with a worker's secret", restore, w1, &rationv1.RestoreRequest{Data: []byte("x")}, fail(unauth, "BAD_CREDENTIAL", "wrong admin token")),
		both("list another worker's buckets", mine, w2, &rationv1.ListMyBucketsRequest{Service: "dm", WorkerId: "w1"}, fail(unauth, "BAD_CREDENTIAL", `worker "w1"`)),
		split("an unknown procedure", "/ration.v1.WorkerService/Nope", w1,
			`{}`, fail(connect.CodeUnimplemented, "", "no procedure /ration.v1.WorkerService/Nope: ration serves ration.v1.OwnerService"),
			nil, fail(connect.CodeUnimplemented, "", "404")),
	}
}
