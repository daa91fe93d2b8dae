package server

import (
	"fmt"
	"regexp"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// protoCodec is Connect's binary protobuf codec, except that it drops
// unknown fields as it decodes.
// They must not reach the log: a field a later version defines would take
// effect when that version replays an entry this one accepted without
// understanding it.
type protoCodec struct{}

func (protoCodec) Name() string { return "proto" }

func (protoCodec) IsBinary() bool { return true }

func (c protoCodec) Marshal(m any) ([]byte, error) { return c.MarshalAppend(nil, m) }

func (protoCodec) MarshalAppend(dst []byte, m any) ([]byte, error) {
	pm, ok := m.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("%T is not a protobuf message", m)
	}
	return proto.MarshalOptions{}.MarshalAppend(dst, pm)
}

func (protoCodec) MarshalStable(m any) ([]byte, error) {
	pm, ok := m.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("%T is not a protobuf message", m)
	}
	return proto.MarshalOptions{Deterministic: true}.Marshal(pm)
}

func (protoCodec) Unmarshal(data []byte, m any) error {
	pm, ok := m.(proto.Message)
	if !ok {
		return fmt.Errorf("%T is not a protobuf message", m)
	}
	if err := (proto.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(data, pm); err != nil {
		return fmt.Errorf("unmarshal into %T: %w", m, err)
	}
	return nil
}

// jsonCodec is Connect's JSON codec, except that it refuses unknown fields:
// JSON is written by hand, and a misspelled field ({"maxBucket": 3})
// silently ignored is a request that does something else than was meant.
// Its errors name the field as the caller spelled it and where it stands,
// without Go's type names.
type jsonCodec struct{ name string }

// jsonCodecs are registered under both names Connect gives JSON.
var jsonCodecs = []jsonCodec{{"json"}, {"json; charset=utf-8"}}

func (c jsonCodec) Name() string { return c.name }

func (jsonCodec) IsBinary() bool { return false }

func (jsonCodec) Marshal(m any) ([]byte, error) {
	pm, ok := m.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("%T is not a protobuf message", m)
	}
	return protojson.MarshalOptions{}.Marshal(pm)
}

func (jsonCodec) Unmarshal(data []byte, m any) error {
	pm, ok := m.(proto.Message)
	if !ok {
		return fmt.Errorf("%T is not a protobuf message", m)
	}
	name := pm.ProtoReflect().Descriptor().FullName()
	if len(data) == 0 {
		return fmt.Errorf("the body is empty: send a JSON object of %s ({} for none of its fields)", name)
	}
	if err := (protojson.UnmarshalOptions{}).Unmarshal(data, pm); err != nil {
		return fmt.Errorf("JSON body for %s: %s", name, jsonProblem(err))
	}
	return nil
}

// jsonPosition is where protojson says a problem is: "proto: (line 1:32): ".
// (The protobuf module writes some of those spaces as U+00A0, at random,
// so that nobody parses its messages; this only reformats them.)
var jsonPosition = regexp.MustCompile(`^proto:[\s\x{00a0}]*(?:\(line (\d+):(\d+)\):[\s\x{00a0}]*)?`)

// jsonProblem words a protojson error for the caller: "unknown field
// "maxBucket" (line 1, column 32)".
func jsonProblem(err error) string {
	msg := err.Error()
	m := jsonPosition.FindStringSubmatch(msg)
	if m == nil {
		return msg
	}
	msg = strings.TrimPrefix(msg, m[0])
	if m[1] != "" {
		msg += fmt.Sprintf(" (line %s, column %s)", m[1], m[2])
	}
	return msg
}
