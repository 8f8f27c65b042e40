package proxy

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/foxproxy/foxproxy/internal/testutil"
	"github.com/foxproxy/foxproxy/pipeline"
	"github.com/foxproxy/foxproxy/policy"
	"github.com/foxproxy/foxproxy/settings"
)

// testDownstream is a real SMTP server (go-smtp behind the same guard
// foxproxy uses, so it understands XFORWARD) that records what it receives
// and can be told to refuse or stall.
type testDownstream struct {
	t    *testing.T
	addr string
	ln   net.Listener
	srv  *smtp.Server

	mu        sync.Mutex
	mails     []dsMail
	delivered []dsMessage
	resets    int
	conns     int

	rejectMail *smtp.SMTPError
	rejectRcpt map[string]*smtp.SMTPError
	dataReply  *smtp.SMTPError
	dataStall  time.Duration
}

type dsMail struct {
	from string
	opts smtp.MailOptions
	xfwd Xforward
}

type dsMessage struct {
	from     string
	rcpts    []string
	rcptOpts []smtp.RcptOptions
	data     []byte
	xfwd     Xforward
}

func startDownstream(t *testing.T) *testDownstream {
	t.Helper()
	return startDownstreamAt(t, "127.0.0.1:0")
}

// startDownstreamAt starts a test downstream on addr (a port of 0 picks one).
func startDownstreamAt(t *testing.T, addr string) *testDownstream {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	d := &testDownstream{t: t, ln: ln, addr: ln.Addr().String(), rejectRcpt: map[string]*smtp.SMTPError{}}
	d.srv = smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		d.mu.Lock()
		d.conns++
		d.mu.Unlock()
		return &dsSession{d: d, g: c.Conn().(*guardConn)}, nil
	}))
	d.srv.Domain = "downstream.test"
	d.srv.EnableDSN = true
	d.srv.EnableSMTPUTF8 = true
	d.srv.MaxLineLength = 0
	d.srv.ErrorLog = zapPrintf{zap.NewNop()}
	go d.srv.Serve(&plainGuardListener{ln})
	t.Cleanup(func() { d.srv.Close() })
	return d
}

// plainGuardListener wraps every connection in a trusting guard.
type plainGuardListener struct{ net.Listener }

func (l *plainGuardListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return newGuardConn(c, guardConfig{trustedXforward: true, maxLine: 4096, maxCommands: 1000,
		maxXforward: 255, commandTimeout: time.Minute, dataTimeout: time.Minute}), nil
}

func (d *testDownstream) set(fn func(d *testDownstream)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fn(d)
}

func (d *testDownstream) messages() []dsMessage {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]dsMessage(nil), d.delivered...)
}

func (d *testDownstream) lastMail() dsMail {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.mails) == 0 {
		d.t.Fatal("downstream saw no MAIL")
	}
	return d.mails[len(d.mails)-1]
}

type dsSession struct {
	d   *testDownstream
	g   *guardConn
	cur *dsMessage
}

func (s *dsSession) Reset() {
	if s.cur != nil {
		s.d.mu.Lock()
		s.d.resets++
		s.d.mu.Unlock()
	}
	s.cur = nil
}
func (s *dsSession) Logout() error { return nil }
func (s *dsSession) Mail(from string, opts *smtp.MailOptions) error {
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	if s.d.rejectMail != nil {
		return s.d.rejectMail
	}
	x := s.g.Xforward()
	s.d.mails = append(s.d.mails, dsMail{from: from, opts: *opts, xfwd: x})
	s.cur = &dsMessage{from: from, xfwd: x}
	return nil
}
func (s *dsSession) Rcpt(to string, opts *smtp.RcptOptions) error {
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	if e := s.d.rejectRcpt[to]; e != nil {
		return e
	}
	s.cur.rcpts = append(s.cur.rcpts, to)
	s.cur.rcptOpts = append(s.cur.rcptOpts, *opts)
	return nil
}
func (s *dsSession) Data(r io.Reader) error {
	if c := s.g.Content(); c != nil {
		r = c
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.d.mu.Lock()
	stall, rep := s.d.dataStall, s.d.dataReply
	s.d.mu.Unlock()
	time.Sleep(stall)
	if rep != nil {
		s.cur = nil
		return rep
	}
	s.cur.data = b
	s.d.mu.Lock()
	s.d.delivered = append(s.d.delivered, *s.cur)
	s.d.mu.Unlock()
	s.cur = nil
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "Ok: queued as DS12345"}
}

type testProxy struct {
	addr string
	srv  *Server
	logs *observer.ObservedLogs
}

type proxyOption func(rt *Runtime)

// testConfig is the configuration of config/default.yaml, with short
// timeouts and the given downstream.
func testConfig(downstream string) *Config {
	loopback := func(s string) settings.Prefix { return settings.Prefix{Prefix: netip.MustParsePrefix(s)} }
	return &Config{
		Listen:              "127.0.0.1:0",
		Downstream:          downstream,
		DownstreamIdle:      settings.Duration(5 * time.Second),
		DownstreamMaxIdle:   100,
		Deployment:          "after_queue",
		Hostname:            "foxproxy.test",
		AllowedClients:      settings.Prefixes{loopback("127.0.0.0/8"), loopback("::1/128")},
		RemoveIncomingTrace: true,
		ClientFromReceived:  true,
		MaxMessageBytes:     50 << 20,
		Limits: Limits{MaxRecipients: 1000, MaxSessions: 1000, MaxCommandLine: 4096, MaxCommands: 100000,
			MaxHeaderBytes: 1 << 20, MaxXforwardValueLen: 255},
		Timeouts: Timeouts{
			Command:           settings.Duration(5 * time.Second),
			Data:              settings.Duration(5 * time.Second),
			DownstreamConnect: settings.Duration(2 * time.Second),
			DownstreamCommand: settings.Duration(2 * time.Second),
			DownstreamData:    settings.Duration(2 * time.Second),
			Stages:            settings.Duration(2 * time.Second),
			Shutdown:          settings.Duration(30 * time.Second),
		},
		Spool: Spool{MemoryThreshold: 1 << 20},
	}
}

// defaultPolicy is the policy section of config/default.yaml: no rules.
var defaultPolicy = policy.Config{OnScanUnavailable: "tempfail", OnInfected: "quarantine"}

func startProxy(t *testing.T, downstream string, opts ...proxyOption) *testProxy {
	t.Helper()
	rt := &Runtime{Config: testConfig(downstream)}
	for _, o := range opts {
		o(rt)
	}
	core, logs := observer.New(zap.DebugLevel)
	srv := NewServer(rt, zap.New(core))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return &testProxy{addr: ln.Addr().String(), srv: srv, logs: logs}
}

func withConfig(fn func(c *Config)) proxyOption {
	return func(rt *Runtime) { fn(rt.Config) }
}

func withStages(stages ...pipeline.Stage) proxyOption {
	return func(rt *Runtime) { rt.Pipeline = pipeline.New(stages...) }
}

func withPolicy(d policy.Decider) proxyOption {
	return func(rt *Runtime) { rt.Policy = d }
}

// sendMail sends one message with go-smtp's client and returns the error of
// the first step that failed (nil on 250).
func sendMail(t *testing.T, addr, from string, to []string, body string) (*smtp.Client, error) {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Hello("client.test"); err != nil {
		return c, err
	}
	_, err = transact(c, from, to, body)
	return c, err
}

// transact sends one message on an open client and returns the reply to
// the final dot, or the error of the first step that failed.
func transact(c *smtp.Client, from string, to []string, body string) (*smtp.DataResponse, error) {
	if err := c.Mail(from, nil); err != nil {
		return nil, err
	}
	for _, r := range to {
		if err := c.Rcpt(r, nil); err != nil {
			return nil, err
		}
	}
	w, err := c.Data()
	if err != nil {
		return nil, err
	}
	io.WriteString(w, body)
	return w.CloseWithResponse()
}

// rawConn is a line-level SMTP client for what go-smtp's client cannot do:
// pipelining, XFORWARD, bare line endings, BDAT.
type rawConn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	r := &rawConn{t: t, c: c, br: bufio.NewReader(c)}
	return r
}

func (r *rawConn) send(s string) {
	r.t.Helper()
	if _, err := r.c.Write([]byte(s)); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

// reply reads one complete reply and returns its lines joined by "\n".
func (r *rawConn) reply() string {
	r.t.Helper()
	r.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var lines []string
	for {
		l, err := r.br.ReadString('\n')
		if err != nil {
			r.t.Fatalf("reading reply (after %q): %v", lines, err)
		}
		l = strings.TrimRight(l, "\r\n")
		lines = append(lines, l)
		if len(l) < 4 || l[3] != '-' {
			return strings.Join(lines, "\n")
		}
	}
}

// expect reads a reply and checks its prefix.
func (r *rawConn) expect(prefix string) string {
	r.t.Helper()
	got := r.reply()
	if !strings.HasPrefix(got, prefix) {
		r.t.Fatalf("reply %q, want prefix %q", got, prefix)
	}
	return got
}

// greet reads the banner and sends EHLO.
func (r *rawConn) greet() string {
	r.t.Helper()
	r.expect("220 ")
	r.send("EHLO client.test\r\n")
	return r.expect("250-")
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, what, 10*time.Second, cond)
}

// stageFunc is a pipeline stage made of a function.
type stageFunc struct {
	name string
	fn   func(ctx context.Context, tx *pipeline.Transaction) pipeline.Finding
}

func (s stageFunc) Name() pipeline.StageName { return pipeline.StageName(s.name) }
func (s stageFunc) Inspect(ctx context.Context, tx *pipeline.Transaction) pipeline.Finding {
	return s.fn(ctx, tx)
}

// fixedPolicy returns the same verdict for every message.
type fixedPolicy policy.Verdict

func (p fixedPolicy) Decide(*pipeline.Transaction, []pipeline.Finding) policy.Verdict {
	return policy.Verdict(p)
}

func smtpCode(err error) int {
	if se, ok := err.(*smtp.SMTPError); ok {
		return se.Code
	}
	return 0
}

// stripTrace removes foxproxy's header from a delivered message, checking
// it is there and at the top.
func stripTrace(t *testing.T, data []byte) (header string, rest []byte) {
	t.Helper()
	if !bytes.HasPrefix(data, []byte("X-Foxproxy: ")) {
		t.Fatalf("delivered message does not start with X-Foxproxy: %q", truncate(string(data), 200))
	}
	// The header may be folded: continuation lines start with a tab.
	i := 0
	for {
		j := bytes.Index(data[i:], []byte("\r\n"))
		if j < 0 {
			t.Fatal("unterminated X-Foxproxy header")
		}
		i += j + 2
		if i >= len(data) || data[i] != '\t' {
			break
		}
	}
	return string(data[:i]), data[i:]
}
