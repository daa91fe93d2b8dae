// Package ration_test runs the README: every shell block, in order, as a
// new user would paste them into a fresh shell, so the README cannot drift
// from what the code does.
package ration_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A block is one fenced code block of the README and what its
// `<!-- readme-test: ... -->` line says to do with it.
type block struct {
	line int    // of the opening fence
	lang string // after the fence; "" for a shell block
	body []string
	// The annotation, if any:
	skip       string // why the block is not run
	background string // run it in the background; this URL answers 200 when it is up
	stopFirst  bool   // stop the background blocks before this one (the text says Ctrl-C)
	interrupt  int    // seconds after which the block's last command is interrupted (it runs until Ctrl-C)
}

var (
	annotation   = regexp.MustCompile(`^<!-- readme-test: (.*) -->$`)
	readyAt      = regexp.MustCompile(`^background; ready at (\S+)`)
	interruptRe  = regexp.MustCompile(`^interrupt-last after (\d+)s`)
	shellFence   = map[string]bool{"": true, "sh": true, "bash": true, "shell": true}
	knownNonExec = map[string]bool{"go": true, "text": true, "yaml": true, "ini": true, "json": true, "python": true, "dockerfile": true, "proto": true}
)

// readBlocks parses the README's fenced blocks and their annotations.
func readBlocks(t *testing.T, path string) []block {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var (
		out     []block
		cur     *block
		pending string
		n       int
	)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		n++
		line := sc.Text()
		if cur != nil {
			if strings.HasPrefix(line, "```") {
				out = append(out, *cur)
				cur = nil
				continue
			}
			cur.body = append(cur.body, line)
			continue
		}
		if m := annotation.FindStringSubmatch(line); m != nil {
			pending = m[1]
			continue
		}
		if lang, ok := strings.CutPrefix(line, "```"); ok {
			cur = &block{line: n, lang: strings.TrimSpace(lang)}
			if pending != "" {
				annotate(t, cur, pending)
			}
			pending = ""
			continue
		}
		if strings.TrimSpace(line) != "" {
			pending = ""
		}
	}
	if cur != nil {
		t.Fatalf("README: the block at line %d is not closed", cur.line)
	}
	return out
}

func annotate(t *testing.T, b *block, a string) {
	t.Helper()
	switch {
	case strings.HasPrefix(a, "skip"):
		b.skip = strings.TrimSpace(strings.TrimPrefix(a, "skip"))
		if b.skip == "" {
			t.Fatalf("README line %d: a skipped block says why", b.line)
		}
	case readyAt.MatchString(a):
		b.background = readyAt.FindStringSubmatch(a)[1]
	case interruptRe.MatchString(a):
		b.interrupt, _ = strconv.Atoi(interruptRe.FindStringSubmatch(a)[1])
	case strings.HasPrefix(a, "stop-background first"):
		b.stopFirst = true
	default:
		t.Fatalf("README line %d: unknown readme-test annotation %q", b.line, a)
	}
}

// A command is one shell command of a block (continuation lines joined)
// and the answer the README shows for it (`# -> {...}`), if any.
type command struct {
	line   int
	text   string
	expect string
}

func commands(b block) []command {
	var out []command
	for i := 0; i < len(b.body); i++ {
		line := b.body[i]
		trimmed := strings.TrimSpace(line)
		if exp, ok := strings.CutPrefix(trimmed, "# -> "); ok {
			if len(out) > 0 {
				if j := strings.Index(exp, "  ("); j >= 0 {
					exp = exp[:j]
				}
				out[len(out)-1].expect = strings.TrimSpace(exp)
			}
			continue
		}
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		c := command{line: b.line + 1 + i, text: line}
		for strings.HasSuffix(c.text, `\`) && i+1 < len(b.body) {
			i++
			c.text += "\n" + b.body[i]
		}
		out = append(out, c)
	}
	return out
}

// marker separates the commands' outputs in the script's output.
const marker = "@@readme-command "

// script turns the README's blocks into one bash script that runs them in
// order, marking where each command's output starts.
func script(blocks []block) (string, []command) {
	var sb strings.Builder
	var all []command
	// Job control (-m), as in a terminal: each "&" job is a process group
	// of its own that takes SIGINT (a script's jobs would ignore it).
	sb.WriteString("set -euo pipefail -m\nexec 2>&1\nBG=()\nJOBS=()\n")
	mark := func(c command) {
		all = append(all, c)
		fmt.Fprintf(&sb, "printf '\\n%s%d %%s\\n' \"$(date +%%s.%%N)\"\n", marker, len(all)-1)
	}
	for _, b := range blocks {
		if b.skip != "" || !shellFence[b.lang] {
			continue
		}
		fmt.Fprintf(&sb, "\n# README line %d\n", b.line)
		if b.stopFirst {
			// Ctrl-C: to the background blocks' groups, and to the
			// processes blocks left running with "&".
			sb.WriteString("for p in \"${BG[@]}\"; do kill -INT -- -$p 2>/dev/null || true; done; BG=()\n")
			sb.WriteString("for p in $(jobs -p); do kill -INT $p 2>/dev/null || true; wait $p || true; done; JOBS=()\n")
		}
		cmds := commands(b)
		if b.background != "" {
			mark(command{line: b.line, text: "(background) " + strings.Join(b.body, "; ")})
			fmt.Fprintf(&sb, "bash -c %s > background-%d.log 2>&1 &\nBG+=($!)\n", strconv.Quote(strings.Join(b.body, "\n")), b.line)
			fmt.Fprintf(&sb, "for i in $(seq 1200); do curl -sf -o /dev/null %s && break; sleep 0.1; done\n", b.background)
			fmt.Fprintf(&sb, "curl -sf -o /dev/null %s || { echo 'not ready:'; cat background-%d.log; exit 1; }\n", b.background, b.line)
			continue
		}
		for i, c := range cmds {
			mark(c)
			if b.interrupt > 0 && i == len(cmds)-1 {
				// In braces: a comment at the end of the line would hide "&".
				fmt.Fprintf(&sb, "{ %s\n} &\nlast=$!\nsleep %d\nkill -INT -- -$last\nwait $last || true\n", c.text, b.interrupt)
				continue
			}
			sb.WriteString(c.text + "\n")
			if strings.HasSuffix(strings.TrimSpace(c.text), "&") {
				sb.WriteString("JOBS+=($!)\n")
			}
		}
		// What a block left running ("&": nodes) must still run: a node
		// that could not start (its port taken) is a failure, however well
		// the next command goes.
		sb.WriteString("[ ${#JOBS[@]} = 0 ] || sleep 1\nfor p in \"${JOBS[@]}\"; do kill -0 $p 2>/dev/null || { echo \"a command left running with & has exited\"; exit 1; }; done\n")
	}
	return sb.String(), all
}

// TestREADME runs the README's shell blocks in order, as pasted into a
// fresh shell at the root of a fresh clone. It checks that every command succeeds, that each
// answer the README shows (`# -> {...}`, "..." for any value) is what the
// command printed, and that no answer is an error.
func TestREADME(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the README's commands (builds, starts nodes)")
	}
	if _, err := exec.LookPath("unshare"); err != nil || os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("the README test needs root and unshare (util-linux)")
		}
		t.Skip("needs root and unshare for a network namespace of its own")
	}
	blocks := readBlocks(t, "README.md")
	for _, b := range blocks {
		if !shellFence[b.lang] && !knownNonExec[b.lang] {
			t.Errorf("README line %d: block of %q: tag it with a known language or make it a shell block", b.line, b.lang)
		}
	}
	src, cmds := script(blocks)
	if len(cmds) < 20 {
		t.Fatalf("only %d commands found in the README's shell blocks", len(cmds))
	}
	tmp := t.TempDir()
	sh := filepath.Join(tmp, "readme.sh")
	if err := os.WriteFile(sh, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	repo, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"upper", "work"} {
		if err := os.Mkdir(filepath.Join(tmp, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	// In namespaces of their own: the repository is overlaid, so what the
	// commands write (binaries, data dirs) lands in the temp dir, at the
	// repository's own path (Go's build cache serves it); the files git
	// ignores are hidden, as in a fresh clone; the README's fixed ports are
	// free; and --kill-child ends everything the README started with the
	// test.
	setup := fmt.Sprintf(`set -e
mount -t overlay overlay -o lowerdir=%[1]s,upperdir=%[2]s/upper,workdir=%[2]s/work %[1]s
cd %[1]s
git clean -fdqX 2>/dev/null || true  # a tree that is not a git checkout is run as it is
ip link set lo up
exec bash %[3]s`, repo, tmp, sh)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "unshare", "--mount", "--net", "--pid", "--fork", "--kill-child", "bash", "-c", setup)
	cmd.Env = append(os.Environ(), "GOPROXY=off", "GOFLAGS=-mod=readonly")
	out, err := cmd.CombinedOutput()
	outputs, began := split(string(out), len(cmds))
	for i, c := range cmds {
		if i+1 < len(cmds) && !began[i].IsZero() && !began[i+1].IsZero() {
			if took := began[i+1].Sub(began[i]); took > 5*time.Second {
				t.Logf("README line %d took %v: %s", c.line, took.Round(time.Second), c.text)
			}
		}
		got := strings.TrimSpace(outputs[i])
		if strings.Contains(got, `"code":"`) {
			t.Errorf("README line %d: %s\nanswered an error: %s", c.line, c.text, got)
		}
		if c.expect != "" && !answerMatches(c.expect, got) {
			t.Errorf("README line %d: %s\nprinted   %s\nREADME shows %s", c.line, c.text, got, c.expect)
		}
	}
	if err != nil {
		last := len(outputs) - 1
		for last > 0 && outputs[last] == "" {
			last--
		}
		t.Fatalf("the README's commands failed at line %d: %s\n%v\n%s", cmds[last].line, cmds[last].text, err, outputs[last])
	}
	t.Logf("ran %d commands from %d blocks", len(cmds), len(blocks))
}

// split cuts the script's output at the markers: one output per command,
// and when each began.
func split(out string, n int) ([]string, []time.Time) {
	outputs, began := make([]string, n), make([]time.Time, n)
	cur := -1
	for _, line := range strings.SplitAfter(out, "\n") {
		if rest, ok := strings.CutPrefix(line, marker); ok {
			var at float64
			fmt.Sscanf(rest, "%d %f", &cur, &at)
			if cur >= 0 && cur < n {
				began[cur] = time.Unix(0, int64(at*1e9))
			}
			continue
		}
		if cur >= 0 && cur < n {
			outputs[cur] += line
		}
	}
	return outputs, began
}

// answerMatches says whether got, a command's JSON answer, has every field
// want shows with the same value ("..." stands for any value); fields the
// README leaves out may be there.
func answerMatches(want, got string) bool {
	var w, g any
	if json.Unmarshal([]byte(want), &w) != nil || json.Unmarshal([]byte(got), &g) != nil {
		return strings.TrimSpace(want) == strings.TrimSpace(got)
	}
	return subset(w, g)
}

func subset(want, got any) bool {
	switch w := want.(type) {
	case string:
		return w == "..." || w == got
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return false
		}
		for k, v := range w {
			if gv, ok := g[k]; !ok || !subset(v, gv) {
				return false
			}
		}
		return true
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return false
		}
		for i := range w {
			if !subset(w[i], g[i]) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(want, got)
}
