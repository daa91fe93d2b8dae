package server_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"connectrpc.com/connect"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

// A followed export streams the results that exist, then each new one as
// it is accepted; resumed with after_seq it starts past what it has seen.
// Acknowledging moves the service's export position.
func TestServer_ExportFollowsAndResumes(t *testing.T) {
	c := newNode(t, "")
	cl := newClients(http.DefaultClient, c.addrs[0], nil, "", workerSecret)
	mustDo(t, func() error {
		_, err := cl.owner.CreateService(ctx(t), connect.NewRequest(&rationv1.CreateServiceRequest{Name: "dm", Kind: "dmcheck",
			Config: &rationv1.ServiceConfig{BucketSize: 1}}))
		return err
	})
	mustDo(t, func() error {
		_, err := cl.worker.Register(ctx(t), connect.NewRequest(&rationv1.RegisterRequest{Service: "dm", WorkerId: "w1"}))
		return err
	})
	submit := func(item string) {
		t.Helper()
		mustDo(t, func() error {
			_, err := cl.owner.AddItems(ctx(t), connect.NewRequest(&rationv1.AddItemsRequest{Service: "dm", Items: []string{item}}))
			return err
		})
		acq, err := cl.worker.Acquire(ctx(t), connect.NewRequest(&rationv1.AcquireRequest{Service: "dm", WorkerId: "w1"}))
		if err != nil || len(acq.Msg.Buckets) != 1 {
			t.Fatalf("acquire: %v, %v", acq, err)
		}
		b := acq.Msg.Buckets[0]
		mustDo(t, func() error {
			_, err := cl.worker.Submit(ctx(t), connect.NewRequest(&rationv1.SubmitRequest{WorkerId: "w1", BucketId: b.Id,
				Epoch: b.Lease.Epoch, Results: []*rationv1.ResultInput{{Item: item, Verdict: "DM"}}}))
			return err
		})
	}
	submit("a")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := cl.owner.ExportResults(sctx, connect.NewRequest(&rationv1.ExportResultsRequest{Service: "dm", Follow: true}))
	if err != nil {
		t.Fatal(err)
	}
	var items []string
	var seqs []uint64
	next := func() {
		t.Helper()
		if !stream.Receive() {
			t.Fatalf("the followed export ended: %v", stream.Err())
		}
		for _, r := range stream.Msg().GetResults() {
			items = append(items, r.GetItem())
		}
		seqs = append(seqs, stream.Msg().GetSeq())
	}
	next() // the result that existed
	submit("b")
	next() // one accepted while the stream was open
	submit("c")
	next()
	cancel()
	if len(items) != 3 || items[0] != "a" || items[1] != "b" || items[2] != "c" || !(seqs[0] < seqs[1] && seqs[1] < seqs[2]) {
		t.Fatalf("followed export gave %v at seqs %v", items, seqs)
	}
	// Resumed after the first batch, a plain export ends after the last.
	again, err := cl.owner.ExportResults(ctx(t), connect.NewRequest(&rationv1.ExportResultsRequest{Service: "dm", AfterSeq: seqs[0]}))
	if err != nil {
		t.Fatal(err)
	}
	var resumed []string
	for again.Receive() {
		for _, r := range again.Msg().GetResults() {
			resumed = append(resumed, r.GetItem())
		}
	}
	if again.Err() != nil || len(resumed) != 2 || resumed[0] != "b" || resumed[1] != "c" {
		t.Fatalf("resumed export gave %v, %v", resumed, again.Err())
	}
	ack, err := cl.owner.AckResults(ctx(t), connect.NewRequest(&rationv1.AckResultsRequest{Service: "dm", ThroughSeq: seqs[1]}))
	if err != nil {
		t.Fatal(err)
	}
	if p := ack.Msg.GetExport(); p.AckedThrough != seqs[1] || p.LastSeq != seqs[2] || p.UnackedResults != 1 {
		t.Fatalf("export position after acking through %d: %v", seqs[1], p)
	}
}

func mustDo(t *testing.T, call func() error) {
	t.Helper()
	if err := call(); err != nil {
		t.Fatal(err)
	}
}
