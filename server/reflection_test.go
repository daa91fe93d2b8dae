package server_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"connectrpc.com/grpcreflect"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/rationhq/ration/api/ration/v1/rationv1connect"
)

// TestServer_ReflectionHasComments: gRPC reflection lists the four public
// services, serves their files with the .proto files' comments (what
// grpcurl describe shows), and does not serve the internal formats.
func TestServer_ReflectionHasComments(t *testing.T) {
	c := newNode(t, "reflection-admin-token")
	rc := grpcreflect.NewClient(h2cClient(), "http://"+c.addrs[0], connect.WithGRPC())
	stream := rc.NewStream(context.Background())
	t.Cleanup(func() { stream.Close() })

	names, err := stream.ListServices()
	if err != nil {
		t.Fatal(err)
	}
	want := []protoreflect.FullName{rationv1connect.ClusterServiceName, rationv1connect.InsightServiceName,
		rationv1connect.OwnerServiceName, rationv1connect.WorkerServiceName}
	slices.Sort(names)
	if !slices.Equal(names, want) {
		t.Errorf("ListServices = %v, want %v", names, want)
	}

	fds, err := stream.FileContainingSymbol(rationv1connect.WorkerServiceName)
	if err != nil {
		t.Fatal(err)
	}
	files, err := protodesc.NewFiles(&descriptorpb.FileDescriptorSet{File: fds})
	if err != nil {
		t.Fatal(err)
	}
	d, err := files.FindDescriptorByName(rationv1connect.WorkerServiceName + ".Acquire")
	if err != nil {
		t.Fatal(err)
	}
	comment := d.ParentFile().SourceLocations().ByDescriptor(d).LeadingComments
	if !strings.HasPrefix(comment, " Acquire leases up to max_buckets buckets") || !strings.Contains(comment, "Role: worker.") {
		t.Errorf("Acquire's leading comment = %q, want worker.proto's", comment)
	}

	for _, internal := range []protoreflect.FullName{"ration.state.v1.Command", "ration.peer.v1.PeerService"} {
		if _, err := stream.FileContainingSymbol(internal); err == nil {
			t.Errorf("reflection serves %s", internal)
		}
	}
}
