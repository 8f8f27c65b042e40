package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/foxproxy/foxproxy/config"
	"github.com/foxproxy/foxproxy/pgstore"
)

// printSummary says in a few lines what a valid configuration will do, so
// check-config shows more than "OK": the address pair, each check and the
// services it uses, the policy, and where quarantined mail goes.
func printSummary(w io.Writer, cfg *config.Config) {
	fmt.Fprintf(w, "  smtp:       listen %s, downstream %s\n", cfg.Listen, cfg.Downstream)
	if s := listsSummary(cfg); s != "" { // lists.go
		fmt.Fprintf(w, "  lists:      %s\n", s)
	}
	if n := len(cfg.ERS.Zones); n > 0 {
		zones := make([]string, n)
		for i, z := range cfg.ERS.Zones {
			zones[i] = z.Zone
		}
		fmt.Fprintf(w, "  ers:        %d %s (%s) via %s\n", n, plural(n, "zone", "zones"), strings.Join(zones, ", "), resolvers(cfg))
	} else {
		fmt.Fprintf(w, "  ers:        off (no ers.zones)\n")
	}
	if cfg.WRS.Enabled() {
		var backends []string
		for _, z := range cfg.WRS.Zones {
			backends = append(backends, z.Zone)
		}
		if cfg.WRS.SafeBrowsing.APIKey != "" {
			backends = append(backends, "safebrowsing")
		}
		fmt.Fprintf(w, "  wrs:        %s, up to %d urls per message\n", strings.Join(backends, ", "), cfg.WRS.MaxURLs)
	} else {
		fmt.Fprintf(w, "  wrs:        off (no wrs.zones or wrs.safebrowsing.api_key)\n")
	}
	if cfg.ClickEnabled() {
		fmt.Fprintf(w, "  click:      %s\n", clickSummary(cfg.Click))
	}
	if cfg.Scan.Enabled() {
		fmt.Fprintf(w, "  scan:       %s\n", scanners(cfg))
	} else {
		fmt.Fprintf(w, "  scan:       off (no scan.smart.url or scan.conventional.url)\n")
	}
	if cfg.Holds() {
		sc := cfg.Scan
		fmt.Fprintf(w, "  hold:       after %s without a scanner, in %s; rescan %g/s, up to %d every %s\n",
			humanDuration(sc.HoldAfter.D()), heldPlace(cfg), sc.RescanRate, sc.RescanBatch, humanDuration(sc.RescanInterval.D()))
	}
	n := len(cfg.Policy.Rules)
	fmt.Fprintf(w, "  policy:     %d %s, then deliver; on_infected: %s; on_scan_unavailable: %s\n",
		n, plural(n, "rule", "rules"), cfg.Policy.OnInfected, cfg.Policy.OnScanUnavailable)
	if cfg.Encryption.Enabled() {
		fmt.Fprintf(w, "  encryption: %s\n", encryptionSummary(cfg))
	}
	if cfg.UsesQuarantine() {
		keep := "forever"
		if r := cfg.Quarantine.Retention.D(); r > 0 {
			keep = humanDuration(r)
		}
		fmt.Fprintf(w, "  quarantine: %s, kept %s\n", custodyPlace(cfg), keep)
	} else {
		fmt.Fprintf(w, "  quarantine: not used (no verdict quarantines)\n")
	}
}

// clickSummary is check-config's line about time-of-click protection: the
// listener, where links point, the key that signs them and what a click
// does while WRS cannot answer.
func clickSummary(c config.Click) string {
	listen := "no listener here (another foxproxy serves base_url)"
	if c.Listen != "" {
		listen = "listen " + c.Listen
	}
	key := "no signing key"
	if len(c.Keys) > 0 {
		key = "signing key " + c.Keys[0].ID
		if n := len(c.Keys) - 1; n > 0 {
			key += fmt.Sprintf(" (%d more %s verify)", n, plural(n, "key", "keys"))
		}
	}
	return fmt.Sprintf("%s, base_url %s, %s, on_unavailable: %s", listen, c.BaseURL, key, c.OnUnavailable)
}

// encryptionSummary is check-config's line about the encryption gateway:
// where keys come from and what happens to a copy without one, with
// on_key_absent resolved for the deployment.
func encryptionSummary(cfg *config.Config) string {
	e := cfg.Encryption
	var src []string
	if e.OpenPGP.KeyringDir != "" {
		src = append(src, "openpgp keyring "+e.OpenPGP.KeyringDir)
	}
	if e.OpenPGP.WKD {
		src = append(src, "wkd (timeout "+humanDuration(e.OpenPGP.Timeout.D())+")")
	}
	if e.SMIME.CertDir != "" {
		src = append(src, "smime certificates "+e.SMIME.CertDir)
	}
	if e.Decrypt.KeyDir != "" {
		src = append(src, "decrypts with "+e.Decrypt.KeyDir)
	}
	absent := cfg.KeyAbsentAction()
	if e.OnKeyAbsent == "" {
		absent += " (" + cfg.Deployment + " default)"
	}
	return fmt.Sprintf("%s; on_key_service_unavailable: %s; on_key_absent: %s",
		strings.Join(src, ", "), e.OnKeyServiceUnavailable, absent)
}

// custodyPlace is where quarantined mail is kept: the shared database
// (without its password) or the directory.
func custodyPlace(cfg *config.Config) string {
	if cfg.Database.URL != "" {
		return "database " + pgstore.Redacted(cfg.Database.URL) + " (shared)"
	}
	return cfg.Quarantine.Dir
}

// heldPlace is where held mail is kept.
func heldPlace(cfg *config.Config) string {
	if cfg.Database.URL != "" {
		return custodyPlace(cfg)
	}
	return cfg.Quarantine.Dir + "/held"
}
