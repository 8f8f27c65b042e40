package scan

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"
)

func TestParseClamdAddress(t *testing.T) {
	for _, tc := range []struct {
		in, network, addr string
		bad               bool
	}{
		{in: "tcp://127.0.0.1:3310", network: "tcp", addr: "127.0.0.1:3310"},
		{in: "127.0.0.1:3310", network: "tcp", addr: "127.0.0.1:3310"},
		{in: "[::1]:3310", network: "tcp", addr: "[::1]:3310"},
		{in: "clamd.example:3310", network: "tcp", addr: "clamd.example:3310"},
		{in: "unix:/run/clamav/clamd.ctl", network: "unix", addr: "/run/clamav/clamd.ctl"},
		{in: "unix:///run/clamav/clamd.ctl", network: "unix", addr: "/run/clamav/clamd.ctl"},
		{in: "/run/clamav/clamd.ctl", network: "unix", addr: "/run/clamav/clamd.ctl"},
		{in: "unix:relative.ctl", bad: true},
		{in: "127.0.0.1", bad: true},
		{in: "tcp://:3310", bad: true},
		{in: "", bad: true},
	} {
		n, a, err := parseClamdAddress(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("%q: got %s %s, want an error", tc.in, n, a)
			}
			continue
		}
		if err != nil || n != tc.network || a != tc.addr {
			t.Errorf("%q: got %q %q %v, want %q %q", tc.in, n, a, err, tc.network, tc.addr)
		}
	}
}

func TestParseClamdReply(t *testing.T) {
	for _, tc := range []struct {
		reply string
		want  Result
		kind  error
	}{
		// Exact replies of clamd 1.4 (integration/harness/clamd.go and cicap.go), without the NUL.
		{reply: "stream: OK", want: Clean},
		{reply: "stream: Eicar-Test-Signature.UNOFFICIAL FOUND", want: Infected("Eicar-Test-Signature.UNOFFICIAL")},
		{reply: "INSTREAM size limit exceeded. ERROR", kind: ErrSizeLimit},
		{reply: "stream: Can't allocate memory ERROR", kind: ErrScanFailed},
		{reply: "Error processing command. ERROR", kind: ErrScanFailed},
		{reply: "UNKNOWN COMMAND", kind: ErrProtocol},
		// Variants that must still work.
		{reply: "1: stream: OK", want: Clean},
		{reply: "stream: Win.Test.EICAR_HDB-1 FOUND\n", want: Infected("Win.Test.EICAR_HDB-1")},
		{reply: "stream: Eicar-Test-Signature(44d88612fea8a8f36de82e1278abb02f:68) FOUND",
			want: Infected("Eicar-Test-Signature")},
		{reply: "stream: Heuristics.Phishing.Email.SpoofedDomain FOUND", want: Infected("Heuristics.Phishing.Email.SpoofedDomain")},
		{reply: "stream: Odd(name) FOUND", want: Infected("Odd(name)")},
		// Malformed.
		{reply: "", kind: ErrProtocol},
		{reply: "stream:  FOUND", kind: ErrProtocol},
		{reply: "stream: FOUND", kind: ErrProtocol},
		{reply: "stream: OK please", kind: ErrProtocol},
		{reply: "PONG", kind: ErrProtocol},
		{reply: "stream: Bad\x01Name FOUND", kind: ErrProtocol},
		{reply: "stream: ok", kind: ErrProtocol},
	} {
		res, kind, msg := parseClamdReply(tc.reply)
		if kind != tc.kind || res != tc.want {
			t.Errorf("%q: got %v, %v (%s); want %v, %v", tc.reply, res, kind, msg, tc.want, tc.kind)
		}
	}
}

func TestReadClamdReply(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		err      bool
	}{
		{in: "stream: OK\x00", want: "stream: OK"},
		{in: "ClamAV 1.4.6\n", want: "ClamAV 1.4.6"},
		{in: "PONG\x00trailing", want: "PONG"},
		{in: "stream: OK", err: true},                       // cut off
		{in: "", err: true},                                 // nothing
		{in: strings.Repeat("x", 5000) + "\x00", err: true}, // too long
	} {
		got, err := readClamdReply(bufio.NewReader(strings.NewReader(tc.in)))
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("%.20q: got %q, %v", tc.in, got, err)
		}
	}
}

// clamdServer is a fake clamd: it reads commands (in an IDSESSION or
// not) and INSTREAM uploads, checks the framing, and lets reply decide the
// answer. An empty answer holds the connection without replying.
type clamdServer struct {
	t        testing.TB
	mu       sync.Mutex
	got      [][]byte // reassembled uploads
	maxSeen  int      // largest chunk
	sessions int      // IDSESSIONs started
	reply    func(cmd string, data []byte) string
	// idOffset is added to the reply numbers (to test a mismatch).
	idOffset int
}

func (s *clamdServer) handle(c net.Conn) {
	br := bufio.NewReader(c)
	session, id := false, 0
	for {
		cmd, err := br.ReadString(0)
		if err != nil {
			return
		}
		cmd = strings.TrimSuffix(cmd, "\x00")
		if cmd == "zIDSESSION" && !session {
			session = true
			s.mu.Lock()
			s.sessions++
			s.mu.Unlock()
			continue
		}
		if cmd == "zEND" {
			return
		}
		id++
		var data []byte
		if cmd == "zINSTREAM" {
			for {
				var l [4]byte
				if _, err := io.ReadFull(br, l[:]); err != nil {
					return
				}
				n := binary.BigEndian.Uint32(l[:])
				if n == 0 {
					break
				}
				s.mu.Lock()
				s.maxSeen = max(s.maxSeen, int(n))
				s.mu.Unlock()
				chunk := make([]byte, n)
				if _, err := io.ReadFull(br, chunk); err != nil {
					return
				}
				data = append(data, chunk...)
			}
			s.mu.Lock()
			s.got = append(s.got, data)
			s.mu.Unlock()
		}
		s.mu.Lock()
		reply := s.reply
		s.mu.Unlock()
		r := reply(cmd, data)
		if r == "" {
			io.Copy(io.Discard, br)
			return
		}
		if session {
			s.mu.Lock()
			r = fmt.Sprintf("%d: %s", id+s.idOffset, r)
			s.mu.Unlock()
		}
		io.WriteString(c, r+"\x00")
		// clamd ends a session on errors, and without one after a reply.
		if !session || strings.HasSuffix(r, "ERROR") || strings.HasSuffix(r, "UNKNOWN COMMAND") {
			return
		}
	}
}

func (s *clamdServer) uploads() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]byte(nil), s.got...)
}

func (s *clamdServer) sessionCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions
}

func (s *clamdServer) setReply(f func(cmd string, data []byte) string) {
	s.mu.Lock()
	s.reply = f
	s.mu.Unlock()
}

func newClamdServer(t testing.TB, reply func(cmd string, data []byte) string) (*clamdServer, *fakeServer) {
	s := &clamdServer{t: t, reply: reply}
	return s, newFakeServer(t, s.handle)
}

func TestClamdScanReplies(t *testing.T) {
	msg := bytes.Repeat([]byte("0123456789abcdef"), 20000) // 320000 bytes: several chunks
	for _, tc := range []struct {
		name, reply string
		want        Result
		kind        error
	}{
		{"clean", "stream: OK", Clean, nil},
		{"infected", "stream: Eicar-Test-Signature.UNOFFICIAL FOUND", Infected("Eicar-Test-Signature.UNOFFICIAL"), nil},
		{"size limit", "INSTREAM size limit exceeded. ERROR", Result{}, ErrSizeLimit},
		{"error", "stream: Can't allocate memory ERROR", Result{}, ErrScanFailed},
		{"garbage", "HELLO", Result{}, ErrProtocol},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, fs := newClamdServer(t, func(string, []byte) string { return tc.reply })
			c, err := NewClamd("tcp://"+fs.addr(), Options{Timeout: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			res, err := c.Scan(context.Background(), bytes.NewReader(msg), int64(len(msg)))
			if tc.kind != nil {
				wantKind(t, err, tc.kind)
			} else if err != nil || res != tc.want {
				t.Fatalf("got %v, %v; want %v", res, err, tc.want)
			}
			srv.mu.Lock()
			defer srv.mu.Unlock()
			if len(srv.got) != 1 || !bytes.Equal(srv.got[0], msg) {
				t.Fatalf("server did not receive the message intact")
			}
			if srv.maxSeen > clamdChunk {
				t.Fatalf("chunk of %d bytes, want at most %d", srv.maxSeen, clamdChunk)
			}
		})
	}
}

func TestClamdEmptyMessage(t *testing.T) {
	srv, fs := newClamdServer(t, func(string, []byte) string { return "stream: OK" })
	c, _ := NewClamd(fs.addr(), Options{})
	if res, err := c.Scan(context.Background(), strings.NewReader(""), 0); err != nil || res.Infected {
		t.Fatalf("got %v, %v", res, err)
	}
	if got := srv.uploads(); len(got) != 1 || len(got[0]) != 0 {
		t.Fatalf("server got %q", got)
	}
}

func TestClamdPingVersion(t *testing.T) {
	_, fs := newClamdServer(t, func(cmd string, _ []byte) string {
		switch cmd {
		case "zPING":
			return "PONG"
		case "zVERSION":
			return "ClamAV 1.4.6"
		}
		return "UNKNOWN COMMAND"
	})
	c, _ := NewClamd(fs.addr(), Options{})
	if err := c.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	if v, err := c.Version(context.Background()); err != nil || v != "ClamAV 1.4.6" {
		t.Fatalf("Version: %q, %v", v, err)
	}
	_, fs2 := newClamdServer(t, func(string, []byte) string { return "PANG" })
	c2, _ := NewClamd(fs2.addr(), Options{})
	wantKind(t, c2.Ping(context.Background()), ErrProtocol)
}

func TestClamdUnreachable(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	c, _ := NewClamd(addr, Options{})
	_, err := c.Scan(context.Background(), strings.NewReader("x"), 1)
	wantKind(t, err, ErrUnavailable)
	wantKind(t, c.Ping(context.Background()), ErrUnavailable)

	c, _ = NewClamd("unix:"+t.TempDir()+"/no.sock", Options{})
	_, err = c.Scan(context.Background(), strings.NewReader("x"), 1)
	wantKind(t, err, ErrUnavailable)
}

func TestClamdBlackHole(t *testing.T) {
	// Accepts and reads everything, never answers.
	fs := newFakeServer(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	c, _ := NewClamd(fs.addr(), Options{Timeout: 200 * time.Millisecond})
	var err error
	within(t, 2*time.Second, "scan of a black hole", func() {
		_, err = c.Scan(context.Background(), strings.NewReader("hello"), 5)
	})
	wantKind(t, err, ErrUnavailable)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v does not say deadline exceeded", err)
	}
}

func TestClamdDialBlackHole(t *testing.T) {
	// A dial that never completes (SYNs dropped) costs DialTimeout only.
	hang := func(ctx context.Context, _, _ string) (net.Conn, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	c, _ := NewClamd("192.0.2.1:3310", Options{Timeout: 10 * time.Second, DialTimeout: 100 * time.Millisecond, Dial: hang})
	var err error
	within(t, 2*time.Second, "dial of a black hole", func() {
		_, err = c.Scan(context.Background(), strings.NewReader("hello"), 5)
	})
	wantKind(t, err, ErrUnavailable)
}

func TestClamdDiesMidRequest(t *testing.T) {
	fs := newFakeServer(t, func(c net.Conn) {
		io.CopyN(io.Discard, c, 1000)
		// Close with a reset, like a crashing daemon.
		c.(*net.TCPConn).SetLinger(0)
	})
	c, _ := NewClamd(fs.addr(), Options{Timeout: 5 * time.Second})
	msg := bytes.Repeat([]byte("x"), 1<<20)
	_, err := c.Scan(context.Background(), bytes.NewReader(msg), int64(len(msg)))
	wantKind(t, err, ErrUnavailable)
}

func TestClamdEarlySizeLimitReply(t *testing.T) {
	// clamd answers as soon as StreamMaxLength is passed and closes, while
	// the client is still uploading; in a session with the request number
	// (real clamd: "1: INSTREAM size limit exceeded. ERROR").
	for _, tc := range []struct {
		maxIdle int
		reply   string
	}{{-1, "INSTREAM size limit exceeded. ERROR"}, {0, "1: INSTREAM size limit exceeded. ERROR"}} {
		fs := newFakeServer(t, func(c net.Conn) {
			io.CopyN(io.Discard, c, 100<<10)
			io.WriteString(c, tc.reply+"\x00")
		})
		c, _ := NewClamd(fs.addr(), Options{Timeout: 5 * time.Second, MaxIdle: tc.maxIdle})
		msg := bytes.Repeat([]byte("x"), 8<<20)
		_, err := c.Scan(context.Background(), bytes.NewReader(msg), int64(len(msg)))
		wantKind(t, err, ErrSizeLimit)
	}
}

func TestClamdSourceError(t *testing.T) {
	_, fs := newClamdServer(t, func(string, []byte) string { return "stream: OK" })
	c, _ := NewClamd(fs.addr(), Options{Timeout: 5 * time.Second})
	r := io.MultiReader(strings.NewReader("some bytes"), iotest.ErrReader(errors.New("disk on fire")))
	_, err := c.Scan(context.Background(), r, -1)
	wantKind(t, err, ErrScanFailed)
	if !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("error %q does not name the cause", err)
	}
}

func TestClamdCancel(t *testing.T) {
	fs := newFakeServer(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	c, _ := NewClamd(fs.addr(), Options{Timeout: time.Minute})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	var err error
	within(t, 2*time.Second, "cancelled scan", func() {
		_, err = c.Scan(ctx, strings.NewReader("hello"), 5)
	})
	wantKind(t, err, ErrUnavailable)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v does not say canceled", err)
	}
}

func TestClamdConcurrencyLimit(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	inflight, peak := 0, 0
	srv, fs := newClamdServer(t, func(string, []byte) string {
		mu.Lock()
		inflight++
		peak = max(peak, inflight)
		mu.Unlock()
		<-release
		mu.Lock()
		inflight--
		mu.Unlock()
		return "stream: OK"
	})
	_ = srv
	c, _ := NewClamd(fs.addr(), Options{Timeout: 5 * time.Second, MaxConcurrent: 2})
	var wg sync.WaitGroup
	errs := make(chan error, 5)
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.Scan(context.Background(), strings.NewReader("x"), 1)
			errs <- err
		}()
	}
	waitFor(t, "two scans in flight", func() bool { n, _ := c.lim.inUse(); return n == 2 })
	// A scan that cannot get a slot gives up with its context.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	_, err := c.Scan(ctx, strings.NewReader("x"), 1)
	cancel()
	wantKind(t, err, ErrUnavailable)
	if !strings.Contains(err.Error(), "slot") {
		t.Fatalf("error %q should mention the wait for a slot", err)
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if peak > 2 {
		t.Fatalf("%d scans in flight, want at most 2", peak)
	}
}

func TestClamdSessions(t *testing.T) {
	srv, fs := newClamdServer(t, func(_ string, data []byte) string {
		if bytes.Contains(data, []byte("VIRUS")) {
			return "stream: Test.Virus FOUND"
		}
		return "stream: OK"
	})
	c, _ := NewClamd(fs.addr(), Options{Timeout: 5 * time.Second})
	defer c.Close()
	scan := func(msg []byte) Result {
		t.Helper()
		res, err := c.Scan(context.Background(), bytes.NewReader(msg), int64(len(msg)))
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	big := bytes.Repeat([]byte("z"), 300<<10)
	for i := range 6 {
		msg := []byte("hello")
		switch i {
		case 2:
			msg = big
		case 4:
			msg = []byte("a VIRUS")
		}
		want := Clean
		if i == 4 {
			want = Infected("Test.Virus")
		}
		if res := scan(msg); res != want {
			t.Fatalf("scan %d: %v", i, res)
		}
	}
	if n := fs.conns.Load(); n != 1 || srv.sessionCount() != 1 {
		t.Fatalf("%d connections, %d sessions for 6 scans; want 1, 1", n, srv.sessionCount())
	}
	if !bytes.Equal(srv.uploads()[2], big) {
		t.Fatal("the large message arrived damaged")
	}
	// An error reply ends the session; the next scan opens another.
	srv.setReply(func(string, []byte) string { return "stream: Can't allocate memory ERROR" })
	_, err := c.Scan(context.Background(), strings.NewReader("x"), 1)
	wantKind(t, err, ErrScanFailed)
	srv.setReply(func(string, []byte) string { return "stream: OK" })
	scan([]byte("x"))
	if n := fs.conns.Load(); n != 2 {
		t.Fatalf("%d connections, want 2", n)
	}
	// A reply to another request number is a protocol error.
	srv.mu.Lock()
	srv.idOffset = 1
	srv.mu.Unlock()
	_, err = c.Scan(context.Background(), strings.NewReader("x"), 1)
	wantKind(t, err, ErrProtocol)
}

func TestClamdNoSessions(t *testing.T) {
	srv, fs := newClamdServer(t, func(string, []byte) string { return "stream: OK" })
	c, _ := NewClamd(fs.addr(), Options{MaxIdle: -1})
	for range 3 {
		if _, err := c.Scan(context.Background(), strings.NewReader("x"), 1); err != nil {
			t.Fatal(err)
		}
	}
	if n := fs.conns.Load(); n != 3 || srv.sessionCount() != 0 {
		t.Fatalf("%d connections, %d sessions; want 3, 0", n, srv.sessionCount())
	}
}

func TestClamdStaleSession(t *testing.T) {
	// clamd closed the idle session (IdleTimeout): the next scan must not
	// fail, whether the close was seen before reuse or not.
	srv, fs := newClamdServer(t, func(string, []byte) string { return "stream: OK" })
	c, _ := NewClamd(fs.addr(), Options{Timeout: 5 * time.Second})
	defer c.Close()
	if _, err := c.Scan(context.Background(), strings.NewReader("x"), 1); err != nil {
		t.Fatal(err)
	}
	fs.mu.Lock()
	for _, conn := range fs.open {
		conn.Close()
	}
	fs.mu.Unlock()
	time.Sleep(10 * time.Millisecond)
	if _, err := c.Scan(context.Background(), strings.NewReader("x"), 1); err != nil {
		t.Fatalf("after the server closed the session: %v", err)
	}
	// Not noticed by the liveness check: a session whose peer is gone.
	a, b := net.Pipe()
	b.Close()
	c.pool.replace(&clamdConn{Conn: pipeConn{a}, br: bufio.NewReader(a), id: 3})
	if _, err := c.Scan(context.Background(), strings.NewReader("x"), 1); err != nil {
		t.Fatalf("retry after a dead session: %v", err)
	}
	_ = srv
}
