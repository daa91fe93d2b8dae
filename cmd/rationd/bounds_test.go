package main

import (
	"bytes"
	"testing"
	"time"

	"github.com/rationhq/ration/cluster"
)

func TestMain_BoundFlags(t *testing.T) {
	parse := func(args ...string) (*Main, error) {
		m := NewMain()
		m.Stderr = &bytes.Buffer{}
		return m, m.ParseFlags(args, func(string) string { return "" })
	}
	m, err := parse()
	if err != nil || m.Bounds != defaultBounds() {
		t.Fatalf("defaults: %+v, %v", m.Bounds, err)
	}
	m, err = parse("--activity-retention", "48h", "--activity-max", "0", "--request-retention", "0",
		"--request-max-bytes", "1048576", "--snapshot-interval", "30s", "--snapshot-threshold", "100", "--trailing-logs", "0",
		"--snapshot-log-bytes", "1000", "--trailing-log-bytes", "0")
	if err != nil {
		t.Fatal(err)
	}
	var cfg cluster.Config
	m.Bounds.apply(&cfg)
	if cfg.ActivityRetention != 48*time.Hour || cfg.ActivityMax != 0 || cfg.RequestRetention != 0 || cfg.RequestMaxBytes != 1<<20 ||
		cfg.SnapshotInterval != 30*time.Second || cfg.SnapshotThreshold != 100 || cfg.TrailingLogs != 0 ||
		cfg.SnapshotLogBytes != 1000 || cfg.TrailingLogBytes != 0 {
		t.Fatalf("applied: %+v", cfg)
	}
	for _, bad := range [][]string{
		{"--activity-retention", "-1s"},
		{"--request-retention", "0", "--request-max-bytes", "0"},
		{"--snapshot-interval", "999ms"},
		{"--snapshot-threshold", "0"},
		{"--activity-max", "-1"},
	} {
		if _, err := parse(bad...); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
	if _, err := parse("--snapshot-interval", "1s", "--request-max-bytes", "0"); err != nil {
		t.Errorf("boundary values refused: %v", err)
	}
}
