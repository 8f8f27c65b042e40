//go:build bench

package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/foxproxy/foxproxy/integration/harness"
)

// Envelope of every benchmark message.
const (
	sender    = "news@example.net"
	recipient = "rcpt@example.test"
	heloName  = "mail.example.net"
)

// postfixBin finds one of Postfix's programs: root's PATH has /usr/sbin,
// a user's often does not.
func postfixBin(t testing.TB, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/usr/bin", "/sbin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p
		}
	}
	t.Fatalf("%s not found: run ./scripts/install-test-deps.sh (Debian's postfix package has it)", name)
	return ""
}

// sink is a running smtp-sink: it accepts every message and throws it away,
// and counts what it received (-c), which is how every run checks that no
// message was lost on the way.
type sink struct {
	addr string
	proc *harness.Process
}

func startSink(t testing.TB) *sink {
	t.Helper()
	addr := harness.FreeAddr(t)
	// -u nobody: it drops root after binding. -c: counters on stdout,
	// rewritten after every session, QUIT and ".". Backlog 1000.
	p := harness.RunProcess(t, postfixBin(t, "smtp-sink"), "-u", "nobody", "-c", addr, "1000")
	harness.WaitPort(t, addr, 10*time.Second)
	return &sink{addr: addr, proc: p}
}

var sinkCounters = regexp.MustCompile(`mesg=(\d+)[\r\n]`) // a complete record

// messages is the sink's message counter ("mesg=N", the last one it
// printed; the log's tail is enough to find it).
func (s *sink) messages() int {
	f, err := os.Open(s.proc.LogPath())
	if err != nil {
		return 0
	}
	defer f.Close()
	tail := make([]byte, 4096)
	if fi, err := f.Stat(); err == nil && fi.Size() > int64(len(tail)) {
		f.Seek(fi.Size()-int64(len(tail)), io.SeekStart)
	}
	n, _ := io.ReadFull(f, tail)
	all := sinkCounters.FindAllSubmatch(tail[:n], -1)
	if len(all) == 0 {
		return 0
	}
	count, _ := strconv.Atoi(string(all[len(all)-1][1]))
	return count
}

// what names the sink in a run's problems (counter).
func (s *sink) what() string { return "the sink" }

// waitMessages waits until the counter reaches want, or for timeout, and
// returns the last count: the sink may print its counter a moment after the
// client read its 250.
func (s *sink) waitMessages(want int, timeout time.Duration) int {
	deadline := time.Now().Add(timeout)
	for {
		n := s.messages()
		if n >= want || time.Now().After(deadline) {
			return n
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// run is one smtp-source invocation.
type run struct {
	sent    int           // messages smtp-source was told to send
	counted int           // messages the sink counted meanwhile
	elapsed time.Duration // smtp-source's wall time
	err     string        // why the run is invalid ("" when valid)
	// cpu is the CPU time (seconds) of each program during the run:
	// "smtp-source", "smtp-sink", "foxproxy", "rbldnsd", "clamd", "c-icap".
	cpu map[string]float64
	// busy is the CPU time of the whole machine during the run (seconds).
	busy float64
}

func (r run) valid() bool { return r.err == "" }

// ours is the CPU time of all the benchmark's processes during the run.
func (r run) ours() float64 {
	sum := 0.0
	for _, v := range r.cpu {
		sum += v
	}
	return sum
}

func (r run) rate() float64 { return float64(r.sent) / r.elapsed.Seconds() }

// pattern is how smtp-source uses its sessions: both are Postfix's own
// behaviour, and a filter's cost differs between them by what a session
// costs (accepting, greeting, EHLO; for foxproxy also its side towards the
// downstream).
type pattern struct {
	key  string // in FOXBENCH_ONLY's ids: 10k/c20/pass/new
	name string // in the tables
	keep bool   // smtp-source -d
}

var patterns = []pattern{
	// Message after message on each session, as Postfix's smtp client
	// does with a cached connection under load.
	{key: "kept", name: "kept sessions", keep: true},
	// A whole session for every message, as Postfix's smtp client does
	// when its connection cache has nothing to reuse.
	{key: "new", name: "new session per message", keep: false},
}

// source runs smtp-source against addr: n messages of msg over conc
// parallel sessions, each session sending message after message (-d) when
// pt.keep, else one session per message. The sink (or, for a quarantine
// scenario, the quarantine) must count exactly n more messages, or the run
// is invalid. foxPID is the foxproxy in the path (0 for none), for the
// run's CPU accounting.
func source(t testing.TB, sk counter, addr string, msg *message, pt pattern, conc, n int, timeout time.Duration, foxPID int) run {
	t.Helper()
	before := sk.messages()
	procs := descendants()
	busy0 := machineBusy()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	args := []string{"-s", strconv.Itoa(conc), "-m", strconv.Itoa(n), "-F", msg.path,
		"-f", sender, "-t", recipient, "-M", heloName, addr}
	if pt.keep {
		args = append([]string{"-d"}, args...)
	}
	cmd := exec.CommandContext(ctx, postfixBin(t, "smtp-source"), args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// A killed benchmark takes its smtp-source with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	err := cmd.Run() // CommandContext kills this PID on timeout
	r := run{sent: n, elapsed: time.Since(start)}
	r.counted = sk.waitMessages(before+n, 3*time.Second) - before
	r.busy = machineBusy() - busy0
	r.cpu = cpuByProgram(procs, descendants(), foxPID)
	if ps := cmd.ProcessState; ps != nil {
		r.cpu["smtp-source"] = (ps.UserTime() + ps.SystemTime()).Seconds()
	}
	switch {
	case ctx.Err() != nil:
		r.err = fmt.Sprintf("smtp-source did not finish within %v", timeout)
	case err != nil:
		r.err = fmt.Sprintf("smtp-source: %v: %s", err, strings.TrimSpace(lastLines(out.String(), 3)))
	}
	if r.counted != n {
		msg := fmt.Sprintf("%s counted %d of %d messages", sk.what(), r.counted, n)
		if r.err != "" {
			msg += "; " + r.err
		}
		r.err = msg
	}
	return r
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// calibrate sends warm-up runs, growing the count until one lasts at least
// minWarm, and returns the count that should take about target, with the
// warm-up runs (an invalid warm-up is reported with the row).
func calibrate(t testing.TB, sk counter, addr string, msg *message, pt pattern, conc int, o options, foxPID int) (int, []run) {
	t.Helper()
	n := max(2*conc, 20)
	var warm []run
	for {
		r := source(t, sk, addr, msg, pt, conc, n, o.runTimeout, foxPID)
		warm = append(warm, r)
		if !r.valid() {
			return n, warm
		}
		if r.elapsed >= o.minWarm || n >= o.maxMessages {
			rate := r.rate()
			return min(max(int(rate*o.runSeconds.Seconds()), 2*conc, 20), o.maxMessages), warm
		}
		grow := int(float64(n) * 1.5 * o.minWarm.Seconds() / max(r.elapsed.Seconds(), 0.001))
		n = min(max(grow, 2*n), o.maxMessages)
	}
}
