package encryption

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/foxproxy/foxproxy/settings"
)

// The tests drive Debian's gpg and openssl; scripts/install-test-deps.sh
// installs them (gnupg, openssl).

// gpgUser is a key pair made by gpg in its own GNUPGHOME.
type gpgUser struct {
	addr      string
	home      string
	publicAsc []byte // gpg --export --armor
	secretBin []byte // gpg --export-secret-keys (unprotected)
	keyID     string // long key ID of the encryption subkey, upper case
}

var (
	gpgOnce  sync.Once
	gpgUsers map[string]*gpgUser
	gpgErr   error
	gpgRoot  string
)

// users returns gpg-made keys for alice@example.org and bob@example.org,
// made once per test binary (key generation takes a moment).
func users(t *testing.T) map[string]*gpgUser {
	t.Helper()
	gpgOnce.Do(func() {
		gpgRoot, gpgErr = os.MkdirTemp("", "fpgpg") // short: gpg-agent's socket path is limited
		if gpgErr != nil {
			return
		}
		gpgUsers = map[string]*gpgUser{}
		for _, name := range []string{"alice", "bob"} {
			u, err := newGPGUser(filepath.Join(gpgRoot, name), name+"@example.org")
			if err != nil {
				gpgErr = err
				return
			}
			gpgUsers[name] = u
		}
		// Each knows the others' public keys, as senders do.
		for _, u := range gpgUsers {
			for _, o := range gpgUsers {
				if o != u {
					if _, gpgErr = gpgCmd(u.home, o.publicAsc, "--import"); gpgErr != nil {
						return
					}
				}
			}
		}
	})
	if gpgErr != nil {
		t.Fatalf("gpg setup (install gnupg: scripts/install-test-deps.sh): %v", gpgErr)
	}
	return gpgUsers
}

func TestMain(m *testing.M) {
	code := m.Run()
	if gpgRoot != "" {
		for _, u := range gpgUsers {
			_ = exec.Command("gpgconf", "--homedir", u.home, "--kill", "gpg-agent").Run()
		}
		os.RemoveAll(gpgRoot)
	}
	os.Exit(code)
}

func gpgCmd(home string, stdin []byte, args ...string) ([]byte, error) {
	cmd := exec.Command("gpg", append([]string{"--homedir", home, "--batch", "--no-tty", "--pinentry-mode", "loopback", "--passphrase", "", "--auto-key-locate", "local"}, args...)...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("gpg %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return out, nil
}

func newGPGUser(home, addr string) (*gpgUser, error) {
	if err := os.MkdirAll(home, 0o700); err != nil {
		return nil, err
	}
	if _, err := gpgCmd(home, nil, "--quick-gen-key", addr, "default", "default", "never"); err != nil {
		return nil, err
	}
	u := &gpgUser{addr: addr, home: home}
	var err error
	if u.publicAsc, err = gpgCmd(home, nil, "--export", "--armor", addr); err != nil {
		return nil, err
	}
	if u.secretBin, err = gpgCmd(home, nil, "--export-secret-keys", addr); err != nil {
		return nil, err
	}
	out, err := gpgCmd(home, nil, "--with-colons", "--list-keys", addr)
	if err != nil {
		return nil, err
	}
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Split(l, ":")
		if len(f) > 11 && f[0] == "sub" && strings.Contains(f[11], "e") {
			u.keyID = strings.ToUpper(f[4])
		}
	}
	if u.keyID == "" {
		return nil, fmt.Errorf("no encryption subkey in %s", out)
	}
	return u, nil
}

// writeFile writes data to dir/name with mode perm.
func writeFile(t testing.TB, dir, name string, data []byte, perm os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, perm); err != nil { // umask
		t.Fatal(err)
	}
	return p
}

// testConfig is the default encryption configuration, as
// config/default.yaml writes it (config's TestEncryptionDefaults keeps
// the two in step).
func testConfig(t testing.TB) Config {
	t.Helper()
	return Config{
		OpenPGP:                 OpenPGP{Timeout: settings.Duration(5 * time.Second), Resolve: map[string]string{}, CacheSize: 10000},
		Prefer:                  "openpgp",
		OnKeyServiceUnavailable: "quarantine",
	}
}

// newGateway builds a gateway whose log goes to the returned observer.
func newGateway(t *testing.T, cfg Config) (*Gateway, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	g, err := New(cfg, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	return g, logs
}

// Messages: the original content fields and body are what must come back.
const (
	outerHeader = "Received: from client.example.net (client.example.net [192.0.2.7])\r\n" +
		"\tby mx.example.org (Postfix) with ESMTPS id 4ABC; Mon, 2 Mar 2026 10:00:00 +0100 (CET)\r\n" +
		"From: Sender <sender@example.net>\r\n" +
		"To: alice@example.org, bob@example.org\r\n" +
		"Subject: quarterly numbers\r\n" +
		"Date: Mon, 2 Mar 2026 10:00:00 +0100\r\n" +
		"Message-ID: <m1@example.net>\r\n"
	plainContent = "MIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"Content-Transfer-Encoding: 8bit\r\n"
	plainBody = "The numbers are in. Gr\xc3\xbc\xc3\x9fe,\r\n\r\n-- \r\nsender\r\n"
)

// multipartMessage has a text part and a binary attachment.
func multipartMessage() (content, body string) {
	att := make([]byte, 3000)
	for i := range att {
		att[i] = byte(i * 7)
	}
	enc := wrap76(att)
	content = "MIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed;\r\n\tboundary=\"b1\"\r\n"
	body = "This is a multi-part message in MIME format.\r\n" +
		"--b1\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nSee the attachment.\r\n" +
		"--b1\r\nContent-Type: application/octet-stream; name=\"q1.bin\"\r\n" +
		"Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"q1.bin\"\r\n\r\n" +
		enc + "--b1--\r\n"
	return content, body
}

func wrap76(b []byte) string {
	s := base64.StdEncoding.EncodeToString(b)
	var sb strings.Builder
	for len(s) > 76 {
		sb.WriteString(s[:76] + "\r\n")
		s = s[76:]
	}
	sb.WriteString(s + "\r\n")
	return sb.String()
}

// innerOf is what an encrypted entity must hold: the original's content
// fields without MIME-Version, an empty line, the body.
func innerOf(content, body string) string {
	var sb strings.Builder
	for _, l := range strings.SplitAfter(content, "\r\n") {
		if !strings.HasPrefix(strings.ToLower(l), "mime-version:") {
			sb.WriteString(l)
		}
	}
	return sb.String() + "\r\n" + body
}

// testCA is a certificate authority for the WKD servers and S/MIME certs.
type testCA struct {
	cert *x509.Certificate
	key  *rsa.PrivateKey
	pem  []byte
}

var serial int64 = 100

func newCA(t *testing.T) *testCA {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "foxproxy test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue makes a leaf certificate from tmpl and returns it with its key as PEM.
func (ca *testCA) issue(t *testing.T, tmpl *x509.Certificate) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	serial++
	tmpl.SerialNumber = big.NewInt(serial)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

// smimeTemplate is an S/MIME certificate for addr; inSubject puts the
// address in the subject's emailAddress instead of the SAN.
func smimeTemplate(addr string, inSubject bool, notBefore, notAfter time.Time) *x509.Certificate {
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: addr},
		NotBefore:   notBefore,
		NotAfter:    notAfter,
		KeyUsage:    x509.KeyUsageKeyEncipherment | x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection},
	}
	if inSubject {
		tmpl.Subject.ExtraNames = []pkix.AttributeTypeAndValue{{Type: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}, Value: addr}}
	} else {
		tmpl.EmailAddresses = []string{addr}
	}
	return tmpl
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// run runs a command and returns its stdout, failing the test on error.
func run(t *testing.T, stdin []byte, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return out
}
