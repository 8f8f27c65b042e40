package scan

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// Scanner is one malware-scanning backend: a clamd or an ICAP service.
//
// Scan reads the message from r until EOF and returns the scanner's answer.
// size is the number of bytes r will yield, or -1 when unknown; backends use
// it only as a hint (bounds, preview), never trust it for framing. Scan does
// not retain r after it returns, and it never closes r.
//
// A nil error means the scanner looked at the whole message and answered:
// Result.Infected says whether it found something. A non-nil error means the
// scanner could not give an answer for this message; it is always a *Error
// whose Kind is one of ErrUnavailable, ErrProtocol, ErrSizeLimit or
// ErrScanFailed (test with errors.Is). Scan honours ctx: when ctx is done it
// returns promptly with an ErrUnavailable error wrapping ctx.Err().
//
// Ping checks that the scanner can answer now (clamd: PING; ICAP: OPTIONS and
// a tiny RESPMOD), with the same error kinds. Name identifies the backend in
// logs and in the status endpoint (e.g. "clamd tcp://127.0.0.1:3310").
//
// Implementations are safe for concurrent use and bound their own
// concurrency; a call waiting for a free slot honours ctx.
type Scanner interface {
	Scan(ctx context.Context, r io.Reader, size int64) (Result, error)
	Ping(ctx context.Context) error
	Name() string
}

// Result is a scanner's answer for one message.
type Result struct {
	// Infected is true when the scanner found malware.
	Infected bool
	// Threat is the scanner's name for what it found (e.g.
	// "Eicar-Test-Signature.UNOFFICIAL"); empty when clean. A scanner that
	// blocks without naming the threat yields "unknown".
	Threat string
}

// Clean is the result of a message in which nothing was found.
var Clean = Result{}

// Infected returns the result for a message in which threat was found.
func Infected(threat string) Result { return Result{Infected: true, Threat: threat} }

func (r Result) String() string {
	if r.Infected {
		return "infected(" + r.Threat + ")"
	}
	return "clean"
}

// The kinds of scanner errors. Every error returned by a Scanner wraps
// exactly one of them.
var (
	// ErrUnavailable: the scanner could not be reached or did not answer in
	// time: connect errors, timeouts, a connection closed mid-request, an
	// ICAP 5xx, a cancelled context. Retrying later (or elsewhere) may work.
	ErrUnavailable = errors.New("scanner unavailable")
	// ErrProtocol: the scanner answered something this client cannot parse.
	ErrProtocol = errors.New("scanner protocol error")
	// ErrSizeLimit: the scanner refused the message as too large (clamd's
	// StreamMaxLength). Retrying does not help.
	ErrSizeLimit = errors.New("scanner size limit exceeded")
	// ErrScanFailed: the scanner answered with an error of its own for this
	// request (clamd "... ERROR", an ICAP 4xx such as 404 Service not found).
	ErrScanFailed = errors.New("scanner error")
)

// Error is the error type returned by Scanners.
type Error struct {
	// Scanner is the Name() of the backend.
	Scanner string
	// Kind is one of ErrUnavailable, ErrProtocol, ErrSizeLimit, ErrScanFailed.
	Kind error
	// Msg says what happened, on one line.
	Msg string
	// Err is the underlying cause, if any (a net.Error, context.Canceled...).
	Err error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Scanner)
	b.WriteString(": ")
	b.WriteString(e.Msg)
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap makes errors.Is match both the kind and the cause.
func (e *Error) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Err}
}

// Unavailable reports whether err means the scanner could not be reached or
// did not answer in time, as opposed to answering wrongly.
func Unavailable(err error) bool { return errors.Is(err, ErrUnavailable) }

func newErr(scanner string, kind error, cause error, format string, args ...any) *Error {
	return &Error{Scanner: scanner, Kind: kind, Msg: fmt.Sprintf(format, args...), Err: cause}
}

// ioErr classifies an I/O error on a scanner connection. Everything that is
// not our own parser's complaint means the scanner did not answer: a
// timeout, a reset, an EOF before the reply was complete, a cancelled ctx.
func ioErr(scanner string, ctx context.Context, err error, what string) *Error {
	var se *Error
	if errors.As(err, &se) {
		if se.Scanner == "" {
			se.Scanner = scanner
		}
		return se
	}
	if ctx.Err() != nil {
		// The deadline we set from ctx fired; report the ctx's reason.
		return newErr(scanner, ErrUnavailable, ctx.Err(), "%s", what)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		// Connection deadlines are only ever set from ctx (bindConn), so
		// this is ctx's deadline passing a moment before ctx says so.
		return newErr(scanner, ErrUnavailable, context.DeadlineExceeded, "%s: timed out", what)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return newErr(scanner, ErrUnavailable, err, "%s: connection closed by scanner", what)
	}
	return newErr(scanner, ErrUnavailable, err, "%s", what)
}

// Options are the settings shared by the backends. The zero value of each
// field selects its default.
type Options struct {
	// Timeout bounds one Scan or Ping, including the wait for a slot, the
	// connect, the upload and the reply. Default 30s.
	Timeout time.Duration
	// DialTimeout bounds the connect alone, so that a black-holed scanner
	// costs seconds, not the whole Timeout. Default 5s.
	DialTimeout time.Duration
	// MaxConcurrent caps the scans in flight to this backend; further scans
	// wait (honouring ctx). Default 8. For ICAP the server's
	// Max-Connections lowers it.
	MaxConcurrent int
	// MaxIdle is the number of idle connections kept for reuse (ICAP
	// keep-alive, clamd sessions). Default 4; negative disables reuse.
	MaxIdle int
	// IdleTimeout drops idle connections older than this. Default 30s for
	// ICAP and 10s for clamd; keep it below the server's own (c-icap
	// KeepAliveTimeout 600s, clamd IdleTimeout 30s).
	IdleTimeout time.Duration
	// ContentType is the Content-Type of the encapsulated HTTP response
	// that carries the message (ICAP only). Default
	// "application/octet-stream".
	ContentType string
	// PingTestVirus makes Ping scan the EICAR test file and fail unless
	// the scanner reports it infected. That catches a scanner that answers
	// without scanning: c-icap started while its clamd was unreachable
	// answers 204 to everything ("Antivirus engine is not available,
	// allow 204") until it is restarted. The scanner logs a detection per
	// probe.
	PingTestVirus bool
	// Dial replaces the network dialer (tests).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

func (o Options) withDefaults() Options {
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 5 * time.Second
	}
	if o.MaxConcurrent <= 0 {
		o.MaxConcurrent = 8
	}
	if o.MaxIdle == 0 {
		o.MaxIdle = 4
	}
	if o.MaxIdle < 0 {
		o.MaxIdle = 0
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 30 * time.Second
	}
	if o.ContentType == "" {
		o.ContentType = "application/octet-stream"
	}
	if o.Dial == nil {
		var d net.Dialer
		o.Dial = d.DialContext
	}
	return o
}

// NewScanner returns the backend for address: an ICAP service for
// "icap://host[:port]/service", else a clamd ("tcp://host:port",
// "unix:/path", "host:port" or "/path").
func NewScanner(address string, opts Options) (Scanner, error) {
	if strings.HasPrefix(strings.ToLower(address), "icap://") {
		return NewICAP(address, opts)
	}
	return NewClamd(address, opts)
}

// dial connects within Options.DialTimeout (and ctx).
func dial(ctx context.Context, o Options, network, addr string) (net.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, o.DialTimeout)
	defer cancel()
	return o.Dial(dctx, network, addr)
}

// bindConn applies ctx to conn: its deadline becomes the connection's, and
// cancelling ctx interrupts blocked reads and writes. Call unbind before
// handing conn to someone else; it reports false when ctx already fired, and
// the connection must then not be reused.
func bindConn(ctx context.Context, conn net.Conn) (unbind func() bool) {
	if d, ok := ctx.Deadline(); ok {
		conn.SetDeadline(d)
	}
	return context.AfterFunc(ctx, func() {
		conn.SetDeadline(time.Unix(1, 0))
	})
}

// testVirus returns the EICAR anti-virus test file (eicar.org), stored
// XOR-ed so that the binary does not carry it in plain form.
func testVirus() []byte {
	const x = "0d601a7405701514050e6109050f0d60617d050b7c6216167c622871101c161407780601141b1114071178141b011c031c070006780110060178131c191074711d7e1d7f"
	b := make([]byte, len(x)/2)
	for i := range b {
		hi, lo := unhex(x[2*i]), unhex(x[2*i+1])
		b[i] = (hi<<4 | lo) ^ 0x55
	}
	return b
}

func unhex(c byte) byte {
	if c >= 'a' {
		return c - 'a' + 10
	}
	return c - '0'
}

// pingTestVirus scans the test file with scan and wants it found.
func pingTestVirus(ctx context.Context, name string, scan func(context.Context, io.Reader, int64) (Result, error)) error {
	tv := testVirus()
	res, err := scan(ctx, bytes.NewReader(tv), int64(len(tv)))
	if err != nil {
		return err
	}
	if !res.Infected {
		return newErr(name, ErrScanFailed, nil, "the EICAR test file was not detected: the scanner answers without scanning")
	}
	return nil
}
