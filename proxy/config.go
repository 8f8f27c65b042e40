package proxy

import (
	"os"

	"github.com/foxproxy/foxproxy/settings"
)

// Config is what the SMTP side needs from the configuration file. Its
// settings are written at the file's top level (listen, downstream, limits,
// timeouts, spool ...), except HoldAfter, which is scan.hold_after.
type Config struct {
	// Listen is the SMTP address foxproxy accepts mail on.
	Listen string
	// Downstream is the smtpd foxproxy re-injects accepted mail into.
	Downstream string
	// DownstreamIdle is how long a connection to the downstream is kept
	// idle for the next transaction; DownstreamMaxIdle how many are kept
	// (0: none, every transaction connects). See delivery.Pool.
	DownstreamIdle    settings.Duration
	DownstreamMaxIdle int
	// Deployment says how Postfix calls foxproxy: after_queue (a
	// content_filter: a 5xx makes Postfix bounce) or before_queue
	// (smtpd_proxy_filter: a 5xx goes to the sending client). Defaults
	// that depend on who hears a rejection follow it, and before_queue
	// answers at RCPT what the envelope alone decides (refuseBeforeData).
	Deployment string
	// Hostname is used in the banner, EHLO to the downstream and the trace
	// header. Empty: the machine's host name.
	Hostname string
	// AllowedClients may connect at all; others get 554 at connect.
	AllowedClients settings.Prefixes
	// XforwardClients may send XFORWARD (their claims about the original
	// client are believed). Empty: the same as AllowedClients.
	XforwardClients settings.Prefixes
	// RemoveIncomingTrace removes X-Foxproxy and X-Foxproxy-* fields that
	// arrive with a message: they were not written by this foxproxy, and a
	// filter downstream must be able to trust the ones that were. Turn it
	// off only where mail passes through two foxproxy instances and the
	// first one's fields are to be kept.
	RemoveIncomingTrace bool
	// ClientFromReceived lets foxproxy read the original client from the
	// Received header that a trusted upstream Postfix prepended, when that
	// upstream sent no XFORWARD ADDR.
	ClientFromReceived bool
	// MaxMessageBytes is advertised with SIZE and enforced (552 5.3.4).
	MaxMessageBytes settings.ByteSize
	Limits          Limits
	Timeouts        Timeouts
	Spool           Spool
	// HoldAfter: while no scanner answers, a message that has waited this
	// long in the local Postfix is held for rescan instead of deferred
	// once more (0: never).
	HoldAfter settings.Duration
}

// Limits bound what one client can make foxproxy do.
type Limits struct {
	MaxRecipients       int               `yaml:"max_recipients"`
	MaxSessions         int               `yaml:"max_sessions"`
	MaxCommandLine      settings.ByteSize `yaml:"max_command_line"`
	MaxCommands         int               `yaml:"max_commands"`
	MaxHeaderBytes      settings.ByteSize `yaml:"max_header_bytes"`
	MaxXforwardValueLen int               `yaml:"max_xforward_value"`
}

// Timeouts bound every wait.
type Timeouts struct {
	// Command is how long foxproxy waits for the next command line.
	Command settings.Duration `yaml:"command"`
	// Data is the total time a client has to send one message's content.
	Data settings.Duration `yaml:"data"`
	// DownstreamConnect, DownstreamCommand and DownstreamData bound the
	// connection, each command reply, and the reply after the final dot.
	DownstreamConnect settings.Duration `yaml:"downstream_connect"`
	DownstreamCommand settings.Duration `yaml:"downstream_command"`
	DownstreamData    settings.Duration `yaml:"downstream_data"`
	// Stages bounds all checks on one message together.
	Stages settings.Duration `yaml:"stages"`
	// Shutdown is how long SIGTERM waits for sessions to finish.
	Shutdown settings.Duration `yaml:"shutdown"`
}

// Spool says where message content is kept while it is checked.
type Spool struct {
	// Dir holds spill files (created 0600 and unlinked at once, so a crash
	// leaves nothing behind). Empty: the system temp directory.
	Dir string `yaml:"dir"`
	// MemoryThreshold is how much of a message is kept in memory before it
	// spills to a file.
	MemoryThreshold settings.ByteSize `yaml:"memory_threshold"`
}

// Validate reports what is wrong with the settings, with the keys of the
// file's top level where they are written ("listen", "limits.max_sessions").
// HoldAfter is checked with the scan section it is written in.
func (c *Config) Validate(report settings.Report) {
	settings.CheckHostPort(report, "listen", c.Listen, true)
	settings.CheckHostPort(report, "downstream", c.Downstream, true)
	if c.DownstreamIdle < 0 {
		report("downstream_idle", "must not be negative")
	}
	if c.DownstreamMaxIdle < 0 {
		report("downstream_max_idle", "must not be negative")
	}
	if c.Deployment != "after_queue" && c.Deployment != "before_queue" {
		report("deployment", "%q is not one of after_queue, before_queue", c.Deployment)
	}
	if len(c.AllowedClients) == 0 {
		report("allowed_clients", "must list at least one network; foxproxy is never an open relay")
	}
	if c.MaxMessageBytes <= 0 {
		report("max_message_bytes", "must be positive")
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
			report(k, "must be positive")
		}
	}
	if c.Limits.MaxCommandLine > 0 && c.Limits.MaxCommandLine < 512 {
		report("limits.max_command_line", "must be at least 512 (RFC 5321 §4.5.3.1.4)")
	}
	if c.Limits.MaxCommandLine > 1<<20 {
		report("limits.max_command_line", "must be at most 1MiB")
	}
	if c.Spool.MemoryThreshold < 0 {
		report("spool.memory_threshold", "must not be negative")
	}
	if c.Spool.Dir != "" {
		if st, err := os.Stat(c.Spool.Dir); err != nil || !st.IsDir() {
			report("spool.dir", "%q is not an existing directory", c.Spool.Dir)
		}
	}
}

// TrustedForXforward reports the networks whose XFORWARD is believed.
func (c *Config) TrustedForXforward() settings.Prefixes {
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
