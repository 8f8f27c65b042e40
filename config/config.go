// Package config reads foxproxy's one YAML configuration file.
//
// Every problem is reported with the file, the line and the key path, and a
// file is either accepted whole or refused whole: foxproxy never runs on a
// half-understood configuration (at start or on SIGHUP). Values that are not
// in the file keep the defaults of the embedded default configuration.
//
// The sections of policy, proxy and encryption are those packages' own
// types, which check themselves; config reads them from the file, checks
// what one section needs from another, and puts the file name and line on
// every problem. No package config composes imports config.
package config

import (
	_ "embed"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/foxproxy/foxproxy/console"
	"github.com/foxproxy/foxproxy/encryption"
	"github.com/foxproxy/foxproxy/policy"
	"github.com/foxproxy/foxproxy/proxy"
	"github.com/foxproxy/foxproxy/settings"
)

//go:embed default.yaml
var defaultYAML []byte

// DefaultYAML returns the embedded default configuration file.
func DefaultYAML() []byte { return append([]byte(nil), defaultYAML...) }

// Config is the whole configuration.
type Config struct {
	// The SMTP side's settings, documented at proxy.Config (Proxy
	// returns them, with scan.hold_after).
	Listen              string   `yaml:"listen"`
	Downstream          string   `yaml:"downstream"`
	DownstreamIdle      Duration `yaml:"downstream_idle"`
	DownstreamMaxIdle   int      `yaml:"downstream_max_idle"`
	Deployment          string   `yaml:"deployment"`
	Hostname            string   `yaml:"hostname"`
	AllowedClients      Prefixes `yaml:"allowed_clients"`
	XforwardClients     Prefixes `yaml:"xforward_clients"`
	RemoveIncomingTrace bool     `yaml:"remove_incoming_trace"`
	ClientFromReceived  bool     `yaml:"client_from_received"`
	MaxMessageBytes     ByteSize `yaml:"max_message_bytes"`
	// AdminListen serves /healthz, /readyz, /metrics and /status; empty: off.
	AdminListen string `yaml:"admin_listen"`
	// AdminProbeInterval is how often every dependency is probed, so the
	// status shows an outage (and its end) even while no mail flows.
	AdminProbeInterval Duration `yaml:"admin_probe_interval"`
	// AdminPprof adds /debug/pprof to the admin listener.
	AdminPprof bool `yaml:"admin_pprof"`
	// AdminTLS serves admin_listen over HTTPS.
	AdminTLS AdminTLS `yaml:"admin_tls"`
	// AdminMetricsAuth puts /metrics behind a console login.
	AdminMetricsAuth bool `yaml:"admin_metrics_auth"`
	// Console is the web console's accounts and sessions.
	Console console.Config `yaml:"console"`

	Limits     proxy.Limits      `yaml:"limits"`
	Timeouts   proxy.Timeouts    `yaml:"timeouts"`
	Spool      proxy.Spool       `yaml:"spool"`
	Log        Log               `yaml:"log"`
	DNS        DNS               `yaml:"dns"`
	ERS        ERS               `yaml:"ers"`
	WRS        WRS               `yaml:"wrs"`
	Scan       Scan              `yaml:"scan"`
	Policy     policy.Config     `yaml:"policy"`
	Quarantine Quarantine        `yaml:"quarantine"`
	Database   Database          `yaml:"database"`
	Encryption encryption.Config `yaml:"encryption"`
	Lists      Lists             `yaml:"lists"`
	Update     Update            `yaml:"update"`
	Click      Click             `yaml:"click"`

	// File is where this configuration came from ("(default)" for the
	// embedded one). Not a YAML key.
	File string `yaml:"-"`

	// lines maps the key paths written in File to their lines (see Line).
	lines map[string]int
}

// Log configures logging.
type Log struct {
	Level  string `yaml:"level"`  // debug | info | warn | error
	Format string `yaml:"format"` // json | console
}

// Default returns the embedded default configuration.
func Default() *Config {
	c, err := parse(defaultYAML, "(default)", &Config{})
	if err != nil {
		panic("embedded default configuration is invalid: " + err.Error())
	}
	return c
}

// Load reads and validates the file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(data, path)
}

// Parse reads and validates a configuration file's content; name is used in
// error messages. Keys missing from data keep their default values.
func Parse(data []byte, name string) (*Config, error) {
	return parse(data, name, Default())
}

func parse(data []byte, name string, base *Config) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		line := yamlErrorLine(err)
		if line == 0 {
			// yaml names no line for what its reader refuses (bad UTF-8, a
			// control character): find it. Nor for a problem on the first
			// line: its marks count lines from 0 and omit line 0.
			if line = badCharLine(data); line == 0 {
				line = 1
			}
		}
		return nil, &Error{File: name, Line: line, Msg: cleanYAMLError(err)}
	}
	d := &decoder{file: name, lines: map[string]int{}}
	c := base
	if len(root.Content) > 0 {
		d.decode(root.Content[0], "", reflect.ValueOf(c).Elem())
	}
	if len(d.errs) > 0 {
		return nil, d.errs
	}
	c.File = name
	c.lines = d.lines
	for _, p := range c.validate() {
		d.errs = append(d.errs, &Error{File: name, Line: d.lineOf(p.key), Key: p.key, Msg: p.msg})
	}
	if len(d.errs) > 0 {
		return nil, d.errs
	}
	return c, nil
}

// Line returns the line of File where key (a path like "policy.on_infected"
// or "policy.rules[2]", as in error messages) is written, or 0 when the key
// is not in the file and keeps its default.
func (c *Config) Line(key string) int { return c.lines[key] }

// lineOf finds the line of key, or of its closest ancestor that is in the
// file (a problem with a default value has no line).
func (d *decoder) lineOf(key string) int {
	for k := key; k != ""; {
		if l, ok := d.lines[k]; ok {
			return l
		}
		i := strings.LastIndexAny(k, ".[")
		if i < 0 {
			break
		}
		k = k[:i]
	}
	return 0
}

func yamlErrorLine(err error) int {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		num, _, _ := strings.Cut(rest, ":")
		n, _ := strconv.Atoi(num)
		return n
	}
	return 0
}

// badCharLine returns the line of the first byte that is not UTF-8 or is
// a character YAML does not allow (YAML 1.2 §5.1), or 0 if there is none.
func badCharLine(data []byte) int {
	line := 1
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		allowed := r == '\t' || r == '\n' || r == '\r' || r >= 0x20 && r <= 0x7e || r == 0x85 ||
			r >= 0xa0 && r <= 0xd7ff || r >= 0xe000 && r <= 0xfffd || r >= 0x10000 && r <= 0x10ffff
		if (r == utf8.RuneError && size <= 1) || !allowed {
			return line
		}
		// Line breaks as YAML counts them (§5.4): CRLF, CR, LF, NEL, LS, PS.
		if r == '\n' || r == '\r' && (i+1 == len(data) || data[i+1] != '\n') || r == 0x85 || r == 0x2028 || r == 0x2029 {
			line++
		}
		i += size
	}
	return 0
}

type problem struct{ key, msg string }

func (c *Config) validate() []problem {
	var ps []problem
	add := func(key, format string, args ...any) {
		ps = append(ps, problem{key, fmt.Sprintf(format, args...)})
	}
	c.validateDatabase(add)
	report := settings.Report(add)
	p := c.Proxy()
	p.Validate(report)
	settings.CheckHostPort(report, "admin_listen", c.AdminListen, false)
	if c.AdminProbeInterval.D() < time.Second {
		add("admin_probe_interval", "must be at least 1s")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		add("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	switch c.Log.Format {
	case "json", "console":
	default:
		add("log.format", "%q is not one of json, console", c.Log.Format)
	}
	c.validateSections(add)
	c.validateAdmin(add)
	sortProblems(ps)
	return ps
}

func sortProblems(ps []problem) {
	for i := 1; i < len(ps); i++ {
		for j := i; j > 0 && ps[j].key < ps[j-1].key; j-- {
			ps[j], ps[j-1] = ps[j-1], ps[j]
		}
	}
}

// Proxy returns the SMTP side's settings.
func (c *Config) Proxy() *proxy.Config {
	return &proxy.Config{
		Listen:              c.Listen,
		Downstream:          c.Downstream,
		DownstreamIdle:      c.DownstreamIdle,
		DownstreamMaxIdle:   c.DownstreamMaxIdle,
		Deployment:          c.Deployment,
		Hostname:            c.Hostname,
		AllowedClients:      c.AllowedClients,
		XforwardClients:     c.XforwardClients,
		RemoveIncomingTrace: c.RemoveIncomingTrace,
		ClientFromReceived:  c.ClientFromReceived,
		MaxMessageBytes:     c.MaxMessageBytes,
		Limits:              c.Limits,
		Timeouts:            c.Timeouts,
		Spool:               c.Spool,
		HoldAfter:           c.Scan.HoldAfter,
	}
}
