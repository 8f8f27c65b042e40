package update

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// unpack returns a bundle's files.
func unpack(t *testing.T, raw []byte) map[string][]byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	files := map[string][]byte{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name], _ = io.ReadAll(tr)
	}
}

func TestBuildAndParse(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "blocked_clients.txt"), []byte("# spammers\n192.0.2.0/24\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "blocked_urls.txt"), []byte("evil.example\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "README"), []byte("not a list\n"), 0o644)
	raw, m, err := Build(dir, "2026112701", t0, testPriv)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Files) != 2 || m.Version != "2026112701" {
		t.Errorf("manifest %+v", m)
	}
	files := unpack(t, raw)
	for _, n := range []string{ManifestName, SignatureName, "blocked_clients.txt", "blocked_urls.txt"} {
		if _, ok := files[n]; !ok {
			t.Errorf("bundle lacks %s", n)
		}
	}
	b, err := Parse(raw, testPub, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := b.Lists.URLBlocked("www.evil.example"); !ok || b.Manifest.Version != "2026112701" {
		t.Error("parsed bundle lacks its lists")
	}
	// The unpacked size is bounded too.
	if _, err := Parse(raw, testPub, 100); ReasonOf(err) != ReasonTooLarge {
		t.Errorf("small limit: %v", err)
	}

	// Build refuses to sign an invalid list, naming the line.
	os.WriteFile(filepath.Join(dir, "blocked_senders.txt"), []byte("ok.example\nbad entry\n"), 0o644)
	if _, _, err := Build(dir, "x", time.Now(), testPriv); err == nil || !strings.Contains(err.Error(), "blocked_senders.txt:2") {
		t.Errorf("Build with a bad list: %v", err)
	}
}
