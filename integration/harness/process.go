package harness

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Process is a program started by the harness: foxproxy (RunProcess) or one of
// the daemons. Its stdout and stderr go to one log file, appended to across
// restarts, so tests can search what it logged.
type Process struct {
	// StopTimeout is how long Stop waits after SIGTERM before it sends SIGKILL
	// (default 10 s). Set it before calling Stop.
	StopTimeout time.Duration
	// KillAfter, when set, makes a process that outlives SIGTERM by this long
	// get SIGKILL (to its whole process group) without that being an error:
	// for daemons whose SIGTERM waits for clients (c-icap waits for idle
	// keep-alive connections), where an outage is what the test wants.
	KillAfter time.Duration

	t    testing.TB
	name string
	path string
	args []string
	log  logFile

	mu  sync.Mutex
	cur *run // the latest start; nil before the first
}

// run is one start of a Process.
type run struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited and been reaped
	err  error         // cmd.Wait's result; read it only after done is closed
}

// RunProcess starts bin with args and returns at once; use WaitLog or WaitPort
// to wait until it is ready. It is stopped (SIGTERM, then SIGKILL after
// StopTimeout) when the test ends.
func RunProcess(t testing.TB, bin string, args ...string) *Process {
	t.Helper()
	base := filepath.Base(bin)
	p := newProcess(t, base, bin, args, filepath.Join(tempDir(t, base), base+".log"))
	if err := p.start(); err != nil {
		t.Fatalf("harness: %v", err)
	}
	return p
}

// newProcess prepares a Process (without starting it) and registers its stop
// at cleanup.
func newProcess(t testing.TB, name, path string, args []string, logPath string) *Process {
	p := &Process{t: t, name: name, path: path, args: args, log: logFile{path: logPath}}
	t.Cleanup(func() {
		if err := p.stop(); err != nil {
			t.Errorf("harness: %v", err)
		}
		if t.Failed() {
			t.Logf("harness: %s log %s, last lines:\n%s", p.name, p.log.path, p.log.tail(40))
		}
	})
	return p
}

func (p *Process) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur != nil && !p.cur.exited() {
		return fmt.Errorf("%s is already running (PID %d)", p.name, p.cur.cmd.Process.Pid)
	}
	f, err := os.OpenFile(p.log.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close() // the child has its own copy
	cmd := exec.Command(p.path, p.args...)
	cmd.Stdout, cmd.Stderr = f, f
	// If the test binary dies without running its cleanups (a -timeout panic,
	// a kill), the kernel sends the child SIGTERM instead of leaving it behind.
	// Best effort: a daemon that changes its user (rbldnsd) loses this setting.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM, Setpgid: p.KillAfter > 0}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.path, err)
	}
	r := &run{cmd: cmd, done: make(chan struct{})}
	go func() {
		r.err = cmd.Wait()
		close(r.done)
	}()
	p.cur = r
	return nil
}

func (r *run) exited() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

func (p *Process) current() *run {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cur
}

// stop ends the current run by its PID: SIGTERM, then SIGKILL after
// StopTimeout. A process that needed SIGKILL is an error: foxproxy must stop on
// SIGTERM.
func (p *Process) stop() error {
	r := p.current()
	if r == nil || r.exited() {
		return nil
	}
	pid := r.cmd.Process.Pid
	timeout := p.StopTimeout
	if timeout <= 0 {
		timeout = stopTimeout
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	if p.KillAfter > 0 {
		select {
		case <-r.done:
		case <-time.After(p.KillAfter):
			_ = syscall.Kill(-pid, syscall.SIGKILL) // the group: its children too
			<-r.done
		}
		return nil
	}
	select {
	case <-r.done:
		return nil
	case <-time.After(timeout):
	}
	_ = r.cmd.Process.Kill()
	select {
	case <-r.done:
		return fmt.Errorf("%s (PID %d) did not exit within %v of SIGTERM and was killed", p.name, pid, timeout)
	case <-time.After(5 * time.Second):
		return fmt.Errorf("%s (PID %d) did not exit even after SIGKILL", p.name, pid)
	}
}

// aliveErr is nil while the process runs, and says how it ended otherwise.
func (p *Process) aliveErr() error {
	r := p.current()
	switch {
	case r == nil:
		return fmt.Errorf("%s was never started", p.name)
	case r.exited():
		return fmt.Errorf("%s (PID %d) exited: %v", p.name, r.cmd.Process.Pid, r.err)
	}
	return nil
}

// PID is the process ID of the latest start (0 before the first).
func (p *Process) PID() int {
	if r := p.current(); r != nil {
		return r.cmd.Process.Pid
	}
	return 0
}

// Running reports whether the process is running.
func (p *Process) Running() bool {
	r := p.current()
	return r != nil && !r.exited()
}

// Signal sends sig (e.g. syscall.SIGHUP) to the process; it fails the test if
// the process is not running.
func (p *Process) Signal(sig os.Signal) {
	p.t.Helper()
	r := p.current()
	if r == nil || r.exited() {
		p.t.Fatalf("harness: signal %v: %v", sig, p.aliveErr())
	}
	if err := r.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("harness: signal %v to %s (PID %d): %v", sig, p.name, r.cmd.Process.Pid, err)
	}
}

// Stop sends SIGTERM and waits for the exit, up to StopTimeout, then sends
// SIGKILL and fails the test. Stopping a process that is not running does nothing.
func (p *Process) Stop() {
	p.t.Helper()
	if err := p.stop(); err != nil {
		p.t.Errorf("harness: %v", err)
	}
}

// Restart stops the process if it runs and starts it again with the same
// arguments; the log continues in the same file (use LogMark before Restart and
// WaitLogSince after it to see only the new run's lines).
func (p *Process) Restart() {
	p.t.Helper()
	p.Stop()
	if err := p.start(); err != nil {
		p.t.Fatalf("harness: restart: %v", err)
	}
}

// WaitExit waits for the process to exit by itself and returns its exit code
// (-1 if a signal ended it). It fails the test after timeout.
func (p *Process) WaitExit(t testing.TB, timeout time.Duration) int {
	t.Helper()
	r := p.current()
	if r == nil {
		t.Fatalf("harness: %s was never started", p.name)
	}
	select {
	case <-r.done:
		return r.cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		t.Fatalf("harness: %s (PID %d) still running after %v; last lines of its log:\n%s",
			p.name, r.cmd.Process.Pid, timeout, p.log.tail(40))
		return 0
	}
}

// Log returns everything the process wrote to stdout and stderr, all runs.
func (p *Process) Log() string { return p.log.String() }

// LogPath is the file holding the process's stdout and stderr.
func (p *Process) LogPath() string { return p.log.path }

// LogMark returns the current end of the log, for WaitLogSince.
func (p *Process) LogMark() int { return p.log.mark() }

// WaitLog waits until a log line matches pattern (a regexp; one that does not
// compile is taken as a literal substring) and returns the line's submatches,
// element 0 being the whole match. It fails the test on timeout, or at once if
// the process exits without writing such a line.
func (p *Process) WaitLog(t testing.TB, pattern string, timeout time.Duration) []string {
	t.Helper()
	return p.log.waitSince(t, p.name, 0, pattern, timeout, p.aliveErr)
}

// WaitLogSince is WaitLog that ignores the lines before mark (from LogMark).
func (p *Process) WaitLogSince(t testing.TB, mark int, pattern string, timeout time.Duration) []string {
	t.Helper()
	return p.log.waitSince(t, p.name, mark, pattern, timeout, p.aliveErr)
}

// builds holds one *build per package path, so each is built once per test binary.
var builds sync.Map

type build struct {
	once sync.Once
	path string
	err  error
}

// BuildFoxproxy builds ./cmd/foxproxy (see Build) and returns the binary's path.
func BuildFoxproxy(t testing.TB) string {
	t.Helper()
	return Build(t, "./cmd/foxproxy")
}

// Build compiles the main package pkg (relative to the module root, such as
// "./cmd/foxproxy", or an import path) with "go build -o" once per test binary
// and returns the binary's path. The binary is shared by all tests of the test
// binary, so it lives in the run directory rather than a test's own.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	v, _ := builds.LoadOrStore(pkg, new(build))
	b := v.(*build)
	b.once.Do(func() { b.path, b.err = goBuild(pkg) })
	if b.err != nil {
		t.Fatalf("harness: %v", b.err)
	}
	return b.path
}

func goBuild(pkg string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	dir, err := runRoot()
	if err != nil {
		return "", err
	}
	// "go test" puts its own GOROOT/bin first in the test's PATH, so this is
	// the toolchain that built the test.
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("build %s: %w", pkg, err)
	}
	out := filepath.Join(dir, "bin", unsafeName.ReplaceAllString(strings.Trim(pkg, "./"), "_"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", out, pkg)
	cmd.Dir = root
	if output, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build -o %s %s (in %s): %v\n%s", out, pkg, root, err, output)
	}
	return out, nil
}
