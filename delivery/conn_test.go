package delivery

import (
	"bufio"
	"bytes"
	"net/textproto"
	"strings"
	"testing"

	"github.com/foxproxy/foxproxy/internal/testutil"
)

// The dotStuffer, fed in any pieces, puts exactly what go-smtp's DotWriter
// (net/textproto) would on the wire.
func FuzzDotStufferMatchesDotWriter(f *testing.F) {
	for _, s := range []string{"a\r\n.b\r\n..\r\n", ".", "x", "\r\n", ".\r\n.", "no end"} {
		f.Add([]byte(s), uint8(3))
	}
	f.Fuzz(func(t *testing.T, raw []byte, piece uint8) {
		content := testutil.CRLFClean(raw)
		if len(raw)%2 == 1 { // also content that does not end in CRLF
			content = bytes.TrimSuffix(content, []byte("\r\n"))
		}
		var want bytes.Buffer
		dw := textproto.NewWriter(bufio.NewWriter(&want)).DotWriter()
		dw.Write(content)
		dw.Close()

		var got bytes.Buffer
		bw := bufio.NewWriter(&got)
		dot := textproto.NewWriter(bw).DotWriter()
		st := dotStuffer{w: bw, start: true}
		size := int(piece%7) + 1
		for b := content; len(b) > 0; {
			n := min(size, len(b))
			st.Write(b[:n])
			b = b[n:]
		}
		if err := st.finish(dot); err != nil {
			t.Fatal(err)
		}
		dot.Close()
		if !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Fatalf("pieces of %d:\n got %q\nwant %q", size, got.Bytes(), want.Bytes())
		}
	})
}

func TestXforwardCommandsForDownstream(t *testing.T) {
	x := Xforward{Name: "mail.example.com", Addr: "2001:db8::7", Port: "25", Proto: "ESMTP", Helo: "a b", Ident: "ABC", Source: "REMOTE"}
	all := map[string]bool{"NAME": true, "ADDR": true, "PORT": true, "PROTO": true, "HELO": true, "IDENT": true, "SOURCE": true}
	got := XforwardCommands(x, all)
	want := []string{"XFORWARD NAME=mail.example.com ADDR=IPV6:2001:db8::7 PORT=25", "XFORWARD PROTO=ESMTP HELO=a+20b IDENT=ABC SOURCE=REMOTE"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got %q\nwant %q", got, want)
	}
	if got := XforwardCommands(x, map[string]bool{"ADDR": true}); len(got) != 1 || got[0] != "XFORWARD ADDR=IPV6:2001:db8::7" {
		t.Fatalf("only announced attributes may be sent: %q", got)
	}
	if got := XforwardCommands(x, map[string]bool{}); len(got) != 0 {
		t.Fatalf("nothing announced, nothing sent: %q", got)
	}
}

func TestDownstreamReplyReading(t *testing.T) {
	read := func(in string) (int, string, error) {
		c := &dsConn{br: bufio.NewReader(strings.NewReader(in))}
		return c.readReply()
	}
	if code, text, err := read("250-first\r\n250 2.0.0 Ok\r\n"); err != nil || code != 250 || text != "first\n2.0.0 Ok" {
		t.Fatalf("multi-line: %d %q %v", code, text, err)
	}
	if _, _, err := read("hello\r\n"); err == nil {
		t.Fatal("malformed reply accepted")
	}
	if _, _, err := read(strings.Repeat("250-x\r\n", 200) + "250 ok\r\n"); err == nil {
		t.Fatal("a reply of 200 lines accepted")
	}
	if _, _, err := read("250 " + strings.Repeat("x", 10000) + "\r\n"); err == nil {
		t.Fatal("a 10 KB reply line accepted")
	}
}
