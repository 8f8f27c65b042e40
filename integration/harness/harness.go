// Package harness starts the real daemons that foxproxy's integration tests drive,
// and the foxproxy binary itself. Nothing is mocked: a private Postfix instance
// hands mail to foxproxy as its content filter, swaks sends test mail, rbldnsd
// serves DNS lists, clamd scans with a one-line EICAR signature database, and
// c-icap offers that clamd as an ICAP RESPMOD service.
//
// Everything listens on 127.0.0.1 ports chosen at run time, lives in directories
// under /tmp/foxproxy-harness-<pid>/, and is stopped in t.Cleanup by the PID the
// harness started (never by name), also when the test fails. On failure the
// cleanup logs the tail of each daemon's log. Set FOXPROXY_HARNESS_KEEP=1 to keep
// the directories of failed tests for a look.
//
// The Debian packages come from scripts/install-test-deps.sh. When a binary is
// missing the test fails and says to run that script; it never skips, so CI cannot
// pass by silently testing nothing. Postfix needs root.
//
// Mail flow set up by StartPostfix (see integration/scripts/postfix.sh):
//
//	swaks ─▶ InboundAddr smtpd ─queue─▶ "foxproxy" smtp transport ─▶ FilterAddr (foxproxy)
//	foxproxy ─▶ ReinjectAddr smtpd ─queue─▶ virtual(8) ─▶ Maildir box "rcpt", "sender" or "other"
//
// rcpt@example.test is delivered to box "rcpt", sender@example.test to "sender",
// any other @example.test address (postmaster, so also bounce copies) to "other".
//
// A test of foxproxy then looks like this:
//
//	filter := harness.FreeAddr(t)
//	pf := harness.StartPostfix(t, harness.PostfixOptions{FilterAddr: filter})
//	fox := harness.RunProcess(t, harness.BuildFoxproxy(t), "-config", cfgPath)
//	harness.WaitPort(t, filter, 10*time.Second)
//	res := harness.Send(t, harness.SendOptions{Server: pf.InboundAddr, Subject: "hi"})
//	pf.WaitLog(t, res.QueueID+`: to=<rcpt@example\.test>, .*status=sent`, 10*time.Second)
//	msgs := pf.WaitDelivered(t, harness.BoxRcpt, 1, 10*time.Second)
//	fox.WaitLog(t, `verdict=deliver`, time.Second)
//
// Failure reporting: functions and methods that take a testing.TB fail that test.
// Methods without one (Stop, Start, Queue, Flush, ...) fail the test that started
// the daemon: call them from that test, or from its subtests (a failure is then
// reported on the parent as well).
package harness

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Test addresses and the Maildir boxes they are delivered to.
const (
	RcptAddr   = "rcpt@example.test"
	SenderAddr = "sender@example.test"

	BoxRcpt   = "rcpt"   // rcpt@example.test
	BoxSender = "sender" // sender@example.test, so bounces to the test sender land here
	BoxOther  = "other"  // every other @example.test address, postmaster included
)

const installHint = "run ./scripts/install-test-deps.sh (as root) to install the integration test dependencies"

// How long daemons get to start and to stop. Generous: a loaded CI machine is
// slow, and a wait only costs its full length when something is broken.
const (
	startTimeout = 15 * time.Second
	stopTimeout  = 10 * time.Second
	pollInterval = 25 * time.Millisecond
)

// lookBin finds an installed program. Root's PATH has the sbin directories,
// a user's often does not, and postfix, rbldnsd and clamd live there.
func lookBin(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found", name)
}

// requireBin returns the path of an installed program or fails the test.
func requireBin(t testing.TB, name string) string {
	t.Helper()
	p, err := lookBin(name)
	if err != nil {
		t.Fatalf("harness: %v: %s", err, installHint)
	}
	return p
}

// usedPorts keeps FreePort from handing out the same port twice in one test binary.
var usedPorts sync.Map

// FreePort returns a loopback port that is free for both TCP and UDP (rbldnsd
// binds UDP). It picks from 20000–32767, below Linux's ephemeral range
// (32768–60999), so the outgoing connection of some other process cannot take
// the port between this call and the daemon's bind.
func FreePort(t testing.TB) int {
	t.Helper()
	for range 200 {
		port := 20000 + rand.IntN(12768)
		if _, taken := usedPorts.LoadOrStore(port, true); taken {
			continue
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		ln, err := net.Listen("tcp4", addr)
		if err != nil {
			continue
		}
		pc, err := net.ListenPacket("udp4", addr)
		ln.Close()
		if err != nil {
			continue
		}
		pc.Close()
		return port
	}
	t.Fatalf("harness: no free loopback port found in 200 tries")
	return 0
}

// FreeAddr returns "127.0.0.1:PORT" with a port from FreePort.
func FreeAddr(t testing.TB) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
}

// WaitPort waits until addr accepts TCP connections, or fails the test.
func WaitPort(t testing.TB, addr string, timeout time.Duration) {
	t.Helper()
	if err := waitPort(addr, timeout, nil); err != nil {
		t.Fatalf("harness: %v", err)
	}
}

// waitPort waits until addr accepts a TCP connection. alive, if not nil, is
// checked between tries so that a daemon that died is reported at once instead
// of after the full timeout.
func waitPort(addr string, timeout time.Duration, alive func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if alive != nil {
			if aerr := alive(); aerr != nil {
				return fmt.Errorf("%s never accepted a connection: %w", addr, aerr)
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not accept connections within %v: %v", addr, timeout, err)
		}
		time.Sleep(pollInterval)
	}
}

// waitFor polls cond until it returns true or timeout passes; it reports
// whether cond became true.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pollInterval)
	}
}

var moduleLine = regexp.MustCompile(`(?m)^module\s+github\.com/foxproxy/foxproxy\s*$`)

// moduleRoot is the directory holding foxproxy's go.mod, found upwards from the
// working directory (go test runs in the package directory), so the harness
// works from any package and with -trimpath.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if data, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && moduleLine.Match(data) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod of github.com/foxproxy/foxproxy above the working directory")
		}
		dir = parent
	}
}

var (
	rootOnce sync.Once
	rootDir  string
	rootErr  error
)

const rootPrefix = "foxproxy-harness-"

// runRoot is this test binary's directory, /tmp/foxproxy-harness-<pid>. It is
// 0755 and directly under /tmp (not under $TMPDIR or t.TempDir(), whose parents
// may be 0700) because the postfix, nobody and rbldns users must traverse it.
// Directories left by test binaries that no longer run (killed by a timeout, say)
// are removed on first use; this binary's own directory is left for the next
// run to remove, because built binaries in it are shared by all its tests.
func runRoot() (string, error) {
	rootOnce.Do(func() {
		entries, _ := os.ReadDir("/tmp")
		for _, e := range entries {
			pid, err := strconv.Atoi(strings.TrimPrefix(e.Name(), rootPrefix))
			if !e.IsDir() || !strings.HasPrefix(e.Name(), rootPrefix) || err != nil || pid == os.Getpid() {
				continue
			}
			if syscall.Kill(pid, 0) == syscall.ESRCH {
				os.RemoveAll(filepath.Join("/tmp", e.Name()))
			}
		}
		dir := filepath.Join("/tmp", rootPrefix+strconv.Itoa(os.Getpid()))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			rootErr = err
			return
		}
		rootErr = os.Chmod(dir, 0o755) // MkdirAll is subject to the umask
		rootDir = dir
	})
	return rootDir, rootErr
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// tempDir makes a 0755 directory for one daemon, named after the test, and
// removes it at cleanup (after the daemon's own cleanup has stopped it, since
// cleanups run last-registered first).
func tempDir(t testing.TB, kind string) string {
	t.Helper()
	root, err := runRoot()
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	// Short: clamd's and c-icap's unix sockets live in here, and a socket path
	// has at most 107 bytes.
	name := unsafeName.ReplaceAllString(kind+"-"+t.Name(), "_")
	if len(name) > 40 {
		name = name[:40]
	}
	dir, err := os.MkdirTemp(root, name+"-")
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("harness: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() && os.Getenv("FOXPROXY_HARNESS_KEEP") != "" {
			t.Logf("harness: keeping %s (FOXPROXY_HARNESS_KEEP is set)", dir)
			return
		}
		os.RemoveAll(dir)
	})
	return dir
}

// logFile is a log that a daemon appends to and tests search.
type logFile struct {
	path string
}

// String returns the whole log ("" before the daemon has written it).
func (l logFile) String() string {
	data, _ := os.ReadFile(l.path)
	return string(data)
}

// mark is the current size of the log; waitSince(mark, ...) only looks at
// what is written after it.
func (l logFile) mark() int {
	fi, err := os.Stat(l.path)
	if err != nil {
		return 0
	}
	return int(fi.Size())
}

// tail returns the last n lines.
func (l logFile) tail(n int) string {
	return tailLines(l.String(), n)
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// compilePattern compiles a regexp; a pattern that is not a valid regexp is
// taken literally, so WaitLog(t, "foo (bar", ...) means the substring.
func compilePattern(pattern string) *regexp.Regexp {
	re, err := regexp.Compile(pattern)
	if err != nil {
		re = regexp.MustCompile(regexp.QuoteMeta(pattern))
	}
	return re
}

// find returns the submatches of the first line after offset from that matches re.
func (l logFile) find(from int, re *regexp.Regexp) []string {
	data := l.String()
	if from > len(data) {
		from = len(data) // the log was truncated or replaced
	}
	sc := bufio.NewScanner(strings.NewReader(data[from:]))
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			return m
		}
	}
	return nil
}

// count returns how many lines match re.
func (l logFile) count(re *regexp.Regexp) int {
	n := 0
	for _, line := range strings.Split(l.String(), "\n") {
		if re.MatchString(line) {
			n++
		}
	}
	return n
}

// waitSince waits for a line after offset from that matches pattern and returns
// its submatches (element 0 is the whole match). On timeout, or when alive
// reports the writer dead, it fails t with the log's tail.
func (l logFile) waitSince(t testing.TB, what string, from int, pattern string, timeout time.Duration, alive func() error) []string {
	t.Helper()
	re := compilePattern(pattern)
	deadline := time.Now().Add(timeout)
	for {
		if m := l.find(from, re); m != nil {
			return m
		}
		if alive != nil {
			if err := alive(); err != nil {
				// One more look: the line may have been written just before the exit.
				if m := l.find(from, re); m != nil {
					return m
				}
				t.Fatalf("harness: %s: waiting for a log line matching %q: %v; last lines of %s:\n%s",
					what, pattern, err, l.path, l.tail(40))
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("harness: %s: no log line matching %q within %v; last lines of %s:\n%s",
				what, pattern, timeout, l.path, l.tail(40))
		}
		time.Sleep(pollInterval)
	}
}

// writeFile writes data with an explicit mode: the daemons read these files as
// other users (rbldns, postfix, nobody), so the umask must not matter.
func writeFile(path string, data []byte, mode os.FileMode) error {
	if err := os.WriteFile(path, data, mode); err != nil {
		return err
	}
	return os.Chmod(path, mode)
}
