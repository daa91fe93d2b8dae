package chaos

import (
	"archive/tar"
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// upgradeFromCommit is the previous release the rolling upgrade starts
// from: the last commit before validation and versions (log protocol 1
// only, no versions, no validation, no AddCanaries). RATION_UPGRADE_FROM
// names another commit (or any revision git knows).
const upgradeFromCommit = "3110bf00e5b16f54a5a1874822be02c38a0e0e59"

// buildRelease builds rationd from revision rev of this repository: the
// tree of that commit (git archive, so the repository gains no worktree
// to clean up) is unpacked under the test's temp dir and built there.
// -trimpath keeps its packages' build cache entries independent of the
// temp dir, so a second run only links. It returns the binary and the
// full commit. Without the commit (a shallow clone, an unpacked archive,
// no git) the test is skipped, or fails under CI, which runs on a full
// clone.
func buildRelease(t *testing.T, rev string) (bin, commit string) {
	t.Helper()
	missing := func(format string, args ...any) {
		t.Helper()
		msg := fmt.Sprintf(format, args...)
		if os.Getenv("CI") != "" {
			t.Fatalf("%s; CI runs on a full clone of the repository, which has it", msg)
		}
		t.Skipf("%s: the rolling upgrade test builds the previous release from this repository's history "+
			"(a full clone has it; RATION_UPGRADE_FROM names another commit)", msg)
	}
	if _, err := exec.LookPath("git"); err != nil {
		missing("no git to read commit %s with: %v", rev, err)
	}
	top, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		missing("not a git checkout: no commit %s to build", rev)
	}
	out, err := exec.Command("git", "rev-parse", "--verify", "--quiet", rev+"^{commit}").Output()
	if err != nil {
		missing("commit %s is not in this repository (a shallow clone?)", rev)
	}
	commit = strings.TrimSpace(string(out))
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	start := time.Now()
	if err := unpackCommit(strings.TrimSpace(string(top)), commit, src); err != nil {
		t.Fatalf("unpack %s: %v", commit, err)
	}
	bin = filepath.Join(dir, "rationd-"+commit[:12])
	build := exec.Command("go", "build", "-trimpath", "-buildvcs=auto", "-o", bin, "./cmd/rationd")
	build.Dir = src
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build rationd at %s: %v\n%s", commit, err, out)
	}
	t.Logf("built rationd at %s (the previous release) in %s", commit[:12], time.Since(start).Round(time.Millisecond))
	return bin, commit
}

// unpackCommit writes the whole tree of commit into dir, as git archive
// gives it (run at the top of the repository: in a subdirectory it gives
// that subdirectory alone).
func unpackCommit(repo, commit, dir string) error {
	cmd := exec.Command("git", "archive", "--format=tar", commit)
	cmd.Dir = repo
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	untarErr := untar(out, dir)
	io.Copy(io.Discard, out)
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("git archive: %v: %s", err, stderr.String())
	}
	return untarErr
}

func untar(r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		name := filepath.Clean(h.Name)
		if !filepath.IsLocal(name) {
			return fmt.Errorf("archive entry %q leaves the tree", h.Name)
		}
		path := filepath.Join(dir, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(path, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode)&0o755|0o600)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				return err
			}
			if err := os.Symlink(h.Linkname, path); err != nil {
				return err
			}
		}
		// Anything else (git archive's pax header) carries no file.
	}
}

// flagLine is a flag in the usage rationd prints for -h: "  -name" for a
// boolean, "  -name type" for a flag that takes a value.
var flagLine = regexp.MustCompile(`^  -([a-z0-9-]+)( \S+)?$`)

// binaryFlags returns the flags a rationd binary accepts, each with
// whether it takes a value, from its -h usage.
func binaryFlags(t *testing.T, bin string) map[string]bool {
	t.Helper()
	out, _ := exec.Command(bin, "-h").CombinedOutput() // -h exits 0 or 2, as the flag package does
	flags := usageFlags(string(out))
	if len(flags) < 10 || !flags["data-dir"] {
		t.Fatalf("%s -h lists %d flags, not data-dir among them:\n%s", bin, len(flags), out)
	}
	return flags
}

// usageFlags reads the flags, each with whether it takes a value, from the
// usage the flag package prints.
func usageFlags(usage string) map[string]bool {
	flags := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(usage))
	for sc.Scan() {
		if m := flagLine.FindStringSubmatch(sc.Text()); m != nil {
			flags[m[1]] = m[2] != ""
		}
	}
	return flags
}

// keepFlags drops from args the flags a binary does not know (known, from
// binaryFlags), with their values (all, from the flags of the build that
// wrote args), and returns what is left and what was dropped.
func keepFlags(args []string, known, all map[string]bool) (kept, dropped []string) {
	for k := 0; k < len(args); k++ {
		a := args[k]
		name, _, inline := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") {
			kept = append(kept, a) // a positional argument: rationd takes none, let it say so
			continue
		}
		n := 1
		if !inline && all[name] && k+1 < len(args) {
			n = 2 // the flag and its value
		}
		if _, ok := known[name]; ok {
			kept = append(kept, args[k:k+n]...)
		} else {
			dropped = append(dropped, args[k:k+n]...)
		}
		k += n - 1
	}
	return kept, dropped
}
