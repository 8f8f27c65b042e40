package integration

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/foxproxy/foxproxy/integration/harness"
)

// gpgHome is a throwaway GnuPG home holding one key pair. It lives under
// /tmp with a short name: gpg-agent's socket path must stay short.
type gpgHome struct{ dir string }

func newGPGHome(t *testing.T, addr string) *gpgHome {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "fpgpg")
	if err != nil {
		t.Fatal(err)
	}
	g := &gpgHome{dir}
	t.Cleanup(func() {
		// gpgconf stops the agent this home started (by its socket, not
		// by a PID guess), then the directory goes.
		exec.Command("gpgconf", "--homedir", dir, "--kill", "all").Run()
		os.RemoveAll(dir)
	})
	g.run(t, nil, "--quick-gen-key", addr, "default", "default", "never")
	return g
}

func (g *gpgHome) run(t *testing.T, stdin []byte, args ...string) []byte {
	t.Helper()
	cmd := exec.Command("gpg", append([]string{"--homedir", g.dir, "--batch", "--passphrase", "", "--pinentry-mode", "loopback",
		"--trust-model", "always"}, args...)...)
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("gpg %v: %v\n%s", args, err, errOut.String())
	}
	return out.Bytes()
}

// wkdServer is a Web Key Directory on loopback with its own test CA,
// serving keys at the paths GnuPG's gpg-wks-client computes. It can be
// stopped and started again on the same address: the key service "down".
type wkdServer struct {
	addr   string
	caFile string
	cert   tls.Certificate
	keys   map[string][]byte // URL path → key
	mu     sync.Mutex
	srv    *http.Server
}

func startWKD(t *testing.T) *wkdServer {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "foxproxy test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "openpgpkey.example.test"},
		DNSNames:  []string{"openpgpkey.example.test", "example.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	w := &wkdServer{addr: harness.FreeAddr(t), keys: map[string][]byte{},
		cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}}
	w.caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(w.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644); err != nil {
		t.Fatal(err)
	}
	w.start(t)
	t.Cleanup(w.stop)
	return w
}

// publish serves key for addr at the advanced method's URL, as GnuPG's own
// WKD client computes it.
func (w *wkdServer) publish(t *testing.T, addr string, key []byte) {
	t.Helper()
	out, err := exec.Command("/usr/lib/gnupg/gpg-wks-client", "--print-wkd-url", addr).Output()
	if err != nil {
		t.Fatalf("gpg-wks-client --print-wkd-url: %v", err)
	}
	u, err := url.Parse(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatal(err)
	}
	w.mu.Lock()
	w.keys[u.Path] = key
	w.mu.Unlock()
}

func (w *wkdServer) start(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp", w.addr)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openpgpkey/", func(rw http.ResponseWriter, r *http.Request) {
		w.mu.Lock()
		key, ok := w.keys[r.URL.Path]
		w.mu.Unlock()
		if !ok {
			http.NotFound(rw, r)
			return
		}
		// No caching: the test's "key service down" must be seen by the
		// next message.
		rw.Header().Set("Cache-Control", "no-store")
		rw.Header().Set("Content-Type", "application/octet-stream")
		rw.Write(key)
	})
	w.mu.Lock()
	w.srv = &http.Server{Handler: mux, TLSConfig: &tls.Config{Certificates: []tls.Certificate{w.cert}}}
	srv := w.srv
	w.mu.Unlock()
	go srv.ServeTLS(ln, "", "")
}

func (w *wkdServer) stop() {
	w.mu.Lock()
	srv := w.srv
	w.srv = nil
	w.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

// Through real Postfix: a message whose subject asks for encryption
// ("[secure]") arrives PGP/MIME-encrypted with the key from the
// recipient's Web Key Directory, and GnuPG decrypts it back to what was
// sent. With the key service down the copy is quarantined (the encryption
// exception action's default), a release refuses to send it in clear, and
// once the service is back the release delivers it encrypted.
func TestEncryptThroughPostfix(t *testing.T) {
	gpg := newGPGHome(t, harness.RcptAddr)
	wkd := startWKD(t)
	wkd.publish(t, harness.RcptAddr, gpg.run(t, nil, "--export", harness.RcptAddr))

	qdir := filepath.Join(t.TempDir(), "quarantine")
	pf := harness.StartPostfix(t, harness.PostfixOptions{})
	fp := startFoxproxy(t, pf.FilterAddr, pf.ReinjectAddr,
		"encryption:",
		"  openpgp:",
		"    wkd: true",
		"    timeout: 3s",
		"    ca_file: "+wkd.caFile,
		"    resolve: {openpgpkey.example.test: \""+wkd.addr+"\", example.test: \""+wkd.addr+"\"}",
		"quarantine: {dir: "+qdir+"}",
		"policy:",
		"  rules:",
		"    - {name: secure, if: {subject_tag: \"[secure]\"}, then: encrypt}",
	)

	res := harness.Send(t, harness.SendOptions{Server: pf.InboundAddr, Subject: "[secure] Contract", Body: "the secret terms"})
	if res.Code != 250 {
		t.Fatalf("inbound smtpd: %s", res.Reply)
	}
	msg := pf.WaitDelivered(t, harness.BoxRcpt, 1, 20*time.Second)[0]
	checkEncrypted(t, gpg, msg, "Contract", "the secret terms")
	if tr := msg.Header().Get("X-Foxproxy"); !strings.Contains(tr, "encrypted=openpgp") || !strings.Contains(tr, "verdict=encrypt") {
		t.Errorf("X-Foxproxy: %q", tr)
	}

	// The key service goes down: the next copy waits in the quarantine.
	wkd.stop()
	res = harness.Send(t, harness.SendOptions{Server: pf.InboundAddr, Subject: "[secure] Second", Body: "more secret terms"})
	if res.Code != 250 {
		t.Fatalf("inbound smtpd: %s", res.Reply)
	}
	id := pf.WaitLog(t, res.QueueID+`: to=<rcpt@example\.test>.*status=sent \(250 2\.0\.0 Ok: quarantined as (\S+)`, 30*time.Second)[1]
	if n := len(pf.Delivered(harness.BoxRcpt)); n != 1 {
		t.Fatalf("%d messages delivered while the key service was down, want the first only", n)
	}
	_, text := httpGet(t, fp.Admin+"/metrics", "")
	for outcome, want := range map[string]float64{"encrypted": 1, "quarantined": 1, "unencrypted": 0} {
		if got, ok := metric(text, `foxproxy_encryption_copies_total{outcome="`+outcome+`"}`); !ok || got != want {
			t.Errorf("encryption copies %s = %v (present %v), want %v", outcome, got, ok, want)
		}
	}
	show := runFoxproxyCLI(t, "quarantine", "show", id, "-config", fp.ConfigPath)
	if show.code != 0 || !strings.Contains(show.stdout, "a release encrypts it for rcpt@example.test") {
		t.Fatalf("show: %+v", show)
	}
	if rel := runFoxproxyCLI(t, "quarantine", "release", id, "-config", fp.ConfigPath); rel.code == 0 ||
		!strings.Contains(rel.stderr, "still no encryption key for <rcpt@example.test>") {
		t.Fatalf("release while the key service is down: %+v", rel)
	}
	if n := len(pf.Delivered(harness.BoxRcpt)); n != 1 {
		t.Fatalf("a refused release delivered something: %d messages", n)
	}

	// Back: the release encrypts and delivers it.
	wkd.start(t)
	if rel := runFoxproxyCLI(t, "quarantine", "release", id, "-config", fp.ConfigPath); rel.code != 0 {
		t.Fatalf("release: %+v", rel)
	}
	msgs := pf.WaitDelivered(t, harness.BoxRcpt, 2, 20*time.Second)
	for _, m := range msgs {
		if m.Header().Get("X-Foxproxy-Released") != "" {
			checkEncrypted(t, gpg, m, "Second", "more secret terms")
			return
		}
	}
	t.Fatal("no released message among the delivered ones")
}

// checkEncrypted: delivered as PGP/MIME, no plaintext anywhere, the tag
// gone from the subject, and gpg decrypts it to the body that was sent.
func checkEncrypted(t *testing.T, gpg *gpgHome, m harness.Message, subject, body string) {
	t.Helper()
	h := m.Header()
	if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, "multipart/encrypted") || !strings.Contains(ct, "application/pgp-encrypted") {
		t.Fatalf("Content-Type %q, want PGP/MIME:\n%s", ct, m.Data)
	}
	if bytes.Contains(m.Data, []byte(body)) {
		t.Fatalf("plaintext in the delivered message:\n%s", m.Data)
	}
	if got := h.Get("Subject"); got != subject {
		t.Errorf("Subject %q, want %q (tag removed)", got, subject)
	}
	// gpg finds the armoured message inside the MIME structure.
	plain := gpg.run(t, m.Data, "--decrypt")
	if !bytes.Contains(plain, []byte(body)) {
		t.Fatalf("gpg decrypted to:\n%s\nwant it to contain %q", plain, body)
	}
}

// Through real Postfix: a PGP/MIME message that GnuPG encrypted for a local
// recipient whose private key foxproxy holds arrives decrypted, with the
// trace header saying so; one encrypted for a key foxproxy does not hold
// arrives untouched.
func TestDecryptThroughPostfix(t *testing.T) {
	gpg := newGPGHome(t, harness.RcptAddr)
	keyDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(keyDir, "rcpt.key"), gpg.run(t, nil, "--export-secret-keys", harness.RcptAddr), 0o600); err != nil {
		t.Fatal(err)
	}
	stranger := newGPGHome(t, "stranger@example.test")
	strangerKey := stranger.run(t, nil, "--export", "stranger@example.test")
	gpg.run(t, strangerKey, "--import")

	pf := harness.StartPostfix(t, harness.PostfixOptions{})
	startFoxproxy(t, pf.FilterAddr, pf.ReinjectAddr, "encryption: {decrypt: {key_dir: "+keyDir+"}}")

	pgpMIME := func(to, subject, body string) []byte {
		inner := "Content-Type: text/plain; charset=utf-8\r\n\r\n" + body + "\r\n"
		armored := gpg.run(t, []byte(inner), "--encrypt", "--armor", "--recipient", to)
		return []byte("From: sender@example.test\r\nTo: rcpt@example.test\r\nSubject: " + subject + "\r\n" +
			"MIME-Version: 1.0\r\n" +
			"Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"b1\"\r\n\r\n" +
			"--b1\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n\r\n" +
			"--b1\r\nContent-Type: application/octet-stream; name=\"encrypted.asc\"\r\n\r\n" +
			strings.ReplaceAll(string(armored), "\n", "\r\n") + "\r\n--b1--\r\n")
	}
	for _, c := range []struct {
		to, subject, body string
		decrypted         bool
	}{
		{harness.RcptAddr, "For you", "decrypt me please", true},
		{"stranger@example.test", "Not for us", "only the stranger reads this", false},
	} {
		res := harness.Send(t, harness.SendOptions{Server: pf.InboundAddr, Data: pgpMIME(c.to, c.subject, c.body)})
		if res.Code != 250 {
			t.Fatalf("inbound smtpd: %s", res.Reply)
		}
	}
	msgs := pf.WaitDelivered(t, harness.BoxRcpt, 2, 20*time.Second)
	for _, m := range msgs {
		h := m.Header()
		switch h.Get("Subject") {
		case "For you":
			if !bytes.Contains(m.Data, []byte("decrypt me please")) || strings.HasPrefix(h.Get("Content-Type"), "multipart/encrypted") ||
				!strings.Contains(h.Get("X-Foxproxy"), "decrypted=openpgp") {
				t.Errorf("not decrypted:\n%s", m.Data)
			}
		case "Not for us":
			if !strings.HasPrefix(h.Get("Content-Type"), "multipart/encrypted") || strings.Contains(h.Get("X-Foxproxy"), "decrypted=openpgp") {
				t.Errorf("touched a message foxproxy cannot decrypt:\n%s", m.Data)
			}
		default:
			t.Errorf("unexpected message:\n%s", m.Data)
		}
	}
}
