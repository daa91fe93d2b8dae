// Package version says which build this is: the release and commit,
// stamped by the Go toolchain from the module's version control
// information, and the log protocol and snapshot formats the build reads
// and writes.
package version

import (
	"fmt"
	"runtime/debug"
	"strings"
	"sync"

	"github.com/rationhq/ration/fsm"
)

// Info describes a build.
type Info struct {
	// Release is the module's version when built from a tagged module
	// (go install ...@v1.2.3), else a pseudo-version from the commit:
	// "devel-<commit12>[-dirty]", or "devel" without version control.
	Release string `json:"release"`
	// Commit is the full revision, with "-dirty" when the tree had
	// uncommitted changes; empty without version control information.
	Commit string `json:"commit"`
	// CommitTime is the commit's time (RFC 3339), if known.
	CommitTime string `json:"commit_time"`
	// GoVersion is the toolchain that built it.
	GoVersion string `json:"go_version"`
	// MinProtocol and MaxProtocol bound the log protocol versions the
	// state machine applies (the cluster version must lie between them).
	MinProtocol uint32 `json:"min_protocol"`
	MaxProtocol uint32 `json:"max_protocol"`
	// SnapshotRead is the oldest snapshot format it restores; SnapshotWrite
	// the one it writes (and the newest it restores).
	SnapshotRead  uint32 `json:"snapshot_read"`
	SnapshotWrite uint32 `json:"snapshot_write"`
}

var (
	once sync.Once
	info Info
)

// Get returns this build's Info.
func Get() Info {
	once.Do(func() { info = fromBuildInfo(debug.ReadBuildInfo()) })
	return info
}

func fromBuildInfo(bi *debug.BuildInfo, ok bool) Info {
	in := Info{Release: "devel", MinProtocol: fsm.MinProtocol, MaxProtocol: fsm.MaxProtocol,
		SnapshotRead: fsm.OldestSnapshotVersion, SnapshotWrite: fsm.SnapshotVersion}
	if !ok {
		return in
	}
	in.GoVersion = bi.GoVersion
	var dirty bool
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			in.Commit = s.Value
		case "vcs.time":
			in.CommitTime = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		in.Release = v
	} else if in.Commit != "" {
		in.Release = "devel-" + in.Commit[:min(12, len(in.Commit))]
		if dirty {
			in.Release += "-dirty"
		}
	}
	if dirty && in.Commit != "" {
		in.Commit += "-dirty"
	}
	return in
}

// String is the multi-line form that --version prints.
func (in Info) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "release:   %s\n", in.Release)
	fmt.Fprintf(&b, "commit:    %s", orUnknown(in.Commit))
	if in.CommitTime != "" {
		fmt.Fprintf(&b, " (%s)", in.CommitTime)
	}
	fmt.Fprintf(&b, "\ngo:        %s\n", orUnknown(in.GoVersion))
	fmt.Fprintf(&b, "protocol:  applies log protocol %d to %d\n", in.MinProtocol, in.MaxProtocol)
	fmt.Fprintf(&b, "snapshots: reads formats %d to %d, writes %d\n", in.SnapshotRead, in.SnapshotWrite, in.SnapshotWrite)
	return b.String()
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
