package integration

// Fault injection for the failure-table tests (faults_test.go), the soak
// and the crash tests: servers that stand between foxproxy and a real
// dependency and misbehave on demand. Each starts in pass mode (a faithful
// relay to the real daemon), so a test first sees the dependency work, then
// switches a fault on, and later off again to watch foxproxy recover by
// itself.

import (
	"bytes"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/foxproxy/foxproxy/internal/testutil"
)

// faultMode is what a fault server does with the next request.
type faultMode struct {
	kind   faultKind
	delay  time.Duration // slow: added before each answer
	reply  []byte        // malformed: sent instead of the real answer
	after  int           // die: bytes read (or, for dieInData, content bytes) before closing
	after2 string        // muteAfter: the client's words after which no answer is passed on
}

type faultKind int

const (
	modePass      faultKind = iota // relay to the real dependency
	modeRefused                    // nothing listens: connection refused (TCP only)
	modeBlackHole                  // accept or receive, never answer
	modeSlow                       // relay, answering delay late
	modeMalformed                  // answer reply, whatever was asked
	modeDie                        // accept, read after bytes, close (dies mid-request)
	modeDieReply                   // relay, but close after after bytes of the answer (dies mid-response)
	modeDieInData                  // relay SMTP, close after after bytes of DATA content
	modeMute                       // relay, but pass no answer on once the client said after2
)

func (m faultMode) String() string {
	switch m.kind {
	case modePass:
		return "pass"
	case modeRefused:
		return "refused"
	case modeBlackHole:
		return "black hole"
	case modeSlow:
		return "slow " + m.delay.String()
	case modeMalformed:
		return "malformed " + strconv.Quote(string(m.reply))
	case modeDie:
		return "dies after " + strconv.Itoa(m.after) + " bytes of the request"
	case modeDieReply:
		return "dies after " + strconv.Itoa(m.after) + " bytes of the answer"
	case modeDieInData:
		return "dies after " + strconv.Itoa(m.after) + " bytes of DATA"
	case modeMute:
		return "black hole after " + strconv.Quote(m.after2)
	}
	return "?"
}

var (
	pass      = faultMode{kind: modePass}
	refused   = faultMode{kind: modeRefused}
	blackHole = faultMode{kind: modeBlackHole}
)

func slow(d time.Duration) faultMode    { return faultMode{kind: modeSlow, delay: d} }
func malformed(r string) faultMode      { return faultMode{kind: modeMalformed, reply: []byte(r)} }
func dieAfter(n int) faultMode          { return faultMode{kind: modeDie, after: n} }
func dieInReply(n int) faultMode        { return faultMode{kind: modeDieReply, after: n} }
func dieInData(n int) faultMode         { return faultMode{kind: modeDieInData, after: n} }
func muteAfter(words string) faultMode  { return faultMode{kind: modeMute, after2: words} }
func (m faultMode) is(k faultKind) bool { return m.kind == k }

// faultTCP is a TCP relay in front of a real server (clamd, c-icap, the
// re-injection smtpd, an HTTP service). Switching the mode closes every
// connection it relays, as a dying server would, so a pooled connection
// cannot carry the old behaviour past the switch.
type faultTCP struct {
	t        *testing.T
	addr     string
	upstream string

	accepted atomic.Int64 // connections accepted so far

	mu    sync.Mutex
	mode  faultMode
	ln    net.Listener
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
	done  bool
}

// startFaultTCP listens on a free loopback port and relays to upstream.
func startFaultTCP(t *testing.T, upstream string) *faultTCP {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &faultTCP{t: t, addr: ln.Addr().String(), upstream: upstream, mode: pass, conns: map[net.Conn]struct{}{}}
	f.serve(ln)
	t.Cleanup(f.close)
	return f
}

func (f *faultTCP) serve(ln net.Listener) {
	f.ln = ln
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.mu.Lock()
			if f.done {
				f.mu.Unlock()
				c.Close()
				return
			}
			mode := f.mode
			f.accepted.Add(1)
			f.conns[c] = struct{}{}
			f.wg.Add(1)
			f.mu.Unlock()
			go func() {
				defer f.wg.Done()
				f.handle(c, mode)
				f.forget(c)
			}()
		}
	}()
}

func (f *faultTCP) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.done {
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *faultTCP) forget(c net.Conn) {
	f.mu.Lock()
	delete(f.conns, c)
	f.mu.Unlock()
	c.Close()
}

// set switches the mode: current connections are closed, and refused
// closes the listener (pass and the others listen again on the same port).
func (f *faultTCP) set(m faultMode) {
	f.t.Helper()
	f.mu.Lock()
	f.mode = m
	for c := range f.conns {
		c.Close()
	}
	ln := f.ln
	f.mu.Unlock()
	switch {
	case m.is(modeRefused) && ln != nil:
		ln.Close()
		f.mu.Lock()
		f.ln = nil
		f.mu.Unlock()
	case !m.is(modeRefused) && ln == nil:
		var nl net.Listener
		var err error
		// The port was ours a moment ago; a connection of the old
		// listener in TIME_WAIT does not keep a listener from binding.
		for range 50 {
			if nl, err = net.Listen("tcp", f.addr); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			f.t.Fatalf("fault relay: listen again on %s: %v", f.addr, err)
		}
		f.mu.Lock()
		f.serve(nl)
		f.mu.Unlock()
	}
}

func (f *faultTCP) close() {
	f.mu.Lock()
	f.done = true
	if f.ln != nil {
		f.ln.Close()
	}
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

func (f *faultTCP) handle(c net.Conn, m faultMode) {
	switch m.kind {
	case modeBlackHole:
		io.Copy(io.Discard, c) // until the client or set() closes it
		return
	case modeMalformed:
		// Answer as soon as the client has said something (or at once
		// for a protocol where the server speaks first: a greeting).
		c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		buf := make([]byte, 4096)
		c.Read(buf)
		c.SetReadDeadline(time.Time{})
		c.Write(m.reply)
		io.Copy(io.Discard, c)
		return
	case modeDie:
		io.CopyN(io.Discard, c, int64(m.after))
		return
	}
	up, err := net.DialTimeout("tcp", f.upstream, 2*time.Second)
	if err != nil {
		return // the real server is down: the client sees its connection closed
	}
	if !f.track(up) {
		up.Close()
		return
	}
	defer f.forget(up)
	var turn sync.Mutex // slow: set when the client spoke since the last answer
	spoke := true
	muted := false // mute: the client said the words
	done := make(chan struct{})
	go func() {
		defer close(done)
		// client → server
		buf := make([]byte, 32<<10)
		var seen []byte // dieInData: the command stream so far
		content := -1   // dieInData: content bytes sent, -1 before DATA
		for {
			n, err := c.Read(buf)
			if n > 0 {
				chunk := buf[:n]
				if m.is(modeDieInData) {
					if content < 0 {
						seen = append(seen, chunk...)
						if i := bytes.Index(seen, []byte("DATA\r\n")); i >= 0 {
							// Whatever followed DATA in this read is content.
							content = len(seen) - i - len("DATA\r\n")
						}
					} else {
						content += n
					}
					if content >= m.after {
						c.Close()
						up.Close()
						return
					}
				}
				turn.Lock()
				spoke = true
				if m.is(modeMute) && bytes.Contains(chunk, []byte(m.after2)) {
					muted = true
				}
				turn.Unlock()
				if _, werr := up.Write(chunk); werr != nil {
					up.Close()
					return
				}
			}
			if err != nil {
				if tc, ok := up.(*net.TCPConn); ok {
					tc.CloseWrite()
				}
				return
			}
		}
	}()
	// server → client
	buf := make([]byte, 32<<10)
	sent := 0
	for {
		n, err := up.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			if m.is(modeSlow) {
				turn.Lock()
				late := spoke
				spoke = false
				turn.Unlock()
				if late {
					time.Sleep(m.delay)
				}
			}
			turn.Lock()
			mute := muted
			turn.Unlock()
			if mute {
				continue
			}
			if m.is(modeDieReply) && sent+n >= m.after {
				c.Write(chunk[:max(0, m.after-sent)])
				break
			}
			sent += n
			if _, werr := c.Write(chunk); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	c.Close()
	up.Close()
	<-done
}

// faultDNS is a DNS server (UDP) in front of rbldnsd.
type faultDNS struct {
	addr     string
	upstream string
	srv      *dns.Server

	mu   sync.Mutex
	mode faultMode
}

// startFaultDNS serves DNS on a free loopback UDP port, relaying to
// upstream in pass mode. A refused DNS server is rbldnsd stopped (foxproxy
// then asks rbldnsd directly); a UDP server cannot die mid-request.
func startFaultDNS(t *testing.T, upstream string) *faultDNS {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &faultDNS{addr: pc.LocalAddr().String(), upstream: upstream, mode: pass}
	started := make(chan struct{})
	f.srv = &dns.Server{PacketConn: pc, Handler: f, NotifyStartedFunc: func() { close(started) }}
	go f.srv.ActivateAndServe()
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("fault DNS server did not start")
	}
	t.Cleanup(func() { f.srv.Shutdown() })
	return f
}

func (f *faultDNS) set(m faultMode) {
	f.mu.Lock()
	f.mode = m
	f.mu.Unlock()
}

// ServeDNS implements dns.Handler: miekg/dns runs it in a goroutine per
// packet, so a slow answer holds up no other.
func (f *faultDNS) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	f.mu.Lock()
	m := f.mode
	f.mu.Unlock()
	switch m.kind {
	case modeBlackHole:
		return // read, never answered
	case modeMalformed:
		if len(m.reply) > 0 {
			w.Write(m.reply) // not a DNS message at all
			return
		}
		// A well-formed answer outside 127.0.0.0/8 for every A question
		// (RFC 5782 §2.3: not a listing), as a resolver that rewrites
		// NXDOMAIN into an advertising page gives.
		resp := new(dns.Msg)
		resp.SetReply(req)
		for _, q := range req.Question {
			if q.Qtype == dns.TypeA {
				resp.Answer = append(resp.Answer, &dns.A{
					Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
					A:   net.IPv4(198, 51, 100, 7),
				})
			}
		}
		w.WriteMsg(resp)
		return
	case modeSlow:
		time.Sleep(m.delay)
	}
	c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
	resp, _, err := c.Exchange(req, f.upstream)
	if err != nil {
		resp = new(dns.Msg)
		resp.SetRcode(req, dns.RcodeServerFailure)
	}
	w.WriteMsg(resp)
}

// vmHWM returns a process's peak resident set size from /proc (VmHWM), in
// bytes.
func vmHWM(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatalf("reading /proc/%d/status: %v", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(v) // "123456 kB"
			if len(f) == 2 && f[1] == "kB" {
				n, err := strconv.ParseInt(f[0], 10, 64)
				if err == nil {
					return n << 10
				}
			}
		}
	}
	t.Fatalf("no VmHWM in /proc/%d/status", pid)
	return 0
}

// waitUntil polls cond every 20 ms until it holds and returns how long
// that took, or fails the test with what after timeout.
func waitUntil(t *testing.T, what string, timeout time.Duration, cond func() bool) time.Duration {
	t.Helper()
	return testutil.Eventually(t, what, timeout, cond)
}

// listenLoopback listens on a free loopback TCP port, closed at cleanup.
func listenLoopback(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}
