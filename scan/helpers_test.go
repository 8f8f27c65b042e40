package scan

import (
	"bytes"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/foxproxy/foxproxy/internal/testutil"
)

// eicarXOR is the EICAR test file XOR-ed with 0x55, so that the plain
// string never appears in the source (integration/harness/clamd.go and cicap.go).
const eicarXOR = "0d601a7405701514050e6109050f0d60617d050b7c6216167c622871101c161407780601141b1114071178141b011c031c070006780110060178131c191074711d7e1d7f"

// eicar returns the 68-byte EICAR test file, checked against its md5.
func eicar(t testing.TB) []byte {
	t.Helper()
	b, err := hex.DecodeString(eicarXOR)
	if err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] ^= 0x55
	}
	if sum := md5.Sum(b); len(b) != 68 || hex.EncodeToString(sum[:]) != "44d88612fea8a8f36de82e1278abb02f" {
		t.Fatalf("EICAR decoded wrongly: %d bytes, md5 %x", len(b), sum)
	}
	return b
}

// mail returns a MIME message with the given attachment, base64-encoded (an
// .hdb signature only matches the decoded attachment, integration/harness/clamd.go and cicap.go), padded
// with a text part of about pad bytes.
func mail(attachment []byte, pad int) []byte {
	var b bytes.Buffer
	b.WriteString("From: sender@example.test\r\nTo: rcpt@example.test\r\nSubject: test\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n" +
		"--b1\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nHello.\r\n")
	line := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 1) + "\r\n"
	for n := 0; n < pad; n += len(line) {
		b.WriteString(line)
	}
	if attachment != nil {
		b.WriteString("--b1\r\nContent-Type: application/octet-stream; name=\"test.com\"\r\n" +
			"Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"test.com\"\r\n\r\n")
		enc := base64.StdEncoding.EncodeToString(attachment)
		for len(enc) > 76 {
			b.WriteString(enc[:76] + "\r\n")
			enc = enc[76:]
		}
		b.WriteString(enc + "\r\n")
	}
	b.WriteString("--b1--\r\n")
	return b.Bytes()
}

// content is a pipeline.Content in memory that counts its Opens.
type content struct {
	data  []byte
	opens atomic.Int32
}

func (c *content) Size() int64 { return int64(len(c.data)) }
func (c *content) Open() io.Reader {
	c.opens.Add(1)
	return bytes.NewReader(c.data)
}

// fakeServer accepts connections on 127.0.0.1:0 and runs handle for each,
// until the test ends. It counts the connections accepted.
type fakeServer struct {
	ln    net.Listener
	conns atomic.Int32
	wg    sync.WaitGroup
	mu    sync.Mutex
	open  []net.Conn
}

func newFakeServer(t testing.TB, handle func(c net.Conn)) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeServer{ln: ln}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.conns.Add(1)
			s.mu.Lock()
			s.open = append(s.open, c)
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for _, c := range s.open {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *fakeServer) addr() string { return s.ln.Addr().String() }

// wantKind fails unless err is a *Error of the given kind.
func wantKind(t testing.TB, err error, kind error) {
	t.Helper()
	var se *Error
	if !errors.As(err, &se) {
		t.Fatalf("error %v (%T) is not a *scan.Error", err, err)
	}
	if !errors.Is(err, kind) {
		t.Fatalf("error %q has kind %v, want %v", err, se.Kind, kind)
	}
}

// within fails the test if f takes longer than d.
func within(t testing.TB, d time.Duration, what string, f func()) {
	t.Helper()
	start := time.Now()
	f()
	if el := time.Since(start); el > d {
		t.Fatalf("%s took %v, want under %v", what, el, d)
	}
}

// waitFor polls cond until it holds, for at most 5s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, what, 5*time.Second, cond)
}
