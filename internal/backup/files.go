// Package backup writes backups of a node's state machine into a directory
// by itself: every so often (by default on the leader only), a verified
// snapshot is written atomically, named by its UTC time and Raft index, and
// all but the newest few of the directory's backups are removed.
//
// A backup file is a snapshot in the format of fsm.State.WriteSnapshot,
// the same bytes rationctl snapshot save writes and ClusterService.Restore
// takes.
package backup

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rationhq/ration/fsm"
)

// timeLayout is the UTC time in a backup's name.
const timeLayout = "20060102T150405Z"

var nameRE = regexp.MustCompile(`^ration-(\d{8}T\d{6}Z)-i(\d+)\.snap$`)

// Name is the file name of a backup taken at t of the state at index,
// e.g. ration-20261130T091500Z-i123456.snap.
func Name(t time.Time, index uint64) string {
	return "ration-" + t.UTC().Format(timeLayout) + "-i" + strconv.FormatUint(index, 10) + ".snap"
}

// ParseName returns the time and index a backup's file name carries; ok is
// false for any name Name does not make.
func ParseName(name string) (t time.Time, index uint64, ok bool) {
	m := nameRE.FindStringSubmatch(name)
	if m == nil {
		return time.Time{}, 0, false
	}
	t, err := time.Parse(timeLayout, m[1])
	if err != nil {
		return time.Time{}, 0, false
	}
	index, err = strconv.ParseUint(m[2], 10, 64)
	if err != nil {
		return time.Time{}, 0, false
	}
	return t, index, true
}

// Info describes one backup file.
type Info struct {
	Path  string
	Time  time.Time // when it was taken (from its name, to the second)
	Index uint64    // the Raft index of the state it holds
	Size  int64
}

// List returns the backups in dir, oldest first (by time, then index).
// Files whose names are not a backup's are left out.
func List(dir string) ([]Info, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []Info
	for _, e := range ents {
		t, idx, ok := ParseName(e.Name())
		if !ok || !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		out = append(out, Info{Path: filepath.Join(dir, e.Name()), Time: t, Index: idx, Size: fi.Size()})
	}
	slices.SortFunc(out, func(a, b Info) int {
		return cmp.Or(a.Time.Compare(b.Time), cmp.Compare(a.Index, b.Index))
	})
	return out, nil
}

// Prune removes all but the newest keep backups in dir and returns the
// paths it removed. Files whose names are not a backup's are never touched.
func Prune(dir string, keep int) ([]string, error) {
	if keep < 1 {
		return nil, fmt.Errorf("prune: keep %d, want at least 1", keep)
	}
	all, err := List(dir)
	if err != nil || len(all) <= keep {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, b := range all[:len(all)-keep] {
		if err := os.Remove(b.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, b.Path)
	}
	if len(removed) > 0 {
		errs = append(errs, syncDir(dir))
	}
	return removed, errors.Join(errs...)
}

// Snapshot is a frozen version of the state machine: *fsm.State.
type Snapshot interface {
	Index() uint64
	WriteSnapshot(w io.Writer) error
}

// tempPrefix names the temporary files of one node's backups in progress,
// so that a node removes only its own leftovers.
func tempPrefix(nodeID string) string {
	clean := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '.' {
			return r
		}
		return '_'
	}, nodeID)
	return ".ration-backup-" + clean + "-"
}

// Write writes snap into dir as a new backup taken at t: to a temporary
// file in dir, synced, then read back and checked to restore with every
// invariant kept (fsm.CheckSnapshot), then renamed to its name and the
// directory synced. On error, or once ctx ends, nothing is left in dir.
// tmp prefixes the temporary file's name.
func Write(ctx context.Context, dir, tmp string, snap Snapshot, t time.Time) (info Info, err error) {
	f, err := os.CreateTemp(dir, tmp+"*.tmp")
	if err != nil {
		return Info{}, err
	}
	final := filepath.Join(dir, Name(t, snap.Index()))
	renamed := false
	defer func() {
		if err != nil {
			f.Close()
			if renamed {
				os.Remove(final)
			} else {
				os.Remove(f.Name())
			}
		}
	}()
	cw := &countWriter{ctx: ctx, w: f}
	if err := snap.WriteSnapshot(cw); err != nil {
		return Info{}, fmt.Errorf("write %s: %w", f.Name(), err)
	}
	if err := f.Sync(); err != nil {
		return Info{}, fmt.Errorf("sync %s: %w", f.Name(), err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return Info{}, err
	}
	if err := fsm.CheckSnapshot(bufio.NewReaderSize(f, 1<<20)); err != nil {
		return Info{}, fmt.Errorf("verify %s: %w", f.Name(), err)
	}
	if err := f.Close(); err != nil {
		return Info{}, err
	}
	if err := os.Rename(f.Name(), final); err != nil {
		return Info{}, err
	}
	renamed = true
	if err := syncDir(dir); err != nil {
		return Info{}, fmt.Errorf("sync %s: %w", dir, err)
	}
	return Info{Path: final, Time: t.UTC().Truncate(time.Second), Index: snap.Index(), Size: cw.n}, nil
}

// Prepare creates dir (0700) if it is missing, checks that a file can be
// written and synced there, and removes the temporary files that backups
// of the node interrupted by a crash left behind.
func Prepare(dir, nodeID string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	prefix := tempPrefix(nodeID)
	left, err := filepath.Glob(filepath.Join(dir, prefix+"*.tmp"))
	if err != nil {
		return err
	}
	for _, p := range left {
		if err := os.Remove(p); err != nil {
			return fmt.Errorf("remove an interrupted backup: %w", err)
		}
	}
	f, err := os.CreateTemp(dir, prefix+"probe-*.tmp")
	if err != nil {
		return fmt.Errorf("cannot write there: %w", err)
	}
	_, err = f.WriteString("probe")
	err = errors.Join(err, f.Sync(), f.Close(), os.Remove(f.Name()))
	if err != nil {
		return fmt.Errorf("cannot write there: %w", err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

// countWriter counts what it writes, and stops writing once ctx ends.
type countWriter struct {
	ctx context.Context
	w   io.Writer
	n   int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
