package harness

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// CICAP is a running c-icap server whose "avscan" service (virus_scan with
// clamd_mod) scans through a harness clamd.
type CICAP struct {
	t    testing.TB
	dir  string
	addr string
	proc *Process
}

// StartCICAP starts c-icap in the foreground (-N) on a free loopback port with
// the avscan RESPMOD/REQMOD service backed by clamd, and waits until OPTIONS
// answers 200. It is stopped by PID when the test ends.
//
// clamd_mod hands clamd a file path in c-icap's TmpDir, not the data, so clamd
// must run on this host and be able to read that directory: both run as root
// here. If clamd is stopped, c-icap keeps running and its scans fail.
func StartCICAP(t testing.TB, clamd *Clamd) *CICAP {
	t.Helper()
	if clamd == nil {
		t.Fatalf("harness: StartCICAP needs a *Clamd")
	}
	bin := requireBin(t, "c-icap")
	// The module directory is multiarch: /usr/lib/x86_64-linux-gnu/c_icap on amd64.
	mods, _ := filepath.Glob("/usr/lib/*/c_icap/virus_scan.so")
	if len(mods) == 0 {
		t.Fatalf("harness: c-icap's virus_scan.so not found (package libc-icap-mod-virus-scan): %s", installHint)
	}
	modDir := filepath.Dir(mods[0])
	for _, f := range []string{"/etc/c-icap/c-icap.magic", "/usr/share/c_icap/templates"} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("harness: %v: %s", err, installHint)
		}
	}
	c := &CICAP{t: t, dir: tempDir(t, "cicap"), addr: FreeAddr(t)}
	chost, cport, _ := net.SplitHostPort(clamd.Addr())
	conf := strings.Join([]string{
		"PidFile " + filepath.Join(c.dir, "c-icap.pid"),
		"CommandsSocket " + filepath.Join(c.dir, "c-icap.ctl"),
		"Port " + c.addr,
		"User root",
		"TmpDir " + c.dir,
		"ServerLog " + filepath.Join(c.dir, "server.log"),
		"AccessLog " + filepath.Join(c.dir, "access.log"),
		// One child process is plenty for tests (default 3) and stops faster.
		"StartServers 1",
		"MaxServers 2",
		"ModulesDir " + modDir,
		"ServicesDir " + modDir,
		"TemplateDir /usr/share/c_icap/templates/",
		"LoadMagicFile /etc/c-icap/c-icap.magic",
		"Module common clamd_mod.so",
		"clamd_mod.ClamdHost " + chost,
		"clamd_mod.ClamdPort " + cport,
		// Debian's own virus_scan.conf: the avscan alias runs in simple mode.
		// In its default mode virus_scan starts answering a body over ~4 KB
		// before it is scanned and, on a hit, truncates it without naming
		// the threat.
		"Service virus_scan virus_scan.so",
		"ServiceAlias avscan virus_scan?allow204=on&sizelimit=off&mode=simple",
		"virus_scan.ScanFileTypes TEXT DATA EXECUTABLE ARCHIVE GIF JPEG MSOFFICE",
		"virus_scan.DefaultEngine clamd",
		// Objects above MaxObjectSize (default 5M) pass unscanned; match
		// foxproxy's default max_message_bytes so large-message tests scan.
		"virus_scan.MaxObjectSize 50M",
		"",
	}, "\n")
	confPath := filepath.Join(c.dir, "c-icap.conf")
	if err := writeFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatalf("harness: %v", err)
	}
	// -N: no daemon fork, so the PID started is the main process; stopping it
	// stops its children.
	c.proc = newProcess(t, "c-icap", bin, []string{"-N", "-f", confPath}, filepath.Join(c.dir, "c-icap.out"))
	// On SIGTERM c-icap waits for its clients' idle keep-alive connections
	// (foxproxy keeps a few): an outage must not take that long.
	c.proc.KillAfter = 2 * time.Second
	c.start(t)
	return c
}

func (c *CICAP) start(t testing.TB) {
	t.Helper()
	began := time.Now()
	if err := c.proc.start(); err != nil {
		t.Fatalf("harness: c-icap: %v", err)
	}
	var status string
	var lastErr error
	if !waitFor(startTimeout, func() bool {
		if c.proc.aliveErr() != nil {
			return true
		}
		status, lastErr = c.options()
		return lastErr == nil && strings.HasPrefix(status, "ICAP/1.0 200")
	}) || c.proc.aliveErr() != nil {
		t.Fatalf("harness: c-icap on %s: OPTIONS did not answer 200 (got %q, last error %v; %v); output:\n%s\nlast lines of server.log:\n%s",
			c.addr, status, lastErr, c.proc.aliveErr(), c.proc.log.tail(20), tailLines(c.Log(), 20))
	}
	t.Logf("harness: c-icap up in %v on %s (PID %d)", time.Since(began).Round(time.Millisecond), c.URL(), c.proc.PID())
}

// options sends OPTIONS for the avscan service and returns the status line.
func (c *CICAP) options() (string, error) {
	conn, err := net.DialTimeout("tcp", c.addr, time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Second))
	host, _, _ := net.SplitHostPort(c.addr)
	if _, err := fmt.Fprintf(conn, "OPTIONS %s ICAP/1.0\r\nHost: %s\r\nEncapsulated: null-body=0\r\n\r\n", c.URL(), host); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	return strings.TrimSpace(line), err
}

// URL is the avscan service, "icap://127.0.0.1:PORT/avscan".
func (c *CICAP) URL() string { return "icap://" + c.addr + "/avscan" }

// Addr is c-icap's address, "127.0.0.1:PORT".
func (c *CICAP) Addr() string { return c.addr }

// Stop stops c-icap (SIGTERM to the main process, by PID, and SIGKILL to its
// process group 2 s later if it still waits for clients) and waits for its exit.
func (c *CICAP) Stop() {
	c.t.Helper()
	c.proc.Stop()
}

// Start starts a stopped c-icap again on the same port and waits for OPTIONS 200.
func (c *CICAP) Start() {
	c.t.Helper()
	c.start(c.t)
}

// Log returns c-icap's server log ("VIRUS DETECTED: ..." lines, errors).
func (c *CICAP) Log() string {
	data, _ := os.ReadFile(filepath.Join(c.dir, "server.log"))
	return string(data)
}

// AccessLog returns c-icap's access log, one line per request
// (e.g. "RESPMOD avscan 204" for clean content with Allow: 204).
func (c *CICAP) AccessLog() string {
	data, _ := os.ReadFile(filepath.Join(c.dir, "access.log"))
	return string(data)
}
