package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
)

// guardConn sits between a client's TCP connection and go-smtp's server,
// which reads and writes through it. go-smtp has no XFORWARD and no hook for
// raw commands, so the guard:
//
//   - hands go-smtp exactly one command line per Read. go-smtp answers each
//     command before it reads again, so when a Read comes the previous reply
//     has been written: the guard can answer XFORWARD itself, in order, even
//     when Postfix pipelines XFORWARD, MAIL, RCPT and DATA in one write;
//   - adds XFORWARD to the EHLO reply for trusted clients;
//   - follows DATA (by go-smtp's 354) and BDAT (by its size argument) so
//     message content is passed through as content and never read as
//     commands; a body line starting with "XFORWARD" stays body. DATA
//     content is read by the guard itself, for the session (content.go);
//   - notes bare CR, bare LF and NUL in message content (SMTP smuggling,
//     RFC 5321 §2.3.8) for the session to reject the message;
//   - bounds command line length and count, and enforces the idle and data
//     timeouts (go-smtp's own read timeout would cap a whole DATA transfer at
//     one command timeout);
//   - answers commands foxproxy does not know or offer itself, and turns
//     go-smtp's 502 for a command out of order into 503 (RFC 5321 §4.2.4,
//     §4.1.4): go-smtp gets only commands it implements.
type guardConn struct {
	net.Conn
	cfg guardConfig

	// rmu is held by every read of br (Read, and the content reader):
	// Close, from any goroutine, takes it to hand br back to readers
	// once no read can touch it any more, and sets it to nil.
	rmu sync.Mutex
	br  *bufio.Reader

	// Read side: touched only by go-smtp's connection goroutine.
	pending   []byte // rest of the command line being handed to go-smtp
	mode      readMode
	lastVerb  string // verb of the last line handed over, until settled
	lastArg   string
	content   contentState
	dataEnd   time.Time // deadline for the whole message content
	chunkLeft int64
	chunkLast bool
	commands  int

	// Write side.
	wmu       sync.Mutex
	lastCode  int // code of the last final reply line go-smtp wrote
	lineLen   int // bytes seen of the reply line being written
	lineHead  [4]byte
	ehloArmed bool // the reply being written answers EHLO: amend it
	ehloFirst bool // the first line of that reply has been written
	// outOfOrder replaces go-smtp's reply to the command it is answering
	// if that reply is 502: go-smtp's 502 to MAIL, RCPT, DATA and BDAT
	// always means a bad sequence of commands, which RFC 5321 §4.1.4 and
	// §4.2.4 answer with 503. go-smtp keeps the session state; the guard
	// only mends the code, and picks the text from what it tracks.
	outOfOrder *smtp.SMTPError

	// dataOffered is set while a DATA command is with go-smtp: a Data call
	// that sees it runs on the connection's goroutine (BDAT's runs on its
	// own) and may take the content from the guard.
	dataOffered atomic.Bool

	// Shared with the session and the server (under mu).
	mu      sync.Mutex
	xfwd    Xforward
	inTx    bool
	greeted bool // HELO or EHLO accepted
	rcpts   int  // RCPTs accepted in the transaction
	taint   taint
	prevCR  bool
	waiting bool // blocked reading a command line
	drain   bool
	closed  bool
	onClose func()
}

type guardConfig struct {
	trustedXforward bool
	maxLine         int
	maxCommands     int
	maxXforward     int
	// maxSize is the SIZE to advertise. go-smtp refuses a message of
	// exactly its own limit (its reader hits the limit before it sees the
	// final dot), so the server runs go-smtp one byte higher and the guard
	// advertises the real limit.
	maxSize        int64
	commandTimeout time.Duration
	dataTimeout    time.Duration
	now            func() time.Time
}

type readMode int

const (
	modeCommand readMode = iota
	modeData             // DATA content, read by the session through Content
	modeFakeEnd          // content consumed: go-smtp gets an empty message's ".\r\n"
	modeChunk            // BDAT chunk, read by go-smtp
)

// taint records what kind of line-ending abuse a message contained.
type taint struct {
	bareCR, bareLF, nul bool
}

func (t taint) any() bool { return t.bareCR || t.bareLF || t.nul }

func (t taint) String() string {
	var s []string
	if t.bareCR {
		s = append(s, "bare CR")
	}
	if t.bareLF {
		s = append(s, "bare LF")
	}
	if t.nul {
		s = append(s, "NUL")
	}
	return strings.Join(s, ", ")
}

// bufferSize is the guard's read buffer: large enough for fast DATA, and
// for the longest command line allowed.
func bufferSize(maxLine int) int {
	return max(64<<10, maxLine+2)
}

// readers are the guards' read buffers of the usual size, bufferSize(0),
// reused from one connection to the next: a new 64 KiB buffer for every
// session, allocated and zeroed, was 7% of foxproxy's CPU with a new
// session per message.
var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, bufferSize(0)) }}

func newGuardConn(c net.Conn, cfg guardConfig) *guardConn {
	if cfg.now == nil {
		cfg.now = time.Now
	}
	var br *bufio.Reader
	if bufferSize(cfg.maxLine) == bufferSize(0) {
		br = readers.Get().(*bufio.Reader)
		br.Reset(c)
	} else {
		br = bufio.NewReaderSize(c, bufferSize(cfg.maxLine))
	}
	return &guardConn{Conn: c, br: br, cfg: cfg}
}

// releaseReader hands br back once the connection is closed: reads in
// flight have ended (the socket is closed, so a blocked one returns), and
// later ones find no buffer and fail with net.ErrClosed.
func (g *guardConn) releaseReader() {
	g.rmu.Lock()
	defer g.rmu.Unlock()
	if g.br == nil {
		return
	}
	if g.br.Size() == bufferSize(0) {
		g.br.Reset(nil)
		readers.Put(g.br)
	}
	g.br = nil
}

// errGuardClosing ends go-smtp's session after the guard has answered
// (too many commands, shutdown). go-smtp treats io.EOF as a clean end.
var errGuardClosing = io.EOF

// Read implements net.Conn for go-smtp.
func (g *guardConn) Read(p []byte) (int, error) {
	g.rmu.Lock()
	defer g.rmu.Unlock()
	if g.br == nil {
		return 0, net.ErrClosed
	}
	if len(g.pending) > 0 {
		n := copy(p, g.pending)
		g.pending = g.pending[n:]
		return n, nil
	}
	g.settle()
	switch g.mode {
	case modeData:
		// The session did not read the whole content (it refused the
		// message early, or never asked): skip the rest, then let go-smtp
		// see the end of an empty message.
		if err := g.skipContent(); err != nil {
			return 0, err
		}
		fallthrough
	case modeFakeEnd:
		g.mode = modeCommand
		g.pending = []byte(".\r\n")
		n := copy(p, g.pending)
		g.pending = g.pending[n:]
		return n, nil
	case modeChunk:
		return g.readChunk(p)
	}
	for {
		line, err := g.readCommandLine()
		if err != nil {
			return 0, err
		}
		if line == nil {
			continue // answered by the guard (line too long)
		}
		g.commands++
		if g.commands > g.cfg.maxCommands {
			g.writeReply(replyTooManyCommands)
			return 0, errGuardClosing
		}
		if arg, ok := xforwardCommand(line); ok {
			g.handleXforward(arg)
			continue
		}
		if r := commandRefusal(line); r != nil {
			g.writeReply(r)
			continue
		}
		verb, arg := commandVerb(line)
		g.lastVerb, g.lastArg = verb, arg
		switch verb {
		case "MAIL", "RCPT", "DATA", "BDAT":
			r := g.outOfOrderReply(verb)
			g.wmu.Lock()
			g.outOfOrder = r
			g.wmu.Unlock()
		}
		switch verb {
		case "DATA":
			g.dataOffered.Store(true)
		case "EHLO":
			g.wmu.Lock()
			g.ehloArmed = true
			g.wmu.Unlock()
		case "MAIL":
			g.mu.Lock()
			g.taint, g.prevCR = taint{}, false
			g.mu.Unlock()
		}
		n := copy(p, line)
		g.pending = line[n:]
		return n, nil
	}
}

// settle applies the outcome of the last command handed to go-smtp, now
// that go-smtp has answered it and wants to read again.
func (g *guardConn) settle() {
	verb, arg := g.lastVerb, g.lastArg
	if verb == "" {
		return
	}
	g.lastVerb, g.lastArg = "", ""
	g.wmu.Lock()
	code := g.lastCode
	g.ehloArmed = false
	g.wmu.Unlock()
	switch verb {
	case "MAIL":
		if code == 250 {
			g.mu.Lock()
			g.inTx = true
			g.mu.Unlock()
		}
	case "RCPT":
		if code == 250 {
			g.mu.Lock()
			g.rcpts++
			g.mu.Unlock()
		}
	case "RSET":
		g.endTransaction()
	case "HELO", "EHLO":
		// go-smtp resets the session for a greeting it accepts, and only
		// then (a HELO without a domain changes nothing).
		if code == 250 {
			g.mu.Lock()
			g.greeted = true
			g.mu.Unlock()
			g.endTransaction()
		}
	case "DATA":
		g.dataOffered.Store(false)
		if code == 354 {
			g.mode = modeData
			g.content = contentState{state: csStart}
			g.dataEnd = g.cfg.now().Add(g.cfg.dataTimeout)
		}
	case "BDAT":
		// go-smtp reads the chunk whenever the arguments parse, also when
		// it rejects the command (RFC 3030 §2: the chunk must be consumed).
		size, last, ok := parseBdat(arg)
		if !ok {
			return
		}
		g.chunkLeft, g.chunkLast = size, last
		g.dataEnd = g.cfg.now().Add(g.cfg.dataTimeout)
		g.mode = modeChunk
		if size == 0 {
			g.finishChunk()
		}
	}
}

func (g *guardConn) endTransaction() {
	g.mu.Lock()
	g.inTx = false
	g.rcpts = 0
	g.xfwd = Xforward{} // XFORWARD attributes last one transaction (XFORWARD_README)
	g.mu.Unlock()
}

// readCommandLine returns one line including its terminator, or nil after
// answering a line that was too long.
func (g *guardConn) readCommandLine() ([]byte, error) {
	g.mu.Lock()
	if g.drain && !g.inTx {
		g.mu.Unlock()
		g.writeReply(replyShuttingDown)
		return nil, errGuardClosing
	}
	// Set the deadline under mu so a concurrent interruptIdle cannot be
	// overwritten by it.
	g.Conn.SetReadDeadline(g.cfg.now().Add(g.cfg.commandTimeout))
	g.waiting = true
	g.mu.Unlock()

	line, err := g.br.ReadSlice('\n')

	g.mu.Lock()
	g.waiting = false
	draining := g.drain
	g.mu.Unlock()

	if err == nil && len(line) <= g.cfg.maxLine {
		return bytes.Clone(line), nil
	}
	if err == nil || errors.Is(err, bufio.ErrBufferFull) {
		// Too long: skip to the end of the line, answer, carry on.
		for errors.Is(err, bufio.ErrBufferFull) {
			_, err = g.br.ReadSlice('\n')
		}
		if err != nil {
			return nil, err
		}
		g.writeReply(replyLineTooLong)
		return nil, nil
	}
	var ne net.Error
	if draining && errors.As(err, &ne) && ne.Timeout() {
		g.writeReply(replyShuttingDown)
		return nil, errGuardClosing
	}
	if err == io.EOF && len(line) > 0 {
		// A last line without a terminator is still a command to go-smtp's
		// textproto reader; the connection is closing anyway.
		return bytes.Clone(line), nil
	}
	return nil, err
}

// commandRefusal is the guard's own reply to a command line go-smtp should
// not see, or nil. go-smtp answers an unknown command with 500 only when its
// word has four letters (501 otherwise), answers commands it does not
// implement with 502 only for some, and closes the connection after the
// fourth such error, while RFC 5321 §4.2.4 asks for 500 and 502 and for the
// session to go on. The guard's command count still bounds a session.
func commandRefusal(line []byte) *smtp.SMTPError {
	s := strings.TrimRight(string(line), "\r\n")
	if s == "" {
		return replyEmptyCommand
	}
	word, _, _ := strings.Cut(s, " ")
	switch strings.ToUpper(word) {
	case "HELO", "EHLO", "MAIL", "RCPT", "DATA", "BDAT", "RSET", "NOOP", "QUIT", "VRFY", "STARTTLS":
		if verb, _ := commandVerb(line); verb == "" {
			// Only "VERB " with nothing after the space gets here:
			// go-smtp cannot split it.
			return replyParameterSyntax
		}
		return nil
	case "SEND", "SOML", "SAML", "EXPN", "HELP", "TURN", "ETRN", "ATRN",
		"AUTH": // foxproxy offers no AUTH: its clients are trusted by address
		return replyNotImplemented
	}
	return replyUnknownCommand
}

// outOfOrderReply is the reply that replaces go-smtp's 502 to verb, should
// it say that: its text says what the client should have sent first.
func (g *guardConn) outOfOrderReply(verb string) *smtp.SMTPError {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case verb == "MAIL" && !g.greeted:
		return replyNeedHelo
	case verb != "MAIL" && !g.inTx:
		return errNoTransaction
	case (verb == "DATA" || verb == "BDAT") && g.rcpts == 0:
		return replyNeedRcpt
	}
	return replyBadSequence // e.g. MAIL or DATA while BDAT chunks are coming
}

// xforwardCommand recognises an XFORWARD command line.
func xforwardCommand(line []byte) (string, bool) {
	s := strings.TrimRight(string(line), "\r\n")
	if len(s) < 8 || !strings.EqualFold(s[:8], "XFORWARD") {
		return "", false
	}
	if len(s) == 8 {
		return "", true
	}
	if s[8] != ' ' {
		return "", false
	}
	return s[9:], true
}

// commandVerb splits a command line exactly the way go-smtp's parseCmd does,
// so the guard and go-smtp always agree on what a line is.
func commandVerb(line []byte) (verb, arg string) {
	s := strings.TrimRight(string(line), "\r\n")
	switch {
	case len(s) >= 8 && strings.EqualFold(s[:8], "STARTTLS"):
		return "STARTTLS", ""
	case len(s) < 4 || len(s) == 5:
		return "", ""
	case len(s) == 4:
		return strings.ToUpper(s), ""
	case s[4] != ' ':
		return "", ""
	}
	return strings.ToUpper(s[:4]), strings.TrimSpace(s[5:])
}

// parseBdat mirrors go-smtp's BDAT argument checks.
func parseBdat(arg string) (size int64, last, ok bool) {
	f := strings.Fields(arg)
	if len(f) == 0 || len(f) > 2 {
		return 0, false, false
	}
	if len(f) == 2 {
		if !strings.EqualFold(f[1], "LAST") {
			return 0, false, false
		}
		last = true
	}
	n, err := strconv.ParseUint(f[0], 10, 32)
	if err != nil {
		return 0, false, false
	}
	return int64(n), last, true
}

func (g *guardConn) handleXforward(arg string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case !g.cfg.trustedXforward:
		g.writeReply(replyXforwardForbidden)
	case g.inTx:
		g.writeReply(replyXforwardInTx)
	default:
		if err := parseXforward(arg, g.cfg.maxXforward, &g.xfwd); err != nil {
			g.writeReply(replyXforwardSyntax(err.Error()))
			return
		}
		g.writeReply(replyXforwardOK)
	}
}

// fill makes sure some content is buffered, with the data deadline.
func (g *guardConn) fill() error {
	if g.br.Buffered() > 0 {
		return nil
	}
	// Each read must make progress within the command timeout, and the
	// whole content must arrive within the data timeout: a client trickling
	// a byte at a time is bounded by the latter.
	d := g.cfg.now().Add(g.cfg.commandTimeout)
	if g.dataEnd.Before(d) {
		d = g.dataEnd
	}
	g.Conn.SetReadDeadline(d)
	_, err := g.br.Peek(1)
	return err
}

func (g *guardConn) readChunk(p []byte) (int, error) {
	if err := g.fill(); err != nil {
		return 0, err
	}
	n := int(min(int64(len(p)), int64(g.br.Buffered()), g.chunkLeft))
	buf, _ := g.br.Peek(n)
	g.scanContent(buf, false)
	copy(p, buf)
	g.br.Discard(n)
	g.chunkLeft -= int64(n)
	if g.chunkLeft == 0 {
		g.finishChunk()
	}
	return n, nil
}

func (g *guardConn) finishChunk() {
	g.mode = modeCommand
	if g.chunkLast {
		g.scanContent(nil, true)
		g.endTransaction()
	}
}

// scanContent notes bare CR, bare LF and NUL in message content; end says
// the content is complete (a CR at the very end is bare).
func (g *guardConn) scanContent(b []byte, end bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	prevCR := g.prevCR
	for _, c := range b {
		switch {
		case prevCR && c != '\n':
			g.taint.bareCR = true
		case c == '\n' && !prevCR:
			g.taint.bareLF = true
		}
		if c == 0 {
			g.taint.nul = true
		}
		prevCR = c == '\r'
	}
	if end && prevCR {
		g.taint.bareCR = true
	}
	g.prevCR = prevCR
}

// Write implements net.Conn for go-smtp's replies. It remembers the code of
// the last complete reply and amends the EHLO reply: the XFORWARD capability
// after its first line (for trusted clients) and the real SIZE limit.
func (g *guardConn) Write(b []byte) (int, error) {
	g.wmu.Lock()
	defer g.wmu.Unlock()
	written := 0
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			g.track(b)
			n, err := g.Conn.Write(b)
			return written + n, err
		}
		line := b[:i+1]
		g.track(line[:len(line)-1])
		code, final := g.lineCode()
		g.lineLen = 0
		out := line
		var extra string
		if g.ehloArmed && code == 250 {
			if !g.ehloFirst && !final {
				g.ehloFirst = true
				if g.cfg.trustedXforward {
					extra = "250-XFORWARD " + strings.Join(xforwardAttrs, " ") + "\r\n"
				}
			} else if g.cfg.maxSize > 0 && len(line) > 9 && string(line[4:9]) == "SIZE " {
				out = []byte(fmt.Sprintf("%s SIZE %d\r\n", line[:3], g.cfg.maxSize))
				out[3] = line[3]
			}
		}
		if final {
			if code == 502 && g.outOfOrder != nil {
				// go-smtp writes each reply in one Write (textproto
				// flushes a whole reply), so the line is here in full.
				out = []byte(formatReply(g.outOfOrder))
				code = g.outOfOrder.Code
			}
			g.outOfOrder = nil
			g.lastCode = code
			g.ehloArmed, g.ehloFirst = false, false
		}
		if _, err := g.Conn.Write(out); err != nil {
			return written, err
		}
		written += len(line)
		if extra != "" {
			if _, err := g.Conn.Write([]byte(extra)); err != nil {
				return written, err
			}
		}
		b = b[i+1:]
	}
	return written, nil
}

func (g *guardConn) track(b []byte) {
	for _, c := range b {
		if g.lineLen < 4 {
			g.lineHead[g.lineLen] = c
		}
		g.lineLen++
	}
}

func (g *guardConn) lineCode() (int, bool) {
	if g.lineLen < 3 {
		return 0, false
	}
	code, err := strconv.Atoi(string(g.lineHead[:3]))
	if err != nil {
		return 0, false
	}
	return code, g.lineLen == 3 || g.lineHead[3] == ' '
}

// writeReply writes one of the guard's own replies.
func (g *guardConn) writeReply(r *smtp.SMTPError) {
	g.wmu.Lock()
	defer g.wmu.Unlock()
	g.Conn.SetWriteDeadline(g.cfg.now().Add(g.cfg.commandTimeout))
	g.Conn.Write([]byte(formatReply(r)))
}

// Xforward returns the XFORWARD attributes of the current transaction.
func (g *guardConn) Xforward() Xforward {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.xfwd
}

// Taint returns the line-ending abuse seen in the current message.
func (g *guardConn) Taint() taint {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.taint
}

// interruptIdle starts the shutdown of this connection: a client waiting
// between transactions is told 421 at once; one in a transaction finishes it
// and is told 421 at its next command.
func (g *guardConn) interruptIdle() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.drain = true
	if g.waiting && !g.inTx {
		g.Conn.SetReadDeadline(time.Unix(1, 0))
	}
}

// Close implements net.Conn.
func (g *guardConn) Close() error {
	g.mu.Lock()
	first := !g.closed
	g.closed = true
	onClose := g.onClose
	g.mu.Unlock()
	err := g.Conn.Close()
	g.releaseReader()
	if first && onClose != nil {
		onClose()
	}
	return err
}
