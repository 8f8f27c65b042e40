package encryption

import (
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/foxproxy/foxproxy/settings"
)

// Config is the encryption section: where recipients' keys come from, where the gateway's own private keys are, and
// what happens to a message to be encrypted when a key cannot be had.
type Config struct {
	OpenPGP OpenPGP `yaml:"openpgp"`
	SMIME   SMIME   `yaml:"smime"`
	Decrypt Decrypt `yaml:"decrypt"`
	// Prefer picks the method when a recipient has both a local OpenPGP key
	// and an S/MIME certificate: "openpgp" (default) or "smime".
	Prefer string `yaml:"prefer"`
	// OnKeyServiceUnavailable is the appliance's "encryption exception
	// action" (failure table row 5): what happens to a recipient's copy
	// when the key service (WKD) cannot be reached, times out or answers
	// garbage. quarantine (default) | tempfail | reject |
	// deliver_unencrypted (only when written explicitly; logged loudly).
	OnKeyServiceUnavailable string `yaml:"on_key_service_unavailable"`
	// OnKeyAbsent is what happens when a recipient definitively has no key
	// (WKD 404, no certificate): reject | quarantine | tempfail. Empty: the
	// deployment decides (reject before-queue, quarantine after-queue).
	OnKeyAbsent string `yaml:"on_key_absent"`
}

// OpenPGP configures where recipients' OpenPGP public keys come from.
type OpenPGP struct {
	// KeyringDir holds public key files (armored or binary, any number of
	// keys each), indexed by every user ID's email address.
	KeyringDir string `yaml:"keyring_dir"`
	// WKD looks keys up in the Web Key Directory of the recipient's domain
	// (draft-koch-openpgp-webkey-service, advanced then direct method).
	WKD bool `yaml:"wkd"`
	// Timeout bounds one recipient's WKD lookup, both methods together.
	Timeout settings.Duration `yaml:"timeout"`
	// CAFile adds trusted roots (PEM) for WKD servers to the system's.
	CAFile string `yaml:"ca_file"`
	// Resolve connects to a fixed "ip:port" for a WKD host name, like curl
	// --resolve (split-horizon setups, tests). The TLS name stays the host.
	Resolve map[string]string `yaml:"resolve"`
	// CacheSize bounds the WKD answer cache (entries); 0 turns it off.
	CacheSize int `yaml:"cache_size"`
}

// SMIME configures where recipients' S/MIME certificates come from.
type SMIME struct {
	// CertDir holds PEM certificates, indexed by the subject's
	// emailAddress and the rfc822Name subject alternative names.
	CertDir string `yaml:"cert_dir"`
}

// Decrypt configures inbound decryption.
type Decrypt struct {
	// KeyDir holds unprotected OpenPGP secret keys of local recipients;
	// each file must not be readable by group or others (0600).
	KeyDir string `yaml:"key_dir"`
}

// Enabled reports whether any key source is configured, i.e. whether the
// gateway can encrypt or decrypt anything at all.
func (e Config) Enabled() bool {
	return e.OpenPGP.KeyringDir != "" || e.OpenPGP.WKD || e.SMIME.CertDir != "" || e.Decrypt.KeyDir != ""
}

// Values of Config.OnKeyServiceUnavailable and OnKeyAbsent.
var (
	KeyServiceUnavailableActions = []string{"quarantine", "tempfail", "reject", "deliver_unencrypted"}
	KeyAbsentActions             = []string{"", "reject", "quarantine", "tempfail"}
)

// Validate reports what is wrong with the section, with keys relative to
// it ("openpgp.timeout").
func (e Config) Validate(report settings.Report) {
	oneOf := func(key, v string, allowed []string) {
		for _, a := range allowed {
			if v == a {
				return
			}
		}
		report(key, "%q is not one of %s", v, strings.Join(allowed, ", "))
	}
	oneOf("prefer", e.Prefer, []string{"openpgp", "smime"})
	oneOf("on_key_service_unavailable", e.OnKeyServiceUnavailable, KeyServiceUnavailableActions)
	if e.OnKeyAbsent != "" {
		oneOf("on_key_absent", e.OnKeyAbsent, KeyAbsentActions[1:])
	}
	if e.OpenPGP.Timeout <= 0 {
		report("openpgp.timeout", "must be positive")
	}
	if e.OpenPGP.CacheSize < 0 {
		report("openpgp.cache_size", "must not be negative (0 turns the cache off)")
	}
	if e.OpenPGP.CAFile != "" {
		if _, err := os.Stat(e.OpenPGP.CAFile); err != nil {
			report("openpgp.ca_file", "%v", err)
		}
	}
	for host, addr := range e.OpenPGP.Resolve {
		key := "openpgp.resolve." + host
		if host == "" || strings.ContainsAny(host, ":/ ") {
			report(key, "%q is not a host name", host)
		}
		ip, port, err := net.SplitHostPort(addr)
		if err != nil || net.ParseIP(ip) == nil {
			report(key, "%q is not ip:port", addr)
			continue
		}
		if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
			report(key, "%q has an invalid port", addr)
		}
	}
	dirs := map[string]string{
		"openpgp.keyring_dir": e.OpenPGP.KeyringDir,
		"smime.cert_dir":      e.SMIME.CertDir,
		"decrypt.key_dir":     e.Decrypt.KeyDir,
	}
	for key, d := range dirs {
		if d == "" {
			continue
		}
		if st, err := os.Stat(d); err != nil || !st.IsDir() {
			report(key, "%q is not an existing directory", d)
		}
	}
}
