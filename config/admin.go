package config

import (
	"crypto/tls"
	"strings"
)

// AdminTLS is the admin listener's certificate: HTTPS when both files are
// set. foxproxy re-reads them on SIGHUP, so a renewed certificate needs no
// restart.
type AdminTLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Enabled reports whether the admin listener speaks TLS.
func (t AdminTLS) Enabled() bool { return t.CertFile != "" && t.KeyFile != "" }

func (c *Config) validateAdmin(add func(key, format string, args ...any)) {
	for _, p := range c.Console.Validate() {
		add("console."+p.Key, "%s", p.Msg)
	}
	t := c.AdminTLS
	switch {
	case t.CertFile != "" && t.KeyFile == "":
		add("admin_tls.key_file", "must be set with admin_tls.cert_file")
	case t.CertFile == "" && t.KeyFile != "":
		add("admin_tls.cert_file", "must be set with admin_tls.key_file")
	case t.Enabled():
		if _, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile); err != nil {
			add("admin_tls", "cannot load the certificate and key: %s", strings.TrimPrefix(err.Error(), "tls: "))
		}
	}
	if c.AdminMetricsAuth && len(c.Console.Users) == 0 {
		add("admin_metrics_auth", "needs console.users: without accounts nobody could log in to read /metrics")
	}
}
