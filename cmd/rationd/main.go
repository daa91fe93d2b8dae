// Command rationd runs one ration node: the replicated state machine under
// Raft, and the API (Connect, gRPC, gRPC-Web and JSON over HTTP) on one port.
// With no flags it starts a single-node cluster that keeps its data in
// ./ration-data and serves 127.0.0.1:7070.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	m := NewMain()
	if err := m.ParseFlags(os.Args[1:], os.Getenv); err != nil {
		if errors.Is(err, errHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "rationd:", err)
		os.Exit(2)
	}
	if err := m.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "rationd:", err)
		os.Exit(1)
	}
	<-ctx.Done()
	if err := m.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "rationd:", err)
		os.Exit(1)
	}
}
