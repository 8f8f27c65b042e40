package scan

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
)

// icapSeeds are real responses (integration/harness/clamd.go and cicap.go) and near misses.
func icapSeeds() []string {
	return []string{
		cicapOptions, cicap204, cicapEcho, cicapInfected, cicap500, cicap404,
		"ICAP/1.0 100 Continue\r\n\r\n",
		"ICAP/1.0 200 OK\r\nX-Virus-ID: EICAR\r\nEncapsulated: res-hdr=0, null-body=19\r\n\r\nHTTP/1.1 403 No\r\n\r\n",
		"ICAP/1.0 200 OK\r\nEncapsulated: req-hdr=0, res-hdr=18, res-body=36\r\n\r\nGET / HTTP/1.1\r\n\r\nHTTP/1.1 200 OK\r\n\r\n3; x=y\r\nabc\r\n0; ieof\r\nT: 1\r\n\r\n",
		"ICAP/1.0 200 OK\nEncapsulated: res-body=0\n\n5\nhello\n0\n\n",
	}
}

// FuzzICAPResponse feeds arbitrary bytes to the ICAP response parser: it
// must never panic, never accept an out-of-range status, and every threat
// name it reports must be a clean single line.
func FuzzICAPResponse(f *testing.F) {
	for _, s := range icapSeeds() {
		f.Add([]byte(s))
	}
	lim := defaultICAPLimits
	lim.maxBody = 1 << 20
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(data), 4096)
		for range 3 { // a few responses back to back, as on a kept connection
			resp, err := readICAPResponse(br, lim)
			if err != nil {
				return
			}
			if resp.Code < 100 || resp.Code > 599 || resp.BodyBytes > lim.maxBody {
				t.Fatalf("accepted code %d body %d", resp.Code, resp.BodyBytes)
			}
			for _, sent := range []int64{-1, 0, resp.BodyBytes} {
				res, kind, _ := classifyICAP(resp, sent)
				if kind != nil && res != (Result{}) {
					t.Fatalf("both a result and an error: %v %v", res, kind)
				}
				if res.Infected && (res.Threat == "" || !printable(res.Threat) || len(res.Threat) > 200) {
					t.Fatalf("bad threat name %q", res.Threat)
				}
			}
			if o, kind, _ := parseOptions(resp); kind == nil && (o.Preview < -1 || o.TTL < 0 || o.MaxConnections < 0) {
				t.Fatalf("bad options %+v", o)
			}
		}
	})
}

// FuzzClamdReply feeds arbitrary replies to the clamd reply reader and
// parser.
func FuzzClamdReply(f *testing.F) {
	for _, s := range []string{
		"stream: OK\x00",
		"stream: Eicar-Test-Signature.UNOFFICIAL FOUND\x00",
		"INSTREAM size limit exceeded. ERROR\x00",
		"stream: Can't allocate memory ERROR\x00",
		"UNKNOWN COMMAND\x00",
		"PONG\x00",
		"ClamAV 1.4.6\n",
		"3: stream: Eicar(44d88612fea8a8f36de82e1278abb02f:68) FOUND\x00",
		"stream: FOUND\x00",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		reply, err := readClamdReply(bufio.NewReader(bytes.NewReader(data)))
		if err != nil {
			return
		}
		if len(reply) > clamdMaxReply || strings.ContainsAny(reply, "\x00\n") {
			t.Fatalf("reply %q", reply)
		}
		if id, rest, ok := sessionReply(reply); ok && (id < 0 || len(rest) >= len(reply)) {
			t.Fatalf("session reply %q split into %d, %q", reply, id, rest)
		}
		res, kind, msg := parseClamdReply(reply)
		switch {
		case kind != nil && (res != Result{} || msg == ""):
			t.Fatalf("error kind with a result or without a message: %v %q", res, msg)
		case kind == nil && res.Infected && (res.Threat == "" || !printable(res.Threat)):
			t.Fatalf("bad threat %q", res.Threat)
		case kind == nil && !res.Infected && !strings.HasSuffix(strings.TrimSpace(reply), "stream: OK"):
			t.Fatalf("clean for %q", reply)
		}
	})
}
