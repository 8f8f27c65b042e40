//go:build bench

package bench

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/foxproxy/foxproxy/internal/benchmsg"
)

// memoryResult holds the memory targets' measurements.
type memoryResult struct {
	idleSessions  int   // sessions that got banner and EHLO reply and were held
	idleRSSBefore int64 // foxproxy's VmRSS before they connected
	idleRSS       int64 // VmRSS while they were held
	idleHWM       int64
	idleErr       string

	bigSize      int64
	bigRSSBefore int64 // VmRSS after a small message, before the big one
	bigHWM       int64 // VmHWM after the big one
	bigTook      time.Duration
	bigErr       string
}

const idleCount = 1000

func measureMemory(t *testing.T, e *env) *memoryResult {
	res := &memoryResult{}
	idleSessions(t, e, res)
	bigMessage(t, e, res)
	return res
}

// idleSessions opens 1,000 sessions to a pass-through foxproxy, each
// reading the banner and the EHLO reply, and holds them while foxproxy's
// RSS is read. limits.max_sessions is raised to 1100 so that the default
// limit (1000) does not refuse the last ones.
func idleSessions(t *testing.T, e *env, res *memoryResult) {
	fox := startFoxproxy(t, e, "idle", "limits: {max_sessions: 1100}")
	defer fox.proc.Stop()
	time.Sleep(500 * time.Millisecond)
	res.idleRSSBefore, _ = statusBytes(fox.pid(), "VmRSS")

	conns := make([]net.Conn, idleCount)
	errs := make([]error, idleCount)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 50) // connect 50 at a time
	for i := range idleCount {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			conns[i], errs[i] = idleSession(fox.addr)
		}()
	}
	wg.Wait()
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	var firstErr error
	for i, err := range errs {
		if err == nil {
			res.idleSessions++
		} else if firstErr == nil {
			firstErr = fmt.Errorf("session %d: %w", i, err)
		}
	}
	if firstErr != nil {
		res.idleErr = fmt.Sprintf("%d of %d sessions failed, first: %v", idleCount-res.idleSessions, idleCount, firstErr)
		t.Error(res.idleErr)
	}
	time.Sleep(time.Second) // let the garbage collector and the kernel settle
	res.idleRSS, _ = statusBytes(fox.pid(), "VmRSS")
	res.idleHWM, _ = statusBytes(fox.pid(), "VmHWM")
	t.Logf("%d idle sessions: foxproxy RSS %s (before %s), peak %s", res.idleSessions,
		mib(res.idleRSS), mib(res.idleRSSBefore), mib(res.idleHWM))
}

// idleSession connects, reads the greeting, says EHLO and reads the reply.
func idleSession(addr string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(c)
	if err := readReply(br, "220"); err != nil {
		c.Close()
		return nil, fmt.Errorf("greeting: %w", err)
	}
	if _, err := c.Write([]byte("EHLO " + heloName + "\r\n")); err != nil {
		c.Close()
		return nil, err
	}
	if err := readReply(br, "250"); err != nil {
		c.Close()
		return nil, fmt.Errorf("EHLO: %w", err)
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

func readReply(br *bufio.Reader, code string) error {
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return err
		}
		if !strings.HasPrefix(line, code) {
			return fmt.Errorf("reply %q", strings.TrimSpace(line))
		}
		if len(line) < 4 || line[3] != '-' {
			return nil
		}
	}
}

// bigMessage sends one 50 MiB message through a pass-through foxproxy
// (max_message_bytes raised to 64 MiB) and compares its RSS before with
// its peak after: past spool.memory_threshold (1 MiB) the content spills
// to an unlinked file, so the peak should barely move.
func bigMessage(t *testing.T, e *env, res *memoryResult) {
	fox := startFoxproxy(t, e, "big", "max_message_bytes: 64MiB")
	defer fox.proc.Stop()
	wire := benchmsg.Build(50 << 20)
	res.bigSize = int64(len(wire))
	l := &latencyClient{addr: fox.addr}
	defer l.close()
	// One small message first, so pools and buffers of the message path
	// exist before the "before" reading.
	if _, err := l.kept(e.messages[0].wire); err != nil {
		res.bigErr = "small message: " + err.Error()
		t.Error(res.bigErr)
		return
	}
	time.Sleep(500 * time.Millisecond)
	res.bigRSSBefore, _ = statusBytes(fox.pid(), "VmRSS")
	before := e.sink.messages()
	d, err := l.kept(wire)
	res.bigTook = d
	if err != nil {
		res.bigErr = err.Error()
		t.Error(res.bigErr)
	} else if got := e.sink.waitMessages(before+1, 3*time.Second) - before; got != 1 {
		res.bigErr = fmt.Sprintf("the sink counted %d messages, want 1", got)
		t.Error(res.bigErr)
	}
	res.bigHWM, _ = statusBytes(fox.pid(), "VmHWM")
	t.Logf("%d-byte message in %v: foxproxy RSS before %s, peak after %s", res.bigSize,
		d.Round(time.Millisecond), mib(res.bigRSSBefore), mib(res.bigHWM))
}

// goBench is one benchmark's result over -count runs.
type goBench struct {
	name   string
	nsOp   []float64
	bOp    string
	allocs string
}

func (b goBench) median() float64 {
	s := slices.Clone(b.nsOp)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+([\d.]+) ns/op(?:\s+(\d+) B/op\s+(\d+) allocs/op)?`)

// runGoBench runs the cached DNS-list answer benchmark of the reputation
// package (target: at most 1 µs).
func runGoBench(t *testing.T, quick bool) []goBench {
	count := "5"
	if quick {
		count = "2"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-bench", "LookupIPCached", "-benchmem", "-count", count, "./reputation/")
	cmd.Dir = filepath.Join("..")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("go test -bench LookupIPCached ./reputation/: %v\n%s", err, out)
		return nil
	}
	var res []goBench
	index := map[string]int{}
	for _, line := range strings.Split(string(out), "\n") {
		m := benchLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		ns, _ := strconv.ParseFloat(m[2], 64)
		i, ok := index[m[1]]
		if !ok {
			i = len(res)
			index[m[1]] = i
			res = append(res, goBench{name: m[1], bOp: m[3], allocs: m[4]})
		}
		res[i].nsOp = append(res[i].nsOp, ns)
	}
	for _, b := range res {
		t.Logf("%s: median %.0f ns/op of %v, %s B/op, %s allocs/op", b.name, b.median(), b.nsOp, b.bOp, b.allocs)
	}
	return res
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
