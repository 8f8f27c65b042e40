package config

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/foxproxy/foxproxy/policy"
	"github.com/foxproxy/foxproxy/reputation"
	"github.com/foxproxy/foxproxy/scan"
	"github.com/foxproxy/foxproxy/settings"
)

// DNS configures the resolver shared by the DNS-list checks (ERS and WRS).
type DNS struct {
	// Servers are "ip" or "ip:port"; empty: the nameservers of
	// /etc/resolv.conf.
	Servers []string `yaml:"servers"`
	// Timeout bounds one query attempt.
	Timeout Duration `yaml:"timeout"`
	// CacheSize bounds the answer cache (entries).
	CacheSize int `yaml:"cache_size"`
}

// ERS configures the email reputation stage: the client's address against
// DNS block lists.
type ERS struct {
	// Zones to query; ERS is off when there are none.
	Zones []DNSList `yaml:"zones"`
	// StartupCheck runs RFC 5782's connectivity check on the first message;
	// a zone that fails it is disabled until a re-check passes.
	StartupCheck bool `yaml:"startup_check"`
	// RecheckInterval re-checks a disabled zone. 0 keeps it disabled until
	// restart (the appliance's old latch): not recommended.
	RecheckInterval Duration `yaml:"recheck_interval"`
	// Budget bounds ERS's time on one message.
	Budget Duration `yaml:"budget"`
}

// DNSList is one DNS list zone and what its answers mean.
type DNSList struct {
	Zone string `yaml:"zone"`
	// Codes maps answer addresses to category names, e.g.
	// {127.0.0.2: spam, 127.0.0.4: exploit}. An answer not listed here is
	// the category "listed".
	Codes map[string]string `yaml:"codes"`
	// TXT fetches the listing's TXT record for the reject message.
	TXT bool `yaml:"txt"`
}

func (l *DNSList) setDefaults() { l.TXT = true }

// WRS configures the web reputation stage: the links in each message
// against DNS URI block lists and/or the Safe Browsing Lookup API.
type WRS struct {
	Zones        []URIList    `yaml:"zones"`
	SafeBrowsing SafeBrowsing `yaml:"safebrowsing"`
	// MaxURLs bounds the distinct URLs looked up per message.
	MaxURLs int `yaml:"max_urls"`
	// UnwrapRedirectors also looks up the targets of known redirectors
	// (Google /url, Safe Links, URL Defense, Facebook).
	UnwrapRedirectors bool `yaml:"unwrap_redirectors"`
	// Budget bounds WRS's time on one message.
	Budget Duration `yaml:"budget"`
	// BreakerFailures consecutive failures of a backend open its breaker:
	// WRS then skips it at once and probes it every BreakerProbeInterval.
	BreakerFailures      int      `yaml:"breaker_failures"`
	BreakerProbeInterval Duration `yaml:"breaker_probe_interval"`
	Feedback             Feedback `yaml:"feedback"`
}

// URIList is one DNS URI block list.
type URIList struct {
	Zone string `yaml:"zone"`
	// Codes maps whole answers to categories; Bitmask maps bits of the
	// last octet (SURBL/URIBL style, 1..128) to categories. Not both.
	Codes   map[string]string `yaml:"codes"`
	Bitmask map[int]string    `yaml:"bitmask"`
	// SkipIPs leaves IP-literal URLs out (domain-only lists like DBL).
	SkipIPs bool `yaml:"skip_ips"`
	// TestPoint is the name that must be listed for the breaker's probe
	// (default "test", RFC 5782 §5).
	TestPoint string `yaml:"test_point"`
}

// SafeBrowsing configures the Safe Browsing v4 Lookup API; off without an
// API key.
type SafeBrowsing struct {
	APIKey  string   `yaml:"api_key"`
	BaseURL string   `yaml:"base_url"`
	Timeout Duration `yaml:"timeout"`
	// ThreatTypes maps the API's threat types to categories; empty: the
	// defaults (SOCIAL_ENGINEERING: phish, MALWARE: malware, ...).
	ThreatTypes map[string]string `yaml:"threat_types"`
}

// Feedback configures where WRS reports the URLs it saw and their verdicts.
type Feedback struct {
	URL       string `yaml:"url"`
	File      string `yaml:"file"`
	QueueSize int    `yaml:"queue_size"`
	BatchSize int    `yaml:"batch_size"`
}

// Enabled reports whether WRS has a backend.
func (w WRS) Enabled() bool { return len(w.Zones) > 0 || w.SafeBrowsing.APIKey != "" }

// Scan configures malware scanning. It is on when smart.url or
// conventional.url is set.
type Scan struct {
	// Mode is smart or conventional; empty: smart when smart.url is set.
	Mode         string      `yaml:"mode"`
	Smart        ScannerAddr `yaml:"smart"`
	Conventional ScannerAddr `yaml:"conventional"`
	// FallbackToConventional scans a message with the conventional scanner
	// at once when smart cannot answer.
	FallbackToConventional bool `yaml:"fallback_to_conventional"`
	// DisableSmartAfter consecutive smart failures switch the mode to
	// conventional (with fallback; 0: never switch).
	DisableSmartAfter int `yaml:"disable_smart_after"`
	// RecheckInterval probes smart while switched.
	RecheckInterval Duration `yaml:"recheck_interval"`
	// StayConventional keeps the switch until restart (the appliance's way).
	StayConventional bool     `yaml:"stay_conventional"`
	Timeout          Duration `yaml:"timeout"`
	DialTimeout      Duration `yaml:"dial_timeout"`
	MaxConcurrent    int      `yaml:"max_concurrent"`
	// MaxSize: larger messages are not sent to a scanner; Oversize says
	// what happens to them (pass | tempfail).
	MaxSize       ByteSize `yaml:"max_size"`
	Oversize      string   `yaml:"oversize"`
	PingTestVirus bool     `yaml:"ping_test_virus"`
	// ClamAVMaxAge: the status warns when a clamd's signature database
	// (clamd VERSION) is older than this; 0: no warning.
	ClamAVMaxAge Duration `yaml:"clamav_max_age"`
	// HoldAfter: while no scanner answers, a message that has waited this
	// long in the local Postfix is held for rescan instead of deferred
	// once more (0: never). The rescan keys pace the held area's rescan
	// once a scanner answers (README, "Hold and rescan").
	HoldAfter      Duration `yaml:"hold_after"`
	RescanRate     float64  `yaml:"rescan_rate"`
	RescanBatch    int      `yaml:"rescan_batch"`
	RescanInterval Duration `yaml:"rescan_interval"`
}

// ScannerAddr names a scanner: "icap://host:port/service" (ICAP), or a
// clamd at "tcp://host:port", "host:port" or "unix:/path".
type ScannerAddr struct {
	URL string `yaml:"url"`
}

// Enabled reports whether any scanner is configured.
func (s Scan) Enabled() bool { return s.Smart.URL != "" || s.Conventional.URL != "" }

// ActiveMode returns the configured mode with its default filled in.
func (s Scan) ActiveMode() string {
	if s.Mode != "" {
		return s.Mode
	}
	if s.Smart.URL != "" {
		return "smart"
	}
	return "conventional"
}

// Quarantine configures where quarantined mail is kept.
type Quarantine struct {
	Dir       string   `yaml:"dir"`
	Retention Duration `yaml:"retention"`
}

func (c *Config) validateSections(add func(key, format string, args ...any)) {
	for i, s := range c.DNS.Servers {
		host := s
		if h, _, err := net.SplitHostPort(s); err == nil {
			host = h
		}
		if net.ParseIP(host) == nil {
			add(fmt.Sprintf("dns.servers[%d]", i), "%q is not an IP address or ip:port (foxproxy does not resolve its resolvers' names)", s)
		}
	}
	if c.DNS.Timeout <= 0 {
		add("dns.timeout", "must be positive")
	}
	if c.DNS.CacheSize < 0 {
		add("dns.cache_size", "must not be negative (0 turns the cache off)")
	}

	seen := map[string]bool{}
	for i, z := range c.ERS.Zones {
		key := fmt.Sprintf("ers.zones[%d]", i)
		c.validateDNSList(key, z, seen, add)
	}
	if r := c.ERS.RecheckInterval.D(); r < 0 || (r > 0 && r < time.Second) {
		add("ers.recheck_interval", "must be 0 (never re-check: not recommended) or at least 1s")
	}
	if c.ERS.Budget <= 0 {
		add("ers.budget", "must be positive")
	}

	c.validateWRS(add)
	c.validateScan(add)
	c.validateHold(add)
	c.validatePolicy(add)
	c.Encryption.Validate(settings.Report(add).Under("encryption"))
	c.validateLists(add)
	c.validateClick(add)
}

func (c *Config) validateWRS(add func(key, format string, args ...any)) {
	w := c.WRS
	seen := map[string]bool{}
	for i, z := range w.Zones {
		key := fmt.Sprintf("wrs.zones[%d]", i)
		codes, err := reputation.ParseCodes(z.Codes)
		if err != nil {
			add(key+".codes", "%v", err)
			continue
		}
		dz := reputation.DNSZone{Name: z.Zone, Codes: codes, Bitmask: z.Bitmask, SkipIPs: z.SkipIPs, TestPoint: z.TestPoint}
		if z.Zone == "" {
			add(key+".zone", "must be set")
		} else if err := dz.Validate(); err != nil {
			add(key, "%v", err)
		}
		name := strings.ToLower(strings.TrimSuffix(z.Zone, "."))
		if seen[name] {
			add(key+".zone", "%q is listed twice", z.Zone)
		}
		seen[name] = true
	}
	if w.SafeBrowsing.APIKey != "" {
		sb := reputation.SafeBrowsingConfig{APIKey: w.SafeBrowsing.APIKey, BaseURL: w.SafeBrowsing.BaseURL,
			Timeout: w.SafeBrowsing.Timeout.D(), ThreatTypes: w.SafeBrowsing.ThreatTypes}
		if err := sb.Validate(); err != nil {
			add("wrs.safebrowsing", "%v", err)
		}
	}
	if w.MaxURLs <= 0 || w.MaxURLs > 500 {
		add("wrs.max_urls", "must be between 1 and 500")
	}
	if w.Budget <= 0 {
		add("wrs.budget", "must be positive")
	}
	if w.BreakerFailures <= 0 {
		add("wrs.breaker_failures", "must be positive")
	}
	if w.BreakerProbeInterval.D() < time.Second {
		add("wrs.breaker_probe_interval", "must be at least 1s")
	}
	if w.Feedback.URL != "" || w.Feedback.File != "" {
		fc := reputation.FeedbackConfig{URL: w.Feedback.URL, File: w.Feedback.File, QueueSize: w.Feedback.QueueSize, BatchSize: w.Feedback.BatchSize}
		if err := fc.Validate(); err != nil {
			add("wrs.feedback", "%v", err)
		}
		if !w.Enabled() {
			add("wrs.feedback", "needs WRS (wrs.zones or wrs.safebrowsing.api_key)")
		}
	}
}

func (c *Config) validateScan(add func(key, format string, args ...any)) {
	sc := c.Scan
	switch sc.Mode {
	case "", "smart", "conventional":
	default:
		add("scan.mode", "%q is not one of smart, conventional", sc.Mode)
	}
	if !sc.Enabled() {
		return
	}
	for key, u := range map[string]string{"scan.smart.url": sc.Smart.URL, "scan.conventional.url": sc.Conventional.URL} {
		if u == "" {
			continue
		}
		s, err := scan.NewScanner(u, scan.Options{})
		if err != nil {
			add(key, "%v", err)
			continue
		}
		if c, ok := s.(io.Closer); ok {
			c.Close()
		}
	}
	if sc.ActiveMode() == "smart" && sc.Smart.URL == "" {
		add("scan.smart.url", "must be set for mode smart")
	}
	if sc.ActiveMode() == "conventional" && sc.Conventional.URL == "" {
		add("scan.conventional.url", "must be set for mode conventional")
	}
	if sc.FallbackToConventional && sc.Conventional.URL == "" {
		add("scan.fallback_to_conventional", "needs scan.conventional.url")
	}
	if sc.DisableSmartAfter < 0 {
		add("scan.disable_smart_after", "must not be negative (0: never switch)")
	}
	if sc.RecheckInterval.D() < time.Second {
		add("scan.recheck_interval", "must be at least 1s")
	}
	if sc.Timeout <= 0 {
		add("scan.timeout", "must be positive")
	}
	if sc.DialTimeout <= 0 {
		add("scan.dial_timeout", "must be positive")
	}
	if sc.MaxConcurrent <= 0 {
		add("scan.max_concurrent", "must be positive")
	}
	if sc.MaxSize <= 0 {
		add("scan.max_size", "must be positive")
	}
	switch sc.Oversize {
	case "pass", "tempfail":
	default:
		add("scan.oversize", "%q is not one of pass, tempfail", sc.Oversize)
	}
	// A smart timeout followed by a conventional scan must both fit in the
	// message's time for checks.
	need := sc.Timeout.D()
	fallback := sc.FallbackToConventional && sc.ActiveMode() == "smart"
	if fallback {
		need *= 2
	}
	if c.Timeouts.Stages.D() <= need {
		add("timeouts.stages", "%v leaves no room for scanning (scan.timeout %v%s): make it larger than %v",
			c.Timeouts.Stages, sc.Timeout, map[bool]string{true: ", twice with fallback", false: ""}[fallback], need)
	}
}

func (c *Config) validateDNSList(key string, l DNSList, seen map[string]bool, add func(key, format string, args ...any)) {
	codes, err := reputation.ParseCodes(l.Codes)
	if err != nil {
		add(key+".codes", "%v", err)
	}
	for _, cat := range l.Codes {
		if !policy.CategoryName.MatchString(cat) {
			add(key+".codes", "category %q must be lower-case letters, digits, '-', '_' or '.'", cat)
		}
	}
	z := reputation.Zone{Name: l.Zone, Codes: codes}
	if l.Zone == "" {
		add(key+".zone", "must be set")
	} else if err := z.Validate(); err != nil {
		add(key+".zone", "%v", err)
	}
	name := strings.ToLower(strings.TrimSuffix(l.Zone, "."))
	if seen[name] {
		add(key+".zone", "%q is listed twice", l.Zone)
	}
	seen[name] = true
}

// validatePolicy has the policy section check itself, then checks what its
// rules need from the other sections.
func (c *Config) validatePolicy(add func(key, format string, args ...any)) {
	c.Policy.Validate(settings.Report(add).Under("policy"))
	if c.Policy.OnInfected == "quarantine" && c.Scan.Enabled() && c.Quarantine.Dir == "" {
		add("policy.on_infected", "quarantine needs quarantine.dir")
	}
	for i, r := range c.Policy.Rules {
		key := fmt.Sprintf("policy.rules[%d]", i)
		if len(r.If.ERS) > 0 && len(c.ERS.Zones) == 0 {
			add(key+".if.ers", "ERS has no zones configured (ers.zones), so this condition can never match")
		}
		if len(r.If.WRS) > 0 && !c.WRS.Enabled() {
			add(key+".if.wrs", "WRS has no backend configured (wrs.zones or wrs.safebrowsing), so this condition can never match")
		}
		if r.Then == "quarantine" && c.Quarantine.Dir == "" {
			add(key+".then", "quarantine needs quarantine.dir")
		}
		if r.Then == "encrypt" {
			e := c.Encryption
			if e.OpenPGP.KeyringDir == "" && !e.OpenPGP.WKD && e.SMIME.CertDir == "" {
				add(key+".then", "encrypt needs a key source: encryption.openpgp.keyring_dir, encryption.openpgp.wkd or encryption.smime.cert_dir")
			}
			if c.Quarantine.Dir == "" && (e.OnKeyServiceUnavailable == "quarantine" || c.KeyAbsentAction() == "quarantine") {
				add(key+".then", "encrypt quarantines copies whose keys cannot be had (encryption.on_key_service_unavailable, on_key_absent), which needs quarantine.dir")
			}
		}
	}
	if c.Quarantine.Dir != "" && c.UsesQuarantine() {
		if !filepath.IsAbs(c.Quarantine.Dir) {
			add("quarantine.dir", "%q must be an absolute path", c.Quarantine.Dir)
		} else if st, err := os.Stat(c.Quarantine.Dir); err == nil && !st.IsDir() {
			add("quarantine.dir", "%q is not a directory", c.Quarantine.Dir)
		}
	}
	if c.Quarantine.Retention < 0 {
		add("quarantine.retention", "must not be negative (0 keeps mail forever)")
	}
}

// UsesQuarantine reports whether any verdict can quarantine: a rule, or
// infected mail under on_infected: quarantine.
func (c *Config) UsesQuarantine() bool {
	if c.Holds() {
		return true
	}
	if c.Scan.Enabled() && c.Policy.OnInfected == "quarantine" {
		return true
	}
	for _, r := range c.Policy.Rules {
		if r.Then == "quarantine" {
			return true
		}
		if r.Then == "encrypt" && (c.Encryption.OnKeyServiceUnavailable == "quarantine" || c.KeyAbsentAction() == "quarantine") {
			return true
		}
	}
	return false
}

// KeyAbsentAction is encryption.on_key_absent, or its default for the
// deployment: a before-queue filter can refuse the message to the sending
// client (5xx naming the recipient), while after the queue a 5xx becomes a
// bounce from this site, so the copy is quarantined instead.
func (c *Config) KeyAbsentAction() string {
	if c.Encryption.OnKeyAbsent != "" {
		return c.Encryption.OnKeyAbsent
	}
	if c.Deployment == "before_queue" {
		return "reject"
	}
	return "quarantine"
}
