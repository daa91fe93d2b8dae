package fsm

import (
	"crypto/sha256"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// Field numbers of Command that bodySums reads.
const (
	commandHeaderField = 1
	commandBatchField  = 60
	batchCommandsField = 1
)

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
				for len(batch) > 0 {
					bn, bt, k := protowire.ConsumeTag(batch)
					if k < 0 {
						return protowire.ParseError(k)
					}
					if bn != batchCommandsField || bt != protowire.BytesType {
						return fmt.Errorf("batch field %d", bn)
					}
					sub, l := protowire.ConsumeBytes(batch[k:])
					if l < 0 {
						return protowire.ParseError(l)
					}
					if err := walk(sub, depth+1); err != nil {
						return err
					}
					batch = batch[k+l:]
				}
				h = nil
			default:
				if h != nil {
					h.Write(field)
				}
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
