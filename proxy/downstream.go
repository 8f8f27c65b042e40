package proxy

import (
	"io"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/foxproxy/foxproxy/delivery"
)

// downstream is a session's connection to the re-injection smtpd: a
// delivery.Conn, seen the way the session's command handlers use it.
// broken and txActive are the connection's state, brought up to date after
// every call, so the handlers read them as they read any field.
type downstream struct {
	c        *delivery.Conn
	conn     xforwardReplies
	broken   bool // the connection is unusable: dial again
	txActive bool // a MAIL was accepted, the transaction is open
}

func newDownstream(c *delivery.Conn) *downstream {
	return &downstream{c: c, conn: xforwardReplies{c}}
}

func (d *downstream) sync() {
	d.broken, d.txActive = d.c.Broken(), d.c.InTransaction()
}

func (d *downstream) mail(from string, opts *smtp.MailOptions, x Xforward) error {
	defer d.sync()
	return d.c.Mail(from, opts, x)
}

func (d *downstream) rcpt(to string, opts *smtp.RcptOptions) error {
	defer d.sync()
	return d.c.Rcpt(to, opts)
}

func (d *downstream) data(header []byte, msg io.Reader, deadline time.Time) (string, error) {
	defer d.sync()
	return d.c.Data(header, msg, deadline)
}

func (d *downstream) reset() {
	defer d.sync()
	d.c.Reset()
}

func (d *downstream) close() {
	defer d.sync()
	d.c.Close()
}

// xforwardReplies are the downstream's answers to the XFORWARD commands in
// front of the last MAIL.
type xforwardReplies struct{ c *delivery.Conn }

type xforwardNote struct {
	cmd   string
	code  int
	reply string
}

// xforwardProblems returns XFORWARD replies that were not 250 (logged by
// the session; they never fail a message).
func (x xforwardReplies) xforwardProblems() []xforwardNote {
	var bad []xforwardNote
	for _, r := range x.c.XforwardProblems() {
		bad = append(bad, xforwardNote{cmd: r.Command, code: r.Code, reply: r.Reply})
	}
	return bad
}
