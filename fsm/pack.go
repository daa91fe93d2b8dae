package fsm

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

// Pack returns cmd with an AddItems or a Submit in the packed form the log
// carries (CompactAddItems, CompactSubmit): its ids or results as one byte
// string, which every node decodes with one allocation instead of one or
// four per id or result. Other commands come back as they are. cmd itself
// is not changed. The leader packs what it proposes; Apply takes both forms.
func Pack(cmd *rationv1.Command) *rationv1.Command {
	switch op := cmd.Op.(type) {
	case *rationv1.Command_AddItems:
		req := op.AddItems
		items := req.Items
		req.Items = nil
		c := proto.Clone(req).(*rationv1.AddItemsRequest)
		req.Items = items
		size := 0
		for _, id := range items {
			size += packedLen(id)
		}
		var buf strings.Builder
		buf.Grow(size)
		for _, id := range items {
			writePacked(&buf, id)
		}
		return &rationv1.Command{Header: cmd.Header, Op: &rationv1.Command_CompactAddItems{CompactAddItems: &rationv1.CompactAddItems{
			Request: c, Items: buf.String(), Count: uint32(len(items))}}}
	case *rationv1.Command_Submit:
		req := op.Submit
		results := req.Results
		req.Results = nil
		c := proto.Clone(req).(*rationv1.SubmitRequest)
		req.Results = results
		buf := packResults(results, func(r *rationv1.ResultInput) (string, string, string) {
			return r.GetItem(), r.GetVerdict(), r.GetPayload()
		})
		return &rationv1.Command{Header: cmd.Header, Op: &rationv1.Command_CompactSubmit{CompactSubmit: &rationv1.CompactSubmit{
			Request: c, Results: buf, Count: uint32(len(results))}}}
	}
	return cmd
}

// unpackCommand returns the plain form of a packed command, its strings
// sharing the packed string (not copied), or cmd itself when it is not
// packed; cmd is not changed. For a CompactSubmit it also returns the results as packed, which
// is the form a ResultBatch stores them in. A packed command that does not
// decode comes back in its plain form without its ids or results, with an
// error saying what is wrong.
func unpackCommand(cmd *rationv1.Command) (*rationv1.Command, string, error) {
	switch op := cmd.Op.(type) {
	case *rationv1.Command_CompactAddItems:
		p := op.CompactAddItems
		req := &rationv1.AddItemsRequest{}
		if p.GetRequest() != nil {
			req = proto.Clone(p.GetRequest()).(*rationv1.AddItemsRequest)
		}
		plain := &rationv1.Command{Header: cmd.Header, Op: &rationv1.Command_AddItems{AddItems: req}}
		data, n := p.GetItems(), p.GetCount()
		if uint64(n) > uint64(len(data)) { // every id takes a byte at least
			return plain, "", fmt.Errorf("packed items: count %d, but %d bytes: %w", n, len(data), ErrInvalidArgument)
		}
		items := make([]string, 0, n)
		for len(data) > 0 {
			id, rest, ok := readString(data)
			if !ok {
				return plain, "", fmt.Errorf("packed items: id %d does not decode: %w", len(items), ErrInvalidArgument)
			}
			items, data = append(items, id), rest
		}
		if len(items) != int(n) {
			return plain, "", fmt.Errorf("packed items: %d ids, count says %d: %w", len(items), n, ErrInvalidArgument)
		}
		req.Items = items
		return plain, "", nil
	case *rationv1.Command_CompactSubmit:
		p := op.CompactSubmit
		req := &rationv1.SubmitRequest{}
		if p.GetRequest() != nil {
			req = proto.Clone(p.GetRequest()).(*rationv1.SubmitRequest)
		}
		plain := &rationv1.Command{Header: cmd.Header, Op: &rationv1.Command_Submit{Submit: req}}
		data, n := p.GetResults(), p.GetCount()
		packed := data
		if 3*uint64(n) > uint64(len(data)) { // every result takes three bytes at least
			return plain, "", fmt.Errorf("packed results: count %d, but %d bytes: %w", n, len(data), ErrInvalidArgument)
		}
		slab := make([]rationv1.ResultInput, n)
		results := make([]*rationv1.ResultInput, n)
		i := 0
		for ; len(data) > 0 && i < int(n); i++ {
			var f [3]string
			for j := range f {
				var ok bool
				if f[j], data, ok = readString(data); !ok {
					return plain, "", fmt.Errorf("packed results: result %d does not decode: %w", i, ErrInvalidArgument)
				}
			}
			r := &slab[i]
			r.Item, r.Verdict, r.Payload = f[0], f[1], f[2]
			results[i] = r
		}
		if i != int(n) || len(data) > 0 {
			return plain, "", fmt.Errorf("packed results: count %d does not match the bytes: %w", n, ErrInvalidArgument)
		}
		req.Results = results
		return plain, packed, nil
	}
	return cmd, "", nil
}

// packable reports whether cmd is an operation Pack changes, in plain form.
func packable(cmd *rationv1.Command) bool {
	switch cmd.Op.(type) {
	case *rationv1.Command_AddItems, *rationv1.Command_Submit:
		return true
	}
	return false
}

// canonicalHash is bodyHash of a command's packed form: a request retried
// with the same id matches whichever form either attempt took.
func canonicalHash(cmd *rationv1.Command) []byte {
	return bodyHash(Pack(cmd))
}
