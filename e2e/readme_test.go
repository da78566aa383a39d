package e2e

import (
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	"sluice.dev/sluice/functions"
)

// A fenced block of the README.
type readmeBlock struct {
	line       int // of its opening fence
	lang, text string
}

func readmeBlocks(t *testing.T) []readmeBlock {
	data, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	var blocks []readmeBlock
	var open *readmeBlock
	for i, line := range strings.Split(string(data), "\n") {
		switch {
		case strings.HasPrefix(line, "```") && open == nil:
			open = &readmeBlock{line: i + 1, lang: strings.TrimPrefix(line, "```")}
		case strings.HasPrefix(line, "```"):
			blocks = append(blocks, *open)
			open = nil
		case open != nil:
			open.text += line + "\n"
		}
	}
	return blocks
}

// A command of a shell block, with the output the README shows for it.
type readmeCommand struct {
	line        int
	text, shown string
}

// commands splits a shell block into commands: with prompts ("$ "), the
// lines after a command up to the next prompt are its output; without, every
// line is a command. A line ending in a backslash goes on.
func (b readmeBlock) commands() []readmeCommand {
	lines := strings.Split(strings.TrimRight(b.text, "\n"), "\n")
	prompted := strings.HasPrefix(lines[0], "$ ")
	var commands []readmeCommand
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		if prompted && !strings.HasPrefix(line, "$ ") {
			commands[len(commands)-1].shown += line + "\n"
			continue
		}
		if strings.TrimSpace(line) == "" {
			continue
		}
		command := readmeCommand{line: b.line + 1 + i, text: strings.TrimPrefix(line, "$ ")}
		for strings.HasSuffix(command.text, "\\") && i+1 < len(lines) {
			i++
			command.text += "\n" + lines[i]
		}
		commands = append(commands, command)
	}
	return commands
}

var (
	// A word the reader replaces (NAME, SEQ), an optional part, alternatives, an elided value.
	placeholder = regexp.MustCompile(`\b(NAME|SEQ|TEXT|FUNCTION)\b|\[-|\.\.\.|…| \| `)
	longFlag    = regexp.MustCompile(`--[a-z][a-z-]*`)
)

// Every example of the README, run as a new user would against the platform
// `make run` starts: each command that can run here runs (in the README's
// order: a retraining starts, and the rollout it leads to is followed) and
// must succeed, with the output the README shows where it shows one (values
// that change from run to run aside; the quick start's answer to 1e-4);
// each syntax line (NAME, [--flag], a | b) names a command and flags that
// exist; every Function YAML parses and validates. What cannot run in a
// test is named below, with where it is run instead.
func TestREADMEExamples(t *testing.T) {
	p := startPlatform(t)
	grpc := grpcAddr(t, p)
	bin, err := filepath.Abs(binary)
	require.NoError(t, err)
	grpcurlBin := grpcurlPath(t)
	work := t.TempDir()
	writeIrisCSV(t, filepath.Join(work, "rows.csv"), 150, nil) // what sluice batch scores
	require.NoError(t, os.MkdirAll(filepath.Join(work, "deploy", "demo"), 0o755))
	iris, err := os.ReadFile("../deploy/demo/iris.csv")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(work, "deploy", "demo", "iris.csv"), iris, 0o644))
	sluice(t, "train", "--input", "../deploy/demo/iris.csv", "--output", filepath.Join(work, "iris.onnx"))
	host := strings.TrimPrefix(p.url, "http://")
	t.Setenv("SLUICE_NATS_URL", natsURL(t, p))
	t.Setenv("SLUICE_URL", p.url)

	var last string // the output of the last command run, for a json block after it
	ran, checked := 0, 0
	for _, block := range readmeBlocks(t) {
		switch {
		case block.lang == "json":
			requireSameAnswer(t, block, last)
			checked++
			continue
		case block.lang == "yaml":
			if requireValidYAML(t, block) {
				// The Function a user writes, deployed by the command reference after it.
				require.NoError(t, os.WriteFile(filepath.Join(work, "my-function.yaml"), []byte(block.text), 0o644))
			}
			checked++
			continue
		case strings.ContainsAny(block.text, "│►"): // a picture
			continue
		}
		for _, command := range block.commands() {
			text := command.text
			switch {
			case strings.HasPrefix(text, "make ") || strings.Contains(text, " make run"):
				continue // CI runs make test; the quick start's make run is this platform
			case strings.HasPrefix(text, "nats pub "):
				natsPublish(t, command)
				ran++
				continue
			case strings.HasPrefix(text, "nats sub "):
				continue // runs until stopped; the result it would print is read by the command after it
			case strings.HasPrefix(text, "bin/sluice") && (placeholder.MatchString(strings.SplitN(text, "#", 2)[0]) || serves(text)):
				requireCommandExists(t, bin, command)
				checked++
				continue
			case strings.Contains(text, "…"):
				continue // a secret the reader pastes: TestUpWithAPIKeys does this
			}
			text = strings.NewReplacer("bin/sluice", bin, "localhost:8080", host, "localhost:8081", grpc, "grpcurl ", grpcurlBin+" ").Replace(text)
			text = strings.ReplaceAll(text, "curl -s", "curl -sf") // an error answer fails the example
			last = runExample(t, work, command, text)
			ran++
		}
	}
	t.Logf("%d README commands run, %d checked otherwise", ran, checked)
	require.Greater(t, ran, 10)
}

// serves says a command runs until stopped: it is checked, not run.
func serves(command string) bool {
	fields := strings.Fields(command)
	return len(fields) > 1 && (fields[1] == "up" || fields[1] == "activator" || fields[1] == "worker")
}

// runExample runs command in bash until its output shows what the README
// shows (a rollout is followed for up to 90 s), and fails on a non-zero exit.
func runExample(t *testing.T, dir string, command readmeCommand, text string) string {
	t.Helper()
	want := shownPatterns(command.shown)
	deadline := time.Now().Add(90 * time.Second)
	for {
		cmd := exec.Command("bash", "-c", text)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		missing := ""
		for _, pattern := range want {
			if !pattern.Match(out) {
				missing = pattern.String()
				break
			}
		}
		if err == nil && missing == "" {
			return string(out)
		}
		if time.Now().After(deadline) {
			require.NoError(t, err, "README line %d: %s\n%s", command.line, command.text, out)
			require.Empty(t, missing, "README line %d: %s\nshows a line like %q; the output is:\n%s", command.line, command.text, missing, out)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// natsPublish does what a `nats pub SUBJECT BODY -H key:value...` line of the
// README does, through JetStream, with the operator's credentials; bash
// reads the line's quoting.
func natsPublish(t *testing.T, command readmeCommand) {
	t.Helper()
	out, err := exec.Command("bash", "-c", `printf '%s\0' `+strings.TrimPrefix(command.text, "nats pub ")).Output()
	require.NoError(t, err, "README line %d", command.line)
	args := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
	require.GreaterOrEqual(t, len(args), 2, "README line %d: nats pub SUBJECT BODY", command.line)
	msg := nats.NewMsg(args[0])
	msg.Data = []byte(args[1])
	for i := 2; i+1 < len(args); i += 2 {
		require.Equal(t, "-H", args[i], "README line %d", command.line)
		key, value, ok := strings.Cut(args[i+1], ":")
		require.True(t, ok, "README line %d: -H key:value", command.line)
		msg.Header.Set(key, value)
	}
	nc, err := nats.Connect(os.Getenv("SLUICE_NATS_URL"), nats.UserCredentials(os.Getenv("SLUICE_NATS_CREDS")))
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	_, err = js.PublishMsg(t.Context(), msg)
	require.NoError(t, err, "README line %d", command.line)
}

var (
	varying = regexp.MustCompile(`\S*[0-9]\S*|[A-Za-z0-9_-]{16,}`)
	spaces  = regexp.MustCompile(`\s+`)
)

// shownPatterns are the lines the README shows as a command's output, as
// patterns: numbers, ids and elided parts (... or …) match anything, and
// any run of spaces any other.
func shownPatterns(shown string) []*regexp.Regexp {
	var patterns []*regexp.Regexp
	for line := range strings.Lines(shown) {
		line = strings.TrimSpace(line)
		if line == "" || line == "..." {
			continue
		}
		var pattern strings.Builder
		pattern.WriteString(`(?m)`)
		rest := line
		for rest != "" {
			loc := varying.FindStringIndex(rest)
			if loc == nil {
				pattern.WriteString(literal(rest))
				break
			}
			pattern.WriteString(literal(rest[:loc[0]]) + `\S*`)
			rest = rest[loc[1]:]
		}
		patterns = append(patterns, regexp.MustCompile(pattern.String()))
	}
	return patterns
}

func literal(text string) string {
	text = regexp.QuoteMeta(text)
	text = strings.NewReplacer(`\.\.\.`, `.*`, `…`, `.*`).Replace(text)
	return spaces.ReplaceAllString(text, `\s+`)
}

// requireSameAnswer compares a JSON answer the README shows with the one the
// command before it printed, numbers to 1e-4.
func requireSameAnswer(t *testing.T, block readmeBlock, got string) {
	t.Helper()
	var want, have any
	require.NoError(t, json.Unmarshal([]byte(block.text), &want), "README line %d", block.line)
	require.NoError(t, json.Unmarshal([]byte(got), &have), "README line %d: the command before printed:\n%s", block.line, got)
	require.True(t, sameJSON(want, have), "README line %d shows\n%s\nthe platform answers\n%s", block.line, block.text, got)
}

func sameJSON(want, have any) bool {
	switch want := want.(type) {
	case float64:
		have, ok := have.(float64)
		return ok && math.Abs(want-have) <= 1e-4
	case []any:
		have, ok := have.([]any)
		if !ok || len(have) != len(want) {
			return false
		}
		for i := range want {
			if !sameJSON(want[i], have[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		have, ok := have.(map[string]any)
		if !ok || len(have) != len(want) {
			return false
		}
		for key := range want {
			if !sameJSON(want[key], have[key]) {
				return false
			}
		}
		return true
	}
	return want == have
}

// requireValidYAML parses a Function, or a part of one's spec (indented
// under spec:) into the demo Function, and validates it; any other YAML
// must parse. whole says the block is a Function of its own.
func requireValidYAML(t *testing.T, block readmeBlock) (whole bool) {
	t.Helper()
	text := block.text
	if strings.HasPrefix(text, "  ") {
		demo, err := os.ReadFile("../deploy/demo/iris.yaml")
		require.NoError(t, err)
		var kept []string // the demo without the part the block replaces
		part := strings.Fields(text)[0]
		skipping := false
		for line := range strings.Lines(string(demo)) {
			if strings.HasPrefix(line, "  ") && !strings.HasPrefix(line, "    ") {
				skipping = strings.HasPrefix(strings.TrimSpace(line), part)
			}
			if !skipping {
				kept = append(kept, line)
			}
		}
		text = strings.Join(kept, "") + text
	}
	if !strings.Contains(text, "kind: Function") {
		var anything any
		require.NoError(t, yaml.Unmarshal([]byte(text), &anything), "README line %d", block.line)
		return false
	}
	fn, err := functions.Parse([]byte(text))
	require.NoError(t, err, "README line %d:\n%s", block.line, text)
	require.NoError(t, fn.Validate(), "README line %d:\n%s", block.line, text)
	return text == block.text
}

// requireCommandExists checks a syntax line of the README: its command and
// every long flag it names are in the command's help.
func requireCommandExists(t *testing.T, bin string, command readmeCommand) {
	t.Helper()
	text := strings.SplitN(command.text, "#", 2)[0]
	var path []string
	for _, word := range strings.Fields(text)[1:] {
		if strings.HasPrefix(word, "-") || strings.HasPrefix(word, "[") || placeholder.MatchString(word) || word == "|" || !regexp.MustCompile(`^[a-z-]+$`).MatchString(word) {
			break
		}
		path = append(path, word)
	}
	out, err := exec.Command(bin, append(path, "--help")...).CombinedOutput()
	require.NoError(t, err, "README line %d: sluice %s --help\n%s", command.line, strings.Join(path, " "), out)
	require.Contains(t, string(out), "sluice "+strings.Join(path, " "), "README line %d: no such command\n%s", command.line, out)
	for _, flag := range longFlag.FindAllString(text, -1) {
		require.Contains(t, string(out), flag+" ", "README line %d: sluice %s has no %s", command.line, strings.Join(path, " "), flag)
	}
}
