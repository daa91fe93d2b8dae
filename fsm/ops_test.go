package fsm

import (
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	statev1 "github.com/rationhq/ration/api/ration/state/v1"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

// Every operation a Command can carry has an entry in the table (a batch
// is not an operation: it carries commands), and every entry's answer has
// its field in CommandResult.
func TestOps_EveryCommandFieldHasAnOperation(t *testing.T) {
	fields := commandOps.Fields()
	for i := range fields.Len() {
		f := fields.Get(i)
		if f.Name() == "batch" {
			continue
		}
		o, ok := operations.byField[f.Number()]
		if !ok {
			t.Errorf("Command.%s has no entry in the operations table", f.Name())
			continue
		}
		if o.action == "" {
			t.Errorf("Command.%s has no activity action", f.Name())
		}
	}
	if n := len(operations.byRequest); n != 22 {
		t.Errorf("%d operations, want the 22 this test knows; update it with the table", n)
	}
}

// NewCommand wraps every operation's request, and Answer unwraps its response.
func TestOps_NewCommandAndAnswer(t *testing.T) {
	for _, o := range operations.byRequest {
		req := o.field.Message()
		cmd, ok := NewCommand(newMessage(t, req.FullName()))
		if !ok || cmd.ProtoReflect().WhichOneof(commandOps) != o.field {
			t.Errorf("NewCommand(%s) = %v, %v", req.FullName(), cmd, ok)
		}
	}
	if _, ok := NewCommand(&rationv1.HeartbeatRequest{}); ok {
		t.Error("NewCommand took a HeartbeatRequest, which no command carries")
	}
	res := &statev1.CommandResult{Value: &statev1.CommandResult_Submit{Submit: &rationv1.SubmitResponse{Accepted: 3}}}
	if a, ok := Answer(res).(*rationv1.SubmitResponse); !ok || a.Accepted != 3 {
		t.Errorf("Answer = %v", Answer(res))
	}
	if a := Answer(&statev1.CommandResult{Error: &statev1.CommandError{Reason: "X"}}); a != nil {
		t.Errorf("Answer of an error = %v", a)
	}
}

func newMessage(t *testing.T, name protoreflect.FullName) proto.Message {
	t.Helper()
	mt, err := protoregistry.GlobalTypes.FindMessageByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return mt.New().Interface()
}
