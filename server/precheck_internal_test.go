package server

import (
	"os"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/fsm"
)

// TestProtoCodec_DropsUnknown: unknown fields, at the top and in nested and
// repeated messages, are gone once a request is decoded, so they never
// become part of a command; known ones stay.
func TestProtoCodec_DropsUnknown(t *testing.T) {
	unknown := protowire.AppendString(protowire.AppendTag(nil, 999, protowire.BytesType), "from the future")
	withUnknown := func(m proto.Message) []byte {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return append(b, unknown...)
	}
	result := withUnknown(&rationv1.ResultInput{Item: "a", Verdict: "DM"})
	config := withUnknown(&rationv1.ServiceConfig{BucketSize: 7})
	for _, tt := range []struct {
		in   []byte
		into proto.Message
		want proto.Message
	}{
		{withUnknown(&rationv1.AcquireRequest{Service: "dm", WorkerId: "w1"}), &rationv1.AcquireRequest{},
			&rationv1.AcquireRequest{Service: "dm", WorkerId: "w1"}},
		{withUnknown(&rationv1.SubmitRequest{WorkerId: "w1", BucketId: 3}), &rationv1.SubmitRequest{},
			&rationv1.SubmitRequest{WorkerId: "w1", BucketId: 3, Results: []*rationv1.ResultInput{{Item: "a", Verdict: "DM"}, {Item: "a", Verdict: "DM"}}}},
		{withUnknown(&rationv1.CreateServiceRequest{Name: "dm", Kind: "dmcheck"}), &rationv1.CreateServiceRequest{},
			&rationv1.CreateServiceRequest{Name: "dm", Kind: "dmcheck", Config: &rationv1.ServiceConfig{BucketSize: 7}}},
	} {
		in := tt.in
		switch tt.into.(type) {
		case *rationv1.SubmitRequest:
			for range 2 {
				in = protowire.AppendBytes(protowire.AppendTag(in, 4, protowire.BytesType), result)
			}
		case *rationv1.CreateServiceRequest:
			in = protowire.AppendBytes(protowire.AppendTag(in, 3, protowire.BytesType), config)
		}
		plain := tt.into.ProtoReflect().New().Interface()
		if err := proto.Unmarshal(in, plain); err != nil {
			t.Fatal(err)
		}
		if proto.Equal(plain, tt.want) {
			t.Fatalf("%T: the request has no unknown fields to drop", tt.into)
		}
		if err := (protoCodec{}).Unmarshal(in, tt.into); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(tt.into, tt.want) {
			t.Errorf("%T decoded by protoCodec: %v, want %v", tt.into, tt.into, tt.want)
		}
		out, err := proto.Marshal(tt.into)
		if err != nil {
			t.Fatal(err)
		}
		if len(out) != proto.Size(tt.want) {
			t.Errorf("%T marshals to %d bytes, want %d", tt.into, len(out), proto.Size(tt.want))
		}
	}
}

// TestErrors_READMEListsEveryReason keeps the README's table of error codes
// in step with the one table that maps errors to codes.
func TestErrors_READMEListsEveryReason(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n## Errors\n")
	if !ok {
		t.Fatal("README has no Errors section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	rows := map[string]string{} // code -> reasons cell
	for line := range strings.SplitSeq(section, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 4 || !strings.Contains(cells[1], "`") {
			continue
		}
		for code := range strings.SplitSeq(cells[1], ",") {
			rows[strings.Trim(strings.TrimSpace(code), "`")] += cells[2]
		}
	}
	for _, c := range codes {
		reason := fsm.Reason(c.err)
		if reason == "" {
			reason = c.reason
		}
		if !strings.Contains(rows[c.code.String()], "`"+reason+"`") {
			t.Errorf("README's Errors table does not list %s under %s", reason, c.code)
		}
	}
}
