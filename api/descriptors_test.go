package api

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	_ "github.com/rationhq/ration/api/ration/v1"
)

// TestPublicFilesCurrent fails when ration/v1/descriptors.binpb is out of
// date with the .proto files (run `go generate ./api`): its files must be
// those of package ration.v1 with the same descriptors as the generated Go,
// carry exactly the comments the .proto files have, and place every
// declaration on the line of the .proto file that declares it.
func TestPublicFilesCurrent(t *testing.T) {
	files, err := PublicFiles()
	if err != nil {
		t.Fatalf("PublicFiles: %v", err)
	}
	var want, got []string
	protoregistry.GlobalFiles.RangeFilesByPackage("ration.v1", func(fd protoreflect.FileDescriptor) bool {
		want = append(want, fd.Path())
		return true
	})
	files.RangeFilesByPackage("ration.v1", func(fd protoreflect.FileDescriptor) bool {
		got = append(got, fd.Path())
		return true
	})
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("descriptors.binpb has %v, the generated Go %v", got, want)
	}
	for _, path := range want {
		fd, _ := files.FindFileByPath(path)
		gd, _ := protoregistry.GlobalFiles.FindFileByPath(path)
		withSource := protodesc.ToFileDescriptorProto(fd)
		shape := proto.CloneOf(withSource)
		shape.SourceCodeInfo = nil
		if !proto.Equal(shape, protodesc.ToFileDescriptorProto(gd)) {
			t.Errorf("%s: descriptors.binpb differs from the generated Go", path)
		}
		src, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := setComments(withSource), sourceComments(string(src)); !slices.Equal(got, want) {
			t.Errorf("%s: descriptors.binpb has %d comments, the .proto file %d; first difference:\n%s", path, len(got), len(want), firstDiff(got, want))
		}
		for _, problem := range misplaced(fd, strings.Split(strings.TrimRight(string(src), "\n"), "\n")) {
			t.Errorf("%s: %s", path, problem)
		}
	}
}

// setComments lists a file's comments as source info holds them, sorted.
func setComments(fd *descriptorpb.FileDescriptorProto) []string {
	var out []string
	for _, loc := range fd.GetSourceCodeInfo().GetLocation() {
		if loc.LeadingComments != nil {
			out = append(out, loc.GetLeadingComments())
		}
		if loc.TrailingComments != nil {
			out = append(out, loc.GetTrailingComments())
		}
		out = append(out, loc.GetLeadingDetachedComments()...)
	}
	slices.Sort(out)
	return out
}

// misplaced checks the set's source spans against the .proto file's lines:
// the file ends where its span does, and the line each declaration starts
// on names it (a field also its number and type, a method its types).
func misplaced(fd protoreflect.FileDescriptor, lines []string) []string {
	var out []string
	locs := fd.SourceLocations()
	if root := locs.ByPath(nil); root.EndLine != len(lines)-1 {
		out = append(out, fmt.Sprintf("the file ends on line %d, its span on line %d", len(lines), root.EndLine+1))
	}
	check := func(d protoreflect.Descriptor, words ...string) {
		loc := locs.ByDescriptor(d)
		if loc.StartLine >= len(lines) {
			out = append(out, fmt.Sprintf("%s: line %d is past the end", d.FullName(), loc.StartLine+1))
			return
		}
		line := strings.Fields(strings.NewReplacer("(", " ", ")", " ", ";", " ", "=", " = ", "{", " ").Replace(lines[loc.StartLine]))
		for _, w := range words {
			if !slices.ContainsFunc(line, func(token string) bool { return token == w || strings.HasSuffix(token, "."+w) }) {
				out = append(out, fmt.Sprintf("%s: line %d does not say %q", d.FullName(), loc.StartLine+1, w))
			}
		}
	}
	var enums func(protoreflect.EnumDescriptors)
	enums = func(es protoreflect.EnumDescriptors) {
		for i := range es.Len() {
			e := es.Get(i)
			check(e, "enum", string(e.Name()))
			for j := range e.Values().Len() {
				v := e.Values().Get(j)
				check(v, string(v.Name()), strconv.Itoa(int(v.Number())))
			}
		}
	}
	var messages func(protoreflect.MessageDescriptors)
	messages = func(ms protoreflect.MessageDescriptors) {
		for i := range ms.Len() {
			m := ms.Get(i)
			check(m, "message", string(m.Name()))
			for j := range m.Fields().Len() {
				f := m.Fields().Get(j)
				typ := f.Kind().String()
				if f.Message() != nil {
					typ = string(f.Message().Name())
				} else if f.Enum() != nil {
					typ = string(f.Enum().Name())
				}
				check(f, typ, string(f.Name()), strconv.Itoa(int(f.Number())))
			}
			enums(m.Enums())
			messages(m.Messages())
		}
	}
	messages(fd.Messages())
	enums(fd.Enums())
	for i := range fd.Services().Len() {
		s := fd.Services().Get(i)
		check(s, "service", string(s.Name()))
		for j := range s.Methods().Len() {
			m := s.Methods().Get(j)
			check(m, "rpc", string(m.Name()), string(m.Input().Name()), string(m.Output().Name()))
		}
	}
	return out
}

var quoted = regexp.MustCompile(`"[^"]*"`)

// sourceComments lists a .proto file's comments in the form source info
// holds them, sorted: each run of whole-line // comments as one, and each
// comment after code on its line.
func sourceComments(src string) []string {
	var out []string
	var run strings.Builder
	flush := func() {
		if run.Len() > 0 {
			out = append(out, run.String())
			run.Reset()
		}
	}
	for line := range strings.Lines(src) {
		line = strings.TrimRight(line, "\n")
		trimmed := strings.TrimSpace(line)
		if text, ok := strings.CutPrefix(trimmed, "//"); ok {
			run.WriteString(text + "\n")
			continue
		}
		flush()
		if _, text, ok := strings.Cut(quoted.ReplaceAllString(line, `""`), "//"); ok {
			out = append(out, text+"\n")
		}
	}
	flush()
	slices.Sort(out)
	return out
}

func firstDiff(a, b []string) string {
	for i := range max(len(a), len(b)) {
		switch {
		case i >= len(a):
			return "missing from descriptors.binpb: " + b[i]
		case i >= len(b) || a[i] != b[i]:
			return "descriptors.binpb: " + a[i] + "\n.proto file: " + strings.Join(b[i:min(i+1, len(b))], "")
		}
	}
	return ""
}
