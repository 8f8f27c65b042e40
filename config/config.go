// Package config reads foxproxy's one YAML configuration file.
//
// Every problem is reported with the file, the line and the key path, and a
// file is either accepted whole or refused whole: foxproxy never runs on a
// half-understood configuration (at start or on SIGHUP). Values that are not
// in the file keep the defaults of the embedded default configuration.
package config

import (
	_ "embed"
	"fmt"
	"net"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

//go:embed default.yaml
var defaultYAML []byte

// DefaultYAML returns the embedded default configuration file.
func DefaultYAML() []byte { return append([]byte(nil), defaultYAML...) }

// Config is the whole configuration.
type Config struct {
	// Listen is the SMTP address foxproxy accepts mail on.
	Listen string `yaml:"listen"`
	// Downstream is the smtpd foxproxy re-injects accepted mail into.
	Downstream string `yaml:"downstream"`
	// DownstreamIdle is how long a connection to the downstream is kept
	// idle for the next transaction; DownstreamMaxIdle how many are kept
	// (0: none, every transaction connects). See delivery.Pool.
	DownstreamIdle    Duration `yaml:"downstream_idle"`
	DownstreamMaxIdle int      `yaml:"downstream_max_idle"`
	// Deployment says how Postfix calls foxproxy: after_queue (a
	// content_filter: a 5xx makes Postfix bounce) or before_queue
	// (smtpd_proxy_filter: a 5xx goes to the sending client). Defaults
	// that depend on who hears a rejection follow it, and before_queue
	// answers at RCPT what the envelope alone decides (proxy,
	// refuseBeforeData).
	Deployment string `yaml:"deployment"`
	// Hostname is used in the banner, EHLO to the downstream and the trace
	// header. Empty: the machine's host name.
	Hostname string `yaml:"hostname"`
	// AllowedClients may connect at all; others get 554 at connect.
	AllowedClients Prefixes `yaml:"allowed_clients"`
	// XforwardClients may send XFORWARD (their claims about the original
	// client are believed). Empty: the same as allowed_clients.
	XforwardClients Prefixes `yaml:"xforward_clients"`
	// RemoveIncomingTrace removes X-Foxproxy and X-Foxproxy-* fields that
	// arrive with a message: they were not written by this foxproxy, and a
	// filter downstream must be able to trust the ones that were. Turn it
	// off only where mail passes through two foxproxy instances and the
	// first one's fields are to be kept.
	RemoveIncomingTrace bool `yaml:"remove_incoming_trace"`
	// ClientFromReceived lets foxproxy read the original client from the
	// Received header that a trusted upstream Postfix prepended, when that
	// upstream sent no XFORWARD ADDR.
	ClientFromReceived bool `yaml:"client_from_received"`
	// MaxMessageBytes is advertised with SIZE and enforced (552 5.3.4).
	MaxMessageBytes ByteSize `yaml:"max_message_bytes"`
	// AdminListen serves /healthz, /readyz, /metrics and /status; empty: off.
	AdminListen string `yaml:"admin_listen"`
	// AdminProbeInterval is how often every dependency is probed, so the
	// status shows an outage (and its end) even while no mail flows.
	AdminProbeInterval Duration `yaml:"admin_probe_interval"`
	// AdminPprof adds /debug/pprof to the admin listener.
	AdminPprof bool `yaml:"admin_pprof"`

	Limits     Limits     `yaml:"limits"`
	Timeouts   Timeouts   `yaml:"timeouts"`
	Spool      Spool      `yaml:"spool"`
	Log        Log        `yaml:"log"`
	DNS        DNS        `yaml:"dns"`
	ERS        ERS        `yaml:"ers"`
	WRS        WRS        `yaml:"wrs"`
	Scan       Scan       `yaml:"scan"`
	Policy     Policy     `yaml:"policy"`
	Quarantine Quarantine `yaml:"quarantine"`
	Encryption Encryption `yaml:"encryption"`
	Lists      Lists      `yaml:"lists"`
	Update     Update     `yaml:"update"`
	Click      Click      `yaml:"click"`

	// File is where this configuration came from ("(default)" for the
	// embedded one). Not a YAML key.
	File string `yaml:"-"`

	// lines maps the key paths written in File to their lines (see Line).
	lines map[string]int
}

// Limits bound what one client can make foxproxy do.
type Limits struct {
	MaxRecipients       int      `yaml:"max_recipients"`
	MaxSessions         int      `yaml:"max_sessions"`
	MaxCommandLine      ByteSize `yaml:"max_command_line"`
	MaxCommands         int      `yaml:"max_commands"`
	MaxHeaderBytes      ByteSize `yaml:"max_header_bytes"`
	MaxXforwardValueLen int      `yaml:"max_xforward_value"`
}

// Timeouts bound every wait.
type Timeouts struct {
	// Command is how long foxproxy waits for the next command line.
	Command Duration `yaml:"command"`
	// Data is the total time a client has to send one message's content.
	Data Duration `yaml:"data"`
	// DownstreamConnect, DownstreamCommand and DownstreamData bound the
	// connection, each command reply, and the reply after the final dot.
	DownstreamConnect Duration `yaml:"downstream_connect"`
	DownstreamCommand Duration `yaml:"downstream_command"`
	DownstreamData    Duration `yaml:"downstream_data"`
	// Stages bounds all checks on one message together.
	Stages Duration `yaml:"stages"`
	// Shutdown is how long SIGTERM waits for sessions to finish.
	Shutdown Duration `yaml:"shutdown"`
}

// Spool says where message content is kept while it is checked.
type Spool struct {
	// Dir holds spill files (created 0600 and unlinked at once, so a crash
	// leaves nothing behind). Empty: the system temp directory.
	Dir string `yaml:"dir"`
	// MemoryThreshold is how much of a message is kept in memory before it
	// spills to a file.
	MemoryThreshold ByteSize `yaml:"memory_threshold"`
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
	checkAddr := func(key, v string, required bool) {
		if v == "" {
			if required {
				add(key, "must be set (host:port)")
			}
			return
		}
		host, port, err := net.SplitHostPort(v)
		if err != nil {
			add(key, "%q is not host:port", v)
			return
		}
		if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			add(key, "%q has an invalid port", v)
		}
		_ = host
	}
	checkAddr("listen", c.Listen, true)
	checkAddr("downstream", c.Downstream, true)
	if c.DownstreamIdle.D() < 0 {
		add("downstream_idle", "must not be negative")
	}
	if c.DownstreamMaxIdle < 0 {
		add("downstream_max_idle", "must not be negative")
	}
	if c.Deployment != "after_queue" && c.Deployment != "before_queue" {
		add("deployment", "%q is not one of after_queue, before_queue", c.Deployment)
	}
	checkAddr("admin_listen", c.AdminListen, false)
	if c.AdminProbeInterval.D() < time.Second {
		add("admin_probe_interval", "must be at least 1s")
	}
	if len(c.AllowedClients) == 0 {
		add("allowed_clients", "must list at least one network; foxproxy is never an open relay")
	}
	if c.MaxMessageBytes <= 0 {
		add("max_message_bytes", "must be positive")
	}
	positive := map[string]int64{
		"limits.max_recipients":       int64(c.Limits.MaxRecipients),
		"limits.max_sessions":         int64(c.Limits.MaxSessions),
		"limits.max_command_line":     int64(c.Limits.MaxCommandLine),
		"limits.max_commands":         int64(c.Limits.MaxCommands),
		"limits.max_header_bytes":     int64(c.Limits.MaxHeaderBytes),
		"limits.max_xforward_value":   int64(c.Limits.MaxXforwardValueLen),
		"timeouts.command":            int64(c.Timeouts.Command),
		"timeouts.data":               int64(c.Timeouts.Data),
		"timeouts.downstream_connect": int64(c.Timeouts.DownstreamConnect),
		"timeouts.downstream_command": int64(c.Timeouts.DownstreamCommand),
		"timeouts.downstream_data":    int64(c.Timeouts.DownstreamData),
		"timeouts.stages":             int64(c.Timeouts.Stages),
		"timeouts.shutdown":           int64(c.Timeouts.Shutdown),
	}
	for k, v := range positive {
		if v <= 0 {
			add(k, "must be positive")
		}
	}
	if c.Limits.MaxCommandLine > 0 && c.Limits.MaxCommandLine < 512 {
		add("limits.max_command_line", "must be at least 512 (RFC 5321 §4.5.3.1.4)")
	}
	if c.Limits.MaxCommandLine > 1<<20 {
		add("limits.max_command_line", "must be at most 1MiB")
	}
	if c.Spool.MemoryThreshold < 0 {
		add("spool.memory_threshold", "must not be negative")
	}
	if c.Spool.Dir != "" {
		if st, err := os.Stat(c.Spool.Dir); err != nil || !st.IsDir() {
			add("spool.dir", "%q is not an existing directory", c.Spool.Dir)
		}
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

// TrustedForXforward reports the networks whose XFORWARD is believed.
func (c *Config) TrustedForXforward() Prefixes {
	if len(c.XforwardClients) > 0 {
		return c.XforwardClients
	}
	return c.AllowedClients
}

// HostnameOrDefault returns Hostname, else the machine's name.
func (c *Config) HostnameOrDefault() string {
	if c.Hostname != "" {
		return c.Hostname
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "foxproxy.localdomain"
}
