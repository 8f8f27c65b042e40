package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/foxproxy/foxproxy/clicktime"
)

// Click configures time-of-click protection: the click service's own HTTP
// listener and how links are rewritten (rules with rewrite_links: true).
type Click struct {
	// Listen is the click service's HTTP address; empty: no click service
	// in this process (another foxproxy with the same keys may serve it).
	Listen string `yaml:"listen"`
	// BaseURL is where recipients reach the click service, e.g.
	// https://click.example.org (usually a reverse proxy in front of
	// Listen). Rewritten links are BaseURL/c/<token>.
	BaseURL string `yaml:"base_url"`
	// Keys sign and verify the links: the first signs, all verify.
	Keys []ClickKey `yaml:"keys"`
	// OnUnavailable is what a click does when WRS cannot answer: warn (an
	// interstitial page with a continue link), allow or block.
	OnUnavailable string `yaml:"on_unavailable"`
	// ExcludeDomains are never rewritten, their subdomains included.
	ExcludeDomains []string `yaml:"exclude_domains"`
	// MaxLinks is the most links rewritten per message.
	MaxLinks int `yaml:"max_links"`
	// RewriteSigned rewrites signed messages too (breaking the signature).
	RewriteSigned bool `yaml:"rewrite_signed"`
	// CheckTimeout bounds the WRS check of one click.
	CheckTimeout Duration `yaml:"check_timeout"`
}

// ClickKey is one link-signing key: an id carried in each link and a file
// holding the secret (at least 32 bytes after trimming white space; not
// readable by group or others).
type ClickKey struct {
	ID         string `yaml:"id"`
	SecretFile string `yaml:"secret_file"`
}

// RewritesLinks reports whether any rule rewrites links.
func (c *Config) RewritesLinks() bool {
	for _, r := range c.Policy.Rules {
		if r.RewriteLinks {
			return true
		}
	}
	return false
}

// ClickEnabled reports whether anything uses the click keys: a click
// listener or a rule that rewrites links.
func (c *Config) ClickEnabled() bool { return c.Click.Listen != "" || c.RewritesLinks() }

// LoadKeys reads the secret files, in order.
func (c Click) LoadKeys() ([]clicktime.Key, error) {
	var keys []clicktime.Key
	for i, k := range c.Keys {
		sec, err := readSecret(k.SecretFile)
		if err != nil {
			return nil, fmt.Errorf("click.keys[%d] (%s): %w", i, k.ID, err)
		}
		keys = append(keys, clicktime.Key{ID: k.ID, Secret: sec})
	}
	return keys, nil
}

// readSecret reads a key file: it must be a regular file that only its
// owner can read (a link key in the wrong hands forges links that pass
// the click service's signature check), with at least 32 bytes of secret.
func readSecret(path string) ([]byte, error) {
	if path == "" {
		return nil, errors.New("secret_file must be set")
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s has mode %04o: it must not be readable by group or others (chmod 600)", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b = []byte(strings.TrimSpace(string(b)))
	if len(b) < clicktime.MinSecretLen {
		return nil, fmt.Errorf("%s holds %d bytes of secret, need at least %d (e.g. head -c 48 /dev/urandom | base64 > FILE)", path, len(b), clicktime.MinSecretLen)
	}
	return b, nil
}

// validateClick checks the click section: a base URL and keys whenever a
// listener or a rule needs them, readable well-protected key files, and
// WRS to ask when there is a listener.
func (c *Config) validateClick(add func(key, format string, args ...any)) {
	k := c.Click
	if k.Listen != "" {
		if _, _, err := net.SplitHostPort(k.Listen); err != nil {
			add("click.listen", "%q is not host:port", k.Listen)
		}
		if !c.WRS.Enabled() {
			add("click.listen", "the click service checks links with WRS: configure wrs.zones or wrs.safebrowsing")
		}
	}
	switch k.OnUnavailable {
	case clicktime.OnUnavailableWarn, clicktime.OnUnavailableAllow, clicktime.OnUnavailableBlock:
	default:
		add("click.on_unavailable", "%q is not one of warn, allow, block", k.OnUnavailable)
	}
	if k.MaxLinks < 0 {
		add("click.max_links", "must not be negative")
	}
	if k.CheckTimeout <= 0 {
		add("click.check_timeout", "must be positive")
	}
	for i, d := range k.ExcludeDomains {
		if d == "" || strings.ContainsAny(d, "/:@ ") || !strings.Contains(strings.Trim(d, "."), ".") {
			add(fmt.Sprintf("click.exclude_domains[%d]", i), "%q is not a domain name", d)
		}
	}
	if !c.ClickEnabled() {
		return
	}
	why := "click.listen is set"
	if c.Click.Listen == "" {
		why = "a rule rewrites links"
	}
	if k.BaseURL == "" {
		add("click.base_url", "must be set when %s (e.g. https://click.example.org)", why)
	} else if _, err := clicktime.ValidateBaseURL(k.BaseURL); err != nil {
		add("click.base_url", "%v", strings.TrimPrefix(err.Error(), "clicktime: "))
	}
	if len(k.Keys) == 0 {
		add("click.keys", "must list at least one key when %s", why)
	}
	seen := map[string]bool{}
	for i, key := range k.Keys {
		p := fmt.Sprintf("click.keys[%d]", i)
		if key.ID == "" {
			add(p+".id", "must be set")
		} else if seen[key.ID] {
			add(p+".id", "%q is used by an earlier key", key.ID)
		}
		seen[key.ID] = true
		sec, err := readSecret(key.SecretFile)
		if err != nil {
			add(p+".secret_file", "%v", err)
			continue
		}
		if _, err := clicktime.NewSigner([]clicktime.Key{{ID: key.ID, Secret: sec}}); err != nil && key.ID != "" {
			add(p+".id", "%v", strings.TrimPrefix(err.Error(), "clicktime: key 0: "))
		}
	}
}
