//go:build bench

package bench

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/foxproxy/foxproxy/internal/benchmsg"
)

// message is one test message: the same bytes for smtp-source (a file with
// LF line ends; smtp-source sends each line with CRLF and dot-stuffs it)
// and for the benchmark's own client (wire: CRLF).
type message struct {
	label string // "10 KB", "1 MB"
	key   string // "10k", "1m": in file and profile names
	path  string // LF file for smtp-source -F
	wire  []byte // the message as sent (CRLF line ends, before dot-stuffing)
}

// writeMessage builds the message of size bytes and writes its LF form to dir.
func writeMessage(t testing.TB, dir, label, key string, size int) *message {
	t.Helper()
	wire := benchmsg.Build(size)
	path := filepath.Join(dir, "message-"+key+".eml")
	lf := bytes.ReplaceAll(wire, []byte("\r\n"), []byte("\n"))
	if err := os.WriteFile(path, lf, 0o644); err != nil {
		t.Fatal(err)
	}
	return &message{label: label, key: key, path: path, wire: wire}
}
