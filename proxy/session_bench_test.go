package proxy

import (
	"io"
	"math"
	"net"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"go.uber.org/zap"

	"github.com/foxproxy/foxproxy/internal/testutil"
)

// discardDownstream is an in-process re-injection smtpd: go-smtp behind a
// trusting guard (so it offers XFORWARD, as Postfix's does) that accepts
// every message and throws it away.
func discardDownstream(b *testing.B) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &discardSession{g: c.Conn().(*guardConn)}, nil
	}))
	srv.Domain = "downstream.test"
	srv.MaxLineLength = 0
	srv.ErrorLog = zapPrintf{zap.NewNop()}
	go srv.Serve(&benchGuardListener{ln})
	b.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// benchGuardListener is plainGuardListener without its command limit, which
// a kept session of a benchmark runs past.
type benchGuardListener struct{ net.Listener }

func (l *benchGuardListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return newGuardConn(c, guardConfig{trustedXforward: true, maxLine: 4096, maxCommands: math.MaxInt,
		maxXforward: 255, commandTimeout: time.Minute, dataTimeout: time.Minute}), nil
}

type discardSession struct{ g *guardConn }

func (s *discardSession) Reset()        {}
func (s *discardSession) Logout() error { return nil }
func (s *discardSession) Mail(string, *smtp.MailOptions) error {
	return nil
}
func (s *discardSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *discardSession) Data(r io.Reader) error {
	if c := s.g.Content(); c != nil {
		r = c
	}
	_, err := io.Copy(io.Discard, r)
	return err
}

// benchProxy serves foxproxy in-process (no stages, deliver all, a
// discarding logger) in front of a discarding downstream.
func benchProxy(b *testing.B) string {
	b.Helper()
	cfg := testConfig(discardDownstream(b))
	cfg.Limits.MaxCommands = math.MaxInt // a kept session runs past the default
	rt := &Runtime{Config: cfg}
	srv := NewServer(rt, zap.NewNop())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(ln)
	b.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func benchTransaction(b *testing.B, c *smtp.Client) {
	if err := c.Mail("sender@example.net", nil); err != nil {
		b.Fatal(err)
	}
	if err := c.Rcpt("rcpt@example.test", nil); err != nil {
		b.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		b.Fatal(err)
	}
	io.WriteString(w, testutil.TinyMessage)
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkSessionTinyMessage is one whole SMTP session through foxproxy
// per iteration, as Postfix's smtp client opens one per message when it
// has no cached connection: connect, greeting, EHLO, MAIL, RCPT, DATA,
// the tiny message, QUIT, and for foxproxy the same towards the
// downstream. The client and the downstream run in the same process, so
// their cost is included; ns/op is a whole session's round trips on
// loopback, allocs/op counts all three sides.
//
//	go test -run '^$' -bench SessionTinyMessage -benchmem ./proxy/
func BenchmarkSessionTinyMessage(b *testing.B) {
	addr := benchProxy(b)
	b.ReportAllocs()
	for b.Loop() {
		c, err := smtp.Dial(addr)
		if err != nil {
			b.Fatal(err)
		}
		if err := c.Hello("client.test"); err != nil {
			b.Fatal(err)
		}
		benchTransaction(b, c)
		if err := c.Quit(); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}

// BenchmarkTransactionTinyMessage is one transaction per iteration on a
// session kept open (smtp-source -d, or Postfix with a cached
// connection): MAIL, RCPT, DATA, the tiny message, and foxproxy's
// transaction on its reused downstream connection.
func BenchmarkTransactionTinyMessage(b *testing.B) {
	addr := benchProxy(b)
	c, err := smtp.Dial(addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		benchTransaction(b, c)
	}
}
