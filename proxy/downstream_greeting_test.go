package proxy

import (
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/foxproxy/foxproxy/internal/testutil"
	"github.com/foxproxy/foxproxy/settings"
)

// isReply reports whether err is the SMTP reply code with enhanced code
// a.b.c.
func isReply(err error, code, a, b, c int) bool {
	var se *smtp.SMTPError
	return errors.As(err, &se) && se.Code == code && se.EnhancedCode == smtp.EnhancedCode{a, b, c}
}

// fakeGreeter accepts connections and answers each with greeting (nothing
// when empty), then reads until the client leaves.
func fakeGreeter(t *testing.T, greeting string) string {
	t.Helper()
	return testutil.ServeTCP(t, func(c net.Conn) {
		if greeting != "" {
			c.Write([]byte(greeting))
		}
		io.Copy(io.Discard, c)
	})
}

// Regression (issue 9): a re-injection smtpd that greets with a 5xx
// refuses the connection, not the message. foxproxy mirrored the 554 at
// MAIL, so Postfix bounced the mail; it is 451 4.4.1 now, like any other
// failure to connect.
func TestDownstream5xxGreetingDefers(t *testing.T) {
	for _, greeting := range []string{
		"554 5.3.2 not accepting mail right now\r\n",
		"521 5.3.2 mx.example does not accept mail\r\n",
		"421 4.3.2 busy\r\n",
	} {
		p := startProxy(t, fakeGreeter(t, greeting))
		_, err := sendMail(t, p.addr, "a@example.test", []string{"b@example.test"}, "Subject: x\r\n\r\nbody\r\n")
		if !isReply(err, 451, 4, 4, 1) {
			t.Errorf("downstream greeting %q: foxproxy answered %v, want 451 4.4.1", strings.TrimSpace(greeting), err)
		}
	}
}

// Regression (issue 9): the greeting is part of connecting, bounded by
// timeouts.downstream_connect as documented; it waited
// timeouts.downstream_command (default 5m) instead.
func TestDownstreamSilentGreetingUsesConnectTimeout(t *testing.T) {
	p := startProxy(t, fakeGreeter(t, ""), withConfig(func(c *Config) {
		c.Timeouts.DownstreamConnect = settings.Duration(300 * time.Millisecond)
		c.Timeouts.DownstreamCommand = settings.Duration(20 * time.Second)
	}))
	start := time.Now()
	_, err := sendMail(t, p.addr, "a@example.test", []string{"b@example.test"}, "Subject: x\r\n\r\nbody\r\n")
	if !isReply(err, 451, 4, 4, 1) {
		t.Fatalf("silent downstream: %v, want 451 4.4.1", err)
	}
	// Generous: far below the command timeout, which it used to wait.
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("MAIL answered after %v: the greeting waited for timeouts.downstream_command", d)
	}
}
