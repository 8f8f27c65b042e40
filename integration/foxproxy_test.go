// Package integration tests foxproxy the way administrators run it: the
// built binary between a real Postfix (inbound smtpd with content_filter, and
// a re-injection smtpd) and the real services it depends on (rbldnsd, clamd,
// c-icap), all Debian packages started per test by integration/harness on
// loopback ports and stopped by PID. Mail is sent with swaks.
//
// Run everything with ./scripts/test.sh (it installs the daemons); these
// tests fail, never skip, when a daemon is missing.
package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/foxproxy/foxproxy/integration/harness"
)

// foxproxy is a running foxproxy binary.
type foxproxy struct {
	*harness.Process
	Addr       string
	ConfigPath string
	// Admin is the admin endpoint's base URL.
	Admin string
}

// startFoxproxy writes a configuration (the YAML lines given, plus listen,
// downstream and fast timeouts unless given) and starts the binary on it.
func startFoxproxy(t *testing.T, listen, downstream string, extra ...string) *foxproxy {
	t.Helper()
	adminAddr := harness.FreeAddr(t)
	cfg := []string{
		"listen: " + listen,
		"downstream: " + downstream,
		"hostname: foxproxy.test",
		"admin_listen: " + adminAddr,
	}
	cfg = append(cfg, extra...)
	path := filepath.Join(t.TempDir(), "foxproxy.yaml")
	if err := os.WriteFile(path, []byte(strings.Join(cfg, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := harness.RunProcess(t, harness.BuildFoxproxy(t), "-config", path)
	p.WaitLog(t, `"foxproxy started"`, 20*time.Second)
	harness.WaitPort(t, listen, 5*time.Second)
	return &foxproxy{Process: p, Addr: listen, ConfigPath: path, Admin: "http://" + adminAddr}
}

// messages returns foxproxy's per-message log lines, decoded.
func (f *foxproxy) messages(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(f.Log(), "\n") {
		if !strings.Contains(line, `"msg":"message"`) {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// waitMessages waits until foxproxy has logged n message lines.
func (f *foxproxy) waitMessages(t *testing.T, n int, timeout time.Duration) []map[string]any {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		m := f.messages(t)
		if len(m) >= n {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("foxproxy logged %d message lines, want %d; log tail:\n%s", len(m), n, tail(f.Log(), 20))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// headerCount counts header fields named name in a delivered message.
func headerCount(m harness.Message, name string) int {
	return len(m.Header()[name])
}
