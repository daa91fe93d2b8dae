package fsm

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	statev1 "github.com/rationhq/ration/api/ration/state/v1"
)

// execute applies one command (never a batch), the same way for every
// operation: decode it, refuse an owner token that is not the service's,
// answer a retried request id with its first answer, or else run the
// operation and remember its answer under the request id. sum, when not
// nil, is the command's body hash read from the log entry (see bodySums).
func (x *txn) execute(cmd *statev1.Command, sum []byte) *statev1.CommandResult {
	o, req, compacted := operations.decode(cmd)
	if o == nil {
		panic(fmt.Sprintf("fsm: log entry %d has an unknown operation %T", x.index, cmd.Op))
	}
	switch {
	case compacted:
		var err error
		if req, x.compactResults, err = o.compact.expand(req); err != nil {
			return x.refuse(o, req, err)
		}
	case o.compact != nil:
		sum = nil // a request id keeps the compact form's hash: see canonicalHash
	}
	if err := x.checkOwner(o, req); err != nil {
		// Before the request-id lookup: a rotated-away token gets no answer,
		// not even a replayed one. The refusal is not remembered.
		return x.refuse(o, req, err)
	}
	key := o.requestKey(x.hdr, req)
	if key == "" {
		return x.run(o, req)
	}
	if sum == nil {
		sum = canonicalHash(cmd)
	}
	if prev, ok := x.t.requests.Get(&request{Key: key}); ok {
		if string(prev.BodyHash) == string(sum) {
			return prev.result()
		}
		return x.refuse(o, req, reusedID(x.hdr, prev))
	}
	res := x.run(o, req)
	x.t.putRequest(&request{Key: key, BodyHash: sum, At: x.now, Index: x.index, Answer: encodeAnswer(res)})
	return res
}

// run runs an operation and writes its changes back.
func (x *txn) run(o *operation, req proto.Message) *statev1.CommandResult {
	answer, err := o.apply(x, req)
	if err != nil {
		return x.refuse(o, req, err)
	}
	res := o.resultOf(x, answer)
	x.flush()
	return res
}

// reusedID is the refusal of a request id that first came with another body.
func reusedID(hdr *statev1.CommandHeader, prev *request) error {
	return fmt.Errorf("request id %q was first used at index %d for another request: %w", hdr.GetRequestId(), prev.Index, ErrRequestIDReused)
}

// requestOverhead approximates a remembered request's memory beyond its
// key, hash and answer: the struct and its two index entries.
const requestOverhead = 128

// cost is what a remembered request counts against request_max_bytes.
func (r *request) cost() uint64 {
	return uint64(len(r.Key)+len(r.BodyHash)+len(r.Answer)) + requestOverhead
}

// result decodes the remembered answer.
func (r *request) result() *statev1.CommandResult {
	res := &statev1.CommandResult{}
	if err := proto.Unmarshal(r.Answer, res); err != nil {
		panic(fmt.Sprintf("fsm: request %q: remembered answer does not decode: %v", r.Key, err))
	}
	return res
}

// encodeAnswer encodes a command's answer for a request record.
func encodeAnswer(res *statev1.CommandResult) []byte {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(res)
	if err != nil {
		panic(fmt.Sprintf("fsm: encode answer: %v", err))
	}
	return b
}
