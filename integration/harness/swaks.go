package harness

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// swaksTimeout bounds one swaks run; swaks's own per-reply timeout is 30 s.
const swaksTimeout = 2 * time.Minute

// Swaks runs swaks with args and returns its transcript (stdout and stderr).
// err is non-nil when swaks exits non-zero, which it does when the server
// rejects a command (e.g. 24 for RCPT, 25 for DATA) or cannot be reached.
func Swaks(t testing.TB, args ...string) (out string, err error) {
	t.Helper()
	return swaksIn(t, nil, args...)
}

// swaksIn runs swaks inside ns, or in the test's own namespace if ns is nil.
func swaksIn(t testing.TB, ns *NetNS, args ...string) (out string, err error) {
	t.Helper()
	bin := requireBin(t, "swaks")
	ctx, cancel := context.WithTimeout(context.Background(), swaksTimeout)
	defer cancel()
	c := exec.CommandContext(ctx, bin, args...)
	if ns != nil {
		c = ns.Command(ctx, bin, args...)
	}
	o, err := c.CombinedOutput()
	return string(o), err
}

// SendOptions describes one message for Send.
type SendOptions struct {
	// Server is "127.0.0.1:PORT", e.g. Postfix.InboundAddr.
	Server string
	// From is the envelope sender; default SenderAddr. "<>" sends a null sender.
	From string
	// To are the envelope recipients; default RcptAddr.
	To []string
	// Helo is the EHLO name; default swaks's (the host name).
	Helo string
	// Subject, Headers ("Name: value", replacing a header of that name) and
	// Body make up swaks's default message.
	Subject string
	Headers []string
	Body    string
	// Data is a whole message (header and body, CRLF line ends) sent instead
	// of swaks's default one; Subject and Headers still replace headers in it.
	// swaks expands its %TOKENS% and a literal backslash-n in it.
	Data []byte
	// Args are extra swaks arguments, e.g. "--quit-after", "RCPT".
	Args []string
	// NetNS, when set, runs swaks inside that network namespace.
	NetNS *NetNS
}

// SendResult is what swaks saw.
type SendResult struct {
	// Output is swaks's transcript ("-> " client lines, "<- " replies,
	// "<** " error replies).
	Output string
	// Reply is the last reply before QUIT's: the answer to the end of DATA,
	// or to the command that was refused, e.g. "250 2.0.0 Ok: queued as 4B2C1984444".
	// Empty when no reply came (connection refused).
	Reply string
	// Code is Reply's code (0 without a reply).
	Code int
	// QueueID is the ID in "queued as ID", if any.
	QueueID string
	// Err is swaks's exit error: nil only when every command was accepted.
	Err error
}

var (
	swaksReply = regexp.MustCompile(`^(?:<-|<\*\*) +(\d{3})([ -])(.*)$`)
	queuedAs   = regexp.MustCompile(`queued as ([0-9A-Za-z]+)`)
)

// Send sends one message with swaks and parses the final reply. It does not
// fail the test when the server refuses the message: check Code or Err.
func Send(t testing.TB, opt SendOptions) SendResult {
	t.Helper()
	if opt.Server == "" {
		t.Fatalf("harness: Send: SendOptions.Server is empty")
	}
	from := opt.From
	if from == "" {
		from = SenderAddr
	}
	to := opt.To
	if len(to) == 0 {
		to = []string{RcptAddr}
	}
	args := []string{"--server", opt.Server, "--from", from, "--to", strings.Join(to, ",")}
	if opt.Helo != "" {
		args = append(args, "--ehlo", opt.Helo)
	}
	if opt.Data != nil {
		path := filepath.Join(t.TempDir(), "message.eml")
		if err := os.WriteFile(path, opt.Data, 0o644); err != nil {
			t.Fatalf("harness: %v", err)
		}
		args = append(args, "--data", "@"+path)
	}
	if opt.Subject != "" {
		args = append(args, "--header", "Subject: "+opt.Subject)
	}
	for _, h := range opt.Headers {
		args = append(args, "--header", h)
	}
	if opt.Body != "" {
		args = append(args, "--body", opt.Body)
	}
	args = append(args, opt.Args...)
	out, err := swaksIn(t, opt.NetNS, args...)
	res := ParseSwaks(out)
	res.Err = err
	return res
}

// ParseSwaks extracts the final reply and the queue ID from a swaks transcript.
func ParseSwaks(out string) SendResult {
	res := SendResult{Output: out}
	var replies []string // last line of each reply
	for _, line := range strings.Split(out, "\n") {
		m := swaksReply.FindStringSubmatch(strings.TrimRight(line, "\r"))
		if m == nil || m[2] == "-" {
			continue // not a reply, or not the last line of a multi-line one
		}
		replies = append(replies, m[1]+" "+m[3])
	}
	// Drop the answer to QUIT, so that Reply is the one that decided the message.
	if n := len(replies); n > 1 && strings.HasPrefix(replies[n-1], "221 ") {
		replies = replies[:n-1]
	}
	if len(replies) > 0 {
		res.Reply = replies[len(replies)-1]
		res.Code, _ = strconv.Atoi(res.Reply[:3])
	}
	if m := queuedAs.FindStringSubmatch(res.Reply); m != nil {
		res.QueueID = m[1]
	}
	return res
}
