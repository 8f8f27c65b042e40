package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/foxproxy/foxproxy/config"
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
	if cfg.Scan.Enabled() {
		fmt.Fprintf(w, "  scan:       %s\n", scanners(cfg))
	} else {
		fmt.Fprintf(w, "  scan:       off (no scan.smart.url or scan.conventional.url)\n")
	}
	n := len(cfg.Policy.Rules)
	fmt.Fprintf(w, "  policy:     %d %s, then deliver; on_infected: %s; on_scan_unavailable: %s\n",
		n, plural(n, "rule", "rules"), cfg.Policy.OnInfected, cfg.Policy.OnScanUnavailable)
	if cfg.UsesQuarantine() {
		keep := "forever"
		if r := cfg.Quarantine.Retention.D(); r > 0 {
			keep = humanDuration(r)
		}
		fmt.Fprintf(w, "  quarantine: %s, kept %s\n", cfg.Quarantine.Dir, keep)
	} else {
		fmt.Fprintf(w, "  quarantine: not used (no verdict quarantines)\n")
	}
}
