package server_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/rationhq/ration/api/client"
	_ "github.com/rationhq/ration/api/ration/peer/v1" // registers ration.peer.v1
	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/api/ration/v1/rationv1connect"
	"github.com/rationhq/ration/server"
)

// apiPackages are the proto packages whose RPCs the server serves behind
// the roles table.
var apiPackages = []protoreflect.FullName{"ration.v1", "ration.peer.v1"}

// allMethods lists every RPC of every service in the generated
// descriptors, by full procedure name.
func allMethods(t *testing.T) map[string]protoreflect.MethodDescriptor {
	t.Helper()
	out := map[string]protoreflect.MethodDescriptor{}
	for _, pkg := range apiPackages {
		protoregistry.GlobalFiles.RangeFilesByPackage(pkg, func(fd protoreflect.FileDescriptor) bool {
			for i := 0; i < fd.Services().Len(); i++ {
				sd := fd.Services().Get(i)
				for j := 0; j < sd.Methods().Len(); j++ {
					md := sd.Methods().Get(j)
					out["/"+string(sd.FullName())+"/"+string(md.Name())] = md
				}
			}
			return true
		})
	}
	if len(out) < 30 {
		t.Fatalf("found only %d RPCs in the descriptors", len(out))
	}
	return out
}

// TestRoles_EveryRPCHasARole: a new RPC cannot slip through without an
// entry in the roles table, and the table names no RPC that is gone.
func TestRoles_EveryRPCHasARole(t *testing.T) {
	methods := allMethods(t)
	table := server.RolesTable()
	for p := range methods {
		if _, ok := table[p]; !ok {
			t.Errorf("%s has no entry in the roles table (server/procedures.go)", p)
		}
	}
	for p := range table {
		if _, ok := methods[p]; !ok {
			t.Errorf("the roles table names %s, which no service has", p)
		}
	}
	// Owner calls must name their service, or owner tokens reach nothing.
	for p, md := range methods {
		if table[p] != "owner" {
			continue
		}
		fields := md.Input().Fields()
		if fields.ByName("service") == nil && fields.ByName("name") == nil {
			t.Errorf("%s has the owner role, but %s has no service or name field", p, md.Input().FullName())
		}
	}
	if got := server.RoleOf("/ration.v1.OwnerService/NoSuchCall"); got != "admin" {
		t.Errorf("an unlisted procedure has role %s, want admin", got)
	}
}

var (
	rpcLine  = regexp.MustCompile(`^\s*rpc\s+(\w+)\s*\(`)
	roleLine = regexp.MustCompile(`^\s*//.*\bRole: (\w+)`)
)

// TestRoles_ProtoCommentsMatchTable: every RPC's comment says what it does
// and states its role, and it is the role the server enforces.
func TestRoles_ProtoCommentsMatchTable(t *testing.T) {
	var files []string
	for _, dir := range []string{"v1", filepath.Join("peer", "v1")} {
		f, err := filepath.Glob(filepath.Join("..", "api", "ration", dir, "*.proto"))
		if err != nil || len(f) == 0 {
			t.Fatalf("no protos in %s: %v", dir, err)
		}
		files = append(files, f...)
	}
	table := server.RolesTable()
	seen := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var pkg, svc, role string
		var says bool // the comment has a line besides the role
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "package "):
				pkg = strings.TrimSuffix(strings.TrimPrefix(line, "package "), ";")
			case strings.HasPrefix(line, "service "):
				svc = strings.Fields(line)[1]
				says = false
			case roleLine.MatchString(line):
				role = roleLine.FindStringSubmatch(line)[1]
			case strings.HasPrefix(strings.TrimSpace(line), "//"):
				says = true
			case rpcLine.MatchString(line):
				p := "/" + pkg + "." + svc + "/" + rpcLine.FindStringSubmatch(line)[1]
				seen++
				if role == "" {
					t.Errorf("%s: %s has no \"Role: ...\" line in its comment", f, p)
				} else if role != table[p] {
					t.Errorf("%s: %s says Role: %s, the server enforces %s", f, p, role, table[p])
				}
				if !says {
					t.Errorf("%s: %s's comment says only its role, not what it does", f, p)
				}
				role, says = "", false
			default:
				role, says = "", false // a comment belongs to the RPC right under it
			}
		}
	}
	if seen != len(table) {
		t.Errorf("the protos declare %d RPCs, the roles table has %d", seen, len(table))
	}
}

var readmeRow = regexp.MustCompile("^\\| `(\\w+)/(\\w+)` \\| (\\w+) \\|")

// TestRoles_READMEMatchesTable: README's table of roles is the server's.
func TestRoles_READMEMatchesTable(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(data), "\n## Roles and tokens\n")
	if !ok {
		t.Fatal("README has no \"## Roles and tokens\" section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	got := map[string]string{}
	for _, line := range strings.Split(section, "\n") {
		if m := readmeRow.FindStringSubmatch(line); m != nil {
			pkg := "ration.v1."
			if m[1] == "PeerService" {
				pkg = "ration.peer.v1."
			}
			got["/"+pkg+m[1]+"/"+m[2]] = m[3]
		}
	}
	want := server.RolesTable()
	for p, r := range want {
		if got[p] != r {
			t.Errorf("README says %s is %q, the server enforces %s", p, got[p], r)
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("README lists %s, which the server does not serve", p)
		}
	}
}

const adminToken = "the-admin-token-of-the-roles-test"

// call makes one RPC with the generic Connect client: the request has the
// fields of fill that its message has. It drains server streams and
// returns the call's error.
func call(ctx context.Context, addr string, md protoreflect.MethodDescriptor, token string, fill map[string]any) error {
	procedure := "/" + string(md.Parent().FullName()) + "/" + string(md.Name())
	c := connect.NewClient[dynamicpb.Message, dynamicpb.Message](http.DefaultClient, "http://"+addr+procedure,
		connect.WithSchema(md), connect.WithInterceptors(client.Bearer(token)),
		connect.WithResponseInitializer(func(spec connect.Spec, msg any) error {
			*msg.(*dynamicpb.Message) = *dynamicpb.NewMessage(spec.Schema.(protoreflect.MethodDescriptor).Output())
			return nil
		}))
	req := dynamicpb.NewMessage(md.Input())
	fillMessage(req, fill)
	if md.IsStreamingServer() {
		s, err := c.CallServerStream(ctx, connect.NewRequest(req))
		if err != nil {
			return err
		}
		defer s.Close()
		for s.Receive() {
		}
		return s.Err()
	}
	_, err := c.CallUnary(ctx, connect.NewRequest(req))
	return err
}

// fillMessage sets the fields of m named in fill that m has: strings,
// uint64s, and lists of messages given as []map[string]any.
func fillMessage(m protoreflect.Message, fill map[string]any) {
	for name, v := range fill {
		f := m.Descriptor().Fields().ByName(protoreflect.Name(name))
		if f == nil {
			continue
		}
		switch v := v.(type) {
		case string:
			if f.Kind() == protoreflect.StringKind && !f.IsList() {
				m.Set(f, protoreflect.ValueOfString(v))
			}
		case uint64:
			if f.Kind() == protoreflect.Uint64Kind && !f.IsList() {
				m.Set(f, protoreflect.ValueOfUint64(v))
			}
		case []map[string]any:
			if f.Kind() == protoreflect.MessageKind && f.IsList() {
				list := m.Mutable(f).List()
				for _, e := range v {
					el := list.NewElement()
					fillMessage(el.Message(), e)
					list.Append(el)
				}
			}
		}
	}
}

// firstWatched watches svc's activity on addr with token from after
// sequence number 1, which replays the service's records at once, and
// returns nil once the first message has arrived.
func firstWatched(addr, token, svc string) error {
	cx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ic := rationv1connect.NewInsightServiceClient(http.DefaultClient, "http://"+addr, connect.WithInterceptors(client.Bearer(token)))
	s, err := ic.WatchActivity(cx, connect.NewRequest(&rationv1.WatchActivityRequest{Service: svc, AfterSeq: 1}))
	if err != nil {
		return err
	}
	defer s.Close()
	if !s.Receive() {
		if err := s.Err(); err != nil {
			return err
		}
		return errors.New("the watch ended without a message")
	}
	return nil
}

func denied(err error) bool {
	c := connect.CodeOf(err)
	return c == connect.CodeUnauthenticated || c == connect.CodePermissionDenied
}

// rolesCluster is a three-node cluster with an admin token and two
// services, each with its owner token, and a worker of alpha that has
// submitted one result.
type rolesCluster struct {
	*testCluster
	alpha, beta string // owner tokens
	secret      string // w1's worker secret
}

func newRolesCluster(t *testing.T) *rolesCluster {
	t.Helper()
	c := &rolesCluster{testCluster: newTestCluster(t, 3, adminToken), secret: workerSecret + "-w1"}
	admin := newClients(http.DefaultClient, c.addrOf(c.Followers()[0]), nil, adminToken, c.secret)
	for _, name := range []string{"alpha", "beta"} {
		r, err := admin.owner.CreateService(ctx(t), connect.NewRequest(&rationv1.CreateServiceRequest{Name: name, Kind: "dmcheck",
			Config: &rationv1.ServiceConfig{BucketSize: 2}}))
		if err != nil {
			t.Fatal(err)
		}
		if tok := r.Msg.GetOwnerToken(); !strings.HasPrefix(tok, server.OwnerTokenPrefix) || len(tok) != 47 {
			t.Fatalf("owner token %q: want %s and 43 base64url characters", tok, server.OwnerTokenPrefix)
		}
		if name == "alpha" {
			c.alpha = r.Msg.GetOwnerToken()
		} else {
			c.beta = r.Msg.GetOwnerToken()
		}
	}
	if c.alpha == c.beta {
		t.Fatal("two services got the same owner token")
	}
	owner := newClients(http.DefaultClient, c.addrs[2], nil, c.alpha, c.secret)
	if _, err := owner.owner.AddItems(ctx(t), connect.NewRequest(&rationv1.AddItemsRequest{Service: "alpha", Items: []string{"a1", "a2"}})); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.worker.Register(ctx(t), connect.NewRequest(&rationv1.RegisterRequest{Service: "alpha", WorkerId: "w1"})); err != nil {
		t.Fatal(err)
	}
	acq, err := admin.worker.Acquire(ctx(t), connect.NewRequest(&rationv1.AcquireRequest{Service: "alpha", WorkerId: "w1"}))
	if err != nil || len(acq.Msg.GetBuckets()) != 1 {
		t.Fatalf("acquire: %v %v", acq, err)
	}
	b := acq.Msg.GetBuckets()[0]
	if _, err := admin.worker.Submit(ctx(t), connect.NewRequest(&rationv1.SubmitRequest{WorkerId: "w1", BucketId: b.GetId(), Epoch: b.GetLease().GetEpoch(),
		Results: []*rationv1.ResultInput{{Item: b.GetItems()[0], Verdict: "DM"}}})); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestRoles_EveryRPCRefusesWrongCredentials walks every RPC of every
// service, round-robin over the nodes, with no credential, a wrong one and
// credentials of the wrong role, and expects Unauthenticated or
// PermissionDenied every time; then checks that each role's right
// credential gets past authentication on every RPC it may call.
func TestRoles_EveryRPCRefusesWrongCredentials(t *testing.T) {
	c := newRolesCluster(t)
	methods := allMethods(t)
	roles := server.RolesTable()
	procs := make([]string, 0, len(methods))
	for p := range methods {
		procs = append(procs, p)
	}
	sort.Strings(procs)

	// A request naming alpha, w1 and its bucket, valid enough to reach
	// authentication on every RPC.
	alphaReq := map[string]any{"service": "alpha", "name": "alpha", "worker_id": "w1", "bucket_id": uint64(1), "epoch": uint64(1),
		"buckets": []map[string]any{{"id": uint64(1), "epoch": uint64(1)}},
		"results": []map[string]any{{"item": "a1", "verdict": "DM"}}}
	unscoped := map[string]any{"worker_id": "w1"}
	type attempt struct {
		what  string
		token string
		fill  map[string]any
		want  connect.Code
	}
	for i, p := range procs {
		md := methods[p]
		addr := c.addrs[i%len(c.addrs)]
		var attempts []attempt
		switch roles[p] {
		case "public":
			if err := call(ctx(t), addr, md, "", alphaReq); err != nil {
				t.Errorf("%s (public) without credential: %v", p, err)
			}
			continue
		case "admin":
			attempts = []attempt{
				{"no credential", "", alphaReq, connect.CodeUnauthenticated},
				{"a wrong token", "not-the-admin-token-0123456789", alphaReq, connect.CodeUnauthenticated},
				{"a worker secret", c.secret, alphaReq, connect.CodeUnauthenticated},
				{"an owner token", c.alpha, alphaReq, connect.CodePermissionDenied},
			}
		case "owner":
			attempts = []attempt{
				{"no credential", "", alphaReq, connect.CodeUnauthenticated},
				{"a wrong token", "not-the-admin-token-0123456789", alphaReq, connect.CodeUnauthenticated},
				{"a rotated-looking token", server.OwnerTokenPrefix + strings.Repeat("A", 43), alphaReq, connect.CodeUnauthenticated},
				{"a worker secret", c.secret, alphaReq, connect.CodeUnauthenticated},
				{"another service's owner token", c.beta, alphaReq, connect.CodePermissionDenied},
				{"an owner token naming no service", c.alpha, unscoped, connect.CodePermissionDenied},
			}
		case "worker":
			attempts = []attempt{
				{"no credential", "", alphaReq, connect.CodeUnauthenticated},
				{"a too short secret", "short", alphaReq, connect.CodeUnauthenticated},
				{"another worker's secret", workerSecret + "-w2", alphaReq, connect.CodeUnauthenticated},
				{"the admin token", adminToken, alphaReq, connect.CodePermissionDenied},
				{"an owner token", c.alpha, alphaReq, connect.CodePermissionDenied},
			}
		default:
			t.Fatalf("%s: unknown role %q", p, roles[p])
		}
		for _, a := range attempts {
			err := call(ctx(t), addr, md, a.token, a.fill)
			if connect.CodeOf(err) != a.want {
				t.Errorf("%s (%s) with %s: got %v (code %v), want %v", p, roles[p], a.what, err, connect.CodeOf(err), a.want)
			}
		}
	}

	// The right credentials get past authentication. Rotation and
	// revocation go last: they change what the others see.
	last := []string{rationv1connect.OwnerServiceRevokeServiceProcedure, rationv1connect.OwnerServiceRotateOwnerTokenProcedure}
	procs = append(slices.DeleteFunc(procs, func(p string) bool { return slices.Contains(last, p) }), last...)
	for i, p := range procs {
		if roles[p] != "owner" {
			continue
		}
		addr := c.addrs[i%len(c.addrs)]
		for _, a := range []struct{ what, token, svc string }{{"the admin token", adminToken, "beta"}, {"its owner token", c.alpha, "alpha"}} {
			if p == rationv1connect.InsightServiceWatchActivityProcedure {
				// It never ends on its own: its first message is past
				// authentication.
				if err := firstWatched(addr, a.token, a.svc); err != nil {
					t.Errorf("%s with %s for %s: %v", p, a.what, a.svc, err)
				}
				continue
			}
			cx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			err := call(cx, addr, methods[p], a.token, map[string]any{"service": a.svc, "name": a.svc, "worker_id": "w1"})
			cancel()
			if denied(err) {
				t.Errorf("%s with %s for %s: %v", p, a.what, a.svc, err)
			}
		}
	}
}

// TestRoles_OwnerTokenAtWork: the owner token reaches its own service's
// calls through every node, rotation ends the old token everywhere at once
// (and ends its open streams), and a retried CreateService does not show a
// token twice.
func TestRoles_OwnerTokenAtWork(t *testing.T) {
	c := newRolesCluster(t)
	owner := func(i int, token string) clients { return newClients(http.DefaultClient, c.addrs[i], nil, token, "") }
	admin := owner(0, adminToken)

	for i := range c.addrs {
		cl := owner(i, c.alpha)
		add, err := cl.owner.AddItems(ctx(t), connect.NewRequest(&rationv1.AddItemsRequest{Service: "alpha", Items: []string{"x" + string(rune('0'+i))}}))
		if err != nil || add.Msg.GetAdded() != 1 {
			t.Fatalf("node %d: AddItems with the owner token: %v %v", i, add, err)
		}
		get, err := cl.owner.GetService(ctx(t), connect.NewRequest(&rationv1.GetServiceRequest{Name: "alpha"}))
		if err != nil || get.Msg.GetService().GetName() != "alpha" || !get.Msg.GetService().GetHasOwnerToken() {
			t.Fatalf("node %d: GetService with the owner token: %v %v", i, get, err)
		}
		stream, err := cl.owner.ExportResults(ctx(t), connect.NewRequest(&rationv1.ExportResultsRequest{Service: "alpha"}))
		if err != nil {
			t.Fatal(err)
		}
		var results int
		for stream.Receive() {
			results += len(stream.Msg().GetResults())
		}
		if err := stream.Err(); err != nil || results != 1 {
			t.Fatalf("node %d: ExportResults with the owner token: %d results, %v", i, results, err)
		}
		stats, err := cl.insight.GetStats(ctx(t), connect.NewRequest(&rationv1.GetStatsRequest{Service: "alpha"}))
		if err != nil || len(stats.Msg.GetServices()) != 1 {
			t.Fatalf("node %d: GetStats with the owner token: %v %v", i, stats, err)
		}
	}

	// A watch opened with the token (from the start, so that it answers at
	// once), to be ended by the rotation.
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	watch, err := owner(1, c.alpha).insight.WatchActivity(wctx, connect.NewRequest(&rationv1.WatchActivityRequest{Service: "alpha", AfterSeq: 1}))
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close()
	if !watch.Receive() {
		t.Fatalf("watch: %v", watch.Err())
	}

	// The owner rotates its own token through one follower ...
	rot, err := owner(2, c.alpha).owner.RotateOwnerToken(ctx(t), connect.NewRequest(&rationv1.RotateOwnerTokenRequest{Name: "alpha"}))
	if err != nil {
		t.Fatal(err)
	}
	next := rot.Msg.GetOwnerToken()
	if !strings.HasPrefix(next, server.OwnerTokenPrefix) || next == c.alpha {
		t.Fatalf("rotated token %q", next)
	}
	// ... and at once no node takes the old one; every node takes the new.
	for i := range c.addrs {
		_, err := owner(i, c.alpha).owner.GetService(ctx(t), connect.NewRequest(&rationv1.GetServiceRequest{Name: "alpha"}))
		if connect.CodeOf(err) != connect.CodeUnauthenticated {
			t.Errorf("node %d: GetService with the rotated-away token: %v", i, err)
		}
		_, err = owner(i, c.alpha).owner.AddItems(ctx(t), connect.NewRequest(&rationv1.AddItemsRequest{Service: "alpha", Items: []string{"late"}}))
		if connect.CodeOf(err) != connect.CodeUnauthenticated {
			t.Errorf("node %d: AddItems with the rotated-away token: %v", i, err)
		}
		if _, err := owner(i, next).owner.GetService(ctx(t), connect.NewRequest(&rationv1.GetServiceRequest{Name: "alpha"})); err != nil {
			t.Errorf("node %d: GetService with the new token: %v", i, err)
		}
	}
	for watch.Receive() {
	}
	if connect.CodeOf(watch.Err()) != connect.CodeUnauthenticated {
		t.Errorf("a watch opened with the rotated-away token ended with %v, want Unauthenticated", watch.Err())
	}

	// The admin can rotate too; the owner's token then stops.
	rot, err = admin.owner.RotateOwnerToken(ctx(t), connect.NewRequest(&rationv1.RotateOwnerTokenRequest{Name: "alpha"}))
	if err != nil || rot.Msg.GetOwnerToken() == "" {
		t.Fatalf("admin rotation: %v %v", rot, err)
	}
	if _, err := owner(0, next).owner.GetService(ctx(t), connect.NewRequest(&rationv1.GetServiceRequest{Name: "alpha"})); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Errorf("the owner's token after the admin rotated: %v", err)
	}
	tokens := []string{c.alpha, c.beta, next, rot.Msg.GetOwnerToken()}

	// A retried CreateService replays the first answer without a token; the
	// first token stays in force.
	req := &rationv1.CreateServiceRequest{Name: "gamma", Kind: "dmcheck", RequestId: "create-gamma"}
	first, err := owner(1, adminToken).owner.CreateService(ctx(t), connect.NewRequest(req))
	if err != nil || first.Msg.GetOwnerToken() == "" {
		t.Fatalf("create: %v %v", first, err)
	}
	again, err := owner(2, adminToken).owner.CreateService(ctx(t), connect.NewRequest(req))
	if err != nil || again.Msg.GetOwnerToken() != "" {
		t.Fatalf("retried create: %v %v; want the first answer without a token", again, err)
	}
	if _, err := owner(2, first.Msg.GetOwnerToken()).owner.GetService(ctx(t), connect.NewRequest(&rationv1.GetServiceRequest{Name: "gamma"})); err != nil {
		t.Fatalf("the first create's token after the retry: %v", err)
	}
	tokens = append(tokens, first.Msg.GetOwnerToken())

	// Only hashes reach the log, the snapshots and the request-id records.
	c.EnsureSame()
	for i, n := range c.Nodes {
		var snap bytes.Buffer
		if err := n.State().WriteSnapshot(&snap); err != nil {
			t.Fatal(err)
		}
		files := map[string][]byte{"state snapshot": snap.Bytes()}
		err := filepath.WalkDir(c.Config(i).DataDir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			data, err := os.ReadFile(path)
			files[path] = data
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		var sawHash bool
		for name, data := range files {
			for _, tok := range tokens {
				if bytes.Contains(data, []byte(tok)) || bytes.Contains(data, []byte(strings.TrimPrefix(tok, server.OwnerTokenPrefix))) {
					t.Errorf("node %d: %s holds an owner token in plain text", i, name)
				}
				sum := sha256.Sum256([]byte(tok))
				sawHash = sawHash || (name != "state snapshot" && bytes.Contains(data, sum[:]))
			}
		}
		if !sawHash {
			t.Errorf("node %d: no owner token hash found in its data dir: the scan above proves nothing", i)
		}
	}
}

// TestRoles_NoAdminTokenNoCredentials: without an admin token (a loopback
// development node) owner and admin calls need no credential, as before,
// and CreateService still hands out an owner token.
func TestRoles_NoAdminTokenNoCredentials(t *testing.T) {
	c := newNode(t, "")
	cl := newClients(http.DefaultClient, c.addrs[0], nil, "", "")
	r, err := cl.owner.CreateService(ctx(t), connect.NewRequest(&rationv1.CreateServiceRequest{Name: "dev", Kind: "dmcheck"}))
	if err != nil || !strings.HasPrefix(r.Msg.GetOwnerToken(), server.OwnerTokenPrefix) {
		t.Fatalf("create: %v %v", r, err)
	}
	if _, err := cl.owner.ListServices(ctx(t), connect.NewRequest(&rationv1.ListServicesRequest{})); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.insight.GetStats(ctx(t), connect.NewRequest(&rationv1.GetStatsRequest{})); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.cluster.Status(ctx(t), connect.NewRequest(&rationv1.StatusRequest{})); err != nil {
		t.Fatal(err)
	}
	// Any token is ignored, an owner token of another service included.
	other := newClients(http.DefaultClient, c.addrs[0], nil, "whatever-token", "")
	if _, err := other.owner.AddItems(ctx(t), connect.NewRequest(&rationv1.AddItemsRequest{Service: "dev", Items: []string{"1"}})); err != nil {
		t.Fatal(err)
	}
	// Worker calls still need a secret.
	w := newClients(http.DefaultClient, c.addrs[0], nil, "", "")
	_, err = w.worker.Register(ctx(t), connect.NewRequest(&rationv1.RegisterRequest{Service: "dev", WorkerId: "w"}))
	if connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("register without a secret: %v", err)
	}
}

// TestAuth_AuthorizationHeader: the header is read as RFC 6750 has it: the
// Bearer scheme in any case; another scheme or no token is refused, naming
// the header and its form, without repeating what was sent.
func TestAuth_AuthorizationHeader(t *testing.T) {
	c := newNode(t, "")
	register := func(header string) error {
		set := connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
			return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
				if header != "" {
					req.Header().Set("Authorization", header)
				}
				return next(ctx, req)
			}
		})
		w := rationv1connect.NewWorkerServiceClient(http.DefaultClient, "http://"+c.addrs[0], connect.WithInterceptors(set))
		_, err := w.Register(ctx(t), connect.NewRequest(&rationv1.RegisterRequest{Service: "dm", WorkerId: "w1"}))
		return err
	}
	owner := newClients(http.DefaultClient, c.addrs[0], nil, "", "").owner
	if _, err := owner.CreateService(ctx(t), connect.NewRequest(&rationv1.CreateServiceRequest{Name: "dm", Kind: "dmcheck"})); err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"Bearer " + workerSecret, "bearer " + workerSecret, "BEARER  " + workerSecret} {
		if err := register(h); err != nil {
			t.Errorf("%q: %v", strings.Replace(h, workerSecret, "<secret>", 1), err)
		}
	}
	for _, tt := range []struct{ header, reason, text string }{
		{"", "NO_CREDENTIAL", "Authorization: Bearer <secret>"},
		{"Basic " + workerSecret, "BAD_CREDENTIAL", `does not use the Bearer scheme: send "Authorization: Bearer <token>"`},
		{workerSecret, "BAD_CREDENTIAL", "does not use the Bearer scheme"},
		{"Bearer", "BAD_CREDENTIAL", `no token after "Bearer"`},
		{"Bearer   ", "BAD_CREDENTIAL", `no token after "Bearer"`},
	} {
		err := register(tt.header)
		if connect.CodeOf(err) != connect.CodeUnauthenticated || reasonOf(err) != tt.reason || !strings.Contains(err.Error(), tt.text) {
			t.Errorf("%q: %v (reason %q), want unauthenticated %s with %q", strings.Replace(tt.header, workerSecret, "<secret>", 1), err, reasonOf(err), tt.reason, tt.text)
		}
		if err != nil && strings.Contains(err.Error(), workerSecret) {
			t.Errorf("the refusal repeats the secret: %v", err)
		}
	}
}
