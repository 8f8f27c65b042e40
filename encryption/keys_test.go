package encryption

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"go.uber.org/zap/zaptest/observer"
)

// TestKeyringReload: a key file added, replaced or removed after start is
// seen by the next lookup.
func TestKeyringReload(t *testing.T) {
	us := users(t)
	dir := t.TempDir()
	cfg := testConfig(t)
	cfg.OpenPGP.KeyringDir = dir
	g, _ := newGateway(t, cfg)
	look := func() Recipient { return g.Lookup(context.Background(), []string{"alice@example.org"})[0] }

	if r := look(); r.Outcome != Absent || r.Err == nil || !strings.Contains(r.Err.Error(), "WKD is off") {
		t.Fatalf("empty keyring: %+v", r)
	}
	writeFile(t, dir, "alice.asc", us["alice"].publicAsc, 0o644)
	if r := look(); r.Outcome != Found || r.Source != SourceKeyring {
		t.Fatalf("after adding the key: %+v", r)
	}
	// Replaced by an expired key for the same address: absent, and says why.
	expired := newEntity(t, "alice@example.org", &packet.Config{KeyLifetimeSecs: 60, Time: func() time.Time { return time.Now().Add(-time.Hour) }})
	writeFile(t, dir, "alice.asc", publicBytes(t, expired), 0o644)
	os.Chtimes(filepath.Join(dir, "alice.asc"), time.Now().Add(time.Minute), time.Now().Add(time.Minute)) // same size is possible: change mtime too
	if r := look(); r.Outcome != Absent || !strings.Contains(r.Err.Error(), "expired") {
		t.Fatalf("after replacing with an expired key: %+v", r)
	}
	os.Remove(filepath.Join(dir, "alice.asc"))
	if r := look(); r.Outcome != Absent {
		t.Fatalf("after removing the key: %+v", r)
	}
	// A broken file is left out; the others still load.
	writeFile(t, dir, "broken.asc", []byte("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nnonsense\n-----END PGP PUBLIC KEY BLOCK-----\n"), 0o644)
	writeFile(t, dir, "alice.asc", us["alice"].publicAsc, 0o644)
	if r := look(); r.Outcome != Found {
		t.Fatalf("a broken file next to a good one: %+v", r)
	}
}

// TestCertDir: certificates are found by SAN and subject emailAddress;
// expired and not-yet-valid ones are ignored with a reason; prefer decides
// between a local OpenPGP key and a certificate.
func TestCertDir(t *testing.T) {
	us := users(t)
	ca := newCA(t)
	dir := t.TempDir()
	now := time.Now()
	c, _ := ca.issue(t, smimeTemplate("old@example.com", false, now.Add(-48*time.Hour), now.Add(-24*time.Hour)))
	writeFile(t, dir, "old.pem", c, 0o644)
	c, _ = ca.issue(t, smimeTemplate("future@example.com", true, now.Add(24*time.Hour), now.Add(48*time.Hour)))
	writeFile(t, dir, "future.pem", c, 0o644)
	// alice has both an OpenPGP key and a certificate; the certificate file
	// holds an expired one too.
	c1, _ := ca.issue(t, smimeTemplate("alice@example.org", false, now.Add(-48*time.Hour), now.Add(-time.Hour)))
	c2, _ := ca.issue(t, smimeTemplate("alice@example.org", true, now.Add(-time.Hour), now.Add(time.Hour)))
	writeFile(t, dir, "alice.pem", append(c1, c2...), 0o644)
	keyring := pgpKeyring(t, us)

	cfg := testConfig(t)
	cfg.SMIME.CertDir = dir
	cfg.OpenPGP.KeyringDir = keyring
	g, logs := newGateway(t, cfg)
	rs := g.Lookup(context.Background(), []string{"old@example.com", "future@example.com", "alice@example.org", "nobody@example.com"})
	if rs[0].Outcome != Absent || !strings.Contains(rs[0].Err.Error(), "expired on") || rs[0].Source != SourceCertDir {
		t.Errorf("expired certificate: %+v", rs[0])
	}
	if rs[1].Outcome != Absent || !strings.Contains(rs[1].Err.Error(), "valid only from") {
		t.Errorf("future certificate: %+v", rs[1])
	}
	if rs[2].Outcome != Found || rs[2].Method != MethodOpenPGP {
		t.Errorf("prefer openpgp: %+v", rs[2])
	}
	if rs[3].Outcome != Absent {
		t.Errorf("no key: %+v", rs[3])
	}
	if logs.FilterMessage("certificate not used").Len() == 0 {
		t.Error("an ignored expired certificate is not noted in the log")
	}

	cfg.Prefer = MethodSMIME
	g2, _ := newGateway(t, cfg)
	r := g2.Lookup(context.Background(), []string{"alice@example.org"})[0]
	if r.Outcome != Found || r.Method != MethodSMIME || !r.cert.NotAfter.After(now) {
		t.Errorf("prefer smime: %+v", r)
	}
}

// TestEncryptRefuses: Encrypt never writes anything for recipients without
// keys or with mixed methods.
func TestEncryptRefuses(t *testing.T) {
	g, _ := newGateway(t, testConfig(t))
	msg := outerHeader + plainContent + "\r\n" + plainBody
	for name, rs := range map[string][]Recipient{
		"none":        nil,
		"absent":      {{Addr: "a@example.org", Outcome: Absent}},
		"unavailable": {{Addr: "a@example.org", Outcome: Unavailable}},
		"forged":      {{Addr: "a@example.org", Outcome: Found, Method: MethodOpenPGP}}, // not from Lookup
		"mixed": {
			{Addr: "a@example.org", Outcome: Found, Method: MethodOpenPGP, pgp: &openpgp.Entity{}},
			{Addr: "b@example.org", Outcome: Found, Method: MethodSMIME, cert: nil, pgp: &openpgp.Entity{}},
		},
	} {
		var out bytes.Buffer
		if err := g.Encrypt(rs, strings.NewReader(msg), &out); err == nil || out.Len() != 0 {
			t.Errorf("%s: err %v, %d bytes written", name, err, out.Len())
		}
	}
}

// TestSecretKeyDirRules: private key files readable by others, protected
// by a passphrase, or public only stop the start, naming the file.
func TestSecretKeyDirRules(t *testing.T) {
	us := users(t)
	protected, err := gpgCmd(us["bob"].home, nil, "--export-secret-keys", us["bob"].addr)
	if err != nil {
		t.Fatal(err)
	}
	// Protect a copy: go-crypto reads it, encrypts it with a passphrase.
	el, err := openpgp.ReadKeyRing(bytes.NewReader(protected))
	if err != nil {
		t.Fatal(err)
	}
	if err := el[0].EncryptPrivateKeys([]byte("secret"), nil); err != nil {
		t.Fatal(err)
	}
	var pb bytes.Buffer
	if err := el[0].SerializePrivateWithoutSigning(&pb, nil); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		data []byte
		mode os.FileMode
		want string
	}{
		{"group-readable.key", us["alice"].secretBin, 0o640, "accessible by group or others (mode 0640); chmod 600"},
		{"world-readable.key", us["alice"].secretBin, 0o604, "mode 0604"},
		{"protected.key", pb.Bytes(), 0o600, "protected by a passphrase"},
		{"public.asc", us["alice"].publicAsc, 0o600, "public key only"},
	}
	for _, c := range cases {
		dir := t.TempDir()
		p := writeFile(t, dir, c.name, c.data, c.mode)
		cfg := testConfig(t)
		cfg.Decrypt.KeyDir = dir
		_, err := New(cfg, nil)
		if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error naming %s and %q", c.name, err, p, c.want)
		}
	}
	cfg := testConfig(t)
	cfg.Decrypt.KeyDir = filepath.Join(t.TempDir(), "missing")
	if _, err := New(cfg, nil); err == nil || !strings.Contains(err.Error(), "encryption.decrypt.key_dir") {
		t.Errorf("missing key dir: %v", err)
	}
}

// TestNoKeyMaterialInLogs: with debug logging, through lookups (including
// a WKD server that serves a private key as "garbage"), encryption,
// decryption and every error, no key appears in the log or in an error.
func TestNoKeyMaterialInLogs(t *testing.T) {
	us := users(t)
	secretAsc, err := gpgCmd(us["alice"].home, nil, "--export-secret-keys", "--armor", us["alice"].addr)
	if err != nil {
		t.Fatal(err)
	}
	w := newWKDServer(t, "openpgpkey.example.org", "openpgpkey.leak.test")
	adv, _ := urls(t, "x@leak.test")
	w.set(t, adv, 200, secretAsc, nil)
	adv, _ = urls(t, "bob@example.org")
	bobBin, _ := gpgCmd(us["bob"].home, nil, "--export", us["bob"].addr)
	w.set(t, adv, 200, bobBin, nil)

	cfg := testConfig(t)
	cfg.OpenPGP.KeyringDir = pgpKeyring(t, map[string]*gpgUser{"alice": us["alice"], "bob": us["bob"]})
	os.Remove(filepath.Join(cfg.OpenPGP.KeyringDir, "bob.gpg"))
	cfg.OpenPGP.WKD, cfg.OpenPGP.CAFile, cfg.OpenPGP.Resolve = true, w.caFile, w.resolve
	cfg.Decrypt.KeyDir = secretKeyDir(t, us)
	g, logs := newGateway(t, cfg)

	var texts []string
	rs := g.Lookup(context.Background(), []string{"alice@example.org", "bob@example.org", "x@leak.test"})
	for _, r := range rs {
		if r.Err != nil {
			texts = append(texts, r.Err.Error())
		}
	}
	if rs[0].Outcome != Found || rs[1].Outcome != Found || rs[2].Outcome != Unavailable {
		t.Fatalf("lookups: %+v", rs)
	}
	var enc, dec bytes.Buffer
	if err := g.Encrypt(rs[:2], strings.NewReader(outerHeader+plainContent+"\r\n"+plainBody), &enc); err != nil {
		t.Fatal(err)
	}
	if res, err := g.Decrypt([]string{"alice@example.org"}, bytes.NewReader(enc.Bytes()), &dec); err != nil || !res.Decrypted {
		t.Fatalf("%+v %v", res, err)
	}
	res, _ := g.Decrypt([]string{"alice@example.org"}, strings.NewReader(gpgPGPMIME(t, us["alice"].home, "\r\nx\r\n", us["bob"].addr)), &dec)
	texts = append(texts, res.Note)
	// A key file that became world-readable after start: logged, left out.
	p := writeFile(t, cfg.Decrypt.KeyDir, "leaky.key", us["bob"].secretBin, 0o644)
	g.Decrypt([]string{"bob@example.org"}, strings.NewReader(gpgPGPMIME(t, us["alice"].home, "\r\nx\r\n", us["bob"].addr)), &dec)
	if logs.FilterMessageSnippet("key_dir").Len() == 0 {
		t.Error("a world-readable key file after start is not logged")
	}
	os.Chmod(p, 0o600)
	cfg2 := cfg
	cfg2.Decrypt.KeyDir = t.TempDir()
	writeFile(t, cfg2.Decrypt.KeyDir, "a.key", secretAsc, 0o644)
	if _, err := New(cfg2, nil); err != nil {
		texts = append(texts, err.Error())
	}

	all := strings.Join(append(texts, logText(logs)), "\n")
	if len(logs.All()) == 0 {
		t.Fatal("nothing logged: the test checks nothing")
	}
	for _, marker := range []string{"BEGIN PGP", "PRIVATE KEY"} {
		if strings.Contains(all, marker) {
			t.Fatalf("%q in logs or errors:\n%s", marker, all)
		}
	}
	for _, key := range [][]byte{us["alice"].publicAsc, secretAsc, us["bob"].publicAsc} {
		for _, line := range strings.Split(string(key), "\n") {
			if len(line) >= 40 && !strings.HasPrefix(line, "-----") && strings.Contains(all, line[:40]) {
				t.Fatalf("key material %q in logs or errors", line[:40])
			}
		}
	}
}

func logText(logs *observer.ObservedLogs) string {
	var sb strings.Builder
	for _, e := range logs.All() {
		fmt.Fprintf(&sb, "%s %v\n", e.Message, e.ContextMap())
	}
	return sb.String()
}
