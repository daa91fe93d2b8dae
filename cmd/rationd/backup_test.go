package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rationhq/ration/cluster/clustertest"
	"github.com/rationhq/ration/internal/backup"
)

func TestBackupFlags(t *testing.T) {
	d := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--backup-every", "1h"}, "--backup-every needs --backup-dir"},
		{[]string{"--backup-keep", "3"}, "--backup-keep needs --backup-dir"},
		{[]string{"--backup-all-nodes"}, "--backup-all-nodes needs --backup-dir"},
		{[]string{"--backup-dir", d, "--backup-keep", "0"}, "--backup-keep 0: want at least 1"},
		{[]string{"--backup-dir", d, "--backup-every", "500ms"}, "--backup-every 500ms: want at least 1s"},
		{[]string{"--backup-dir", d, "--backup-every", "-1h"}, "want at least 1s"},
		{[]string{"--backup-dir", d, "--backup-every", "2m", "--backup-keep", "3", "--backup-all-nodes"}, ""},
	} {
		m := NewMain()
		m.Stderr = io.Discard
		err := m.ParseFlags(tc.args, func(string) string { return "" })
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
	m := NewMain()
	if err := m.ParseFlags([]string{"--backup-dir", d}, func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}
	if want := (backupFlags{Dir: d, Every: time.Hour, Keep: 24}); m.Backup != want {
		t.Fatalf("defaults with --backup-dir: %+v, want %+v", m.Backup, want)
	}
	m = NewMain()
	if err := m.ParseFlags(nil, func(string) string { return "" }); err != nil || m.Backup.Dir != "" || m.Backup.Every != 0 {
		t.Fatalf("without --backup-dir backups are off: %+v %v", m.Backup, err)
	}
}

// TestMain_BackupDirNotWritable: a backup dir that cannot be made is
// refused at start, naming the flag.
func TestMain_BackupDirNotWritable(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	m := NewMain()
	m.Stderr = io.Discard
	dir := t.TempDir()
	if err := m.ParseFlags([]string{"--data-dir", filepath.Join(dir, "data"), "--http-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0",
		"--backup-dir", filepath.Join(file, "backups")}, func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}
	err := m.Run(context.Background())
	if err == nil {
		m.Close()
		t.Fatal("started with a backup dir under a file")
	}
	if !strings.Contains(err.Error(), "--backup-dir "+filepath.Join(file, "backups")) || !strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("error %q does not say which flag and why", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "data")); err == nil {
		t.Fatal("the data dir was created before the backup dir was checked")
	}
}

// TestMain_Backups: a lone node (its own leader) backs up on schedule,
// keeps the newest, leaves other files alone, and says so on /metrics.
func TestMain_Backups(t *testing.T) {
	dir := t.TempDir()
	bdir := filepath.Join(dir, "backups")
	if err := os.MkdirAll(bdir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bdir, "README"), []byte("not a backup"), 0o600); err != nil {
		t.Fatal(err)
	}
	m := startMain(t, filepath.Join(dir, "data"), "--backup-dir", bdir, "--backup-every", "1s", "--backup-keep", "2")
	success := regexp.MustCompile(`(?m)^ration_backups_total\{result="success"\} (\d+)$`)
	var text string
	clustertest.WaitFor(t, 20*time.Second, func() error {
		res, err := http.Get("http://" + m.Addr() + "/metrics")
		if err != nil {
			return err
		}
		b, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil {
			return err
		}
		text = string(b)
		s := success.FindStringSubmatch(text)
		if s == nil {
			return fmt.Errorf("no backup metrics yet")
		}
		if n, _ := strconv.Atoi(s[1]); n < 3 {
			return fmt.Errorf("%d backups", n)
		}
		return nil
	})
	for _, want := range []string{`ration_backup_last_success 1`, `ration_backups_total{result="failure"} 0`,
		`ration_backup_last_size_bytes `, `ration_backup_last_index `, `ration_backup_last_success_timestamp_seconds `,
		`ration_backup_last_duration_seconds `} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	all, err := backup.List(bdir)
	if err != nil || len(all) != 2 {
		t.Fatalf("backups kept with --backup-keep 2: %v %v", all, err)
	}
	if _, err := os.Stat(filepath.Join(bdir, "README")); err != nil {
		t.Fatalf("a file that is not a backup: %v", err)
	}
}
