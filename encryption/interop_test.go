package encryption

import (
	"bufio"
	"bytes"
	"context"
	"mime"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// pgpKeyring writes the users' public keys to a new keyring dir, one file
// each (alice armored, bob binary: both forms must load).
func pgpKeyring(t *testing.T, us map[string]*gpgUser) string {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, dir, "alice.asc", us["alice"].publicAsc, 0o644)
	bin, err := gpgCmd(us["bob"].home, nil, "--export", us["bob"].addr)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "bob.gpg", bin, 0o644)
	return dir
}

// checkOuter checks the encrypted message's header: the routing and
// display fields kept, one Content-Type of the wanted type, no plaintext.
func checkOuter(t *testing.T, out []byte, wantType string, plaintext ...string) map[string]string {
	t.Helper()
	if bytes.Contains(bytes.ReplaceAll(out, []byte("\r\n"), nil), []byte("\n")) {
		t.Fatal("output has a bare LF")
	}
	fields, err := readHeader(bufio.NewReader(bytes.NewReader(out)))
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]int{}
	var ctype string
	for _, f := range fields {
		names[strings.ToLower(f.name)]++
		if strings.EqualFold(f.name, "content-type") {
			ctype = fieldValue(f)
		}
	}
	for _, n := range []string{"received", "from", "to", "subject", "date", "message-id", "mime-version", "content-type"} {
		if names[n] != 1 {
			t.Errorf("outer header has %d %q fields, want 1:\n%s", names[n], n, out[:min(len(out), 1500)])
		}
	}
	if names["content-transfer-encoding"] > 1 {
		t.Errorf("old Content-Transfer-Encoding kept")
	}
	if !strings.HasPrefix(string(out), "Received: from client.example.net") {
		t.Errorf("trace fields must stay on top:\n%s", out[:200])
	}
	typ, params, err := mime.ParseMediaType(ctype)
	if err != nil || typ != wantType {
		t.Fatalf("Content-Type %q, want %s", ctype, wantType)
	}
	for _, p := range plaintext {
		if bytes.Contains(out, []byte(p)) {
			t.Errorf("plaintext %q in the encrypted message", p)
		}
	}
	return params
}

func armoredPart(t *testing.T, out []byte) []byte {
	t.Helper()
	s := string(out)
	i := strings.Index(s, "-----BEGIN PGP MESSAGE-----")
	j := strings.Index(s, "-----END PGP MESSAGE-----")
	if i < 0 || j < i {
		t.Fatalf("no armored PGP message in:\n%s", out)
	}
	return []byte(s[i : j+len("-----END PGP MESSAGE-----\r\n")])
}

// TestPGPMIMEDecryptedByGPG: what foxproxy encrypts for two recipients
// (one key armored, one binary in the keyring dir) gpg decrypts, for each
// of them, back to the original entity, byte for byte; a multipart
// message with a binary attachment too.
func TestPGPMIMEDecryptedByGPG(t *testing.T) {
	us := users(t)
	cfg := testConfig(t)
	cfg.OpenPGP.KeyringDir = pgpKeyring(t, us)
	g, _ := newGateway(t, cfg)

	rs := g.Lookup(context.Background(), []string{"Alice@Example.org", "bob@example.org"})
	for _, r := range rs {
		if r.Outcome != Found || r.Method != MethodOpenPGP || r.Source != SourceKeyring || r.Err != nil {
			t.Fatalf("lookup %s: %+v", r.Addr, r)
		}
	}
	mpContent, mpBody := multipartMessage()
	cases := []struct{ name, content, body string }{
		{"text", plainContent, plainBody},
		{"multipart", mpContent, mpBody},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := g.Encrypt(rs, strings.NewReader(outerHeader+tc.content+"\r\n"+tc.body), &out); err != nil {
				t.Fatal(err)
			}
			params := checkOuter(t, out.Bytes(), "multipart/encrypted", "The numbers are in", "See the attachment", "q1.bin")
			if params["protocol"] != "application/pgp-encrypted" || params["boundary"] == "" {
				t.Fatalf("Content-Type parameters %v", params)
			}
			if !strings.Contains(out.String(), "Content-Type: application/pgp-encrypted\r\n") || !strings.Contains(out.String(), "\r\nVersion: 1\r\n") {
				t.Fatalf("no RFC 3156 control part:\n%s", out.String())
			}
			for _, name := range []string{"alice", "bob"} {
				got, err := gpgCmd(us[name].home, armoredPart(t, out.Bytes()), "--decrypt")
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if want := innerOf(tc.content, tc.body); string(got) != want {
					t.Fatalf("gpg as %s decrypted\n%q\nwant\n%q", name, got, want)
				}
			}
		})
	}
}

// TestSMIMEDecryptedByOpenSSL: what foxproxy encrypts with S/MIME (for two
// certificates, one naming the address in the SAN, one in the subject)
// openssl cms -decrypt turns back into the original entity.
func TestSMIMEDecryptedByOpenSSL(t *testing.T) {
	ca := newCA(t)
	dir, keys := t.TempDir(), t.TempDir()
	now := time.Now()
	certs := map[string][]byte{}
	for i, addr := range []string{"carol@example.com", "dave@example.com"} {
		c, k := ca.issue(t, smimeTemplate(addr, i == 1, now.Add(-time.Hour), now.Add(time.Hour*24*365)))
		certs[addr] = []byte(writeFile(t, keys, addr+".key", k, 0o600))
		writeFile(t, dir, addr+".pem", c, 0o644)
		writeFile(t, keys, addr+".pem", c, 0o644)
	}
	cfg := testConfig(t)
	cfg.SMIME.CertDir = dir
	g, _ := newGateway(t, cfg)
	rs := g.Lookup(context.Background(), []string{"carol@example.com", "DAVE@example.com"})
	for _, r := range rs {
		if r.Outcome != Found || r.Method != MethodSMIME || r.Source != SourceCertDir {
			t.Fatalf("lookup %s: %+v", r.Addr, r)
		}
	}
	mpContent, mpBody := multipartMessage()
	for _, tc := range []struct{ name, content, body string }{{"text", plainContent, plainBody}, {"multipart", mpContent, mpBody}} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := g.Encrypt(rs, strings.NewReader(outerHeader+tc.content+"\r\n"+tc.body), &out); err != nil {
				t.Fatal(err)
			}
			params := checkOuter(t, out.Bytes(), "application/pkcs7-mime", "The numbers are in", "See the attachment")
			if params["smime-type"] != "enveloped-data" {
				t.Fatalf("smime-type %q", params["smime-type"])
			}
			msg := filepath.Join(t.TempDir(), "msg.eml")
			if err := os.WriteFile(msg, out.Bytes(), 0o600); err != nil {
				t.Fatal(err)
			}
			info := run(t, nil, "openssl", "cms", "-cmsout", "-print", "-in", msg)
			if !bytes.Contains(info, []byte("aes-256-cbc")) || !bytes.Contains(info, []byte("rsaEncryption")) {
				t.Fatalf("want AES-256-CBC and RSA key transport:\n%s", info)
			}
			for _, addr := range []string{"carol@example.com", "dave@example.com"} {
				got := run(t, nil, "openssl", "cms", "-decrypt", "-binary", "-in", msg,
					"-recip", filepath.Join(keys, addr+".pem"), "-inkey", string(certs[addr]))
				if want := innerOf(tc.content, tc.body); string(got) != want {
					t.Fatalf("openssl as %s decrypted\n%q\nwant\n%q", addr, got, want)
				}
			}
		})
	}
}

// gpgPGPMIME wraps gpg's encryption of entity for recipients in a PGP/MIME
// message, as a mail client would send it.
func gpgPGPMIME(t *testing.T, home, entity string, rcpts ...string) string {
	t.Helper()
	args := []string{"--trust-model", "always", "--encrypt", "--armor"}
	for _, r := range rcpts {
		args = append(args, "-r", r)
	}
	armored, err := gpgCmd(home, []byte(entity), args...)
	if err != nil {
		t.Fatal(err)
	}
	return outerHeader +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\";\r\n boundary=\"enc-xyz\"\r\n" +
		"\r\n" +
		"This is an OpenPGP/MIME encrypted message (RFC 4880 and 3156)\r\n" +
		"--enc-xyz\r\nContent-Type: application/pgp-encrypted\r\nContent-Description: PGP/MIME version identification\r\n\r\nVersion: 1\r\n\r\n" +
		"--enc-xyz\r\nContent-Type: application/octet-stream; name=\"encrypted.asc\"\r\n\r\n" +
		strings.ReplaceAll(string(armored), "\n", "\r\n") +
		"\r\n--enc-xyz--\r\n"
}

// secretKeyDir holds alice's secret key, 0600.
func secretKeyDir(t *testing.T, us map[string]*gpgUser) string {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, dir, "alice.key", us["alice"].secretBin, 0o600)
	return dir
}

// TestDecryptGPGEncrypted: a PGP/MIME message gpg encrypted is decrypted
// by foxproxy for a recipient whose key it holds, and every other case
// says what happened without touching dst.
func TestDecryptGPGEncrypted(t *testing.T) {
	us := users(t)
	cfg := testConfig(t)
	cfg.Decrypt.KeyDir = secretKeyDir(t, us)
	g, _ := newGateway(t, cfg)

	mpContent, mpBody := multipartMessage()
	entity := mpContent + "\r\n" + mpBody

	t.Run("decrypted", func(t *testing.T) {
		// gpg on the sender's side; the sender only needs the public keys.
		msg := gpgPGPMIME(t, us["bob"].home, entity, us["alice"].addr)
		var out bytes.Buffer
		res, err := g.Decrypt([]string{"alice@example.org"}, strings.NewReader(msg), &out)
		if err != nil {
			t.Fatal(err)
		}
		if !res.Applicable || !res.Decrypted || res.KeyID != us["alice"].keyID {
			t.Fatalf("result %+v, want decrypted with %s", res, us["alice"].keyID)
		}
		want := outerHeader + "MIME-Version: 1.0\r\n" + innerOf(mpContent, mpBody)
		if out.String() != want {
			t.Fatalf("decrypted\n%q\nwant\n%q", out.String(), want)
		}
	})

	notTouched := func(t *testing.T, rcpts []string, msg string, wantApplicable bool, wantNote string) {
		t.Helper()
		var out bytes.Buffer
		res, err := g.Decrypt(rcpts, strings.NewReader(msg), &out)
		if err != nil {
			t.Fatal(err)
		}
		if res.Decrypted || res.Applicable != wantApplicable || !strings.Contains(res.Note, wantNote) {
			t.Fatalf("result %+v, want applicable=%v note ~ %q", res, wantApplicable, wantNote)
		}
		if out.Len() != 0 {
			t.Fatalf("dst written: %q", out.String())
		}
	}
	t.Run("for someone else", func(t *testing.T) {
		notTouched(t, []string{"carol@example.org"}, gpgPGPMIME(t, us["bob"].home, entity, us["alice"].addr), false, "")
	})
	t.Run("not encrypted", func(t *testing.T) {
		notTouched(t, []string{"alice@example.org"}, outerHeader+plainContent+"\r\n"+plainBody, false, "")
	})
	t.Run("encrypted to another key", func(t *testing.T) {
		notTouched(t, []string{"alice@example.org"}, gpgPGPMIME(t, us["alice"].home, entity, us["bob"].addr), true, us["bob"].keyID)
	})
	t.Run("damaged", func(t *testing.T) {
		msg := gpgPGPMIME(t, us["bob"].home, entity, us["alice"].addr)
		// Flip characters in the middle of the armored data.
		i := strings.Index(msg, "-----BEGIN PGP MESSAGE-----")
		j := i + (strings.Index(msg[i:], "-----END") / 2)
		b := []byte(msg)
		for k := j; k < j+8; k++ {
			if b[k] == 'A' {
				b[k] = 'B'
			} else if b[k] != '\r' && b[k] != '\n' {
				b[k] = 'A'
			}
		}
		var out bytes.Buffer
		res, err := g.Decrypt([]string{"alice@example.org"}, bytes.NewReader(b), &out)
		if err != nil {
			t.Fatal(err)
		}
		if !res.Applicable || res.Decrypted || res.Note == "" || out.Len() != 0 {
			t.Fatalf("result %+v, dst %d bytes", res, out.Len())
		}
	})
	t.Run("malformed", func(t *testing.T) {
		msg := outerHeader + "MIME-Version: 1.0\r\nContent-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nhi\r\n--x--\r\n"
		notTouched(t, []string{"alice@example.org"}, msg, true, "malformed PGP/MIME")
	})
}

// TestRoundTrip: foxproxy decrypts what foxproxy encrypted.
func TestRoundTrip(t *testing.T) {
	us := users(t)
	cfg := testConfig(t)
	cfg.OpenPGP.KeyringDir = pgpKeyring(t, us)
	cfg.Decrypt.KeyDir = secretKeyDir(t, us)
	g, _ := newGateway(t, cfg)
	rs := g.Lookup(context.Background(), []string{"alice@example.org"})
	var enc, dec bytes.Buffer
	if err := g.Encrypt(rs, strings.NewReader(outerHeader+plainContent+"\r\n"+plainBody), &enc); err != nil {
		t.Fatal(err)
	}
	res, err := g.Decrypt([]string{"alice@example.org"}, &enc, &dec)
	if err != nil || !res.Decrypted {
		t.Fatalf("%+v %v", res, err)
	}
	if want := outerHeader + "MIME-Version: 1.0\r\n" + innerOf(plainContent, plainBody); dec.String() != want {
		t.Fatalf("round trip\n%q\nwant\n%q", dec.String(), want)
	}
}
