package proxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"go.uber.org/zap"

	"github.com/foxproxy/foxproxy/settings"
)

// sinkSession accepts everything and keeps the last message.
type sinkSession struct {
	got *[]byte
	g   *guardConn
}

func (s sinkSession) Reset()                               {}
func (s sinkSession) Logout() error                        { return nil }
func (s sinkSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s sinkSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s sinkSession) Data(r io.Reader) error               { b, err := io.ReadAll(r); *s.got = b; return err }

// startSink serves go-smtp behind a guard, like foxproxy does, with a backend
// that accepts everything.
func startSink(t testing.TB) (addr string, last *[]byte) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	got := new([]byte)
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return sinkSession{got: got, g: c.Conn().(*guardConn)}, nil
	}))
	srv.MaxLineLength = 0
	srv.ErrorLog = zapPrintf{zap.NewNop()}
	go srv.Serve(&plainGuardListener{ln})
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), got
}

// FuzzDataFraming checks that the guard and go-smtp always agree where
// message content ends. Any content without an end-of-data line must be
// answered by exactly one reply, followed by the replies to NOOP and QUIT; a
// disagreement shows as a hang (one side still reading content) or as extra
// or missing replies (content read as commands).
func FuzzDataFraming(f *testing.F) {
	for _, s := range []string{
		"Subject: x\r\n\r\nbody\r\n", "\n.\n", "\n.\r\n", "\r.\r", "\r\n.\r", "\r.\n", "\r\n\x00.\r\n",
		"..\r\n", ".\r\r\n", "\r\r\n.\r\n", "XFORWARD ADDR=1.2.3.4\r\n", "BDAT 5 LAST\r\n",
	} {
		f.Add([]byte(s))
	}
	addr, _ := startSink(f)
	f.Fuzz(func(t *testing.T, content []byte) {
		full := append([]byte("\r\n"), content...)
		full = append(full, "\r\n"...)
		if bytes.Contains(full, []byte("\r\n.\r\n")) {
			return // a real end of data inside: not this property
		}
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		var in bytes.Buffer
		in.WriteString("EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n")
		in.Write(content)
		in.WriteString("\r\n.\r\nNOOP\r\nQUIT\r\n")
		go c.Write(in.Bytes())
		out, _ := io.ReadAll(c)
		var codes []string
		for _, l := range strings.Split(string(out), "\r\n") {
			if len(l) >= 4 && l[3] == ' ' {
				codes = append(codes, l[:3])
			}
		}
		// 220 banner, EHLO, MAIL, RCPT, 354, data reply, NOOP, QUIT
		if len(codes) != 8 || codes[4] != "354" || codes[6] != "250" || codes[7] != "221" {
			t.Fatalf("content %q: replies %v\n%s", content, codes, out)
		}
	})
}

func TestGuardCommandVerbMatchesGoSMTP(t *testing.T) {
	cases := map[string]string{
		"MAIL FROM:<a@b>\r\n": "MAIL", "data\r\n": "DATA", "DATA \r\n": "", "BDAT 5 LAST\r\n": "BDAT",
		"DAT\r\n": "", "DATAX\r\n": "", "BDAT\t5\r\n": "", "STARTTLS\r\n": "STARTTLS", "\r\n": "",
	}
	for line, want := range cases {
		if got, _ := commandVerb([]byte(line)); got != want {
			t.Errorf("commandVerb(%q) = %q, want %q", line, got, want)
		}
	}
	for _, tc := range []struct {
		arg        string
		size       int64
		last, okay bool
	}{{"5", 5, false, true}, {"5 LAST", 5, true, true}, {"5 last", 5, true, true}, {"5 FIRST", 0, false, false},
		{"-1", 0, false, false}, {"", 0, false, false}, {"1 2 3", 0, false, false}, {"99999999999", 0, false, false}} {
		size, last, ok := parseBdat(tc.arg)
		if size != tc.size || last != tc.last || ok != tc.okay {
			t.Errorf("parseBdat(%q) = %d %v %v", tc.arg, size, last, ok)
		}
	}
}

// A client trickling its content is cut off by the data timeout, however
// steadily it sends.
func TestDataTimeoutBoundsTrickle(t *testing.T) {
	ds := startDownstream(t)
	p := startProxy(t, ds.addr)
	cfg := testConfig(ds.addr)
	cfg.Timeouts.Data = settings.Duration(600 * time.Millisecond)
	p.srv.Reload(&Runtime{Config: cfg})
	r := dialRaw(t, p.addr)
	r.greet()
	r.send("MAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n")
	r.expect("250 ")
	r.expect("250 ")
	r.expect("354 ")
	stop := time.After(3 * time.Second)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			t.Fatal("trickling client not cut off")
		case <-tick.C:
			if _, err := r.c.Write([]byte("x")); err != nil {
				return // closed by foxproxy
			}
			r.c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
			buf := make([]byte, 256)
			if n, _ := r.br.Read(buf); n > 0 {
				if got := string(buf[:n]); !strings.HasPrefix(got, "451 ") && !strings.HasPrefix(got, "421 ") {
					t.Fatalf("got %q", got)
				}
				return
			}
		}
	}
}

// The guard's read buffer goes back for the next connection when the
// connection is closed, even by another goroutine while a read waits (as
// Server.Close does): the waiting read ends, and no later read, of
// commands or of content, touches the buffer again.
func TestGuardClosedFromAnotherGoroutineLetsGoOfItsBuffer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	g := newGuardConn(server, guardConfig{maxLine: 4096, maxCommands: 10, maxXforward: 255,
		commandTimeout: time.Minute, dataTimeout: time.Minute})
	read := make(chan error, 1)
	go func() {
		_, err := g.Read(make([]byte, 512))
		read <- err
	}()
	time.Sleep(50 * time.Millisecond) // let the read wait; not a timing claim: either order must hold
	g.Close()
	select {
	case err := <-read:
		if err == nil {
			t.Fatal("the waiting read returned no error after Close")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting read did not end after Close")
	}
	if _, err := g.Read(make([]byte, 512)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after Close: %v, want net.ErrClosed", err)
	}
	if _, err := (contentReader{g}).Read(make([]byte, 512)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("content read after Close: %v, want net.ErrClosed", err)
	}
}
