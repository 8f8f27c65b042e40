package scan

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

// Replies of c-icap 0.5.10 with virus_scan backed by clamd, exactly as
// integration/harness/clamd.go and cicap.go recorded them (CRLF line ends as on the wire).
var (
	cicapOptions = crlf(`ICAP/1.0 200 OK
Methods: RESPMOD, REQMOD
Service: C-ICAP/0.5.10 server - Antivirus service
ISTag: "CI0001-L5CkDhq+qWNs+PZ5DxxXsAAA"
Transfer-Preview: *
Options-TTL: 3600
Date: Fri, 27 Nov 2026 14:04:34 GMT
Preview: 1024
Allow: 204
Encapsulated: null-body=0

`)
	cicap204 = crlf(`ICAP/1.0 204 Unmodified
Server: C-ICAP/0.5.10
Connection: keep-alive
ISTag: "CI0001-L5CkDhq+qWNs+PZ5DxxXsAAA"

`)
	cicapEcho = crlf(`ICAP/1.0 200 OK
Server: C-ICAP/0.5.10
Connection: keep-alive
ISTag: "CI0001-L5CkDhq+qWNs+PZ5DxxXsAAA"
Encapsulated: res-hdr=0, res-body=112

HTTP/1.1 200 OK
Content-Type: application/octet-stream
Via: ICAP/1.0 vm (C-ICAP/0.5.10 Antivirus service )

13
hello clean world

0

`)
	cicapInfected = crlf(`ICAP/1.0 200 OK
Server: C-ICAP/0.5.10
Connection: keep-alive
ISTag: "CI0001-L5CkDhq+qWNs+PZ5DxxXsAAA"
X-Infection-Found: Type=0; Resolution=2; Threat=Eicar-Test-Signature.UNOFFICIAL;
X-Violations-Found: 1
	-
	Eicar-Test-Signature.UNOFFICIAL
	0
	0
Encapsulated: res-hdr=0, res-body=161

HTTP/1.0 403 Forbidden
Server: C-ICAP
Connection: close
Content-Type: text/html
Content-Language: en
Via: ICAP/1.0 vm (C-ICAP/0.5.10 Antivirus service )

`) + "1d\r\n<html>VIRUS FOUND</html>\n\x00\x00\x00\x00\r\n0\r\n\r\n"
	cicap500 = crlf(`ICAP/1.0 500 Server error
Server: C-ICAP/0.5.10
Connection: close
ISTag: "CI0001-UWwuEAqrC0e9RFfQwa6hrwAA"

`)
	cicap404 = crlf(`ICAP/1.0 404 Service not found
Server: C-ICAP/0.5.10
Connection: close

`)
)

// crlf turns the LF line ends of a raw string into CRLF.
func crlf(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }

func parse(raw string) (*icapResponse, error) {
	return readICAPResponse(bufio.NewReader(strings.NewReader(raw)), defaultICAPLimits)
}

func TestReadICAPResponseRecipes(t *testing.T) {
	r, err := parse(cicapInfected)
	if err != nil {
		t.Fatal(err)
	}
	if r.Code != 200 || r.HTTPStatus != 403 || r.BodyBytes != 29 {
		t.Fatalf("got code %d, HTTP %d, body %d", r.Code, r.HTTPStatus, r.BodyBytes)
	}
	if got := r.get("X-Violations-Found"); got != "1\n-\nEicar-Test-Signature.UNOFFICIAL\n0\n0" {
		t.Fatalf("folded header: %q", got)
	}
	if r.connClose() {
		t.Fatal("ICAP Connection: keep-alive taken for close (the HTTP one says close)")
	}
	r, err = parse(cicapEcho)
	if err != nil || r.HTTPStatus != 200 || r.BodyBytes != 19 {
		t.Fatalf("echo: %+v, %v", r, err)
	}
	r, err = parse(cicap204)
	if err != nil || r.Code != 204 || r.Encap != nil {
		t.Fatalf("204: %+v, %v", r, err)
	}
	r, err = parse(cicap500)
	if err != nil || r.Code != 500 || !r.connClose() {
		t.Fatalf("500: %+v, %v", r, err)
	}
	// Two responses back to back on one connection: the parser stops
	// exactly at the end of the first.
	br := bufio.NewReader(strings.NewReader(cicapInfected + cicap204))
	if _, err := readICAPResponse(br, defaultICAPLimits); err != nil {
		t.Fatal(err)
	}
	if r, err := readICAPResponse(br, defaultICAPLimits); err != nil || r.Code != 204 {
		t.Fatalf("second response: %+v, %v", r, err)
	}
}

func TestReadICAPResponseMalformed(t *testing.T) {
	long := strings.Repeat("a", 9000)
	many := strings.Repeat("X-A: b\r\n", 101)
	for _, tc := range []struct {
		name, raw string
		kind      error // ErrProtocol, or nil for a truncation (io error)
	}{
		{"empty", "", nil},
		{"not ICAP", "HTTP/1.1 200 OK\r\n\r\n", ErrProtocol},
		{"no reason", "ICAP/1.0 204\r\n\r\n", nil}, // valid, see below
		{"bad code", "ICAP/1.0 2O4 Unmodified\r\n\r\n", ErrProtocol},
		{"code out of range", "ICAP/1.0 999 What\r\n\r\n", ErrProtocol},
		{"four digit code", "ICAP/1.0 2040 X\r\n\r\n", ErrProtocol},
		{"long status", "ICAP/1.0 200 " + long + "\r\n\r\n", ErrProtocol},
		{"long header", "ICAP/1.0 200 OK\r\nX: " + long + "\r\n\r\n", ErrProtocol},
		{"too many headers", "ICAP/1.0 200 OK\r\n" + many + "\r\n", ErrProtocol},
		{"no colon", "ICAP/1.0 200 OK\r\nBogus\r\n\r\n", ErrProtocol},
		{"space in name", "ICAP/1.0 200 OK\r\nBad Name: x\r\n\r\n", ErrProtocol},
		{"fold first", "ICAP/1.0 200 OK\r\n\tfolded\r\n\r\n", ErrProtocol},
		{"headers cut off", "ICAP/1.0 200 OK\r\nServer: x\r\n", nil},
		{"bad encapsulated", "ICAP/1.0 200 OK\r\nEncapsulated: res-hdr\r\n\r\n", ErrProtocol},
		{"unknown entity", "ICAP/1.0 200 OK\r\nEncapsulated: foo=0\r\n\r\n", ErrProtocol},
		{"offsets backwards", "ICAP/1.0 200 OK\r\nEncapsulated: res-hdr=10, res-body=5\r\n\r\n", ErrProtocol},
		{"not from zero", "ICAP/1.0 200 OK\r\nEncapsulated: res-hdr=3, res-body=5\r\n\r\n", ErrProtocol},
		{"no body entity", "ICAP/1.0 200 OK\r\nEncapsulated: res-hdr=0\r\n\r\n", ErrProtocol},
		{"entity after body", "ICAP/1.0 200 OK\r\nEncapsulated: res-body=0, res-hdr=0\r\n\r\n", ErrProtocol},
		{"huge offset", "ICAP/1.0 200 OK\r\nEncapsulated: res-hdr=0, res-body=99999999\r\n\r\n", ErrProtocol},
		{"negative offset", "ICAP/1.0 200 OK\r\nEncapsulated: res-hdr=0, res-body=-1\r\n\r\n", ErrProtocol},
		{"headers too large", "ICAP/1.0 200 OK\r\nEncapsulated: res-hdr=0, res-body=70000\r\n\r\n", ErrProtocol},
		{"encap header cut", "ICAP/1.0 200 OK\r\nEncapsulated: res-hdr=0, res-body=50\r\n\r\nHTTP/1.1 200 OK\r\n", nil},
		{"bad chunk size", "ICAP/1.0 200 OK\r\nEncapsulated: res-body=0\r\n\r\nzz\r\n", ErrProtocol},
		{"negative chunk", "ICAP/1.0 200 OK\r\nEncapsulated: res-body=0\r\n\r\n-5\r\n", ErrProtocol},
		{"giant chunk", "ICAP/1.0 200 OK\r\nEncapsulated: res-body=0\r\n\r\nffffffffffff\r\n", ErrProtocol},
		{"overlong chunk size", "ICAP/1.0 200 OK\r\nEncapsulated: res-body=0\r\n\r\n0000000000000001\r\n", ErrProtocol},
		{"chunk without CRLF", "ICAP/1.0 200 OK\r\nEncapsulated: res-body=0\r\n\r\n3\r\nabcX\r\n0\r\n\r\n", ErrProtocol},
		{"chunk cut off", "ICAP/1.0 200 OK\r\nEncapsulated: res-body=0\r\n\r\n10\r\nabc", nil},
		{"no last chunk", "ICAP/1.0 200 OK\r\nEncapsulated: res-body=0\r\n\r\n3\r\nabc\r\n", nil},
		{"endless trailer", "ICAP/1.0 200 OK\r\nEncapsulated: res-body=0\r\n\r\n0\r\n" + strings.Repeat("T: x\r\n", 20), ErrProtocol},
	} {
		_, err := parse(tc.raw)
		if tc.name == "no reason" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: parsed without error", tc.name)
			continue
		}
		isProto := errors.Is(err, ErrProtocol)
		if tc.kind != nil && !isProto {
			t.Errorf("%s: got %v, want a protocol error", tc.name, err)
		}
		if tc.kind == nil && (isProto || !(errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF))) {
			t.Errorf("%s: got %v, want an EOF (truncated response)", tc.name, err)
		}
	}
}

func TestReadICAPResponseBodyLimit(t *testing.T) {
	lim := defaultICAPLimits
	lim.maxBody = 10
	_, err := readICAPResponse(bufio.NewReader(strings.NewReader(cicapEcho)), lim)
	if !errors.Is(err, ErrProtocol) {
		t.Fatalf("19-byte echo with a 10-byte limit: %v", err)
	}
}

func TestClassifyICAP(t *testing.T) {
	h := func(code, httpStatus int, kv ...string) *icapResponse {
		r := &icapResponse{Code: code, Reason: "X", HTTPStatus: httpStatus, Header: map[string][]string{}}
		if httpStatus != 0 {
			r.Encap = []encapSection{{"res-hdr", 0}, {"res-body", 40}}
			r.BodyBytes = 100
		}
		for i := 0; i < len(kv); i += 2 {
			r.Header.Add(kv[i], kv[i+1])
		}
		return r
	}
	body := func(r *icapResponse, n int64) *icapResponse { r.BodyBytes = n; return r }
	for _, tc := range []struct {
		name string
		resp *icapResponse
		sent int64
		want Result
		kind error
	}{
		{"204", h(204, 0), 100, Clean, nil},
		{"204 to a preview", h(204, 0), -1, Clean, nil},
		{"echo", h(200, 200), 100, Clean, nil},
		{"truncated echo", body(h(200, 200), 0), 100, Infected("unknown"), nil},
		{"longer echo", body(h(200, 200), 101), 100, Infected("unknown"), nil},
		{"200 to a preview", h(200, 200), -1, Infected("unknown"), nil},
		{"200 without Encapsulated", h(200, 0), 100, Result{}, ErrProtocol},
		{"infection header", h(200, 403, "X-Infection-Found", "Type=0; Resolution=2; Threat=Eicar-Test-Signature.UNOFFICIAL;"),
			100, Infected("Eicar-Test-Signature.UNOFFICIAL"), nil},
		{"infection header, no threat", h(200, 403, "X-Infection-Found", "Type=0; Resolution=2;"), 100, Infected("unknown"), nil},
		{"violations", h(200, 200, "X-Violations-Found", "1\n-\nW32/Test.Virus\n0\n0"), 100, Infected("W32/Test.Virus"), nil},
		{"violations short", h(200, 200, "X-Violations-Found", "1"), 100, Infected("unknown"), nil},
		{"zero violations", h(200, 200, "X-Violations-Found", "0"), 100, Clean, nil},
		{"virus id", h(200, 200, "X-Virus-ID", "EICAR-Test-File"), 100, Infected("EICAR-Test-File"), nil},
		{"icap 403 with id", h(403, 0, "X-Virus-ID", "EICAR-Test-File"), 100, Infected("EICAR-Test-File"), nil},
		{"icap 403 bare", h(403, 0), 100, Infected("unknown"), nil},
		{"block page", h(200, 403), 100, Infected("unknown"), nil},
		{"name cleaned", h(200, 200, "X-Virus-ID", " Bad\x01Name "), 100, Infected("BadName"), nil},
		{"500", h(500, 0), 100, Result{}, ErrUnavailable},
		{"503", h(503, 0), 100, Result{}, ErrUnavailable},
		{"404", h(404, 0), 100, Result{}, ErrScanFailed},
		{"400", h(400, 0), 100, Result{}, ErrScanFailed},
		{"100 as final", h(100, 0), 100, Result{}, ErrProtocol},
		{"206", h(206, 0), 100, Result{}, ErrProtocol},
		{"301", h(301, 0), 100, Result{}, ErrProtocol},
	} {
		res, kind, _ := classifyICAP(tc.resp, tc.sent)
		if res != tc.want || kind != tc.kind {
			t.Errorf("%s: got %v, %v; want %v, %v", tc.name, res, kind, tc.want, tc.kind)
		}
	}
}

func TestParseOptions(t *testing.T) {
	r, err := parse(cicapOptions)
	if err != nil {
		t.Fatal(err)
	}
	o, kind, msg := parseOptions(r)
	if kind != nil {
		t.Fatal(msg)
	}
	if o.Preview != 1024 || !o.Allow204 || o.TTL != time.Hour || o.ISTag != `"CI0001-L5CkDhq+qWNs+PZ5DxxXsAAA"` ||
		len(o.Methods) != 2 || o.MaxConnections != 0 || !strings.Contains(o.Service, "Antivirus") {
		t.Fatalf("got %+v", o)
	}
	for _, tc := range []struct {
		name, raw string
		kind      error
		check     func(ServiceOptions) bool
	}{
		{"minimal", "ICAP/1.0 200 OK\r\nMethods: RESPMOD\r\n\r\n", nil,
			func(o ServiceOptions) bool { return o.Preview == -1 && !o.Allow204 && o.TTL == 0 }},
		{"max connections", "ICAP/1.0 200 OK\r\nMethods: respmod\r\nMax-Connections: 3\r\nPreview: 0\r\n\r\n", nil,
			func(o ServiceOptions) bool { return o.MaxConnections == 3 && o.Preview == 0 }},
		{"reqmod only", "ICAP/1.0 200 OK\r\nMethods: REQMOD\r\n\r\n", ErrScanFailed, nil},
		{"no methods", "ICAP/1.0 200 OK\r\n\r\n", ErrScanFailed, nil},
		{"bad preview", "ICAP/1.0 200 OK\r\nMethods: RESPMOD\r\nPreview: lots\r\n\r\n", ErrProtocol, nil},
		{"bad ttl", "ICAP/1.0 200 OK\r\nMethods: RESPMOD\r\nOptions-TTL: -1\r\n\r\n", ErrProtocol, nil},
		{"bad maxconn", "ICAP/1.0 200 OK\r\nMethods: RESPMOD\r\nMax-Connections: x\r\n\r\n", ErrProtocol, nil},
		{"404", cicap404, ErrScanFailed, nil},
		{"500", cicap500, ErrUnavailable, nil},
		{"204", cicap204, ErrProtocol, nil},
	} {
		r, err := parse(tc.raw)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		o, kind, msg := parseOptions(r)
		if kind != tc.kind {
			t.Errorf("%s: kind %v (%s), want %v", tc.name, kind, msg, tc.kind)
		}
		if tc.check != nil && !tc.check(o) {
			t.Errorf("%s: got %+v", tc.name, o)
		}
	}
}
