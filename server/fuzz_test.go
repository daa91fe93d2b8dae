package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/hashicorp/go-hclog"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/timestamppb"

	peerv1 "github.com/rationhq/ration/api/ration/peer/v1"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/api/ration/v1/rationv1connect"
	"github.com/rationhq/ration/server"
	"github.com/rationhq/ration/server/servertest"
)

// fuzzProcedure is one unary procedure the fuzz target calls.
type fuzzProcedure struct {
	path   string
	input  protoreflect.MessageType
	worker bool // called with a worker's secret; others need no token here
}

// fuzzProcedures lists every unary procedure of the API, in a stable
// order, but the ones that change cluster membership or leadership: a
// fuzzed Join adding an unreachable voter would take the quorum away and
// fail every later input for no fault of theirs.
func fuzzProcedures(tb testing.TB) []fuzzProcedure {
	skip := map[string]bool{
		rationv1connect.ClusterServiceJoinProcedure:               true,
		rationv1connect.ClusterServiceRemoveProcedure:             true,
		rationv1connect.ClusterServiceTransferLeadershipProcedure: true,
	}
	var out []fuzzProcedure
	for _, fd := range []protoreflect.FileDescriptor{rationv1.File_ration_v1_worker_proto, rationv1.File_ration_v1_owner_proto,
		rationv1.File_ration_v1_insight_proto, rationv1.File_ration_v1_cluster_proto, peerv1.File_ration_peer_v1_peer_proto} {
		for i := range fd.Services().Len() {
			sd := fd.Services().Get(i)
			for j := range sd.Methods().Len() {
				md := sd.Methods().Get(j)
				path := "/" + string(sd.FullName()) + "/" + string(md.Name())
				if md.IsStreamingClient() || md.IsStreamingServer() || skip[path] {
					continue
				}
				mt, err := protoregistry.GlobalTypes.FindMessageByName(md.Input().FullName())
				if err != nil {
					tb.Fatal(err)
				}
				out = append(out, fuzzProcedure{path: path, input: mt, worker: sd.FullName() == rationv1connect.WorkerServiceName})
			}
		}
	}
	return out
}

// syncBuffer is a log sink safe for concurrent use.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *syncBuffer) Reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Reset()
}

// FuzzHandlerDecode sends arbitrary bytes as the body of every unary
// procedure, over the Connect protocol as application/proto and as
// application/json, to a single node's handler in process, with valid
// credentials so that what decodes goes as deep as it can. Whatever the
// body, the handler must not panic, must answer within its deadline, and
// must not answer 5xx, Unknown, or Internal (the failure says whether the
// cause of an Internal answer reached the node's log, as it must). Seeds
// are valid requests.
func FuzzHandlerDecode(f *testing.F) {
	procs := fuzzProcedures(f)
	const secret = "fuzz-worker-secret-0123456789"
	c := servertest.StartWith(f, 1, servertest.Options{InMemory: true})
	node := c.Nodes[0]
	var log syncBuffer
	// The handler under test: the node's own server, without rate limits
	// (the fuzzer calls far faster than any worker may), logging to log.
	h := server.New(node, server.Config{Limits: &server.Limits{},
		Logger: hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: &log})}).Handler()

	// Some state for valid requests to act on.
	cl := newClients(http.DefaultClient, c.Addrs[0], nil, "", secret)
	setup := func(_ any, err error) {
		if err != nil {
			f.Fatal(err)
		}
	}
	setup(cl.owner.CreateService(context.Background(), connect.NewRequest(&rationv1.CreateServiceRequest{Name: "dm", Kind: "dmcheck"})))
	setup(cl.worker.Register(context.Background(), connect.NewRequest(&rationv1.RegisterRequest{Service: "dm", WorkerId: "w1"})))
	setup(cl.owner.AddItems(context.Background(), connect.NewRequest(&rationv1.AddItemsRequest{Service: "dm", Items: []string{"a", "b", "c"}})))
	acq, err := cl.worker.Acquire(context.Background(), connect.NewRequest(&rationv1.AcquireRequest{Service: "dm", WorkerId: "w1"}))
	if err != nil || len(acq.Msg.Buckets) == 0 {
		f.Fatalf("acquire: %v %v", acq, err)
	}
	b := acq.Msg.Buckets[0]

	seeds := map[string]proto.Message{
		rationv1connect.WorkerServiceRegisterProcedure:   &rationv1.RegisterRequest{Service: "dm", WorkerId: "w1", Name: "one", RequestId: "r1"},
		rationv1connect.WorkerServiceUnregisterProcedure: &rationv1.UnregisterRequest{Service: "dm", WorkerId: "w9"},
		rationv1connect.WorkerServiceAcquireProcedure:    &rationv1.AcquireRequest{Service: "dm", WorkerId: "w1", MaxBuckets: 2},
		rationv1connect.WorkerServiceHeartbeatProcedure:  &rationv1.HeartbeatRequest{WorkerId: "w1", Buckets: []*rationv1.BucketRef{{Id: b.Id, Epoch: b.Lease.Epoch}}},
		rationv1connect.WorkerServiceSubmitProcedure: &rationv1.SubmitRequest{WorkerId: "w1", BucketId: b.Id, Epoch: b.Lease.Epoch + 1,
			Results: []*rationv1.ResultInput{{Item: b.Items[0], Verdict: "DM", Payload: "p"}}},
		rationv1connect.WorkerServiceReleaseProcedure:         &rationv1.ReleaseRequest{WorkerId: "w1", BucketId: b.Id, Epoch: b.Lease.Epoch + 1},
		rationv1connect.WorkerServiceListMyBucketsProcedure:   &rationv1.ListMyBucketsRequest{Service: "dm", WorkerId: "w1", Consistency: rationv1.Consistency_CONSISTENCY_STALE},
		rationv1connect.WorkerServiceCheckServiceProcedure:    &rationv1.CheckServiceRequest{Service: "dm"},
		rationv1connect.OwnerServiceCreateServiceProcedure:    &rationv1.CreateServiceRequest{Name: "gen", Kind: "generic", Config: &rationv1.ServiceConfig{Verdicts: []string{"A", "B"}, BucketSize: 3}},
		rationv1connect.OwnerServiceUpdateServiceProcedure:    &rationv1.UpdateServiceRequest{Name: "dm", Config: &rationv1.ServiceConfig{BucketSize: 2}},
		rationv1connect.OwnerServiceAddItemsProcedure:         &rationv1.AddItemsRequest{Service: "dm", Items: []string{"x", "y"}, Priority: 3},
		rationv1connect.OwnerServiceRevokeServiceProcedure:    &rationv1.RevokeServiceRequest{Name: "nope", Reason: "r"},
		rationv1connect.OwnerServiceRevertWorkerProcedure:     &rationv1.RevertWorkerRequest{Service: "dm", WorkerId: "w1", Since: timestamppb.New(time.Unix(1, 0))},
		rationv1connect.OwnerServiceDeactivateWorkerProcedure: &rationv1.DeactivateWorkerRequest{Service: "dm", WorkerId: "w9", Reason: "r"},
		rationv1connect.InsightServiceExplainProcedure:        &rationv1.ExplainRequest{Service: "dm", Subject: &rationv1.ExplainRequest_BucketId{BucketId: b.Id}},
		rationv1connect.ClusterServiceRestoreProcedure:        &rationv1.RestoreRequest{Data: []byte("RATIONSN\x00\x00\x00\x01")},
	}
	for i, p := range procs {
		m, ok := seeds[p.path]
		if !ok {
			m = p.input.New().Interface()
		}
		pb, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		js, err := protojson.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint16(i), false, pb)
		f.Add(uint16(i), true, js)
	}

	f.Fuzz(func(t *testing.T, which uint16, asJSON bool, body []byte) {
		p := procs[int(which)%len(procs)]
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req := httptest.NewRequestWithContext(ctx, http.MethodPost, p.path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/proto")
		if asJSON {
			req.Header.Set("Content-Type", "application/json")
		}
		if p.worker {
			req.Header.Set("Authorization", "Bearer "+secret)
		}
		log.Reset()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code == http.StatusOK {
			return
		}
		var e struct {
			Code    connect.Code `json:"code"`
			Message string       `json:"message"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
			t.Fatalf("%s: HTTP %d without a Connect error: %q", p.path, rec.Code, rec.Body.String())
		}
		if e.Code == connect.CodeInternal || e.Code == connect.CodeUnknown || rec.Code >= 500 {
			logged := strings.Contains(log.String(), "internal error")
			t.Fatalf("%s (json %v): HTTP %d, %v: %s (cause logged: %v)\nlog: %s", p.path, asJSON, rec.Code, e.Code, e.Message, logged, log.String())
		}
	})
}
