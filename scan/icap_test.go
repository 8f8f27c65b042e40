package scan

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// icapReq is a RESPMOD request as the fake server received it.
type icapReq struct {
	Method, URI string
	Header      textproto.MIMEHeader
	ReqHdr      string
	ResHdr      string
	Preview     []byte // the preview bytes, when a preview was sent
	IEOF        bool   // the preview ended with "0; ieof"
	Continued   bool   // the server sent 100 Continue
	Body        []byte // the whole body received (preview included)
}

// icapFake is a fake ICAP server, strict about the request syntax.
type icapFake struct {
	t          testing.TB
	options    string // the OPTIONS response
	optCount   atomic.Int32
	closeAfter atomic.Bool // close the connection after each response, unannounced
	// afterPreview decides after a preview: "" sends 100 Continue, anything
	// else is sent as the final response.
	afterPreview func(r *icapReq) string
	// respond gives the final response for a complete request.
	respond func(r *icapReq) string

	mu       sync.Mutex
	reqs     []*icapReq
	inflight int
	peak     int
}

func (f *icapFake) setRespond(fn func(r *icapReq) string) {
	f.mu.Lock()
	f.respond = fn
	f.mu.Unlock()
}

func optionsResp(preview int, extra string) string {
	s := "ICAP/1.0 200 OK\r\nMethods: RESPMOD\r\nISTag: \"FAKE1\"\r\nAllow: 204\r\nOptions-TTL: 60\r\n"
	if preview >= 0 {
		s += "Preview: " + strconv.Itoa(preview) + "\r\n"
	}
	return s + extra + "Encapsulated: null-body=0\r\n\r\n"
}

func newICAPFake(t testing.TB, preview int, respond func(r *icapReq) string) (*icapFake, *fakeServer) {
	f := &icapFake{t: t, options: optionsResp(preview, ""), respond: respond}
	return f, newFakeServer(t, f.serve)
}

func (f *icapFake) requests() []*icapReq {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*icapReq(nil), f.reqs...)
}

func (f *icapFake) serve(c net.Conn) {
	br := bufio.NewReader(c)
	tp := textproto.NewReader(br)
	for {
		line, err := tp.ReadLine()
		if err != nil {
			return
		}
		method, rest, _ := strings.Cut(line, " ")
		uri, proto, _ := strings.Cut(rest, " ")
		hdr, err := tp.ReadMIMEHeader()
		if err != nil || proto != "ICAP/1.0" || hdr.Get("Host") == "" {
			f.t.Errorf("fake ICAP: bad request %q %v", line, hdr)
			return
		}
		switch method {
		case "OPTIONS":
			f.optCount.Add(1)
			io.WriteString(c, f.options)
		case "RESPMOD":
			if !f.respmod(c, br, uri, hdr) {
				return
			}
		default:
			io.WriteString(c, "ICAP/1.0 405 Method not allowed\r\n\r\n")
		}
		if f.closeAfter.Load() {
			return
		}
	}
}

func (f *icapFake) respmod(c net.Conn, br *bufio.Reader, uri string, hdr textproto.MIMEHeader) bool {
	req := &icapReq{Method: "RESPMOD", URI: uri, Header: hdr}
	f.mu.Lock()
	f.inflight++
	f.peak = max(f.peak, f.inflight)
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.inflight--
		f.mu.Unlock()
	}()
	secs, err := parseEncapsulated(hdr.Get("Encapsulated"))
	if err != nil || len(secs) != 3 || secs[0].Name != "req-hdr" || secs[1].Name != "res-hdr" || secs[2].Name != "res-body" {
		f.t.Errorf("fake ICAP: Encapsulated %q", hdr.Get("Encapsulated"))
		return false
	}
	hdrs := make([]byte, secs[2].Offset)
	if _, err := io.ReadFull(br, hdrs); err != nil {
		return false
	}
	req.ReqHdr, req.ResHdr = string(hdrs[:secs[1].Offset]), string(hdrs[secs[1].Offset:])
	if !strings.HasSuffix(req.ReqHdr, "\r\n\r\n") || !strings.HasPrefix(req.ResHdr, "HTTP/1.1 200 OK\r\n") || !strings.HasSuffix(req.ResHdr, "\r\n\r\n") {
		f.t.Errorf("fake ICAP: encapsulated headers %q %q", req.ReqHdr, req.ResHdr)
		return false
	}
	final := ""
	if hdr.Get("Preview") != "" {
		n, _ := strconv.Atoi(hdr.Get("Preview"))
		p, ieof, err := readChunks(br)
		if err != nil {
			return false
		}
		if len(p) > n {
			f.t.Errorf("fake ICAP: preview of %d bytes, announced %d", len(p), n)
		}
		req.Preview, req.IEOF, req.Body = p, ieof, p
		if !ieof && f.afterPreview != nil {
			final = f.afterPreview(req)
		}
		if !ieof && final == "" {
			req.Continued = true
			io.WriteString(c, "ICAP/1.0 100 Continue\r\n\r\n")
			rest, ieof, err := readChunks(br)
			if err != nil {
				return false
			}
			if ieof {
				f.t.Errorf("fake ICAP: ieof after 100 Continue")
			}
			req.Body = append(req.Body, rest...)
		}
	} else {
		body, ieof, err := readChunks(br)
		if err != nil {
			return false
		}
		if ieof {
			f.t.Errorf("fake ICAP: ieof without preview")
		}
		req.Body = body
	}
	f.mu.Lock()
	f.reqs = append(f.reqs, req)
	respond := f.respond
	f.mu.Unlock()
	if final == "" {
		final = respond(req)
	}
	if final == "" {
		// Black hole: hold the connection.
		io.Copy(io.Discard, br)
		return false
	}
	_, err = io.WriteString(c, final)
	head, _, _ := strings.Cut(final, "\r\n\r\n")
	return err == nil && !strings.Contains(head, "Connection: close")
}

// readChunks reads a chunked body up to its last chunk.
func readChunks(br *bufio.Reader) (data []byte, ieof bool, err error) {
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return nil, false, err
		}
		size, ext, _ := strings.Cut(strings.TrimRight(line, "\r\n"), ";")
		n, err := strconv.ParseInt(strings.TrimSpace(size), 16, 64)
		if err != nil {
			return nil, false, fmt.Errorf("bad chunk size %q", line)
		}
		if n == 0 {
			if _, err := br.ReadString('\n'); err != nil {
				return nil, false, err
			}
			return data, strings.TrimSpace(ext) == "ieof", nil
		}
		chunk := make([]byte, n+2)
		if _, err := io.ReadFull(br, chunk); err != nil {
			return nil, false, err
		}
		if string(chunk[n:]) != "\r\n" {
			return nil, false, errors.New("chunk without CRLF")
		}
		data = append(data, chunk[:n]...)
	}
}

// echoResp is a 200 that sends body back, as c-icap does without Allow: 204.
func echoResp(body []byte, extraHeaders string) string {
	hh := "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n"
	var b strings.Builder
	fmt.Fprintf(&b, "ICAP/1.0 200 OK\r\n%sEncapsulated: res-hdr=0, res-body=%d\r\n\r\n%s", extraHeaders, len(hh), hh)
	if len(body) > 0 {
		fmt.Fprintf(&b, "%x\r\n%s\r\n", len(body), body)
	}
	b.WriteString("0\r\n\r\n")
	return b.String()
}

func newTestICAP(t testing.TB, addr string, o Options) *ICAP {
	t.Helper()
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Second
	}
	c, err := NewICAP("icap://"+addr+"/avscan", o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestNewICAPURL(t *testing.T) {
	for _, tc := range []struct{ in, url, hostport string }{
		{"icap://127.0.0.1:1344/avscan", "icap://127.0.0.1:1344/avscan", "127.0.0.1:1344"},
		{"icap://scanner.example/avscan", "icap://scanner.example:1344/avscan", "scanner.example:1344"},
		{"ICAP://[::1]/srv_clamav?allow204=on", "icap://[::1]:1344/srv_clamav?allow204=on", "[::1]:1344"},
	} {
		c, err := NewICAP(tc.in, Options{})
		if err != nil || c.url != tc.url || c.hostport != tc.hostport {
			t.Errorf("%q: %v, %+v", tc.in, err, c)
		}
	}
	for _, bad := range []string{"icap://host:1344", "icap://host:1344/", "http://host/avscan", "icap:///avscan", "icap://u@h/s", "://"} {
		if _, err := NewICAP(bad, Options{}); err == nil {
			t.Errorf("%q: accepted", bad)
		}
	}
	if sc, err := NewScanner("icap://127.0.0.1/avscan", Options{}); err != nil || !strings.HasPrefix(sc.Name(), "icap ") {
		t.Errorf("NewScanner icap: %v %v", sc, err)
	}
	if sc, err := NewScanner("unix:/run/clamav/clamd.ctl", Options{}); err != nil || sc.Name() != "clamd unix:/run/clamav/clamd.ctl" {
		t.Errorf("NewScanner clamd: %v %v", sc, err)
	}
}

func TestICAPScanNoPreview(t *testing.T) {
	msg := mail(nil, 200<<10) // several chunks
	f, fs := newICAPFake(t, -1, func(r *icapReq) string {
		if bytes.Contains(r.Body, []byte("VIRUS")) {
			return crlf("ICAP/1.0 200 OK\nX-Virus-ID: Test.Virus\nEncapsulated: res-hdr=0, res-body=21\n\nHTTP/1.1 403 Nope\n\n0\n\n")
		}
		return cicap204
	})
	c := newTestICAP(t, fs.addr(), Options{})
	res, err := c.Scan(context.Background(), bytes.NewReader(msg), int64(len(msg)))
	if err != nil || res.Infected {
		t.Fatalf("clean: %v, %v", res, err)
	}
	res, err = c.Scan(context.Background(), strings.NewReader("a VIRUS here"), 12)
	if err != nil || res != Infected("Test.Virus") {
		t.Fatalf("infected: %v, %v", res, err)
	}
	reqs := f.requests()
	if len(reqs) != 2 || !bytes.Equal(reqs[0].Body, msg) {
		t.Fatalf("server got %d requests, first body intact: %v", len(reqs), len(reqs) > 0 && bytes.Equal(reqs[0].Body, msg))
	}
	r := reqs[0]
	if r.URI != "icap://"+fs.addr()+"/avscan" || r.Header.Get("Allow") != "204" || r.Header.Get("Preview") != "" {
		t.Fatalf("request %s %v", r.URI, r.Header)
	}
	if !strings.Contains(r.ResHdr, "Content-Type: application/octet-stream\r\n") {
		t.Fatalf("encapsulated response header %q", r.ResHdr)
	}
	if f.optCount.Load() != 1 || fs.conns.Load() != 1 {
		t.Fatalf("%d OPTIONS on %d connections, want 1 on 1 (cached, kept alive)", f.optCount.Load(), fs.conns.Load())
	}
	if o, ok := c.ServiceOptions(); !ok || o.ISTag != `"FAKE1"` || o.Preview != -1 {
		t.Fatalf("ServiceOptions: %+v %v", o, ok)
	}
}

func TestICAPPreview(t *testing.T) {
	const preview = 16
	small := []byte("short message")    // fits the preview: ieof
	exact := []byte("exactly 16 bytes") // fits exactly: ieof
	big := mail(nil, 100<<10)           // needs 100 Continue
	f, fs := newICAPFake(t, preview, func(r *icapReq) string { return cicap204 })
	c := newTestICAP(t, fs.addr(), Options{})
	for _, m := range [][]byte{small, exact, big, {}} {
		if res, err := c.Scan(context.Background(), bytes.NewReader(m), int64(len(m))); err != nil || res.Infected {
			t.Fatalf("%d bytes: %v, %v", len(m), res, err)
		}
	}
	reqs := f.requests()
	if len(reqs) != 4 {
		t.Fatalf("%d requests", len(reqs))
	}
	for i, want := range []struct {
		ieof, cont bool
		body       []byte
	}{{true, false, small}, {true, false, exact}, {false, true, big}, {true, false, nil}} {
		r := reqs[i]
		if r.IEOF != want.ieof || r.Continued != want.cont || !bytes.Equal(r.Body, want.body) || r.Header.Get("Preview") != "16" {
			t.Errorf("request %d: ieof %v continued %v body ok %v preview %q", i, r.IEOF, r.Continued, bytes.Equal(r.Body, want.body), r.Header.Get("Preview"))
		}
	}
	if fs.conns.Load() != 1 {
		t.Fatalf("%d connections, want 1", fs.conns.Load())
	}
}

func TestICAPPreviewDecides(t *testing.T) {
	big := mail(nil, 100<<10)
	for _, tc := range []struct {
		name   string
		answer string
		want   Result
	}{
		{"204 after preview", cicap204, Clean},
		{"infected after preview", cicapInfected, Infected("Eicar-Test-Signature.UNOFFICIAL")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, fs := newICAPFake(t, 1024, func(*icapReq) string { return cicap204 })
			f.afterPreview = func(*icapReq) string { return tc.answer }
			c := newTestICAP(t, fs.addr(), Options{})
			for range 2 { // the second scan reuses the connection: the first left it in step
				res, err := c.Scan(context.Background(), bytes.NewReader(big), int64(len(big)))
				if err != nil || res != tc.want {
					t.Fatalf("got %v, %v; want %v", res, err, tc.want)
				}
			}
			for _, r := range f.requests() {
				if r.Continued || len(r.Body) != 1024 {
					t.Fatalf("the rest was sent after a final answer to the preview")
				}
			}
			if fs.conns.Load() != 1 {
				t.Fatalf("%d connections, want 1", fs.conns.Load())
			}
		})
	}
}

func TestICAP100AfterIEOF(t *testing.T) {
	fs := newFakeServer(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		tp := textproto.NewReader(br)
		for {
			line, err := tp.ReadLine()
			if err != nil {
				return
			}
			tp.ReadMIMEHeader()
			if strings.HasPrefix(line, "OPTIONS") {
				io.WriteString(c, optionsResp(1024, ""))
				continue
			}
			io.WriteString(c, "ICAP/1.0 100 Continue\r\n\r\n")
			return
		}
	})
	c := newTestICAP(t, fs.addr(), Options{})
	_, err := c.Scan(context.Background(), strings.NewReader("small"), 5)
	wantKind(t, err, ErrProtocol)
}

func TestICAPEchoWhileUploading(t *testing.T) {
	// Like c-icap above its MaxObjectSize: it streams the body back while
	// still reading it. A client that only reads after uploading deadlocks
	// once both socket buffers are full.
	msg := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
	fs := newFakeServer(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		tp := textproto.NewReader(br)
		for {
			line, err := tp.ReadLine()
			if err != nil {
				return
			}
			hdr, _ := tp.ReadMIMEHeader()
			if strings.HasPrefix(line, "OPTIONS") {
				io.WriteString(c, optionsResp(-1, ""))
				continue
			}
			secs, _ := parseEncapsulated(hdr.Get("Encapsulated"))
			io.CopyN(io.Discard, br, int64(secs[len(secs)-1].Offset))
			hh := "HTTP/1.1 200 OK\r\n\r\n"
			fmt.Fprintf(c, "ICAP/1.0 200 OK\r\nEncapsulated: res-hdr=0, res-body=%d\r\n\r\n%s", len(hh), hh)
			for {
				l, err := br.ReadString('\n')
				if err != nil {
					return
				}
				n, _ := strconv.ParseInt(strings.TrimSpace(l), 16, 64)
				io.WriteString(c, l)
				if n == 0 {
					br.ReadString('\n')
					io.WriteString(c, "\r\n")
					break
				}
				if _, err := io.CopyN(c, br, n+2); err != nil {
					return
				}
			}
		}
	})
	c := newTestICAP(t, fs.addr(), Options{})
	for range 2 {
		res, err := c.Scan(context.Background(), bytes.NewReader(msg), int64(len(msg)))
		if err != nil || res.Infected {
			t.Fatalf("echo: %v, %v", res, err)
		}
	}
	if fs.conns.Load() != 1 {
		t.Fatalf("%d connections, want 1 (the echo left the connection in step)", fs.conns.Load())
	}
}

func TestICAPErrors(t *testing.T) {
	for _, tc := range []struct {
		name, answer string
		kind         error
	}{
		{"500", cicap500, ErrUnavailable},
		{"503", "ICAP/1.0 503 Service overloaded\r\n\r\n", ErrUnavailable},
		{"404", cicap404, ErrScanFailed},
		{"garbage", "SMTP/1.0 250 OK\r\n\r\n", ErrProtocol},
		{"truncated", "ICAP/1.0 200 OK\r\nEncapsulated: res-hdr=0, res-body=19\r\n\r\nHTTP/1.1 200 OK\r\n\r\n5\r\nab", ErrUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, fs := newICAPFake(t, -1, func(*icapReq) string { return tc.answer })
			f.closeAfter.Store(true)
			c := newTestICAP(t, fs.addr(), Options{})
			_, err := c.Scan(context.Background(), strings.NewReader("hello"), 5)
			wantKind(t, err, tc.kind)
		})
	}
}

func TestICAPOptionsErrors(t *testing.T) {
	for _, tc := range []struct {
		name, options string
		kind          error
	}{
		{"404 service", cicap404, ErrScanFailed},
		{"no RESPMOD", "ICAP/1.0 200 OK\r\nMethods: REQMOD\r\nEncapsulated: null-body=0\r\n\r\n", ErrScanFailed},
		{"500", cicap500, ErrUnavailable},
		{"garbage", "hello\r\n\r\n", ErrProtocol},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, fs := newICAPFake(t, -1, func(*icapReq) string { return cicap204 })
			f.options = tc.options
			c := newTestICAP(t, fs.addr(), Options{})
			_, err := c.Scan(context.Background(), strings.NewReader("hello"), 5)
			wantKind(t, err, tc.kind)
			wantKind(t, c.Ping(context.Background()), tc.kind)
		})
	}
}

func TestICAPBlackHole(t *testing.T) {
	// OPTIONS answered, RESPMOD never.
	_, fs := newICAPFake(t, -1, func(*icapReq) string { return "" })
	c := newTestICAP(t, fs.addr(), Options{Timeout: 200 * time.Millisecond})
	var err error
	within(t, 2*time.Second, "scan of a black hole", func() {
		_, err = c.Scan(context.Background(), strings.NewReader("hello"), 5)
	})
	wantKind(t, err, ErrUnavailable)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("%v does not say deadline exceeded", err)
	}
	// Silent from the start: OPTIONS never answered.
	silent := newFakeServer(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	c = newTestICAP(t, silent.addr(), Options{Timeout: 200 * time.Millisecond})
	within(t, 2*time.Second, "ping of a black hole", func() { err = c.Ping(context.Background()) })
	wantKind(t, err, ErrUnavailable)
}

func TestICAPSlowButInTime(t *testing.T) {
	_, fs := newICAPFake(t, 1024, func(*icapReq) string {
		time.Sleep(300 * time.Millisecond)
		return cicap204
	})
	c := newTestICAP(t, fs.addr(), Options{Timeout: 3 * time.Second})
	if res, err := c.Scan(context.Background(), strings.NewReader("hello"), 5); err != nil || res.Infected {
		t.Fatalf("%v, %v", res, err)
	}
}

func TestICAPDiesMidRequest(t *testing.T) {
	fs := newFakeServer(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		tp := textproto.NewReader(br)
		line, _ := tp.ReadLine()
		tp.ReadMIMEHeader()
		if strings.HasPrefix(line, "OPTIONS") {
			io.WriteString(c, optionsResp(-1, ""))
			line, _ = tp.ReadLine()
			tp.ReadMIMEHeader()
		}
		io.CopyN(io.Discard, br, 1000)
		c.(*net.TCPConn).SetLinger(0) // reset
	})
	c := newTestICAP(t, fs.addr(), Options{})
	msg := bytes.Repeat([]byte("x"), 1<<20)
	_, err := c.Scan(context.Background(), bytes.NewReader(msg), int64(len(msg)))
	wantKind(t, err, ErrUnavailable)
}

func TestICAPKeepAliveAndClose(t *testing.T) {
	f, fs := newICAPFake(t, -1, func(*icapReq) string { return cicap204 })
	c := newTestICAP(t, fs.addr(), Options{})
	for range 5 {
		if _, err := c.Scan(context.Background(), strings.NewReader("hello"), 5); err != nil {
			t.Fatal(err)
		}
	}
	if n := fs.conns.Load(); n != 1 {
		t.Fatalf("%d connections for 5 scans, want 1", n)
	}
	// "Connection: close" is honoured.
	f.setRespond(func(*icapReq) string { return strings.Replace(cicap204, "keep-alive", "close", 1) })
	for range 3 {
		if _, err := c.Scan(context.Background(), strings.NewReader("hello"), 5); err != nil {
			t.Fatal(err)
		}
	}
	// The first goes on the kept connection, which is then closed.
	if n := fs.conns.Load(); n != 3 {
		t.Fatalf("%d connections, want 3", n)
	}
}

func TestICAPStaleConnection(t *testing.T) {
	// The server closes every connection after its answer without saying
	// so (a c-icap child exiting). The next scan must not fail.
	for _, preview := range []int{-1, 1024} {
		f, fs := newICAPFake(t, preview, func(*icapReq) string { return cicap204 })
		f.closeAfter.Store(true)
		c := newTestICAP(t, fs.addr(), Options{})
		for i := range 4 {
			if _, err := c.Scan(context.Background(), strings.NewReader("hello"), 5); err != nil {
				t.Fatalf("preview %d, scan %d: %v", preview, i, err)
			}
		}
	}
}

func TestICAPStaleRetry(t *testing.T) {
	// connAlive cannot see a close that happens after the check; the
	// request is then retried once on a new connection. Simulate by
	// handing out a connection whose peer is already gone without the
	// check noticing: a pipe closed on the far side.
	_, fs := newICAPFake(t, -1, func(*icapReq) string { return cicap204 })
	c := newTestICAP(t, fs.addr(), Options{})
	if _, err := c.Scan(context.Background(), strings.NewReader("hello"), 5); err != nil {
		t.Fatal(err)
	}
	a, b := net.Pipe()
	b.Close()
	c.pool.replace(&icapConn{Conn: pipeConn{a}, br: bufio.NewReader(a), bw: bufio.NewWriter(a)})
	if _, err := c.Scan(context.Background(), strings.NewReader("hello"), 5); err != nil {
		t.Fatalf("retry after a dead pooled connection: %v", err)
	}
	// No retry when the rest of the message was already read: a second
	// dead connection and a message bigger than the buffered head.
	a, b = net.Pipe()
	b.Close()
	c.pool.replace(&icapConn{Conn: pipeConn{a}, br: bufio.NewReader(a), bw: bufio.NewWriter(a)})
	big := bytes.Repeat([]byte("y"), 3*icapChunk)
	_, err := c.Scan(context.Background(), bytes.NewReader(big), int64(len(big)))
	wantKind(t, err, ErrUnavailable)
}

// pipeConn hides net.Pipe's lack of syscall.Conn so connAlive says alive.
type pipeConn struct{ net.Conn }

func TestICAPOptionsTTLAndMaxConnections(t *testing.T) {
	f, fs := newICAPFake(t, -1, func(*icapReq) string { return cicap204 })
	f.options = optionsResp(-1, "Max-Connections: 2\r\n")
	c := newTestICAP(t, fs.addr(), Options{MaxConcurrent: 10})
	var now atomic.Int64
	now.Store(time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC).UnixNano())
	c.now = func() time.Time { return time.Unix(0, now.Load()) }
	scan := func() {
		t.Helper()
		if _, err := c.Scan(context.Background(), strings.NewReader("hello"), 5); err != nil {
			t.Fatal(err)
		}
	}
	scan()
	scan()
	if n := f.optCount.Load(); n != 1 {
		t.Fatalf("%d OPTIONS, want 1 within the TTL", n)
	}
	if _, limit := c.lim.inUse(); limit != 2 {
		t.Fatalf("limit %d, want Max-Connections 2", limit)
	}
	now.Add(int64(61 * time.Second)) // Options-TTL: 60
	scan()
	if n := f.optCount.Load(); n != 2 {
		t.Fatalf("%d OPTIONS, want 2 after the TTL", n)
	}
	// Ping always asks afresh and scans the probe body.
	if err := c.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	reqs := f.requests()
	if n := f.optCount.Load(); n != 3 || string(reqs[len(reqs)-1].Body) != probeBody {
		t.Fatalf("Ping: %d OPTIONS, last body %q", n, reqs[len(reqs)-1].Body)
	}
}

func TestICAPPingChecksEngine(t *testing.T) {
	// c-icap with its clamd down: OPTIONS fine, RESPMOD 500.
	_, fs := newICAPFake(t, 1024, func(*icapReq) string { return cicap500 })
	c := newTestICAP(t, fs.addr(), Options{})
	wantKind(t, c.Ping(context.Background()), ErrUnavailable)
}

func TestICAPConcurrent(t *testing.T) {
	f, fs := newICAPFake(t, 64, func(r *icapReq) string {
		if bytes.HasPrefix(r.Body, []byte("bad")) {
			return cicapInfected
		}
		return cicap204
	})
	c := newTestICAP(t, fs.addr(), Options{MaxConcurrent: 4, MaxIdle: 2})
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := mail(nil, i*1000)
			want := Clean
			if i%3 == 0 {
				body = append([]byte("bad"), body...)
				want = Infected("Eicar-Test-Signature.UNOFFICIAL")
			}
			res, err := c.Scan(context.Background(), bytes.NewReader(body), int64(len(body)))
			if err != nil || res != want {
				t.Errorf("scan %d: %v, %v", i, res, err)
			}
		}()
	}
	wg.Wait()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.peak > 4 || len(f.reqs) != 40 {
		t.Fatalf("%d requests, %d in flight at once for MaxConcurrent 4", len(f.reqs), f.peak)
	}
}

func TestICAPEcho(t *testing.T) {
	// A server that ignores Allow: 204 echoes clean content whole; one that
	// truncates the echo without naming a threat (c-icap's virus_scan in
	// its default mode) has removed something.
	msg := mail(nil, 20<<10)
	for _, tc := range []struct {
		name    string
		preview int
		echo    func(body []byte) []byte
		want    Result
	}{
		{"whole echo", -1, func(b []byte) []byte { return b }, Clean},
		{"whole echo after 100", 1024, func(b []byte) []byte { return b }, Clean},
		{"truncated to nothing", -1, func([]byte) []byte { return nil }, Infected("unknown")},
		{"truncated", 1024, func(b []byte) []byte { return b[:len(b)/2] }, Infected("unknown")},
		{"replaced", -1, func([]byte) []byte { return []byte("removed") }, Infected("unknown")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, fs := newICAPFake(t, tc.preview, func(r *icapReq) string { return echoResp(tc.echo(r.Body), "") })
			c := newTestICAP(t, fs.addr(), Options{})
			res, err := c.Scan(context.Background(), bytes.NewReader(msg), int64(len(msg)))
			if err != nil || res != tc.want {
				t.Fatalf("got %v, %v; want %v", res, err, tc.want)
			}
		})
	}
}

func TestPingTestVirus(t *testing.T) {
	tv := eicar(t)
	if !bytes.Equal(testVirus(), tv) {
		t.Fatal("testVirus() is not the EICAR test file")
	}
	detects := func(r *icapReq) string {
		if bytes.Equal(r.Body, tv) {
			return cicapInfected
		}
		return cicap204
	}
	_, fs := newICAPFake(t, 1024, detects)
	c := newTestICAP(t, fs.addr(), Options{PingTestVirus: true})
	if err := c.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	// c-icap without engine: 204 to everything.
	_, fs = newICAPFake(t, 1024, func(*icapReq) string { return cicap204 })
	c = newTestICAP(t, fs.addr(), Options{PingTestVirus: true})
	wantKind(t, c.Ping(context.Background()), ErrScanFailed)

	_, cfs := newClamdServer(t, func(cmd string, data []byte) string {
		switch {
		case cmd == "zPING":
			return "PONG"
		case bytes.Equal(data, tv):
			return "stream: Eicar-Test-Signature FOUND"
		}
		return "stream: OK"
	})
	cl, _ := NewClamd(cfs.addr(), Options{PingTestVirus: true})
	if err := cl.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, cfs = newClamdServer(t, func(cmd string, data []byte) string {
		if cmd == "zPING" {
			return "PONG"
		}
		return "stream: OK"
	})
	cl, _ = NewClamd(cfs.addr(), Options{PingTestVirus: true})
	wantKind(t, cl.Ping(context.Background()), ErrScanFailed)
}
