package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"github.com/foxproxy/foxproxy/internal/testutil"
)

// dotStuff renders CRLF-clean content as DATA puts it on the wire.
func dotStuff(content []byte) []byte {
	var b bytes.Buffer
	start := true
	for i, c := range content {
		if start && c == '.' {
			b.WriteByte('.')
		}
		b.WriteByte(c)
		start = c == '\n' && i > 0 && content[i-1] == '\r'
	}
	if !bytes.HasSuffix(content, []byte("\r\n")) && len(content) > 0 {
		b.WriteString("\r\n")
	}
	b.WriteString(".\r\n")
	return b.Bytes()
}

// readAllIn reads the guard's content with reads of the given size.
func contentThroughGuard(t *testing.T, wire []byte, readSize int) ([]byte, taint, []byte) {
	t.Helper()
	client, server := net.Pipe()
	defer client.Close()
	g := newGuardConn(server, guardConfig{maxLine: 4096, maxCommands: 100, commandTimeout: 5 * time.Second, dataTimeout: 5 * time.Second})
	go func() {
		client.Write(wire)
		client.Write([]byte("NOOP\r\n"))
	}()
	g.mode = modeData
	g.content = contentState{state: csStart}
	g.dataEnd = time.Now().Add(5 * time.Second)
	var got []byte
	buf := make([]byte, readSize)
	r := contentReader{g}
	for {
		n, err := r.Read(buf)
		got = append(got, buf[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read: %v", err)
		}
	}
	// go-smtp then sees an empty message, and the next command intact.
	rest := make([]byte, 64)
	n, _ := io.ReadAtLeast(g, rest, 3)
	m, _ := g.Read(rest[n:])
	return got, g.Taint(), rest[:n+m]
}

func FuzzContentRoundTrip(f *testing.F) {
	for _, s := range []string{"Subject: x\r\n\r\nbody\r\n", ".\r\n..\r\n...x\r\n", "", "a", ".", "\r\n.\r\n", "x\r\n.\r"} {
		f.Add([]byte(s), uint8(7))
	}
	f.Fuzz(func(t *testing.T, raw []byte, size uint8) {
		content := testutil.CRLFClean(raw)
		for _, rs := range []int{1, 2, int(size%64) + 1, 32 << 10} {
			got, tn, next := contentThroughGuard(t, dotStuff(content), rs)
			if !bytes.Equal(got, content) || tn.any() {
				t.Fatalf("read size %d: got %q (taint %v), want %q", rs, got, tn, content)
			}
			if string(next) != ".\r\nNOOP\r\n" {
				t.Fatalf("after the content go-smtp would read %q", next)
			}
		}
	})
}

func TestContentTaint(t *testing.T) {
	cases := map[string]taint{
		"a\nb\r\n.\r\n":        {bareLF: true},
		"a\rb\r\n.\r\n":        {bareCR: true},
		"a\x00b\r\n.\r\n":      {nul: true},
		"a\r\r\n.\r\n":         {bareCR: true},
		".\rx\r\n.\r\n":        {bareCR: true},
		"x\r\n.\n.\r\n.\r\n":   {bareLF: true},
		"clean\r\n..\r\n.\r\n": {},
	}
	for wire, want := range cases {
		for _, rs := range []int{1, 3, 1024} {
			_, got, next := contentThroughGuard(t, []byte(wire), rs)
			if got != want || string(next) != ".\r\nNOOP\r\n" {
				t.Errorf("%q (reads of %d): taint %+v, next %q; want %+v", wire, rs, got, next, want)
			}
		}
	}
}

func BenchmarkContent10K(b *testing.B) {
	line := []byte("A line of a typical message body, about seventy characters long...\r\n")
	var content []byte
	for len(content) < 10<<10 {
		content = append(content, line...)
	}
	wire := dotStuff(content)
	b.SetBytes(int64(len(content)))
	b.ReportAllocs()
	buf := make([]byte, 32<<10)
	for b.Loop() {
		g := &guardConn{br: newBufReader(wire), mode: modeData, content: contentState{state: csStart}}
		g.cfg.now = time.Now
		g.dataEnd = time.Now().Add(time.Hour)
		g.cfg.commandTimeout = time.Hour
		g.Conn = nopConn{}
		for {
			if _, err := g.readContent(buf); err != nil {
				break
			}
		}
	}
}

func newBufReader(b []byte) *bufio.Reader { return bufio.NewReaderSize(bytes.NewReader(b), 64<<10) }

// nopConn is a net.Conn whose deadlines do nothing (for benchmarks that read
// from memory).
type nopConn struct{ net.Conn }

func (nopConn) SetReadDeadline(time.Time) error { return nil }
