package config

import (
	"strings"
	"testing"
	"time"

	"github.com/foxproxy/foxproxy/console"
)

func TestConsoleUsersParse(t *testing.T) {
	h, err := console.HashPassword("pw")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse([]byte("console:\n  users:\n    - {name: alice, role: admin, password_hash: \""+h+"\"}\n  session_idle: 10m\nadmin_metrics_auth: true\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Console.Users) != 1 || c.Console.Users[0].Role != console.Admin || c.Console.SessionIdle.D() != 10*time.Minute ||
		c.Console.SessionMax.D() != 12*time.Hour || !c.AdminMetricsAuth {
		t.Fatalf("parsed %+v", c.Console)
	}
	if d := Default(); len(d.Console.Users) != 0 || d.Console.SessionIdle.D() != 30*time.Minute || d.AdminTLS.Enabled() || d.AdminMetricsAuth {
		t.Fatalf("default %+v %+v", d.Console, d.AdminTLS)
	}
}

func TestConsoleAndAdminValidation(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"console:\n  users:\n    - {name: a, role: boss, password_hash: x}\n", "t.yaml:3: console.users[0].role: \"boss\" is not one of viewer, admin"},
		{"console:\n  users:\n    - {name: a, role: admin, password_hash: secret}\n", "t.yaml:3: console.users[0].password_hash: not an argon2id or bcrypt hash (make one with: foxproxy passwd)"},
		{"console:\n  session_idle: soon\n", "t.yaml:2: console.session_idle: \"soon\" is not a duration"},
		{"admin_tls:\n  cert_file: /x.crt\n", "admin_tls.key_file: must be set with admin_tls.cert_file"},
		{"admin_tls:\n  cert_file: /nonexistent.crt\n  key_file: /nonexistent.key\n", "t.yaml:1: admin_tls: cannot load the certificate and key"},
		{"admin_metrics_auth: true\n", "t.yaml:1: admin_metrics_auth: needs console.users"},
	} {
		_, err := Parse([]byte(tc.yaml), "t.yaml")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.yaml, err, tc.want)
		}
	}
}
