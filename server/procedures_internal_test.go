package server

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// A procedure that issues an owner token replies with it: its response
// has the owner_token field withOwnerToken sets.
func TestProcedures_TokenRepliesHaveTheField(t *testing.T) {
	n := 0
	for name, p := range procedures {
		if !p.issuesOwnerToken {
			continue
		}
		n++
		full := protoreflect.FullName(strings.ReplaceAll(strings.TrimPrefix(name, "/"), "/", "."))
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(full)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if out := d.(protoreflect.MethodDescriptor).Output(); out.Fields().ByName("owner_token") == nil {
			t.Errorf("%s issues an owner token, but %s has no owner_token field", name, out.FullName())
		}
	}
	if n != 2 {
		t.Errorf("%d procedures issue owner tokens, want CreateService and RotateOwnerToken", n)
	}
}
