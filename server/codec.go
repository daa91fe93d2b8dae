package server

import (
	"bytes"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
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
	return jsonOut.Marshal(pm)
}

// jsonOut writes every field of an answer, zero values too ("requeued": 0),
// so a client in any language reads a field without knowing protobuf's
// defaults; an absent message field stays absent.
var jsonOut = protojson.MarshalOptions{EmitDefaultValues: true}

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
		return fmt.Errorf("JSON body for %s: %s", name, jsonProblem(err, data, pm.ProtoReflect().Descriptor()))
	}
	return nil
}

// jsonPosition is where protojson says a problem is: "proto: (line 1:32): ".
// (The protobuf module writes some of those spaces as U+00A0, at random,
// so that nobody parses its messages; this only reformats them.)
var jsonPosition = regexp.MustCompile(`^proto:[\s\x{00a0}]*(syntax error[\s\x{00a0}]*)?(?:\(line (\d+):(\d+)\):[\s\x{00a0}]*)?`)

// jsonBadValue is protojson's word for a value of the wrong type or range:
// "invalid value for uint32 field maxBuckets: -1" (the field's JSON name),
// or for a well-known type, "invalid google.protobuf.Timestamp value "x"".
var jsonBadValue = regexp.MustCompile(`^invalid (?:value for \w+ field (\w+)|google\.protobuf\.\w+ value)[\s\x{00a0}]*:?[\s\x{00a0}]*(.*)$`)

// jsonProblem words a protojson error for the caller: `unknown field
// "maxBucket" (line 1, column 32)`, or for a bad value, `"max_buckets": -1
// is not a whole number from 0 to 4294967295 (line 1, column 16)`, naming
// the field as the body spells it.
func jsonProblem(err error, data []byte, md protoreflect.MessageDescriptor) string {
	msg := err.Error()
	m := jsonPosition.FindStringSubmatch(msg)
	if m == nil {
		return msg
	}
	msg = strings.TrimPrefix(msg, m[0])
	var line, col int
	if m[2] != "" {
		line, _ = strconv.Atoi(m[2])
		col, _ = strconv.Atoi(m[3])
	}
	if v := jsonBadValue.FindStringSubmatch(msg); v != nil {
		// A bad element of a list is reported under the list's name, and
		// is no object member: the key is then protojson's name.
		key := jsonKeyBefore(data, line, col)
		if key == "" {
			key = v[1]
		}
		got := strings.TrimSpace(v[2])
		switch got {
		case "[":
			got = "an array"
		case "{":
			got = "an object"
		}
		msg = fmt.Sprintf("%q: %s is not %s", key, got, valueWants(findField(md, key, map[protoreflect.FullName]bool{})))
	} else if tok, ok := strings.CutPrefix(msg, "unexpected token "); ok {
		if line == 1 && col == 1 {
			msg = "the body is not a JSON object: it starts with " + tok
		} else if key := jsonKeyBefore(data, line, col); key != "" {
			if f := findField(md, key, map[protoreflect.FullName]bool{}); f != nil {
				msg = fmt.Sprintf("%q: %s is not %s", key, tok, fieldWants(f))
			} else {
				msg = fmt.Sprintf("%q: unexpected %s", key, tok)
			}
		} else if m[1] != "" {
			msg = "syntax error: " + msg
		}
	} else if m[1] != "" {
		msg = "syntax error: " + msg
	}
	if line > 0 {
		msg += fmt.Sprintf(" (line %d, column %d)", line, col)
	}
	return msg
}

// fieldWants says what a field takes as its JSON value.
func fieldWants(f protoreflect.FieldDescriptor) string {
	switch {
	case f.IsList():
		return "an array"
	case f.IsMap():
		return "an object"
	}
	return valueWants(f)
}

// valueWants says what one value of a field takes (each element, for a
// list); f nil is a field it cannot tell.
func valueWants(f protoreflect.FieldDescriptor) string {
	if f == nil {
		return "a value of the field's type"
	}
	switch f.Kind() {
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return "a whole number from -2147483648 to 2147483647"
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return "a whole number from 0 to 4294967295"
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return "a whole number from -9223372036854775808 to 9223372036854775807 (a number or a string)"
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return "a whole number from 0 to 18446744073709551615 (a number or a string)"
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		return "a number"
	case protoreflect.BoolKind:
		return "true or false"
	case protoreflect.StringKind:
		return "a string"
	case protoreflect.BytesKind:
		return "a base64 string"
	case protoreflect.EnumKind:
		var names []string
		for i := 0; i < f.Enum().Values().Len(); i++ {
			names = append(names, string(f.Enum().Values().Get(i).Name()))
		}
		return "one of " + strings.Join(names, ", ")
	}
	switch f.Message().FullName() {
	case "google.protobuf.Timestamp":
		return `a time in RFC 3339 ("2026-11-30T06:00:00Z")`
	case "google.protobuf.Duration":
		return `a duration in seconds with an "s" ("90s", "0.5s")`
	}
	return "an object"
}

// findField finds the field named key (JSON or proto name) anywhere in md's
// messages.
func findField(md protoreflect.MessageDescriptor, key string, seen map[protoreflect.FullName]bool) protoreflect.FieldDescriptor {
	if seen[md.FullName()] {
		return nil
	}
	seen[md.FullName()] = true
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		if f := fields.Get(i); f.JSONName() == key || string(f.Name()) == key {
			return f
		}
	}
	for i := 0; i < fields.Len(); i++ {
		if f := fields.Get(i); f.Message() != nil {
			if found := findField(f.Message(), key, seen); found != nil {
				return found
			}
		}
	}
	return nil
}

// jsonKeyBefore is the object key whose value starts at line:col (1-based)
// of data, as the caller spelled it, or "" if the value is not an object
// member (an array element).
func jsonKeyBefore(data []byte, line, col int) string {
	off := 0
	for l := 1; l < line && off < len(data); l++ {
		i := bytes.IndexByte(data[off:], '\n')
		if i < 0 {
			return ""
		}
		off += i + 1
	}
	off += col - 1
	if line < 1 || col < 1 || off > len(data) {
		return ""
	}
	b := bytes.TrimRight(data[:off], " \t\r\n")
	if !bytes.HasSuffix(b, []byte(":")) {
		return ""
	}
	b = bytes.TrimRight(b[:len(b)-1], " \t\r\n")
	if !bytes.HasSuffix(b, []byte(`"`)) {
		return ""
	}
	b = b[:len(b)-1]
	start := bytes.LastIndexByte(b, '"')
	if start < 0 {
		return ""
	}
	return string(b[start+1:])
}
