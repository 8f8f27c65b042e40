package config

import (
	"crypto/ed25519"
	"encoding/base64"
	"net/url"
	"os"
	"time"
)

// Lists names the local list files (see package lists for their formats).
// A list without a file is empty; the update bundle's lists, if any, add
// to these.
type Lists struct {
	ApprovedClients string `yaml:"approved_clients"`
	BlockedClients  string `yaml:"blocked_clients"`
	ApprovedSenders string `yaml:"approved_senders"`
	BlockedSenders  string `yaml:"blocked_senders"`
	BlockedURLs     string `yaml:"blocked_urls"`
	// Watch reloads the files when they change, as well as on SIGHUP.
	Watch bool `yaml:"watch"`
}

// Files returns the list files by list name (approved_clients, ...), only
// those that are set.
func (l Lists) Files() map[string]string {
	m := map[string]string{}
	for name, p := range map[string]string{"approved_clients": l.ApprovedClients, "blocked_clients": l.BlockedClients,
		"approved_senders": l.ApprovedSenders, "blocked_senders": l.BlockedSenders, "blocked_urls": l.BlockedURLs} {
		if p != "" {
			m[name] = p
		}
	}
	return m
}

// Update configures the list updater: a signed bundle fetched over HTTPS.
type Update struct {
	// URL serves the bundle; empty: no updates.
	URL string `yaml:"url"`
	// PublicKey is the publisher's Ed25519 public key, base64 (as
	// `foxproxy bundle keygen` prints it).
	PublicKey string `yaml:"public_key"`
	// Interval between polls; failures retry sooner, backing off up to it.
	Interval Duration `yaml:"interval"`
	// Timeout bounds one download.
	Timeout Duration `yaml:"timeout"`
	// MaxBytes bounds one download.
	MaxBytes ByteSize `yaml:"max_bytes"`
	// StateDir keeps the last good bundle, loaded at start before any
	// network access.
	StateDir string `yaml:"state_dir"`
	// CAFile adds PEM certificates to the system's roots for URL.
	CAFile string `yaml:"ca_file"`
}

// Enabled reports whether updates are configured.
func (u Update) Enabled() bool { return u.URL != "" }

// Ed25519Key decodes PublicKey.
func (u Update) Ed25519Key() (ed25519.PublicKey, bool) {
	b, err := base64.StdEncoding.DecodeString(u.PublicKey)
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, false
	}
	return ed25519.PublicKey(b), true
}

func (c *Config) validateLists(add func(key, format string, args ...any)) {
	for name, p := range c.Lists.Files() {
		if st, err := os.Stat(p); err != nil {
			add("lists."+name, "cannot read %q: %v", p, err)
		} else if st.IsDir() {
			add("lists."+name, "%q is a directory", p)
		}
	}
	u := c.Update
	if u.Interval.D() < time.Second {
		add("update.interval", "must be at least 1s")
	}
	if u.Timeout <= 0 {
		add("update.timeout", "must be positive")
	}
	if u.MaxBytes <= 0 {
		add("update.max_bytes", "must be positive")
	}
	if c.Scan.ClamAVMaxAge < 0 {
		add("scan.clamav_max_age", "must not be negative (0: no warning)")
	}
	if !u.Enabled() {
		return
	}
	if pu, err := url.Parse(u.URL); err != nil || pu.Scheme != "https" || pu.Host == "" {
		add("update.url", "%q is not an https:// URL", u.URL)
	}
	if _, ok := u.Ed25519Key(); !ok {
		add("update.public_key", "must be a base64 Ed25519 public key (32 bytes; foxproxy bundle keygen prints one)")
	}
	if u.StateDir == "" {
		add("update.state_dir", "must be set: the last good bundle is kept there")
	}
	if u.CAFile != "" {
		if _, err := os.Stat(u.CAFile); err != nil {
			add("update.ca_file", "cannot read %q: %v", u.CAFile, err)
		}
	}
}
