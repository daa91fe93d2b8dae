// Package server serves ration's API (ration.v1) over Connect, gRPC and
// gRPC-Web on one HTTP handler: it authenticates callers, validates
// requests, forwards writes to the leader, answers reads at the requested
// consistency from the local state, and maps domain errors to RPC codes.
package server
