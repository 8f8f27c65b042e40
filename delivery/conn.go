package delivery

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// Conn is one SMTP connection to the re-injection smtpd (the downstream),
// used for one transaction after another: those of one upstream session,
// or one re-injection.
//
// go-smtp's client has no XFORWARD and always sends BODY=8BITMIME when the
// server offers 8BITMIME. dsConn, under the client, fixes both without
// touching the client's state: it sends the XFORWARD commands in front of
// the client's MAIL command and consumes their replies before the client
// reads its own, and it rewrites BODY to what the upstream client sent.
type Conn struct {
	client    *smtp.Client
	conn      *dsConn
	bw        *bufio.Writer // content writer, reused across messages
	xfwdAttrs map[string]bool
	opts      DialOptions // what it was dialled with: a Pool reuses it only for the same
	txActive  bool        // a MAIL was accepted and not yet finished or reset
	broken    bool        // a network error or 421 happened: don't reuse
	// clean: the last transaction ended with a positive reply (250 to the
	// final dot or to RSET), or none was started. Only a clean connection
	// goes back to a Pool.
	clean bool
	// needRset: a Pool handed the connection out again; the next Mail
	// sends RSET first and wants 250 for it.
	needRset bool
}

// DialOptions say where Dial connects and how long each step may take.
type DialOptions struct {
	Addr     string // host:port of the downstream
	Hostname string // EHLO name
	// ConnectTimeout bounds connecting, the greeting and the EHLO reply;
	// CommandTimeout each later command's reply; DataTimeout sending a
	// message and its final reply.
	ConnectTimeout, CommandTimeout, DataTimeout time.Duration
}

// Dial connects and greets the downstream. An error (a 4xx or 5xx
// greeting or EHLO reply included) refuses the connection, not a message.
func Dial(ctx context.Context, o DialOptions) (*Conn, error) {
	d := net.Dialer{Timeout: o.ConnectTimeout}
	nc, err := d.DialContext(ctx, "tcp", o.Addr)
	if err != nil {
		return nil, err
	}
	conn := &dsConn{Conn: nc, br: bufio.NewReader(nc), commandTimeout: o.CommandTimeout, peek: newPeeker(nc)}
	c := smtp.NewClient(conn)
	// The greeting and the EHLO reply are part of connecting
	// (timeouts.downstream_connect); go-smtp waits CommandTimeout for them.
	c.CommandTimeout = o.ConnectTimeout
	c.SubmissionTimeout = o.DataTimeout
	if err := c.Hello(o.Hostname); err != nil {
		c.Close()
		return nil, err
	}
	c.CommandTimeout = o.CommandTimeout
	ds := &Conn{client: c, conn: conn, xfwdAttrs: map[string]bool{}, opts: o, clean: true}
	if ok, attrs := c.Extension("XFORWARD"); ok {
		for _, a := range strings.Fields(strings.ToUpper(attrs)) {
			ds.xfwdAttrs[a] = true
		}
	}
	conn.pipelining, _ = c.Extension("PIPELINING")
	conn.eightBit, _ = c.Extension("8BITMIME")
	return ds, nil
}

// Broken reports whether the connection is unusable: a network error, a
// timeout or a 421 happened.
func (d *Conn) Broken() bool { return d.broken }

// InTransaction reports whether a MAIL was accepted and the transaction
// is neither finished nor reset.
func (d *Conn) InTransaction() bool { return d.txActive }

// Mail starts a transaction: RSET when a Pool handed the connection out
// again, XFORWARD (when the downstream supports it), then MAIL with the
// upstream's parameters unchanged. A reply to RSET other than 250 fails it
// with an error that is no *smtp.SMTPError, and the connection is broken.
func (d *Conn) Mail(from string, opts *smtp.MailOptions, x Xforward) error {
	d.clean = false
	d.conn.prepare(d.needRset, XforwardCommands(x, d.xfwdAttrs), opts.Body)
	d.needRset = false
	err := d.client.Mail(from, opts)
	d.conn.clearPrelude()
	if err == nil {
		d.txActive = true
	}
	return d.note(err)
}

// Rcpt adds a recipient with its DSN parameters.
func (d *Conn) Rcpt(to string, opts *smtp.RcptOptions) error {
	return d.note(d.client.Rcpt(to, opts))
}

// Data sends header (foxproxy's added header lines) followed by the message
// and returns the downstream's final reply text.
//
// The content goes through a dotStuffer straight to the connection, not
// through go-smtp's DotWriter, which handles a byte at a time (15% of
// foxproxy's CPU on 10 KB messages). Only the final CRLF goes through the
// DotWriter, so its Close adds just the ".\r\n".
func (d *Conn) Data(header []byte, msg io.Reader, deadline time.Time) (string, error) {
	w, err := d.client.Data()
	if err != nil {
		return "", d.note(err)
	}
	if d.bw == nil {
		d.bw = bufio.NewWriterSize(d.conn, 32<<10)
	}
	d.conn.SetWriteDeadline(deadline)
	st := dotStuffer{w: d.bw, start: true}
	if _, err := st.Write(header); err != nil {
		d.broken = true
		return "", err
	}
	bp := copyBufs.Get().(*[]byte)
	_, err = io.CopyBuffer(&st, msg, *bp)
	copyBufs.Put(bp)
	if err != nil {
		d.broken = true
		return "", err
	}
	if err := st.finish(w); err != nil {
		d.broken = true
		return "", err
	}
	resp, err := w.CloseWithResponse()
	d.txActive = false
	if err != nil {
		return "", d.note(err)
	}
	d.clean = true
	return resp.StatusText, nil
}

// Reset abandons the current transaction, if any.
func (d *Conn) Reset() {
	if !d.txActive || d.broken {
		return
	}
	d.txActive = false
	if err := d.rset(d.opts.CommandTimeout); err != nil {
		d.broken = true
		return
	}
	d.clean = true
}

// rset sends RSET and wants 250 within timeout. It is sent on the
// connection under go-smtp's client, not with the client's Reset, which
// makes the client say EHLO again before the next MAIL: a round trip per
// transaction for nothing, since RSET leaves the EHLO state alone
// (RFC 5321 §4.1.1.5).
//
// A connection that answered nothing yet but its downstream closed (or
// that has a reply nobody asked for waiting, such as a 421) is not alive.
func (d *Conn) rset(timeout time.Duration) error {
	code, text, err := d.conn.command("RSET", timeout)
	if err != nil {
		return err
	}
	if code != 250 {
		return &smtp.SMTPError{Code: code, Message: text}
	}
	return nil
}

// closedByPeer reports whether the downstream has closed the idle
// connection or said something unasked (the 421 of Postfix's smtpd at
// smtpd_timeout): either is waiting to be read. It looks without reading
// and without sending anything.
func (d *Conn) closedByPeer() bool {
	if d.conn.br.Buffered() > 0 {
		return true
	}
	return d.conn.peek.closed()
}

// Reusable reports whether the connection may carry another transaction
// for someone else: not broken, no transaction open, and the last one
// ended cleanly.
func (d *Conn) Reusable() bool { return !d.broken && !d.txActive && d.clean }

// Abort closes the connection's socket at once, from any goroutine, even
// while another one uses the connection: the downstream drops a message it
// has not received completely, and every later use of the connection
// fails (and marks it broken).
func (d *Conn) Abort() { d.conn.Conn.Close() }

// discard closes the connection without QUIT: it is dead or in an unknown
// state.
func (d *Conn) discard() {
	d.broken = true
	d.client.Close()
}

// Close ends the connection politely (QUIT) when it is still usable.
func (d *Conn) Close() {
	if !d.broken {
		d.conn.SetDeadline(time.Now().Add(5 * time.Second))
		d.client.Quit()
	}
	d.client.Close()
}

// note marks the connection unusable after an error that leaves its state
// unknown: anything but an ordinary 4xx/5xx reply, and 421 (the server is
// closing the channel).
func (d *Conn) note(err error) error {
	var se *smtp.SMTPError
	if err != nil && (!errors.As(err, &se) || se.Code == 421) {
		d.broken = true
	}
	return err
}

// copyBufs are the buffers message content is copied through on its way
// to the downstream.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// dsConn is the downstream connection under go-smtp's client.
type dsConn struct {
	net.Conn
	br         *bufio.Reader
	pipelining bool
	eightBit   bool

	mu      sync.Mutex
	armed   bool            // prepare was called for the next MAIL
	rset    bool            // send RSET before that MAIL (a reused connection)
	prelude []string        // XFORWARD commands to send before that MAIL
	body    smtp.BodyType   // the upstream's BODY value for that MAIL
	swallow int             // XFORWARD replies to consume before the client's own
	replies []XforwardReply // what the downstream said to the prelude
	// rsetPending: the reply to a pipelined RSET is still to be read, by
	// rsetDeadline; then the read deadline goes back to readDeadline.
	rsetPending                bool
	rsetDeadline, readDeadline time.Time
	commandTimeout             time.Duration
	peek                       *peeker // for closedByPeer
}

// XforwardReply is the downstream's reply to one XFORWARD command.
type XforwardReply struct {
	Command string
	Code    int
	Reply   string
}

func (c *dsConn) prepare(rset bool, prelude []string, body smtp.BodyType) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.armed, c.rset, c.prelude, c.body, c.replies = true, rset, prelude, body, nil
}

func (c *dsConn) clearPrelude() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.armed, c.rset, c.prelude = false, false, nil
}

// XforwardProblems returns the replies to the last MAIL's XFORWARD
// commands that were not 250. They never fail a message: the downstream's
// log then names foxproxy as the client.
func (d *Conn) XforwardProblems() []XforwardReply {
	c := d.conn
	c.mu.Lock()
	defer c.mu.Unlock()
	var bad []XforwardReply
	for _, r := range c.replies {
		if r.Code != 250 {
			bad = append(bad, r)
		}
	}
	return bad
}

var mailPrefix = []byte("MAIL FROM:")

func (c *dsConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.armed || !bytes.HasPrefix(b, mailPrefix) {
		return c.Conn.Write(b)
	}
	line := rewriteBody(b, c.body, c.eightBit)
	rset, prelude := c.rset, c.prelude
	c.armed, c.rset, c.prelude = false, false, nil
	if c.pipelining {
		// RFC 2920 §3.1 lets RSET and XFORWARD go in one group with
		// MAIL: a reused connection costs no extra round trip. Read
		// checks the RSET reply before the client sees MAIL's.
		var out bytes.Buffer
		if rset {
			out.WriteString("RSET\r\n")
			now := time.Now()
			c.rsetPending = true
			c.rsetDeadline = now.Add(min(rsetTimeout, c.commandTimeout))
			c.readDeadline = now.Add(c.commandTimeout) // what go-smtp's client set
		}
		for _, p := range prelude {
			out.WriteString(p + "\r\n")
			c.replies = append(c.replies, XforwardReply{Command: p})
		}
		out.Write(line)
		c.swallow = len(prelude)
		if _, err := c.Conn.Write(out.Bytes()); err != nil {
			return 0, err
		}
		return len(b), nil
	}
	if rset {
		if err := c.rsetNow(); err != nil {
			return 0, err
		}
	}
	for _, p := range prelude {
		if _, err := c.Conn.Write([]byte(p + "\r\n")); err != nil {
			return 0, err
		}
		code, text, err := c.readReply()
		if err != nil {
			return 0, err
		}
		c.replies = append(c.replies, XforwardReply{Command: p, Code: code, Reply: text})
	}
	if _, err := c.Conn.Write(line); err != nil {
		return 0, err
	}
	return len(b), nil
}

// rsetNow sends RSET and wants 250, for a downstream without PIPELINING.
func (c *dsConn) rsetNow() error {
	c.Conn.SetReadDeadline(time.Now().Add(min(rsetTimeout, c.commandTimeout)))
	defer c.Conn.SetReadDeadline(time.Now().Add(c.commandTimeout))
	if _, err := c.Conn.Write([]byte("RSET\r\n")); err != nil {
		return err
	}
	return c.rsetReply()
}

// rsetReply reads the reply to RSET: anything but 250 is an error that is
// no SMTP reply of the transaction, so the connection counts as broken and
// the caller dials afresh (the MAIL sent behind a pipelined RSET is
// abandoned with the connection; nothing of the message was sent).
func (c *dsConn) rsetReply() error {
	code, text, err := c.readReply()
	if err != nil {
		return fmt.Errorf("downstream: RSET before reusing the connection: %w", err)
	}
	if code != 250 {
		return fmt.Errorf("downstream: RSET before reusing the connection: %d %s", code, truncate(text, 200))
	}
	return nil
}

func (c *dsConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	if c.rsetPending {
		c.rsetPending = false
		c.Conn.SetReadDeadline(c.rsetDeadline)
		err := c.rsetReply()
		c.Conn.SetReadDeadline(c.readDeadline)
		if err != nil {
			c.swallow = 0
			c.mu.Unlock()
			return 0, err
		}
	}
	for c.swallow > 0 {
		code, text, err := c.readReply()
		if err != nil {
			c.mu.Unlock()
			return 0, err
		}
		i := len(c.replies) - c.swallow
		c.replies[i].Code, c.replies[i].Reply = code, text
		c.swallow--
	}
	c.mu.Unlock()
	return c.br.Read(p)
}

// command sends one command line and reads its reply within timeout.
func (c *dsConn) command(line string, timeout time.Duration) (int, string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.Conn.SetDeadline(time.Now().Add(timeout))
	defer c.Conn.SetDeadline(time.Time{})
	if _, err := c.Conn.Write([]byte(line + "\r\n")); err != nil {
		return 0, "", fmt.Errorf("downstream: sending %s: %w", line, err)
	}
	return c.readReply()
}

// readReply reads one complete (possibly multi-line) reply.
// A reply is at most maxReplyLines lines, each within the read buffer
// (4 KiB): RFC 5321 §4.5.3.1.5 allows 512 bytes a line.
const maxReplyLines = 100

func (c *dsConn) readReply() (int, string, error) {
	var text []string
	for range maxReplyLines {
		line, err := c.br.ReadSlice('\n')
		if err != nil {
			return 0, "", fmt.Errorf("downstream: reading a reply: %w", err)
		}
		l := strings.TrimRight(string(line), "\r\n")
		code, err := strconv.Atoi(l[:min(3, len(l))])
		if len(l) < 3 || err != nil || (len(l) > 3 && l[3] != ' ' && l[3] != '-') {
			return 0, "", fmt.Errorf("downstream: malformed reply line %q", truncate(l, 80))
		}
		if len(l) > 4 {
			text = append(text, l[4:])
		}
		if len(l) == 3 || l[3] == ' ' {
			return code, strings.Join(text, "\n"), nil
		}
	}
	return 0, "", fmt.Errorf("downstream: reply longer than %d lines", maxReplyLines)
}

// rewriteBody makes the MAIL command carry the upstream's BODY parameter:
// go-smtp's client adds BODY=8BITMIME whenever the server offers 8BITMIME.
func rewriteBody(line []byte, body smtp.BodyType, eightBit bool) []byte {
	if !eightBit {
		return line
	}
	const added = " BODY=8BITMIME"
	i := bytes.Index(line, []byte(added))
	if i < 0 {
		return line
	}
	var out []byte
	out = append(out, line[:i]...)
	if body != "" {
		out = append(out, " BODY="+string(body)...)
	}
	return append(out, line[i+len(added):]...)
}

// dotStuffer writes message content with RFC 5321 §4.5.2 dot-stuffing. The
// content's lines end in CRLF (the guard refuses anything else), so a line
// starts after each LF. The last two bytes are held back: finish sends a
// final CRLF through go-smtp's DotWriter (whose Close then writes ".\r\n"),
// or, for content without one, writes them here and lets Close add the CRLF.
type dotStuffer struct {
	w     *bufio.Writer
	start bool // at the start of a line
	tail  [2]byte
	nt    int
}

func (s *dotStuffer) Write(p []byte) (int, error) {
	n := len(p)
	if len(p) < 2 {
		for _, c := range p {
			if s.nt == 2 {
				if err := s.stuff(s.tail[:1]); err != nil {
					return 0, err
				}
				s.tail[0] = s.tail[1]
				s.nt = 1
			}
			s.tail[s.nt] = c
			s.nt++
		}
		return n, nil
	}
	if err := s.stuff(s.tail[:s.nt]); err != nil {
		return 0, err
	}
	if err := s.stuff(p[:len(p)-2]); err != nil {
		return 0, err
	}
	s.nt = copy(s.tail[:], p[len(p)-2:])
	return n, nil
}

func (s *dotStuffer) stuff(b []byte) error {
	for len(b) > 0 {
		if s.start && b[0] == '.' {
			s.w.WriteByte('.')
		}
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			s.start = false
			_, err := s.w.Write(b)
			return err
		}
		if _, err := s.w.Write(b[:i+1]); err != nil {
			return err
		}
		s.start = true
		b = b[i+1:]
	}
	return nil
}

// finish writes what was held back and flushes; dot is go-smtp's DotWriter,
// still in its initial state.
func (s *dotStuffer) finish(dot io.Writer) error {
	if s.nt == 2 && s.tail == [2]byte{'\r', '\n'} {
		if err := s.w.Flush(); err != nil {
			return err
		}
		_, err := dot.Write(s.tail[:])
		return err
	}
	if err := s.stuff(s.tail[:s.nt]); err != nil {
		return err
	}
	return s.w.Flush()
}
