package pgstore

import (
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"
)

// Config says which database holds the custody and how long to wait for it.
type Config struct {
	// URL is a PostgreSQL connection URL (postgres://user@host:port/db?
	// sslmode=verify-full); TLS and every other connection setting are
	// the URL's. Empty: no database (the file store is used).
	URL string
	// PasswordFile, when set, holds the password (its first line), so the
	// URL in the configuration file need not contain it.
	PasswordFile string
	// Timeout bounds each operation, waiting for a pooled connection
	// included: a custody write that takes longer fails, and the message
	// gets 451 and stays in Postfix.
	Timeout time.Duration
	// ClaimLease is how long a release's or rescan's claim stands without
	// being renewed: a host that dies loses its claims after it.
	ClaimLease time.Duration
	// LogRetention is how long message log rows are kept.
	LogRetention time.Duration
}

// Defaults for the zero values.
const (
	DefaultTimeout      = 30 * time.Second
	DefaultClaimLease   = 2 * time.Minute
	DefaultLogRetention = 30 * 24 * time.Hour
)

// Enabled reports whether a database is configured.
func (c Config) Enabled() bool { return c.URL != "" }

func (c Config) withDefaults() Config {
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.ClaimLease <= 0 {
		c.ClaimLease = DefaultClaimLease
	}
	if c.LogRetention <= 0 {
		c.LogRetention = DefaultLogRetention
	}
	return c
}

// Validate reports each problem with add, naming the key ("url",
// "password_file", ...) below the section that holds the Config.
func (c Config) Validate(add func(key, format string, args ...any)) {
	if c.URL == "" {
		if c.PasswordFile != "" {
			add("password_file", "is set but url is not")
		}
		return
	}
	u, err := url.Parse(c.URL)
	switch {
	case err != nil:
		add("url", "is not a URL: %v", redactErr(err, c.URL))
	case u.Scheme != "postgres" && u.Scheme != "postgresql":
		add("url", "must be a postgres:// or postgresql:// URL, not %q", u.Scheme)
	case u.Host == "":
		add("url", "names no host (postgres://user@host:5432/database)")
	case strings.TrimPrefix(u.Path, "/") == "":
		add("url", "names no database (postgres://user@host:5432/database)")
	}
	if c.PasswordFile != "" {
		if _, err := os.Stat(c.PasswordFile); err != nil {
			add("password_file", "%v", err)
		}
		if u != nil && u.User != nil {
			if _, has := u.User.Password(); has {
				add("password_file", "the URL has a password already: give it in one place only")
			}
		}
	}
	if c.Timeout < 0 {
		add("timeout", "must not be negative")
	}
	if c.ClaimLease < 0 {
		add("claim_lease", "must not be negative")
	} else if c.ClaimLease > 0 && c.ClaimLease < 3*time.Second {
		add("claim_lease", "must be at least 3s: a claim is renewed every third of it")
	}
	if c.LogRetention < 0 {
		add("log_retention", "must not be negative")
	}
}

// Redacted is the URL without its password, for logs and messages.
func Redacted(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable database URL)"
	}
	return u.Redacted()
}

// redactErr keeps a URL parse error from repeating the URL (and so the
// password) it failed on.
func redactErr(err error, raw string) string {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err.Error()
	}
	return strings.ReplaceAll(err.Error(), raw, "(the URL)")
}

func readPassword(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("database.password_file: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimRight(line, "\r"), nil
}
