package main

import (
	"bytes"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The publisher's commands and `foxproxy update`, end to end: keygen, sign
// a directory, serve it over HTTPS, update, update again.
func TestBundleSignAndUpdateCommands(t *testing.T) {
	dir := t.TempDir()
	var out, errb bytes.Buffer
	key := filepath.Join(dir, "key")
	if code := run([]string{"bundle", "keygen", "-out", key}, &out, &errb); code != 0 {
		t.Fatalf("keygen: %d %s", code, errb.String())
	}
	pub := regexp.MustCompile(`update.public_key\): (\S+)`).FindStringSubmatch(out.String())[1]
	if st, _ := os.Stat(key); st.Mode().Perm() != 0o600 {
		t.Errorf("private key mode %v", st.Mode().Perm())
	}
	if code := run([]string{"bundle", "keygen", "-out", key}, &out, &errb); code != 1 {
		t.Errorf("keygen overwrote a key (exit %d)", code)
	}

	src := filepath.Join(dir, "lists")
	os.Mkdir(src, 0o755)
	os.WriteFile(filepath.Join(src, "blocked_clients.txt"), []byte("192.0.2.1\n192.0.2.2\n"), 0o644)
	bundle := filepath.Join(dir, "b.tar.gz")
	out.Reset()
	if code := run([]string{"bundle", "sign", "-key", key, "-dir", src, "-out", bundle, "-version", "v1"}, &out, &errb); code != 0 {
		t.Fatalf("sign: %d %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "blocked_clients.txt") || !strings.Contains(out.String(), pub) {
		t.Errorf("sign output:\n%s", out.String())
	}

	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, bundle)
	}))
	defer srv.Close()
	ca := filepath.Join(dir, "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644)
	state := filepath.Join(dir, "state")
	cfg := filepath.Join(dir, "foxproxy.yaml")
	os.WriteFile(cfg, []byte("update:\n  url: "+srv.URL+"/b.tar.gz\n  public_key: "+pub+"\n  state_dir: "+state+"\n  ca_file: "+ca+"\n"), 0o644)

	out.Reset()
	if code := run([]string{"update", "-config", cfg}, &out, &errb); code != 0 {
		t.Fatalf("update: %d\n%s%s", code, out.String(), errb.String())
	}
	if !strings.Contains(out.String(), "version   (none) -> v1") || !regexp.MustCompile(`blocked_clients +\+2 -0 \(0 -> 2 entries\)`).MatchString(out.String()) {
		t.Errorf("first update:\n%s", out.String())
	}
	if _, err := os.Stat(filepath.Join(state, "bundle.tar.gz")); err != nil {
		t.Error(err)
	}

	// A new version: one entry swapped.
	os.WriteFile(filepath.Join(src, "blocked_clients.txt"), []byte("192.0.2.2\n192.0.2.3\n"), 0o644)
	if code := run([]string{"bundle", "sign", "-key", key, "-dir", src, "-out", bundle, "-version", "v2"}, &out, &errb); code != 0 {
		t.Fatal(errb.String())
	}
	out.Reset()
	run([]string{"update", "-config", cfg}, &out, &errb)
	if !strings.Contains(out.String(), "version   v1 -> v2") || !regexp.MustCompile(`blocked_clients +\+1 -1 \(2 -> 2 entries\)`).MatchString(out.String()) {
		t.Errorf("second update:\n%s", out.String())
	}
	out.Reset()
	run([]string{"update", "-config", cfg}, &out, &errb)
	if !strings.Contains(out.String(), "version   v2, unchanged") {
		t.Errorf("third update:\n%s", out.String())
	}

	// A bundle that does not verify: exit 1, the stored one stays.
	os.WriteFile(bundle, []byte("not a bundle"), 0o644)
	out.Reset()
	if code := run([]string{"update", "-config", cfg}, &out, &errb); code != 1 || !strings.Contains(out.String(), "in force  v2 (unchanged)") {
		t.Errorf("bad bundle: exit %d\n%s", code, out.String())
	}
}
