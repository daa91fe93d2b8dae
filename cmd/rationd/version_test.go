package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// --version prints the build and the formats it reads and writes, and runs
// nothing.
func TestMain_Version(t *testing.T) {
	m := NewMain()
	var out bytes.Buffer
	m.Stdout = &out
	if err := m.ParseFlags([]string{"--version"}, func(string) string { return "" }); !errors.Is(err, errHelp) {
		t.Fatalf("ParseFlags(--version) = %v, want errHelp (print and exit)", err)
	}
	for _, want := range []string{"release:", "commit:", "protocol:  applies log protocol 1 to 2", "snapshots: reads formats 1 to 3, writes 3"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--version printed %q, missing %q", out.String(), want)
		}
	}
}
