package client_test

import (
	"context"
	"log"
	"os/signal"
	"syscall"

	"github.com/rationhq/ration/api/client"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

// A DM-check worker: it leases buckets of account ids, checks each, and
// submits a verdict per account. Run it against any node(s) of a cluster.
func ExampleWorker() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	c, err := client.New(client.Config{
		Addrs:        []string{"127.0.0.1:7070", "127.0.0.1:7080", "127.0.0.1:7090"},
		WorkerSecret: "my-worker-secret-1234",
	})
	if err != nil {
		log.Fatal(err)
	}
	w := &client.Worker{
		Client: c, Service: "dm", WorkerID: "42", Name: "alice", MaxBuckets: 2,
		Process: func(ctx context.Context, b *rationv1.LeasedBucket) ([]*rationv1.ResultInput, error) {
			var out []*rationv1.ResultInput
			for _, account := range b.Items {
				verdict := "DM" // ask the real API here; stop early if ctx is done
				out = append(out, &rationv1.ResultInput{Item: account, Verdict: verdict})
			}
			return out, nil
		},
		OnError: func(err error) { log.Print(err) },
	}
	if err := w.Run(ctx); err != nil {
		log.Fatal(err)
	}
}
