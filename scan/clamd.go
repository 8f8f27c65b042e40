package scan

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Clamd is a Scanner backed by a ClamAV daemon (clamd(8), "COMMANDS").
//
// A scan sends zINSTREAM: the message in chunks, each prefixed with its
// length as a 4-byte big-endian integer, ended by a zero-length chunk; clamd
// answers with one NUL-terminated line. The reply is read concurrently with
// the upload, because clamd answers "INSTREAM size limit exceeded. ERROR"
// and closes as soon as its StreamMaxLength is passed, mid-upload.
//
// Connections are reused through clamd sessions (zIDSESSION): replies then
// carry the request's number ("3: stream: OK"), which is checked. One
// request is in flight per session, so clamd's replies cannot come out of
// order. A session is given up after any reply other than OK or FOUND
// (clamd ends the session on errors), and dropped when idle longer than
// Options.IdleTimeout (default 10s, below clamd's own IdleTimeout of 30s).
// A session found dead on reuse is replaced, and the request repeated when
// no more of the message than its first chunk had been read.
// BenchmarkClamdSession measured a 4 KB mail at 0.51 ms in a session
// against 0.76 ms with a connection per scan (medians of 8 runs, 2-CPU
// host): a third of clamd's cost for small mail, nothing measurable at
// 1 MB (7.3 ms). MaxIdle < 0 turns sessions off.
type Clamd struct {
	network, addr string
	name          string
	opts          Options
	lim           *limiter

	pool idlePool[*clamdConn]
}

// clamdConn is a connection to clamd, in a session once id > 0.
type clamdConn struct {
	net.Conn
	br     *bufio.Reader
	id     int // number of the last request sent in the session
	reused bool
}

var _ Scanner = (*Clamd)(nil)

// clamdChunk is the size of the INSTREAM chunks sent.
const clamdChunk = 64 << 10

// clamdMaxReply bounds a clamd reply line.
const clamdMaxReply = 4096

// chunkPool holds the upload buffers: a chunk and its framing.
var chunkPool = sync.Pool{New: func() any {
	b := make([]byte, clamdChunk+16)
	return &b
}}

// NewClamd returns a clamd backend. address is "tcp://host:port",
// "unix:/path/to/clamd.ctl", "host:port" or an absolute socket path.
func NewClamd(address string, opts Options) (*Clamd, error) {
	network, addr, err := parseClamdAddress(address)
	if err != nil {
		return nil, err
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 10 * time.Second
	}
	opts = opts.withDefaults()
	name := "clamd tcp://" + addr
	if network == "unix" {
		name = "clamd unix:" + addr
	}
	return &Clamd{network: network, addr: addr, name: name, opts: opts, lim: newLimiter(opts.MaxConcurrent)}, nil
}

func parseClamdAddress(a string) (network, addr string, err error) {
	switch {
	case strings.HasPrefix(a, "tcp://"):
		network, addr = "tcp", strings.TrimPrefix(a, "tcp://")
	case strings.HasPrefix(a, "unix://"):
		network, addr = "unix", strings.TrimPrefix(a, "unix://")
	case strings.HasPrefix(a, "unix:"):
		network, addr = "unix", strings.TrimPrefix(a, "unix:")
	case strings.HasPrefix(a, "/"):
		network, addr = "unix", a
	default:
		network, addr = "tcp", a
	}
	if network == "unix" {
		if !strings.HasPrefix(addr, "/") {
			return "", "", fmt.Errorf("clamd address %q: unix socket path must be absolute", a)
		}
		return network, addr, nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" || port == "" {
		return "", "", fmt.Errorf("clamd address %q: want tcp://host:port, host:port or unix:/path", a)
	}
	return network, addr, nil
}

// Name implements Scanner.
func (c *Clamd) Name() string { return c.name }

// Ping implements Scanner: zPING must be answered with PONG (and, with
// Options.PingTestVirus, the EICAR test file must be found).
func (c *Clamd) Ping(ctx context.Context) error {
	reply, err := c.command(ctx, "zPING\x00")
	if err != nil {
		return err
	}
	if reply != "PONG" {
		return newErr(c.name, ErrProtocol, nil, "PING answered %q", clip(reply))
	}
	if c.opts.PingTestVirus {
		return pingTestVirus(ctx, c.name, c.Scan)
	}
	return nil
}

// Version returns clamd's zVERSION reply, e.g. "ClamAV 1.4.6" or
// "ClamAV 1.4.6/27000/Tue Nov 24 08:00:00 2026" with an official database.
func (c *Clamd) Version(ctx context.Context) (string, error) {
	return c.command(ctx, "zVERSION\x00")
}

// command sends one z-command without data and returns its reply.
func (c *Clamd) command(ctx context.Context, cmd string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	conn, err := dial(ctx, c.opts, c.network, c.addr)
	if err != nil {
		return "", ioErr(c.name, ctx, err, "connect")
	}
	defer conn.Close()
	unbind := bindConn(ctx, conn)
	defer unbind()
	if _, err := io.WriteString(conn, cmd); err != nil {
		return "", ioErr(c.name, ctx, err, "send")
	}
	reply, err := readClamdReply(bufio.NewReaderSize(conn, 256))
	if err != nil {
		return "", ioErr(c.name, ctx, err, "read reply")
	}
	return reply, nil
}

// sourceError marks a failure to read the message itself, as opposed to a
// failure of the scanner.
type sourceError struct{ err error }

func (e sourceError) Error() string { return "reading message: " + e.err.Error() }
func (e sourceError) Unwrap() error { return e.err }

// Scan implements Scanner with zINSTREAM.
func (c *Clamd) Scan(ctx context.Context, r io.Reader, size int64) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	if err := c.lim.acquire(ctx); err != nil {
		return Result{}, newErr(c.name, ErrUnavailable, err, "waiting for a free scan slot")
	}
	defer c.lim.release()

	// Read the first chunk before taking a connection, so that a request
	// on a session found dead can be sent again.
	bp := chunkPool.Get().(*[]byte)
	defer chunkPool.Put(bp)
	first, eof, err := readHead(r, (*bp)[:clamdFirst])
	if err != nil {
		return Result{}, newErr(c.name, ErrScanFailed, err, "reading message")
	}
	for attempt := 0; ; attempt++ {
		cc, err := c.getConn(ctx)
		if err != nil {
			return Result{}, ioErr(c.name, ctx, err, "connect")
		}
		res, retry, err := c.instream(ctx, cc, first, eof, r)
		if retry && attempt == 0 && ctx.Err() == nil {
			continue
		}
		return res, err
	}
}

// clamdFirst is the size of the first chunk, which leaves room in one
// chunkPool buffer for the IDSESSION and INSTREAM commands, the chunk's
// length and the terminator.
const clamdFirst = clamdChunk - 32

// instream runs one zINSTREAM on cc and gives cc back to the pool or closes
// it. retry is true when cc was a reused session that turned out dead
// before clamd answered and the request can be sent again as it was.
func (c *Clamd) instream(ctx context.Context, cc *clamdConn, first []byte, eof bool, rest io.Reader) (res Result, retry bool, err error) {
	unbind := bindConn(ctx, cc.Conn)
	reusable := false
	defer func() {
		if unbind() && reusable {
			c.putConn(cc)
		} else {
			cc.Close()
		}
	}()
	session := c.opts.MaxIdle > 0
	// The commands, the first chunk and, for a message that fits, the
	// terminator leave in one write.
	hp := chunkPool.Get().(*[]byte)
	defer chunkPool.Put(hp)
	head := (*hp)[:0]
	if session && cc.id == 0 {
		head = append(head, "zIDSESSION\x00"...)
	}
	cc.id++
	head = append(head, "zINSTREAM\x00"...)
	if len(first) > 0 {
		head = binary.BigEndian.AppendUint32(head, uint32(len(first)))
		head = append(head, first...)
	}
	if eof {
		head = append(head, 0, 0, 0, 0)
	}

	var restRead atomic.Bool
	werr := make(chan error, 1)
	go func() {
		err := upload(cc.Conn, head, eof, rest, &restRead)
		if errors.As(err, new(sourceError)) {
			// Unblock the reader; clamd would wait for more chunks. On a
			// network error the reader sees the reply or the close itself.
			cc.Close()
		}
		werr <- err
	}()
	reply, rerr := readClamdReply(cc.br)
	var uerr error
	if rerr != nil {
		cc.Close()
		uerr = <-werr
	} else {
		// clamd answers OK or FOUND only after the terminator, so the
		// upload is over or about to be; an early error reply means it
		// may be stuck.
		t := time.NewTimer(time.Second)
		select {
		case uerr = <-werr:
			t.Stop()
		case <-t.C:
			cc.Close()
			uerr = <-werr
			if uerr == nil {
				uerr = errors.New("upload unfinished")
			}
		}
	}
	if rerr != nil {
		var se sourceError
		if errors.As(uerr, &se) {
			return Result{}, false, newErr(c.name, ErrScanFailed, se.err, "reading message")
		}
		// A reused session that closed or reset before any reply byte was
		// dead already (clamd's IdleTimeout); send again if we can.
		stale := cc.reused && !restRead.Load() && ctx.Err() == nil &&
			!errors.Is(rerr, io.ErrUnexpectedEOF) && !errors.As(rerr, new(*Error))
		return Result{}, stale, ioErr(c.name, ctx, rerr, "INSTREAM")
	}
	if session {
		id, rest, ok := sessionReply(reply)
		if !ok || id != cc.id {
			return Result{}, false, newErr(c.name, ErrProtocol, nil, "INSTREAM: reply %q to request %d of the session", clip(reply), cc.id)
		}
		reply = rest
	}
	res, kind, msg := parseClamdReply(reply)
	if kind != nil {
		return Result{}, false, newErr(c.name, kind, nil, "INSTREAM: %s", msg)
	}
	reusable = session && uerr == nil
	return res, false, nil
}

// sessionReply splits "12: stream: OK" into 12 and "stream: OK".
func sessionReply(reply string) (id int, rest string, ok bool) {
	num, rest, found := strings.Cut(reply, ": ")
	if !found || !allDigits(num) || len(num) > 9 {
		return 0, "", false
	}
	id, _ = strconv.Atoi(num)
	return id, rest, true
}

// upload writes head (the commands and the first chunk) and, unless eof,
// the rest of r in chunks and the terminator.
func upload(w io.Writer, head []byte, eof bool, r io.Reader, restRead *atomic.Bool) error {
	if _, err := w.Write(head); err != nil || eof {
		return err
	}
	restRead.Store(true)
	bp := chunkPool.Get().(*[]byte)
	defer chunkPool.Put(bp)
	buf := *bp
	for {
		n, err := io.ReadFull(r, buf[4:4+clamdFirst])
		last := err == io.EOF || err == io.ErrUnexpectedEOF
		if err != nil && !last {
			return sourceError{err}
		}
		out := buf[:0]
		if n > 0 {
			out = binary.BigEndian.AppendUint32(out, uint32(n))
			out = out[:4+n]
		}
		if last {
			out = append(out, 0, 0, 0, 0)
		}
		if _, err := w.Write(out); err != nil {
			return err
		}
		if last {
			return nil
		}
	}
}

// getConn returns an idle session that still looks alive, or a new
// connection.
func (c *Clamd) getConn(ctx context.Context) (*clamdConn, error) {
	if cc, ok := c.pool.get(time.Now(), c.opts.IdleTimeout, func(cc *clamdConn) bool { return connAlive(cc.Conn) }); ok {
		cc.reused = true
		return cc, nil
	}
	conn, err := dial(ctx, c.opts, c.network, c.addr)
	if err != nil {
		return nil, err
	}
	return &clamdConn{Conn: conn, br: bufio.NewReaderSize(conn, 256)}, nil
}

// putConn keeps a session for reuse, or closes it when the pool is full.
func (c *Clamd) putConn(cc *clamdConn) {
	if cc.br.Buffered() > 0 {
		cc.Close()
		return
	}
	cc.SetDeadline(time.Time{})
	c.pool.put(cc, time.Now(), c.opts.MaxIdle)
}

// Close ends the idle sessions. Scans in flight finish normally.
func (c *Clamd) Close() error {
	for _, cc := range c.pool.drain() {
		cc.Write([]byte("zEND\x00"))
		cc.Close()
	}
	return nil
}

// readClamdReply reads one reply: up to a NUL (z-commands) or a newline
// (n-commands), at most clamdMaxReply bytes. A reply cut off by EOF is an
// error: clamd always terminates its replies.
func readClamdReply(br *bufio.Reader) (string, error) {
	var b []byte
	for {
		c, err := br.ReadByte()
		if err != nil {
			if err == io.EOF && len(b) > 0 {
				return "", io.ErrUnexpectedEOF
			}
			return "", err
		}
		if c == 0 || c == '\n' {
			return string(b), nil
		}
		if len(b) >= clamdMaxReply {
			return "", &Error{Kind: ErrProtocol, Msg: fmt.Sprintf("reply longer than %d bytes", clamdMaxReply)}
		}
		b = append(b, c)
	}
}

// parseClamdReply maps one INSTREAM reply line (without its terminator) to
// a result, or to an error kind and a message:
//
//	stream: OK                           clean
//	stream: NAME FOUND                   infected(NAME)
//	INSTREAM size limit exceeded. ERROR  ErrSizeLimit
//	anything else ending in " ERROR"     ErrScanFailed
//	anything else                        ErrProtocol
func parseClamdReply(reply string) (res Result, kind error, msg string) {
	// Tolerate a session reply ID ("12: stream: OK") and stray whitespace.
	line := strings.TrimSpace(reply)
	if i := strings.Index(line, ": "); i > 0 && allDigits(line[:i]) {
		line = line[i+2:]
	}
	if !printable(line) {
		return Result{}, ErrProtocol, fmt.Sprintf("malformed reply %q", clip(reply))
	}
	switch {
	case line == "stream: OK":
		return Clean, nil, ""
	case len(line) >= len("stream:  FOUND") && strings.HasPrefix(line, "stream: ") && strings.HasSuffix(line, " FOUND"):
		name := strings.TrimSpace(line[len("stream: ") : len(line)-len(" FOUND")])
		name = stripExtendedInfo(name)
		if name == "" {
			return Result{}, ErrProtocol, fmt.Sprintf("FOUND without a name in %q", clip(reply))
		}
		return Infected(name), nil, ""
	case strings.HasPrefix(line, "INSTREAM size limit exceeded"):
		return Result{}, ErrSizeLimit, line
	case strings.HasSuffix(line, " ERROR"):
		return Result{}, ErrScanFailed, line
	}
	return Result{}, ErrProtocol, fmt.Sprintf("unexpected reply %q", clip(reply))
}

// stripExtendedInfo removes the "(md5:size)" clamd appends to hash-based
// names with ExtendedDetectionInfo on.
func stripExtendedInfo(name string) string {
	i := strings.LastIndexByte(name, '(')
	if i <= 0 || !strings.HasSuffix(name, ")") {
		return name
	}
	inner := name[i+1 : len(name)-1]
	h, n, ok := strings.Cut(inner, ":")
	if !ok || len(h) < 32 || !isHex(h) || !allDigits(n) {
		return name
	}
	return name[:i]
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// printable reports whether s has no control characters.
func printable(s string) bool {
	return !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

// clip shortens s for error messages.
func clip(s string) string {
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return s
}
