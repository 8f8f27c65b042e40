package integration

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	osexec "os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/foxproxy/foxproxy/integration/harness"
)

// Signals during start-up. logrotate, systemd and orchestrators send SIGHUP
// and SIGTERM whenever they like, also while foxproxy is still reading its
// configuration or opening its listeners.
//
// The moments are counted from when foxproxy opens its configuration file
// (seen with inotify), which it does right after catching its signals, first
// thing in main: before that, while the Go runtime starts (a few ms after
// exec), no program can catch a signal, and the test cannot tell when
// foxproxy's own code begins any other way. Everything foxproxy does before
// it serves (the configuration, the checks, the listeners) comes after.

// startUpRuns is how many starts each test makes: signals fall at random
// moments, so one start proves little.
const startUpRuns = 5

// writeStartUpConfig writes a configuration for foxproxy listening on
// listen with its admin endpoint at adminAddr.
func writeStartUpConfig(t *testing.T, listen, downstream, adminAddr string) string {
	t.Helper()
	cfg := strings.Join([]string{
		"listen: " + listen,
		"downstream: " + downstream,
		"hostname: foxproxy.test",
		"admin_listen: " + adminAddr,
	}, "\n") + "\n"
	path := filepath.Join(t.TempDir(), "foxproxy.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// watchOpen returns a function that waits until path is opened (for
// reading: foxproxy loading it), or fails the test after timeout.
func watchOpen(t *testing.T, path string) func(timeout time.Duration) time.Time {
	t.Helper()
	fd, err := syscall.InotifyInit1(syscall.IN_CLOEXEC | syscall.IN_NONBLOCK)
	if err != nil {
		t.Fatalf("inotify: %v", err)
	}
	if _, err := syscall.InotifyAddWatch(fd, path, syscall.IN_OPEN); err != nil {
		syscall.Close(fd)
		t.Fatalf("inotify watch %s: %v", path, err)
	}
	// A non-blocking descriptor goes to the runtime's poller: the read
	// deadline below works.
	f := os.NewFile(uintptr(fd), "inotify")
	t.Cleanup(func() { f.Close() })
	return func(timeout time.Duration) time.Time {
		t.Helper()
		f.SetReadDeadline(time.Now().Add(timeout))
		buf := make([]byte, 4096)
		if _, err := f.Read(buf); err != nil {
			t.Fatalf("waiting for foxproxy to open %s: %v", path, err)
		}
		return time.Now()
	}
}

// randomMoments returns n sorted random offsets in [from, to).
func randomMoments(n int, from, to time.Duration) []time.Duration {
	m := make([]time.Duration, n)
	for i := range m {
		m[i] = from + rand.N(to-from)
	}
	slices.Sort(m)
	return m
}

// startUpSteps bounds the start-up after the configuration is opened
// (reading it, the checks, the listeners): under 1 ms measured with the
// configuration these tests use.
const startUpSteps = 2 * time.Millisecond

// smtpGreeting connects to addr and returns the first line it says.
func smtpGreeting(t *testing.T, addr string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("connect %s: %v", addr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("greeting from %s: %v", addr, err)
	}
	fmt.Fprintf(c, "QUIT\r\n")
	return strings.TrimSpace(line)
}

// SIGHUP 20 times at random moments in foxproxy's first 100 ms, half of
// them in its start-up steps: it never dies of it, and once started it
// greets, answers /healthz and passes a message from Postfix. A SIGHUP before the configuration is read is
// forgotten (the read is what it asked for); later ones during start-up
// make one reload once foxproxy serves.
func TestSIGHUPDuringStartUp(t *testing.T) {
	pf := harness.StartPostfix(t, harness.PostfixOptions{})
	bin := harness.BuildFoxproxy(t)
	for run := range startUpRuns {
		adminAddr := harness.FreeAddr(t)
		path := writeStartUpConfig(t, pf.FilterAddr, pf.ReinjectAddr, adminAddr)
		opened := watchOpen(t, path)
		fp := harness.RunProcess(t, bin, "-config", path)
		execAt := time.Now()
		start := opened(10 * time.Second)
		moments := append(randomMoments(10, 0, startUpSteps), randomMoments(10, startUpSteps, 100*time.Millisecond)...)
		for _, m := range moments {
			time.Sleep(time.Until(start.Add(m)))
			if !fp.Running() {
				break
			}
			fp.Signal(syscall.SIGHUP)
		}
		// Long enough for a SIGHUP's default action to have ended it.
		time.Sleep(100 * time.Millisecond)
		if !fp.Running() {
			code := fp.WaitExit(t, time.Second)
			t.Fatalf("run %d: foxproxy died (exit %d) of SIGHUPs at %v after it opened its configuration; log:\n%s",
				run, code, moments, tail(fp.Log(), 10))
		}
		fp.WaitLog(t, `"foxproxy started"`, 20*time.Second)
		harness.WaitPort(t, pf.FilterAddr, 5*time.Second)
		if g := smtpGreeting(t, pf.FilterAddr); !strings.HasPrefix(g, "220 ") {
			t.Fatalf("run %d: greeting %q", run, g)
		}
		if code, body := httpGet(t, "http://"+adminAddr+"/healthz", ""); code != 200 {
			t.Fatalf("run %d: /healthz %d %q", run, code, body)
		}
		subject := fmt.Sprintf("after a SIGHUP storm, run %d", run)
		if res := harness.Send(t, harness.SendOptions{Server: pf.InboundAddr, Subject: subject}); res.Code != 250 {
			t.Fatalf("run %d: inbound smtpd refused the message: %s", run, res.Reply)
		}
		waitSubject(t, pf, subject)
		log := fp.Log()
		if strings.Contains(log, "new configuration refused") || strings.Contains(log, `"level":"error"`) {
			t.Fatalf("run %d: errors in the log:\n%s", run, tail(log, 10))
		}
		t.Logf("run %d: configuration opened %v after exec; SIGHUPs from %v to %v after the open; %d reload(s)",
			run, start.Sub(execAt).Round(100*time.Microsecond),
			moments[0].Round(100*time.Microsecond), moments[len(moments)-1].Round(100*time.Microsecond),
			strings.Count(log, "SIGHUP: configuration reloaded"))

		fp.Signal(syscall.SIGTERM)
		if code := fp.WaitExit(t, 15*time.Second); code != 0 {
			t.Fatalf("run %d: exit code %d after SIGTERM", run, code)
		}
	}
}

// SIGTERM within the first few ms after foxproxy opened its configuration
// (spread over the start-up's steps across the runs): it stops in order,
// exit code 0 and a "stopped" line, never killed by the signal, and leaves
// nothing listening.
func TestSIGTERMDuringStartUp(t *testing.T) {
	bin := harness.BuildFoxproxy(t)
	for run := range startUpRuns {
		listen, adminAddr := harness.FreeAddr(t), harness.FreeAddr(t)
		path := writeStartUpConfig(t, listen, harness.FreeAddr(t), adminAddr)
		opened := watchOpen(t, path)
		fp := harness.RunProcess(t, bin, "-config", path)
		// Each run aims at its own part of the start-up steps.
		part := startUpSteps / startUpRuns
		delay := time.Duration(run)*part + rand.N(part)
		time.Sleep(time.Until(opened(10 * time.Second).Add(delay)))
		fp.Signal(syscall.SIGTERM)
		if code := fp.WaitExit(t, 15*time.Second); code != 0 {
			t.Fatalf("run %d: exit code %d (-1: killed by the signal) after SIGTERM %v after the open; log:\n%s",
				run, code, delay, tail(fp.Log(), 10))
		}
		log := fp.Log()
		if !strings.Contains(log, "foxproxy stopped") || strings.Contains(log, `"level":"error"`) {
			t.Fatalf("run %d: no orderly stop in the log:\n%s", run, tail(log, 10))
		}
		for _, addr := range []string{listen, adminAddr} {
			if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
				c.Close()
				t.Fatalf("run %d: %s still accepts connections after the exit", run, addr)
			}
		}
		during := strings.Contains(log, "stopped during start-up")
		t.Logf("run %d: SIGTERM %v after the open: exit 0, stopped %s", run, delay.Round(10*time.Microsecond),
			map[bool]string{true: "during start-up", false: "after start-up (drained)"}[during])
	}
}

// The other commands keep Go's default: a SIGTERM ends `foxproxy status`
// at once, even while it waits for an admin endpoint that never answers.
func TestSIGTERMEndsStatusCommand(t *testing.T) {
	ln := listenLoopback(t)
	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			accepted <- c // held open, never answered
		}
	}()
	cmd := osexec.Command(harness.BuildFoxproxy(t), "status", "-admin", "http://"+ln.Addr().String())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case c := <-accepted:
		defer c.Close()
	case err := <-done:
		t.Fatalf("foxproxy status ended before it asked: %v", err)
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatal("foxproxy status never connected")
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatal("foxproxy status outlived SIGTERM")
	}
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
		t.Fatalf("foxproxy status after SIGTERM: %v, want killed by it", cmd.ProcessState)
	}
}
