package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"go.uber.org/zap"

	"github.com/foxproxy/foxproxy/lists"
	"github.com/foxproxy/foxproxy/update"
)

// updateCmd runs one list update now: `foxproxy update [-config FILE]`.
// It stores a new bundle in update.state_dir, where a running foxproxy
// (which watches that directory) takes it over at once, and prints what
// changed. Exit 0 when the lists are current, 1 when the attempt failed
// (the stored bundle then stays), 2 on a usage error.
func updateCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("foxproxy update", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "configuration file (YAML); empty: the embedded default")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return exitUsage
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitFailure
	}
	if !cfg.Update.Enabled() {
		fmt.Fprintln(stderr, "foxproxy update: update.url is not set in the configuration")
		return exitUsage
	}
	u, err := newUpdater(cfg, lists.NewHolder(), zap.NewNop())
	if err != nil {
		fmt.Fprintf(stderr, "foxproxy update: %v\n", err)
		return exitFailure
	}
	defer u.Close()
	if err := u.LoadState(); err != nil {
		fmt.Fprintf(stderr, "foxproxy update: ignoring the stored bundle: %v\n", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Update.Timeout.D()+5*time.Second)
	defer cancel()
	fmt.Fprintf(stdout, "source    %s\n", cfg.Update.URL)
	res, err := u.UpdateNow(ctx)
	old := res.OldVersion
	if old == "" {
		old = "(none)"
	}
	if err != nil {
		fmt.Fprintf(stdout, "failed    %v\n", err)
		fmt.Fprintf(stdout, "in force  %s (unchanged)\n", old)
		return exitFailure
	}
	if !res.Changed {
		fmt.Fprintf(stdout, "version   %s, unchanged\n", old)
		return 0
	}
	st := u.Status()
	fmt.Fprintf(stdout, "version   %s -> %s (created %s)\n", old, res.NewVersion, st.Created.UTC().Format(time.RFC3339))
	for _, c := range res.Changes {
		if c.Added == 0 && c.Removed == 0 && c.New == 0 {
			continue
		}
		fmt.Fprintf(stdout, "  %-17s +%d -%d (%d -> %d entries)\n", c.List, c.Added, c.Removed, c.Old, c.New)
	}
	fmt.Fprintf(stdout, "stored    %s/%s (a running foxproxy takes it over at once)\n", cfg.Update.StateDir, update.StateFile)
	return 0
}
