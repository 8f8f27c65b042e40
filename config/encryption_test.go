package config

import (
	"strings"
	"testing"
	"time"
)

func TestEncryptionDefaults(t *testing.T) {
	e := Default().Encryption
	if e.Enabled() {
		t.Fatal("encryption must be off by default")
	}
	if e.OnKeyServiceUnavailable != "quarantine" || e.OnKeyAbsent != "" || e.Prefer != "openpgp" ||
		e.OpenPGP.Timeout.D() != 5*time.Second || e.OpenPGP.WKD {
		t.Fatalf("defaults: %+v", e)
	}
}

func TestEncryptionParse(t *testing.T) {
	dir := t.TempDir()
	c, err := Parse([]byte(`
encryption:
  openpgp:
    keyring_dir: `+dir+`
    wkd: true
    timeout: 2s
    resolve: {openpgpkey.example.org: "127.0.0.1:8443"}
  on_key_service_unavailable: tempfail
  on_key_absent: reject
`), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	e := c.Encryption
	if !e.Enabled() || e.OpenPGP.KeyringDir != dir || e.OpenPGP.Timeout.D() != 2*time.Second ||
		e.OpenPGP.Resolve["openpgpkey.example.org"] != "127.0.0.1:8443" || e.OnKeyServiceUnavailable != "tempfail" ||
		e.OnKeyAbsent != "reject" || e.OpenPGP.CacheSize != 10000 {
		t.Fatalf("parsed: %+v", e)
	}
}

func TestEncryptionValidation(t *testing.T) {
	cases := []struct{ yaml, key string }{
		{"encryption:\n  on_key_service_unavailable: deliver\n", "encryption.on_key_service_unavailable"},
		{"encryption:\n  on_key_absent: deliver_unencrypted\n", "encryption.on_key_absent"},
		{"encryption:\n  prefer: pgp\n", "encryption.prefer"},
		{"encryption:\n  openpgp:\n    timeout: 0\n", "encryption.openpgp.timeout"},
		{"encryption:\n  openpgp:\n    cache_size: -1\n", "encryption.openpgp.cache_size"},
		{"encryption:\n  openpgp:\n    resolve: {openpgpkey.example.org: example.net}\n", "encryption.openpgp.resolve"},
		{"encryption:\n  openpgp:\n    resolve: {openpgpkey.example.org: \"127.0.0.1:0\"}\n", "encryption.openpgp.resolve"},
		{"encryption:\n  openpgp:\n    ca_file: /nonexistent/ca.pem\n", "encryption.openpgp.ca_file"},
		{"encryption:\n  openpgp:\n    keyring_dir: /nonexistent/keys\n", "encryption.openpgp.keyring_dir"},
		{"encryption:\n  smime:\n    cert_dir: /nonexistent/certs\n", "encryption.smime.cert_dir"},
		{"encryption:\n  decrypt:\n    key_dir: /nonexistent/keys\n", "encryption.decrypt.key_dir"},
		{"encryption:\n  openpgp:\n    wdk: true\n", "encryption.openpgp.wdk"},
	}
	for _, c := range cases {
		_, err := Parse([]byte(c.yaml), "t.yaml")
		if err == nil || !strings.Contains(err.Error(), c.key) {
			t.Errorf("%q: %v, want an error naming %s", c.yaml, err, c.key)
		}
	}
	for _, ok := range []string{"quarantine", "tempfail", "reject", "deliver_unencrypted"} {
		if _, err := Parse([]byte("encryption:\n  on_key_service_unavailable: "+ok+"\n"), "t.yaml"); err != nil {
			t.Errorf("%s refused: %v", ok, err)
		}
	}
}
