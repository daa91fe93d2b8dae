package fsm

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	statev1 "github.com/rationhq/ration/api/ration/state/v1"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

// The largest operations travel in a compact form: an AddItems's ids, or a
// Submit's results, as one byte string (CompactAddItems, CompactSubmit),
// which every node decodes with one allocation instead of one or four per
// id or result. The leader proposes them compact; Apply takes both forms.
// Refusals of a compact form that does not decode say "packed", as they
// always have: their text is part of the replicated state.

// compactForm is the compact encoding of one operation's request.
type compactForm struct {
	field protoreflect.FieldDescriptor // Command's field for the compact form
	// compact returns the compact form of a plain request, which it leaves
	// as it was (it is not safe for concurrent use with readers of it).
	compact func(proto.Message) proto.Message
	// expand returns the plain request, its strings sharing the compact
	// form's, and for a submit the results as they were encoded, which is
	// how a ResultBatch keeps them. A form that does not decode gives the
	// plain request without its ids or results and an error saying why.
	expand func(proto.Message) (proto.Message, string, error)
}

func newCompactForm[Plain, Compact proto.Message](compact func(Plain) Compact, expand func(Compact) (Plain, string, error)) *compactForm {
	var c Compact
	f := oneofField(commandOps, c.ProtoReflect().Descriptor())
	if f == nil {
		panic(fmt.Sprintf("fsm: Command carries no %s", c.ProtoReflect().Descriptor().FullName()))
	}
	return &compactForm{field: f,
		compact: func(m proto.Message) proto.Message { return compact(m.(Plain)) },
		expand:  func(m proto.Message) (proto.Message, string, error) { return expand(m.(Compact)) },
	}
}

var compactAddItems = newCompactForm(
	func(req *rationv1.AddItemsRequest) *statev1.CompactAddItems {
		items := req.Items
		req.Items = nil // so that the clone does not copy them
		c := proto.CloneOf(req)
		req.Items = items
		size := 0
		for _, id := range req.Items {
			size += encodedLen(id)
		}
		var buf strings.Builder
		buf.Grow(size)
		for _, id := range req.Items {
			writeString(&buf, id)
		}
		return &statev1.CompactAddItems{Request: c, Items: buf.String(), Count: uint32(len(req.Items))}
	},
	func(p *statev1.CompactAddItems) (*rationv1.AddItemsRequest, string, error) {
		req := &rationv1.AddItemsRequest{}
		if p.GetRequest() != nil {
			req = proto.CloneOf(p.GetRequest())
		}
		data, n := p.GetItems(), p.GetCount()
		if uint64(n) > uint64(len(data)) { // every id takes a byte at least
			return req, "", fmt.Errorf("packed items: count %d, but %d bytes: %w", n, len(data), ErrInvalidArgument)
		}
		items := make([]string, 0, n)
		for len(data) > 0 {
			id, rest, ok := readString(data)
			if !ok {
				return req, "", fmt.Errorf("packed items: id %d does not decode: %w", len(items), ErrInvalidArgument)
			}
			items, data = append(items, id), rest
		}
		if len(items) != int(n) {
			return req, "", fmt.Errorf("packed items: %d ids, count says %d: %w", len(items), n, ErrInvalidArgument)
		}
		req.Items = items
		return req, "", nil
	})

var compactSubmit = newCompactForm(
	func(req *rationv1.SubmitRequest) *statev1.CompactSubmit {
		results := req.Results
		req.Results = nil // so that the clone does not copy them
		c := proto.CloneOf(req)
		req.Results = results
		buf := encodeResults(req.Results, func(r *rationv1.ResultInput) (string, string, string) {
			return r.GetItem(), r.GetVerdict(), r.GetPayload()
		})
		return &statev1.CompactSubmit{Request: c, Results: buf, Count: uint32(len(req.Results))}
	},
	func(p *statev1.CompactSubmit) (*rationv1.SubmitRequest, string, error) {
		req := &rationv1.SubmitRequest{}
		if p.GetRequest() != nil {
			req = proto.CloneOf(p.GetRequest())
		}
		data, n := p.GetResults(), p.GetCount()
		encoded := data
		if 3*uint64(n) > uint64(len(data)) { // every result takes three bytes at least
			return req, "", fmt.Errorf("packed results: count %d, but %d bytes: %w", n, len(data), ErrInvalidArgument)
		}
		slab := make([]rationv1.ResultInput, n)
		results := make([]*rationv1.ResultInput, n)
		i := 0
		for ; len(data) > 0 && i < int(n); i++ {
			var f [3]string
			for j := range f {
				var ok bool
				if f[j], data, ok = readString(data); !ok {
					return req, "", fmt.Errorf("packed results: result %d does not decode: %w", i, ErrInvalidArgument)
				}
			}
			r := &slab[i]
			r.Item, r.Verdict, r.Payload = f[0], f[1], f[2]
			results[i] = r
		}
		if i != int(n) || len(data) > 0 {
			return req, "", fmt.Errorf("packed results: count %d does not match the bytes: %w", n, ErrInvalidArgument)
		}
		req.Results = results
		return req, encoded, nil
	})

// Compact returns cmd with its operation in compact form, if it has one;
// other commands come back as they are. cmd itself is not changed.
func Compact(cmd *statev1.Command) *statev1.Command {
	o, req, compacted := operations.decode(cmd)
	if o == nil || o.compact == nil || compacted {
		return cmd
	}
	c := &statev1.Command{Header: cmd.Header}
	c.ProtoReflect().Set(o.compact.field, protoreflect.ValueOfMessage(o.compact.compact(req).ProtoReflect()))
	return c
}

// canonicalHash is bodyHash of a command's compact form: a request retried
// with the same id matches whichever form either attempt took.
func canonicalHash(cmd *statev1.Command) []byte {
	return bodyHash(Compact(cmd))
}
