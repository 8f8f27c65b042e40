package scan

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ICAP is a Scanner backed by an ICAP antivirus service (RFC 3507), such as
// c-icap's virus_scan or a commercial scanning gateway.
//
// The message travels as the body of an encapsulated HTTP response in a
// RESPMOD request (§4.9), "HTTP/1.1 200 OK" with Content-Type
// application/octet-stream (Options.ContentType), chunked (§4.4.1), with
// "Allow: 204" (§4.6) so that a clean message costs no echo. When the
// service's OPTIONS (§4.10) announce a Preview size, the first bytes are
// sent as a preview (§4.5) and the rest only after "100 Continue"; a message
// that fits the preview is sent whole with "0; ieof".
//
// OPTIONS are fetched before the first scan and again when their
// Options-TTL runs out (every hour when the server gives none); the
// server's Max-Connections lowers Options.MaxConcurrent.
//
// Connections are kept alive (§4.3.3 Connection) in a small pool of
// Options.MaxIdle, dropped after Options.IdleTimeout and checked for a
// pending close before reuse. If a reused connection still turns out dead
// before the server answered, the request is retried once on a new
// connection, provided no more of the message than was buffered has been
// read.
type ICAP struct {
	url      string // icap://host:port/service?query, as sent in request lines
	hostport string // dial address
	name     string
	opts     Options
	lim      *limiter
	lims     icapLimits
	now      func() time.Time

	optLock chan struct{} // 1-buffered: serialises OPTIONS fetches, honours ctx
	svcMu   sync.Mutex
	svc     *ServiceOptions
	svcExp  time.Time

	pool idlePool[*icapConn]
}

var _ Scanner = (*ICAP)(nil)

type icapConn struct {
	net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	reused bool
}

const (
	icapDefaultPort = "1344"
	// icapChunk is the size of the chunks sent and of the buffered head of
	// the message.
	icapChunk = 64 << 10
	// icapMaxPreview caps the preview size a server may ask for.
	icapMaxPreview = 32 << 10
	// icapOptionsRefresh is how long OPTIONS are kept without Options-TTL.
	icapOptionsRefresh = time.Hour
	// icapWriterGrace is how long the upload may take to finish after the
	// server's answer has been read. Past it the connection is given up and
	// the server is taken to have answered without the whole message.
	icapWriterGrace = time.Second
)

// probeBody is what Ping scans: a few harmless bytes, so that a probe checks
// the scan engine behind the ICAP server, not only the server itself
// (c-icap answers OPTIONS while its clamd is down, and 500 to RESPMOD).
const probeBody = "foxproxy scanner health probe\r\n"

// NewICAP returns an ICAP backend for "icap://host[:port]/service[?args]".
func NewICAP(rawURL string, opts Options) (*ICAP, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("ICAP URL %q: %v", rawURL, err)
	}
	if !strings.EqualFold(u.Scheme, "icap") || u.Host == "" || u.User != nil || u.Fragment != "" {
		return nil, fmt.Errorf("ICAP URL %q: want icap://host[:port]/service", rawURL)
	}
	if strings.Trim(u.Path, "/") == "" {
		return nil, fmt.Errorf("ICAP URL %q: no service name", rawURL)
	}
	hostport := u.Host
	if u.Port() == "" {
		hostport = net.JoinHostPort(u.Hostname(), icapDefaultPort)
	}
	if _, _, err := net.SplitHostPort(hostport); err != nil {
		return nil, fmt.Errorf("ICAP URL %q: %v", rawURL, err)
	}
	u.Scheme = "icap"
	u.Host = hostport
	opts = opts.withDefaults()
	c := &ICAP{
		url:      u.String(),
		hostport: hostport,
		name:     "icap " + u.String(),
		opts:     opts,
		lim:      newLimiter(opts.MaxConcurrent),
		lims:     defaultICAPLimits,
		now:      time.Now,
		optLock:  make(chan struct{}, 1),
	}
	return c, nil
}

// Name implements Scanner.
func (c *ICAP) Name() string { return c.name }

// ServiceOptions returns the OPTIONS last fetched, and false before the
// first fetch.
func (c *ICAP) ServiceOptions() (ServiceOptions, bool) {
	c.svcMu.Lock()
	defer c.svcMu.Unlock()
	if c.svc == nil {
		return ServiceOptions{}, false
	}
	return *c.svc, true
}

// Close drops the idle connections. Scans in flight finish normally.
func (c *ICAP) Close() error {
	for _, cc := range c.pool.drain() {
		cc.Close()
	}
	return nil
}

// Ping implements Scanner: it fetches OPTIONS afresh and scans a few clean
// bytes (or, with Options.PingTestVirus, the EICAR test file), so that a
// healthy answer means the engine behind the server answers.
func (c *ICAP) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	if _, err := c.options(ctx, true); err != nil {
		return err
	}
	if c.opts.PingTestVirus {
		return pingTestVirus(ctx, c.name, c.scan)
	}
	_, err := c.scan(ctx, strings.NewReader(probeBody), int64(len(probeBody)))
	return err
}

// Scan implements Scanner with RESPMOD.
func (c *ICAP) Scan(ctx context.Context, r io.Reader, size int64) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	if err := c.lim.acquire(ctx); err != nil {
		return Result{}, newErr(c.name, ErrUnavailable, err, "waiting for a free scan slot")
	}
	defer c.lim.release()
	return c.scan(ctx, r, size)
}

func (c *ICAP) scan(ctx context.Context, r io.Reader, size int64) (Result, error) {
	svc, err := c.options(ctx, false)
	if err != nil {
		return Result{}, err
	}
	preview := -1
	if svc.Preview >= 0 {
		preview = min(svc.Preview, icapMaxPreview)
	}
	// Buffer the head of the message: it is the preview, and it lets a
	// request that failed on a stale connection be sent again.
	bp := chunkPool.Get().(*[]byte)
	defer chunkPool.Put(bp)
	first, eof, rerr := readHead(r, (*bp)[:icapChunk])
	if rerr != nil {
		return Result{}, newErr(c.name, ErrScanFailed, rerr, "reading message")
	}
	lim := c.lims
	if size >= 0 {
		// An echo (200 without Allow: 204 honoured) is about as large as
		// the message; allow headroom for a replacement page.
		lim.maxBody = size + 1<<20
	}
	for attempt := 0; ; attempt++ {
		cc, err := c.getConn(ctx)
		if err != nil {
			return Result{}, ioErr(c.name, ctx, err, "connect")
		}
		res, retry, err := c.respmod(ctx, cc, first, eof, r, preview, lim)
		if retry && attempt == 0 && ctx.Err() == nil {
			continue
		}
		return res, err
	}
}

// respmod runs one RESPMOD exchange on cc and gives cc back to the pool or
// closes it. retry is true when cc was a reused connection that died before
// the server answered and the request can be repeated as it was.
func (c *ICAP) respmod(ctx context.Context, cc *icapConn, first []byte, eof bool, rest io.Reader, preview int, lim icapLimits) (res Result, retry bool, err error) {
	unbind := bindConn(ctx, cc.Conn)
	reusable := false
	defer func() {
		if unbind() && reusable {
			c.putConn(cc)
		} else {
			cc.Close()
		}
	}()
	// stale reports whether a failure on a reused connection happened before
	// the server said anything, i.e. the server had closed it while idle.
	var restRead atomic.Bool
	stale := func(err error, gotBytes bool) bool {
		return cc.reused && !gotBytes && !restRead.Load() && !errors.As(err, new(*Error))
	}

	cc.bw.Write(c.requestHead(preview))
	pending := first
	if preview >= 0 {
		// RFC 3507 §4.5: the first Preview bytes, then "0; ieof" when that
		// is the whole message, else "0" and wait for 100 Continue.
		p := first[:min(preview, len(first))]
		ieof := eof && len(p) == len(first)
		writeChunk(cc.bw, p)
		if ieof {
			cc.bw.WriteString("0; ieof\r\n\r\n")
		} else {
			cc.bw.WriteString("0\r\n\r\n")
		}
		if err := cc.bw.Flush(); err != nil {
			return Result{}, stale(err, false), ioErr(c.name, ctx, err, "RESPMOD preview")
		}
		resp, err := readICAPHead(cc.br, lim)
		if err != nil {
			return Result{}, stale(err, errors.Is(err, io.ErrUnexpectedEOF)), ioErr(c.name, ctx, err, "RESPMOD preview reply")
		}
		if resp.Code != 100 {
			// The server decided on the preview alone (a 204, or an
			// infection found in the first bytes); the request is over.
			if err := resp.readEncapsulated(cc.br, lim); err != nil {
				return Result{}, false, ioErr(c.name, ctx, err, "RESPMOD reply")
			}
			// Only with ieof did the server see the whole message.
			sent := int64(-1)
			if ieof {
				sent = int64(len(p))
			}
			res, err := c.verdict(resp, sent)
			reusable = err == nil && !resp.connClose()
			return res, false, err
		}
		if ieof {
			return Result{}, false, newErr(c.name, ErrProtocol, nil, "100 Continue after a complete preview (ieof)")
		}
		pending = first[len(p):]
	}

	// Send the (rest of the) body while reading the answer: a server may
	// answer, or start echoing, before it has read everything.
	type upload struct {
		n   int64
		err error
	}
	werr := make(chan upload, 1)
	go func() {
		n, err := writeBody(cc.bw, pending, eof, rest, &restRead)
		if errors.As(err, new(sourceError)) {
			cc.Close() // unblock the reader; the server waits for more
		}
		werr <- upload{n, err}
	}()
	resp, err := readICAPResponse(cc.br, lim)
	var up upload
	if err != nil {
		cc.Close()
		up = <-werr
	} else {
		// The writer normally ends a moment before the answer is read. If
		// it is still busy, the server answered before reading the whole
		// body and will not read on: give up the connection.
		t := time.NewTimer(icapWriterGrace)
		select {
		case up = <-werr:
			t.Stop()
		case <-t.C:
			cc.Close()
			up = <-werr
			if up.err == nil {
				up.err = errors.New("upload unfinished")
			}
		}
	}
	uerr := up.err
	if err != nil {
		var se sourceError
		if errors.As(uerr, &se) {
			return Result{}, false, newErr(c.name, ErrScanFailed, se.err, "reading message")
		}
		got := resp != nil || errors.Is(err, io.ErrUnexpectedEOF)
		return Result{}, stale(err, got), ioErr(c.name, ctx, err, "RESPMOD")
	}
	if resp.Code == 100 {
		return Result{}, false, newErr(c.name, ErrProtocol, nil, "unexpected 100 Continue")
	}
	sent := int64(len(first)-len(pending)) + up.n
	if uerr != nil {
		sent = -1 // the server answered before it had the whole message
	}
	res, err = c.verdict(resp, sent)
	reusable = err == nil && uerr == nil && !resp.connClose()
	return res, false, err
}

// verdict classifies a final response; sent is the size of the message the
// server received, -1 when it did not receive all of it.
func (c *ICAP) verdict(resp *icapResponse, sent int64) (Result, error) {
	res, kind, msg := classifyICAP(resp, sent)
	if kind != nil {
		return Result{}, newErr(c.name, kind, nil, "RESPMOD: %s", msg)
	}
	return res, nil
}

// requestHead builds the RESPMOD request line, headers and encapsulated
// HTTP headers (RFC 3507 §4.8, §4.9). A synthetic request header comes
// first because some services log or key on it.
func (c *ICAP) requestHead(preview int) []byte {
	const reqHdr = "GET /message HTTP/1.1\r\nHost: foxproxy.invalid\r\n\r\n"
	resHdr := "HTTP/1.1 200 OK\r\nContent-Type: " + c.opts.ContentType + "\r\n\r\n"
	var b strings.Builder
	b.WriteString("RESPMOD " + c.url + " ICAP/1.0\r\n")
	b.WriteString("Host: " + c.hostport + "\r\n")
	b.WriteString("User-Agent: foxproxy\r\n")
	b.WriteString("Allow: 204\r\n")
	if preview >= 0 {
		b.WriteString("Preview: " + strconv.Itoa(preview) + "\r\n")
	}
	fmt.Fprintf(&b, "Encapsulated: req-hdr=0, res-hdr=%d, res-body=%d\r\n\r\n", len(reqHdr), len(reqHdr)+len(resHdr))
	b.WriteString(reqHdr)
	b.WriteString(resHdr)
	return []byte(b.String())
}

// writeChunk writes one chunk of the chunked body (nothing for empty p: a
// zero-length chunk would end the body).
func writeChunk(bw *bufio.Writer, p []byte) {
	if len(p) == 0 {
		return
	}
	bw.WriteString(strconv.FormatInt(int64(len(p)), 16))
	bw.WriteString("\r\n")
	bw.Write(p)
	bw.WriteString("\r\n")
}

// writeBody sends pending, then (unless eof) the rest of r, as chunks, then
// the last chunk. It returns the number of message bytes sent.
func writeBody(bw *bufio.Writer, pending []byte, eof bool, r io.Reader, restRead *atomic.Bool) (n int64, err error) {
	writeChunk(bw, pending)
	n = int64(len(pending))
	if !eof {
		restRead.Store(true)
		bp := chunkPool.Get().(*[]byte)
		defer chunkPool.Put(bp)
		buf := (*bp)[:icapChunk]
		for {
			m, err := io.ReadFull(r, buf)
			writeChunk(bw, buf[:m])
			n += int64(m)
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				break
			}
			if err != nil {
				return n, sourceError{err}
			}
			if bw.Available() < 32 {
				if err := bw.Flush(); err != nil {
					return n, err
				}
			}
		}
	}
	bw.WriteString("0\r\n\r\n")
	return n, bw.Flush()
}

// options returns the service's OPTIONS, fetching them when there are none
// yet, when their TTL ran out, or when force is set.
func (c *ICAP) options(ctx context.Context, force bool) (ServiceOptions, error) {
	if !force {
		c.svcMu.Lock()
		if c.svc != nil && c.now().Before(c.svcExp) {
			o := *c.svc
			c.svcMu.Unlock()
			return o, nil
		}
		c.svcMu.Unlock()
	}
	select {
	case c.optLock <- struct{}{}:
		defer func() { <-c.optLock }()
	case <-ctx.Done():
		return ServiceOptions{}, newErr(c.name, ErrUnavailable, ctx.Err(), "waiting for OPTIONS")
	}
	if !force {
		// Someone else may have fetched them while we waited.
		c.svcMu.Lock()
		if c.svc != nil && c.now().Before(c.svcExp) {
			o := *c.svc
			c.svcMu.Unlock()
			return o, nil
		}
		c.svcMu.Unlock()
	}
	o, err := c.fetchOptions(ctx)
	if err != nil {
		return o, err
	}
	ttl := o.TTL
	if ttl <= 0 || ttl > icapOptionsRefresh {
		ttl = icapOptionsRefresh
	}
	c.svcMu.Lock()
	c.svc, c.svcExp = &o, o.Fetched.Add(ttl)
	c.svcMu.Unlock()
	limit := c.opts.MaxConcurrent
	if o.MaxConnections > 0 {
		limit = min(limit, o.MaxConnections)
	}
	c.lim.setLimit(limit)
	return o, nil
}

func (c *ICAP) fetchOptions(ctx context.Context) (ServiceOptions, error) {
	for attempt := 0; ; attempt++ {
		cc, err := c.getConn(ctx)
		if err != nil {
			return ServiceOptions{}, ioErr(c.name, ctx, err, "connect")
		}
		o, retry, err := c.optionsOn(ctx, cc)
		if retry && attempt == 0 && ctx.Err() == nil {
			continue
		}
		return o, err
	}
}

func (c *ICAP) optionsOn(ctx context.Context, cc *icapConn) (o ServiceOptions, retry bool, err error) {
	unbind := bindConn(ctx, cc.Conn)
	reusable := false
	defer func() {
		if unbind() && reusable {
			c.putConn(cc)
		} else {
			cc.Close()
		}
	}()
	// RFC 3507 §4.10.1
	fmt.Fprintf(cc.bw, "OPTIONS %s ICAP/1.0\r\nHost: %s\r\nUser-Agent: foxproxy\r\nEncapsulated: null-body=0\r\n\r\n", c.url, c.hostport)
	if err := cc.bw.Flush(); err != nil {
		return o, cc.reused, ioErr(c.name, ctx, err, "OPTIONS")
	}
	resp, err := readICAPResponse(cc.br, c.lims)
	if err != nil {
		stale := cc.reused && resp == nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.As(err, new(*Error))
		return o, stale, ioErr(c.name, ctx, err, "OPTIONS")
	}
	o, kind, msg := parseOptions(resp)
	if kind != nil {
		return o, false, newErr(c.name, kind, nil, "%s", msg)
	}
	o.Fetched = c.now()
	reusable = !resp.connClose()
	return o, false, nil
}

// getConn returns an idle connection that still looks alive, or a new one.
func (c *ICAP) getConn(ctx context.Context) (*icapConn, error) {
	if cc, ok := c.pool.get(c.now(), c.opts.IdleTimeout, func(cc *icapConn) bool { return connAlive(cc.Conn) }); ok {
		cc.reused = true
		return cc, nil
	}
	conn, err := dial(ctx, c.opts, "tcp", c.hostport)
	if err != nil {
		return nil, err
	}
	return &icapConn{
		Conn: conn,
		br:   bufio.NewReaderSize(conn, 16<<10),
		bw:   bufio.NewWriterSize(conn, icapChunk+32),
	}, nil
}

// putConn keeps cc for reuse, or closes it when the pool is full.
func (c *ICAP) putConn(cc *icapConn) {
	if cc.br.Buffered() > 0 {
		// Bytes beyond the response: the stream is out of step.
		cc.Close()
		return
	}
	cc.SetDeadline(time.Time{})
	max := c.opts.MaxIdle
	c.svcMu.Lock()
	if c.svc != nil && c.svc.MaxConnections > 0 {
		max = min(max, c.svc.MaxConnections)
	}
	c.svcMu.Unlock()
	c.pool.put(cc, c.now(), max)
}
