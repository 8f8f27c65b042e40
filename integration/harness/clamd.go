package harness

import (
	"bytes"
	"crypto/md5"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// EICARThreat is the name clamd (and c-icap through it) reports for EICAR with
// the harness's signature database. ".UNOFFICIAL" because the database is not
// signed.
const EICARThreat = "Eicar-Test-Signature.UNOFFICIAL"

const (
	eicarMD5 = "44d88612fea8a8f36de82e1278abb02f"
	eicarLen = 68
	eicarKey = 0x5a
)

// eicarXOR is the EICAR test file XOR-ed with eicarKey. Kept encoded so that
// scanners on developer machines and CI do not flag the source tree.
var eicarXOR = []byte{
	0x02, 0x6f, 0x15, 0x7b, 0x0a, 0x7f, 0x1a, 0x1b, 0x0a, 0x01, 0x6e, 0x06,
	0x0a, 0x00, 0x02, 0x6f, 0x6e, 0x72, 0x0a, 0x04, 0x73, 0x6d, 0x19, 0x19,
	0x73, 0x6d, 0x27, 0x7e, 0x1f, 0x13, 0x19, 0x1b, 0x08, 0x77, 0x09, 0x0e,
	0x1b, 0x14, 0x1e, 0x1b, 0x08, 0x1e, 0x77, 0x1b, 0x14, 0x0e, 0x13, 0x0c,
	0x13, 0x08, 0x0f, 0x09, 0x77, 0x0e, 0x1f, 0x09, 0x0e, 0x77, 0x1c, 0x13,
	0x16, 0x1f, 0x7b, 0x7e, 0x12, 0x71, 0x12, 0x70,
}

// EICAR returns the 68-byte EICAR anti-virus test file (eicar.org), decoded at
// run time and checked against its published length and md5.
func EICAR() []byte {
	b := make([]byte, len(eicarXOR))
	for i, c := range eicarXOR {
		b[i] = c ^ eicarKey
	}
	if sum := md5.Sum(b); len(b) != eicarLen || hex.EncodeToString(sum[:]) != eicarMD5 {
		panic("harness: EICAR decodes to the wrong bytes")
	}
	return b
}

// EICARMessage returns a MIME mail (CRLF line ends) from from to to with EICAR
// as a base64 attachment. An attachment, not the body: the signature is the md5
// of the whole file, which clamd sees only once it has decoded the attachment;
// a text body that is the EICAR line was not detected.
func EICARMessage(from, to string) []byte {
	var id [8]byte
	rand.Read(id[:])
	boundary := "harness-" + hex.EncodeToString(id[:])
	enc := base64.StdEncoding.EncodeToString(EICAR())
	var b bytes.Buffer
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\r\n", args...) }
	w("From: <%s>", from)
	w("To: <%s>", to)
	w("Subject: EICAR test attachment")
	w("Date: %s", time.Now().Format(time.RFC1123Z))
	w("Message-ID: <%s@harness.example.test>", hex.EncodeToString(id[:]))
	w("MIME-Version: 1.0")
	w(`Content-Type: multipart/mixed; boundary="%s"`, boundary)
	w("")
	w("This is a multi-part message in MIME format.")
	w("--%s", boundary)
	w("Content-Type: text/plain; charset=us-ascii")
	w("")
	w("The attachment is the EICAR anti-virus test file.")
	w("--%s", boundary)
	w(`Content-Type: application/octet-stream; name="eicar.com"`)
	w("Content-Transfer-Encoding: base64")
	w(`Content-Disposition: attachment; filename="eicar.com"`)
	w("")
	for len(enc) > 76 {
		w("%s", enc[:76])
		enc = enc[76:]
	}
	w("%s", enc)
	w("--%s--", boundary)
	return b.Bytes()
}

// Clamd is a running clamd whose only signature is EICAR's, listening on a
// loopback TCP port and on a unix socket.
type Clamd struct {
	t    testing.TB
	dir  string
	addr string
	proc *Process
}

// StartClamd starts clamd in the foreground with its own clamd.conf and a
// one-line .hdb database (no freshclam, no network), and waits until it
// answers zPING with PONG. It is stopped by PID when the test ends.
func StartClamd(t testing.TB) *Clamd {
	t.Helper()
	bin := requireBin(t, "clamd")
	c := &Clamd{t: t, dir: tempDir(t, "clamd"), addr: FreeAddr(t)}
	host, port, _ := net.SplitHostPort(c.addr)
	db := filepath.Join(c.dir, "db")
	if err := os.Mkdir(db, 0o755); err != nil {
		t.Fatalf("harness: %v", err)
	}
	// .hdb line: md5:size:name; clamd refuses to start with no database at all.
	if err := writeFile(filepath.Join(db, "eicar.hdb"),
		[]byte(fmt.Sprintf("%s:%d:Eicar-Test-Signature\n", eicarMD5, eicarLen)), 0o644); err != nil {
		t.Fatalf("harness: %v", err)
	}
	conf := strings.Join([]string{
		"TCPSocket " + port,
		"TCPAddr " + host,
		"LocalSocket " + c.SocketPath(),
		"DatabaseDirectory " + db,
		"Foreground yes",
		"LogFile " + filepath.Join(c.dir, "clamd.log"),
		"LogTime yes",
		"PidFile " + filepath.Join(c.dir, "clamd.pid"),
		"Bytecode no",
		"",
	}, "\n")
	confPath := filepath.Join(c.dir, "clamd.conf")
	if err := writeFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatalf("harness: %v", err)
	}
	// stdout gets the same lines as LogFile; keep them apart so Log() is clamd's own log.
	c.proc = newProcess(t, "clamd", bin, []string{"-c", confPath}, filepath.Join(c.dir, "clamd.out"))
	c.start(t)
	return c
}

func (c *Clamd) start(t testing.TB) {
	t.Helper()
	began := time.Now()
	if err := c.proc.start(); err != nil {
		t.Fatalf("harness: clamd: %v", err)
	}
	var lastErr error
	if !waitFor(startTimeout, func() bool {
		if c.proc.aliveErr() != nil {
			return true
		}
		lastErr = c.ping()
		return lastErr == nil
	}) || c.proc.aliveErr() != nil {
		t.Fatalf("harness: clamd on %s did not answer zPING (last error %v; %v); output:\n%s\nlast lines of clamd.log:\n%s",
			c.addr, lastErr, c.proc.aliveErr(), c.proc.log.tail(20), c.Log())
	}
	t.Logf("harness: clamd up in %v on %s (PID %d)", time.Since(began).Round(time.Millisecond), c.addr, c.proc.PID())
}

// ping does one zPING over TCP and expects PONG.
func (c *Clamd) ping() error {
	conn, err := net.DialTimeout("tcp", c.addr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Write([]byte("zPING\x00")); err != nil {
		return err
	}
	buf := make([]byte, 16)
	n, err := conn.Read(buf)
	if got := string(bytes.TrimRight(buf[:n], "\x00\n")); got != "PONG" {
		return fmt.Errorf("zPING answered %q (%v)", got, err)
	}
	return nil
}

// Addr is clamd's TCP address, "127.0.0.1:PORT".
func (c *Clamd) Addr() string { return c.addr }

// SocketPath is clamd's unix socket (the Debian default kind of clamd address).
func (c *Clamd) SocketPath() string { return filepath.Join(c.dir, "clamd.sock") }

// Stop stops clamd (SIGTERM by PID) and waits for its exit.
func (c *Clamd) Stop() {
	c.t.Helper()
	c.proc.Stop()
}

// Start starts a stopped clamd again on the same port and waits for PONG.
func (c *Clamd) Start() {
	c.t.Helper()
	c.start(c.t)
}

// Log returns clamd's log file (scan results appear as "...: NAME FOUND").
func (c *Clamd) Log() string {
	data, _ := os.ReadFile(filepath.Join(c.dir, "clamd.log"))
	return string(data)
}
