package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"
)

// clockFlags are the flags of the node's clock: the offset limit, and a
// test-only offset read from a file.
type clockFlags struct {
	MaxClockOffset time.Duration
	// TestClockFile, for tests only, names a file holding a duration
	// (e.g. "3h", "-90s") added to this node's wall clock, read again every
	// testClockPoll; it needs EnableTestFlags.
	TestClockFile   string
	EnableTestFlags bool
}

func (m *Main) addClockFlags(fs *flag.FlagSet) {
	fs.DurationVar(&m.Clock.MaxClockOffset, "max-clock-offset", m.Clock.MaxClockOffset,
		"how far this node's wall clock may be from the majority's: further off, it is not ready, will not lead, and its clock never moves the cluster's time")
	fs.StringVar(&m.Clock.TestClockFile, "test-clock-offset-file", "",
		"TESTS ONLY (needs --enable-test-flags): a file holding a duration added to this node's wall clock, read again every 50ms")
	fs.BoolVar(&m.Clock.EnableTestFlags, "enable-test-flags", false, "allow the flags marked TESTS ONLY; never in production")
}

func (m *Main) checkClockFlags() error {
	switch {
	case m.Clock.MaxClockOffset <= 0:
		return fmt.Errorf("--max-clock-offset %s: must be positive", m.Clock.MaxClockOffset)
	case m.Clock.TestClockFile != "" && !m.Clock.EnableTestFlags:
		return errors.New("--test-clock-offset-file is for tests only: it needs --enable-test-flags")
	}
	return nil
}

// testClockPoll is how often a test clock reads its file.
const testClockPoll = 50 * time.Millisecond

// testClock is a wall clock moved by the offset in a file that a test
// rewrites; the monotonic clock stays real, as a stepped wall clock does.
type testClock struct {
	path string
	off  atomic.Int64
	stop chan struct{}
}

func startTestClock(path string) *testClock {
	c := &testClock{path: path, stop: make(chan struct{})}
	c.read()
	go func() {
		t := time.NewTicker(testClockPoll)
		defer t.Stop()
		for {
			select {
			case <-c.stop:
				return
			case <-t.C:
				c.read()
			}
		}
	}()
	return c
}

// read takes the offset from the file; a missing or unreadable file
// leaves it as it was.
func (c *testClock) read() {
	b, err := os.ReadFile(c.path)
	if err != nil {
		return
	}
	if d, err := time.ParseDuration(strings.TrimSpace(string(b))); err == nil {
		c.off.Store(int64(d))
	}
}

// Now is the wall clock moved by the offset.
func (c *testClock) Now() time.Time { return time.Now().Add(time.Duration(c.off.Load())) }

func (c *testClock) close() { close(c.stop) }
