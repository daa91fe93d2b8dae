// Package server will serve ration's Connect, gRPC and gRPC-Web API on top
// of cluster. It is not built yet (see the project's issues).
package server
