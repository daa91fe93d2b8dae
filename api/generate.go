// Package api holds ration's protocol buffer definitions and the Go code
// generated from them: the public API (ration/v1), the formats of the
// replicated log and snapshots (ration/state/v1) and the calls between nodes
// (ration/peer/v1). The generated code is committed, with
// ration/v1/descriptors.binpb, the public files with their comments, which
// gRPC reflection serves (PublicFiles); after editing a .proto file, run
// `go generate ./api` (it needs only the Go toolchain).
package api

//go:generate go run github.com/bufbuild/buf/cmd/buf@v1.75.0 lint
//go:generate go run github.com/bufbuild/buf/cmd/buf@v1.75.0 generate
//go:generate go run github.com/bufbuild/buf/cmd/buf@v1.75.0 build --path ration/v1 --as-file-descriptor-set -o ration/v1/descriptors.binpb
