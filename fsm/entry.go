package fsm

import (
	"crypto/sha256"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	statev1 "github.com/rationhq/ration/api/ration/state/v1"
)

// A log entry is one encoded Command: a single operation, or a
// CommandBatch of several commands (the leader's group commit). The two
// functions below work on the encoding itself, so that neither a batch nor
// a request-id check costs a second encode; they take the field numbers
// from the generated descriptors, never from literals.
var (
	commandHeaderField = fieldNumber(&statev1.Command{}, "header")
	commandBatchField  = fieldNumber(&statev1.Command{}, "batch")
	batchCommandsField = fieldNumber(&statev1.CommandBatch{}, "commands")
)

func fieldNumber(m proto.Message, name protoreflect.Name) protowire.Number {
	f := m.ProtoReflect().Descriptor().Fields().ByName(name)
	if f == nil {
		panic(fmt.Sprintf("fsm: %s has no field %s", m.ProtoReflect().Descriptor().FullName(), name))
	}
	return f.Number()
}

// EncodeBatch returns the encoding of a Command with header hdr whose
// operation is a CommandBatch of cmds, each already encoded, without
// decoding and encoding them again. The bytes are those proto.Marshal
// writes for the same Command.
func EncodeBatch(hdr *statev1.CommandHeader, cmds [][]byte) []byte {
	h, err := proto.Marshal(hdr)
	if err != nil {
		panic(err) // a header always encodes
	}
	inner := 0
	for _, c := range cmds {
		inner += protowire.SizeTag(batchCommandsField) + protowire.SizeBytes(len(c))
	}
	out := make([]byte, 0, protowire.SizeTag(commandHeaderField)+protowire.SizeBytes(len(h))+
		protowire.SizeTag(commandBatchField)+protowire.SizeBytes(inner))
	out = protowire.AppendTag(out, commandHeaderField, protowire.BytesType)
	out = protowire.AppendBytes(out, h)
	out = protowire.AppendTag(out, commandBatchField, protowire.BytesType)
	out = protowire.AppendVarint(out, uint64(inner))
	for _, c := range cmds {
		out = protowire.AppendTag(out, batchCommandsField, protowire.BytesType)
		out = protowire.AppendBytes(out, c)
	}
	return out
}

// leaves counts the commands applyCommand applies one by one.
func leaves(cmd *statev1.Command) int {
	if b, ok := cmd.Op.(*statev1.Command_Batch); ok {
		n := 0
		for _, c := range b.Batch.GetCommands() {
			n += leaves(c)
		}
		return n
	}
	return 1
}

// bodySums returns bodyHash of every command in a log entry, in the order
// applyCommand meets them (the commands of a batch in turn), computed from
// the entry's bytes: a command's body is its encoding without the header,
// which is what bodyHash marshals, so no command is encoded again.
func bodySums(data []byte) ([][]byte, error) {
	var sums [][]byte
	var walk func(cmd []byte, depth int) error
	walk = func(cmd []byte, depth int) error {
		h := sha256.New()
		for len(cmd) > 0 {
			num, typ, n := protowire.ConsumeTag(cmd)
			if n < 0 {
				return protowire.ParseError(n)
			}
			m := protowire.ConsumeFieldValue(num, typ, cmd[n:])
			if m < 0 {
				return protowire.ParseError(m)
			}
			field := cmd[:n+m]
			switch {
			case num == commandHeaderField:
			case num == commandBatchField && typ == protowire.BytesType && depth == 0:
				batch, _ := protowire.ConsumeBytes(cmd[n:])
				if err := walkBatch(batch, func(sub []byte) error { return walk(sub, depth+1) }); err != nil {
					return err
				}
				h = nil
			case h != nil:
				h.Write(field)
			}
			cmd = cmd[n+m:]
		}
		if h != nil {
			sums = append(sums, h.Sum(nil)[:16])
		}
		return nil
	}
	if err := walk(data, 0); err != nil {
		return nil, err
	}
	return sums, nil
}

// walkBatch calls fn with each encoded command of an encoded CommandBatch.
func walkBatch(batch []byte, fn func([]byte) error) error {
	for len(batch) > 0 {
		num, typ, k := protowire.ConsumeTag(batch)
		if k < 0 {
			return protowire.ParseError(k)
		}
		if num != batchCommandsField || typ != protowire.BytesType {
			return fmt.Errorf("batch field %d", num)
		}
		sub, l := protowire.ConsumeBytes(batch[k:])
		if l < 0 {
			return protowire.ParseError(l)
		}
		if err := fn(sub); err != nil {
			return err
		}
		batch = batch[k+l:]
	}
	return nil
}

// bodyHash fingerprints a command's operation, without its header, so a
// retried request id can be told from a reused one.
func bodyHash(cmd *statev1.Command) []byte {
	c := &statev1.Command{Op: cmd.Op}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(c)
	if err != nil {
		panic(fmt.Sprintf("fsm: marshal command body: %v", err))
	}
	s := sha256.Sum256(b)
	return s[:16]
}
