package api

import (
	_ "embed"
	"sync"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
)

// publicDescriptors is the FileDescriptorSet of ration/v1 and the files it
// imports, with comments, as `go generate` built it from the .proto files.
//
//go:embed ration/v1/descriptors.binpb
var publicDescriptors []byte

// PublicFiles returns the public API's files (ration/v1 and the
// well-known types it imports) with their comments, for gRPC reflection:
// the descriptors compiled into the generated Go carry none.
func PublicFiles() (*protoregistry.Files, error) { return publicFiles() }

var publicFiles = sync.OnceValues(func() (*protoregistry.Files, error) {
	set := &descriptorpb.FileDescriptorSet{}
	if err := proto.Unmarshal(publicDescriptors, set); err != nil {
		return nil, err
	}
	return protodesc.NewFiles(set)
})
