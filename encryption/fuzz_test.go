package encryption

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// FuzzDecrypt: whatever arrives, Decrypt neither panics nor writes to dst
// without saying it decrypted, and a decrypted message has only CRLF line
// ends.
func FuzzDecrypt(f *testing.F) {
	e := newEntity(f, "fuzz@example.org", &packet.Config{})
	keys, pub := f.TempDir(), f.TempDir()
	var sec bytes.Buffer
	if err := e.SerializePrivate(&sec, nil); err != nil {
		f.Fatal(err)
	}
	var pb bytes.Buffer
	if err := e.Serialize(&pb); err != nil {
		f.Fatal(err)
	}
	writeFile(f, keys, "fuzz.key", sec.Bytes(), 0o600)
	writeFile(f, pub, "fuzz.gpg", pb.Bytes(), 0o644)
	cfg := testConfig(f)
	cfg.Decrypt.KeyDir, cfg.OpenPGP.KeyringDir = keys, pub
	g, err := New(cfg, nil)
	if err != nil {
		f.Fatal(err)
	}
	defer g.Close()
	var enc bytes.Buffer
	if err := g.Encrypt(g.Lookup(context.Background(), []string{"fuzz@example.org"}), strings.NewReader(outerHeader+plainContent+"\r\n"+plainBody), &enc); err != nil {
		f.Fatal(err)
	}
	f.Add(enc.Bytes())
	f.Add([]byte(outerHeader + plainContent + "\r\n" + plainBody))
	f.Add([]byte("Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=b\r\n\r\n--b\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n--b\r\nContent-Type: application/octet-stream\r\n\r\n-----BEGIN PGP MESSAGE-----\r\n\r\nwcBMA\r\n-----END PGP MESSAGE-----\r\n--b--\r\n"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		var out bytes.Buffer
		res, err := g.Decrypt([]string{"fuzz@example.org"}, bytes.NewReader(msg), &out)
		if err != nil {
			t.Fatalf("error from an in-memory reader: %v", err)
		}
		if !res.Decrypted && out.Len() > 0 {
			t.Fatalf("dst written without decryption: %+v", res)
		}
		if res.Decrypted && bytes.Contains(bytes.ReplaceAll(out.Bytes(), []byte("\r\n"), nil), []byte("\n")) {
			t.Fatal("bare LF in the decrypted message")
		}
	})
}
