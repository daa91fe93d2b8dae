package main

import (
	"flag"
	"fmt"
	"time"

	"github.com/rationhq/ration/internal/backup"
)

// backupFlags say where and how often the node writes backups.
type backupFlags struct {
	Dir      string
	Every    time.Duration
	Keep     int
	AllNodes bool
}

// defaultBackupEvery is --backup-every when only --backup-dir is given.
const defaultBackupEvery = time.Hour

// addBackupFlags defines the --backup-* flags.
func (m *Main) addBackupFlags(fs *flag.FlagSet) {
	b := &m.Backup
	fs.StringVar(&b.Dir, "backup-dir", "", "write verified snapshots of the state machine into this directory (created 0700) on schedule; off when empty")
	fs.DurationVar(&b.Every, "backup-every", 0, "time between backups (default 1h with --backup-dir; at least 1s)")
	fs.IntVar(&b.Keep, "backup-keep", 24, "newest backups kept in --backup-dir; older ones are removed (other files are never touched)")
	fs.BoolVar(&b.AllNodes, "backup-all-nodes", false, "back up on this node whether or not it leads (default: only the leader writes, so a cluster writes each backup once)")
}

// checkBackupFlags refuses backup flags that cannot work; fs tells which
// were given.
func (m *Main) checkBackupFlags(fs *flag.FlagSet) error {
	b := &m.Backup
	if b.Dir == "" {
		var given []string
		fs.Visit(func(f *flag.Flag) {
			switch f.Name {
			case "backup-every", "backup-keep", "backup-all-nodes":
				given = append(given, "--"+f.Name)
			}
		})
		if len(given) > 0 {
			return fmt.Errorf("%s needs --backup-dir", given[0])
		}
		return nil
	}
	if b.Every == 0 {
		b.Every = defaultBackupEvery
	}
	switch {
	case b.Every < backup.MinEvery:
		return fmt.Errorf("--backup-every %s: want at least %s", b.Every, backup.MinEvery)
	case b.Keep < 1:
		return fmt.Errorf("--backup-keep %d: want at least 1", b.Keep)
	}
	return nil
}

// newBackups prepares the backup dir (creating it, checking it can be
// written), or returns nil when backups are off.
func (m *Main) newBackups() (*backup.Backups, error) {
	b := m.Backup
	if b.Dir == "" {
		return nil, nil
	}
	bk, err := backup.New(backup.Config{Dir: b.Dir, Every: b.Every, Keep: b.Keep, AllNodes: b.AllNodes,
		NodeID: m.NodeID, Logger: m.log})
	if err != nil {
		return nil, fmt.Errorf("--backup-dir %w", err)
	}
	who := "when leader"
	if b.AllNodes {
		who = "on this node whether or not it leads"
	}
	m.log.Info("backups on", "dir", b.Dir, "every", b.Every, "keep", b.Keep, "written", who)
	return bk, nil
}
