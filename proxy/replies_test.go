package proxy

import (
	"fmt"
	"strings"
	"testing"
)

// TestCommandReplies drives a real foxproxy Server over TCP with commands
// it must refuse, and checks each gets the reply RFC 5321 asks for (with an
// RFC 3463 enhanced code), and that the session stays in step: the next
// valid command works, and so does a whole transaction after it.
func TestCommandReplies(t *testing.T) {
	ds := startDownstream(t)
	p := startProxy(t, ds.addr)

	type step struct{ send, want string }
	cases := []struct {
		name     string
		noGreet  bool // skip EHLO before the steps
		steps    []step
		badAddrs []string // must never reach the downstream
	}{
		{name: "unknown command, four letters", steps: []step{
			{"XYZW\r\n", "500 5.5.2 "}, {"NOOP\r\n", "250 "}}},
		{name: "unknown command, long word", steps: []step{
			{"FOOBAR baz\r\n", "500 5.5.2 "}, {"NOOP\r\n", "250 "}}},
		{name: "unknown command, short word", steps: []step{
			{"FOO\r\n", "500 5.5.2 "}, {"NOOP\r\n", "250 "}}},
		{name: "unknown command, glued argument", steps: []step{
			{"MAILFROM:<a@example.org>\r\n", "500 5.5.2 "}, {"NOOP\r\n", "250 "}}},
		{name: "empty line", steps: []step{
			{"\r\n", "500 5.5.2 "}, {"NOOP\r\n", "250 "}}},
		{name: "known command, bare trailing space", steps: []step{
			{"RSET \r\n", "501 5.5.4 "}, {"RSET\r\n", "250 "}}},
		{name: "not implemented", steps: []step{
			{"EXPN staff\r\n", "502 5.5.1 "}, {"HELP\r\n", "502 5.5.1 "}, {"TURN\r\n", "502 5.5.1 "},
			{"ETRN example.org\r\n", "502 5.5.1 "}, {"AUTH PLAIN\r\n", "502 5.5.1 "}, {"NOOP\r\n", "250 "}}},
		{name: "MAIL before EHLO", noGreet: true, steps: []step{
			{"MAIL FROM:<a@example.org>\r\n", "503 5.5.1 Error: send HELO/EHLO first"},
			{"EHLO client.test\r\n", "250"}}},
		{name: "RCPT before MAIL", steps: []step{
			{"RCPT TO:<b@example.org>\r\n", "503 5.5.1 Error: need MAIL command"}, {"NOOP\r\n", "250 "}}},
		{name: "DATA before MAIL", steps: []step{
			{"DATA\r\n", "503 5.5.1 Error: need MAIL command"}, {"NOOP\r\n", "250 "}}},
		{name: "BDAT before MAIL", steps: []step{
			// The chunk is read and dropped: NOOP is the next command.
			{"BDAT 5 LAST\r\nhello", "503 5.5.1 Error: need MAIL command"}, {"NOOP\r\n", "250 "}}},
		{name: "DATA without RCPT", steps: []step{
			{"MAIL FROM:<a@example.org>\r\n", "250 "},
			{"DATA\r\n", "503 5.5.1 Error: need RCPT command"}, {"RSET\r\n", "250 "}}},
		{name: "DATA after RSET", steps: []step{
			{"MAIL FROM:<a@example.org>\r\n", "250 "}, {"RCPT TO:<b@example.org>\r\n", "250 "},
			{"RSET\r\n", "250 "}, {"DATA\r\n", "503 5.5.1 Error: need MAIL command"}, {"NOOP\r\n", "250 "}}},
		{name: "RCPT after RSET", steps: []step{
			{"MAIL FROM:<a@example.org>\r\n", "250 "}, {"RSET\r\n", "250 "},
			{"RCPT TO:<b@example.org>\r\n", "503 5.5.1 "}, {"NOOP\r\n", "250 "}}},
		{name: "MAIL with NUL", badAddrs: []string{"a\x00b@example.org"}, steps: []step{
			{"MAIL FROM:<a\x00b@example.org>\r\n", "501 5.1.7 "},
			// No transaction was opened: RCPT is out of order, MAIL works.
			{"RCPT TO:<b@example.org>\r\n", "503 5.5.1 "},
			{"MAIL FROM:<a@example.org>\r\n", "250 "}, {"RSET\r\n", "250 "}}},
		{name: "MAIL with other control characters", badAddrs: []string{"a\tb@example.org", "a\x7fb@example.org", "a\x01b@example.org", "a\u0085b@example.org"}, steps: []step{
			// go-smtp's parser refuses white space itself.
			{"MAIL FROM:<a\tb@example.org>\r\n", "501 "},
			{"MAIL FROM:<a\x7fb@example.org>\r\n", "501 5.1.7 "},
			{"MAIL FROM:<a\x01b@example.org>\r\n", "501 5.1.7 "},
			{"MAIL FROM:<a\u0085b@example.org> SMTPUTF8\r\n", "501 5.1.7 "},
			{"NOOP\r\n", "250 "}}},
		{name: "RCPT with NUL", badAddrs: []string{"c\x00d@example.org"}, steps: []step{
			{"MAIL FROM:<a@example.org>\r\n", "250 "},
			{"RCPT TO:<c\x00d@example.org>\r\n", "501 5.1.3 "},
			// The transaction is still open: DATA needs a recipient.
			{"DATA\r\n", "503 5.5.1 Error: need RCPT command"},
			// Delivered, so the downstream's recipients can be checked.
			{"RCPT TO:<b@example.org>\r\n", "250 "}, {"DATA\r\n", "354 "}, {"\r\nbody\r\n.\r\n", "250 "}}},
		{name: "RCPT with other control characters", badAddrs: []string{"c\rd@example.org", "c\x1bd@example.org"}, steps: []step{
			{"MAIL FROM:<a@example.org>\r\n", "250 "},
			{"RCPT TO:<c\rd@example.org>\r\n", "501 5.1.3 "},
			{"RCPT TO:<c\x1bd@example.org>\r\n", "501 5.1.3 "},
			{"RCPT TO:<b@example.org>\r\n", "250 "}, {"DATA\r\n", "354 "}, {"\r\nbody\r\n.\r\n", "250 "}}},
		{name: "many errors in a row", steps: []step{
			// go-smtp alone closes the connection after the fourth.
			{"FOO\r\n", "500 "}, {"BARBAZ\r\n", "500 "}, {"\r\n", "500 "}, {"QUUX\r\n", "500 "},
			{"FOO\r\n", "500 "}, {"HELP\r\n", "502 "}, {"NOOP\r\n", "250 "}}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := dialRaw(t, p.addr)
			if tc.noGreet {
				r.expect("220 ")
			} else {
				r.greet()
			}
			for _, s := range tc.steps {
				r.send(s.send)
				if got := r.reply(); !strings.HasPrefix(got, s.want) {
					t.Fatalf("after %q: reply %q, want prefix %q", s.send, got, s.want)
				}
			}
			// Still in step: a whole transaction goes through.
			from := fmt.Sprintf("ok%d@example.org", i)
			r.send("MAIL FROM:<" + from + ">\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
			r.expect("250 ")
			r.expect("250 ")
			r.expect("354 ")
			r.send("Subject: test\r\n\r\nbody\r\n.\r\n")
			r.expect("250 ")
			r.send("QUIT\r\n")
			r.expect("221 ")
			found := false
			for _, m := range ds.messages() {
				found = found || m.from == from
			}
			if !found {
				t.Errorf("message from %s not delivered", from)
			}
			ds.mu.Lock()
			defer ds.mu.Unlock()
			for _, m := range ds.mails {
				for _, bad := range tc.badAddrs {
					if m.from == bad {
						t.Errorf("sender %q reached the downstream", bad)
					}
				}
			}
			for _, m := range ds.delivered {
				for _, rc := range m.rcpts {
					for _, bad := range tc.badAddrs {
						if rc == bad {
							t.Errorf("recipient %q reached the downstream", bad)
						}
					}
				}
			}
		})
	}
}

func TestCommandRefusal(t *testing.T) {
	for line, want := range map[string]string{
		"MAIL FROM:<a@b>\r\n": "", "noop\r\n": "", "STARTTLS\r\n": "", "DATA x\r\n": "",
		"XYZW\r\n": "500", "STARTTLSX\r\n": "500", "LHLO x\r\n": "500", " MAIL FROM:<a@b>\r\n": "500",
		"\r\n": "500", "help\r\n": "502", "AUTH PLAIN\r\n": "502", "NOOP \r\n": "501",
	} {
		got := ""
		if r := commandRefusal([]byte(line)); r != nil {
			got = fmt.Sprint(r.Code)
		}
		if got != want {
			t.Errorf("commandRefusal(%q) = %q, want %q", line, got, want)
		}
	}
}
