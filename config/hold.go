package config

import "time"

// Holds reports whether messages can be held for rescan (scan.hold_after).
func (c *Config) Holds() bool { return c.Scan.HoldAfter > 0 }

// validateHold checks scan.hold_after and the rescan keys. Holding needs
// somewhere durable to keep the mail (quarantine.dir) and a scanner that
// can be unavailable in the first place; with on_scan_unavailable: pass
// unscanned mail is delivered, so nothing would ever be held.
func (c *Config) validateHold(add func(key, format string, args ...any)) {
	sc := c.Scan
	if sc.HoldAfter < 0 {
		add("scan.hold_after", "must not be negative (0: never hold, always defer)")
	}
	if sc.RescanRate <= 0 {
		add("scan.rescan_rate", "must be positive (messages per second)")
	}
	if sc.RescanBatch <= 0 {
		add("scan.rescan_batch", "must be positive")
	}
	if sc.RescanInterval.D() < time.Second {
		add("scan.rescan_interval", "must be at least 1s")
	}
	if !c.Holds() {
		return
	}
	if !sc.Enabled() {
		add("scan.hold_after", "needs a scanner (scan.smart.url or scan.conventional.url)")
	}
	if c.Quarantine.Dir == "" {
		add("scan.hold_after", "needs quarantine.dir: held mail is kept in its held/ directory")
	}
	if c.Policy.OnScanUnavailable == "pass" {
		add("scan.hold_after", "has no effect with policy.on_scan_unavailable: pass (unscanned mail is delivered)")
	}
}
