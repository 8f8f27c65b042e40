package config

import (
	"strings"
	"testing"
)

func TestHoldAfterValidation(t *testing.T) {
	for _, c := range []struct {
		name, yaml, want string
	}{
		{"off by default", "", ""},
		{"needs a scanner", "scan: {hold_after: 15m}\n", "scan.hold_after: needs a scanner"},
		{"needs quarantine.dir", "scan: {hold_after: 15m, conventional: {url: \"tcp://127.0.0.1:3310\"}}\nquarantine: {dir: \"\"}\n", "needs quarantine.dir"},
		{"pointless with pass", "scan: {hold_after: 15m, conventional: {url: \"tcp://127.0.0.1:3310\"}}\npolicy: {on_scan_unavailable: pass}\n", "has no effect"},
		{"rate", "scan: {rescan_rate: 0}\n", "scan.rescan_rate"},
		{"ok", "scan: {hold_after: 15m, rescan_rate: 0.5, conventional: {url: \"tcp://127.0.0.1:3310\"}}\n", ""},
	} {
		cfg, err := Parse([]byte(c.yaml), "test.yaml")
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: error %v, want %q", c.name, err, c.want)
		case c.name == "ok" && (!cfg.Holds() || !cfg.UsesQuarantine() || cfg.Scan.RescanRate != 0.5):
			t.Errorf("ok: %+v", cfg.Scan)
		}
	}
}
