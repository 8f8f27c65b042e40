package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/foxproxy/foxproxy/config"
	"github.com/foxproxy/foxproxy/lists"
	"github.com/foxproxy/foxproxy/pipeline"
	"github.com/foxproxy/foxproxy/policy"
	"github.com/foxproxy/foxproxy/reputation"
	"github.com/foxproxy/foxproxy/scan"
	"github.com/foxproxy/foxproxy/spool"
)

const policyUsage = `usage: foxproxy policy test [-config FILE] [--client IP] [--helo NAME] [--from ADDR] --to ADDR [--to ADDR...]
                            [--no-stages] [--finding STAGE=STATUS[:WHAT]...] MESSAGE.eml
Runs the configured checks on a message file the way foxproxy would and
prints each finding, the verdict and the rule that decided. The checks are
real: ERS and WRS query their lists, scan sends the message to the
configured scanners. --finding STAGE=STATUS[:WHAT] puts a finding in place
of a stage's (which is then not run), e.g. ers=listed:spam,
wrs=listed:phish, scan=infected:Eicar-Test, scan=unavailable, wrs=skipped,
lists=listed:blocked_clients; --no-stages runs none, for a pure dry run of the rules. MESSAGE.eml "-"
reads standard input. Exit status: 0 the test ran (whatever the verdict),
1 it could not, 2 usage error.
`

// policyCmd runs "foxproxy policy ...".
func policyCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "test" {
		fmt.Fprint(stderr, policyUsage)
		return exitUsage
	}
	fs := flag.NewFlagSet("foxproxy policy test", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, policyUsage) }
	cfgPath := fs.String("config", "", "configuration file (YAML); empty: the embedded default")
	client := fs.String("client", "", "the original client's IP address (XFORWARD ADDR)")
	helo := fs.String("helo", "", "the client's HELO name")
	from := fs.String("from", "", "envelope sender (empty: the null sender <>)")
	noStages := fs.Bool("no-stages", false, "run no stage; only --finding findings")
	var to, inject stringList
	fs.Var(&to, "to", "envelope recipient (repeat for more)")
	fs.Var(&inject, "finding", "STAGE=STATUS[:WHAT] instead of running that stage (repeat for more)")
	pos, err := parseArgs(fs, args[1:])
	if err != nil {
		return exitUsage
	}
	usage := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "foxproxy policy test: "+format+"\n", a...)
		return exitUsage
	}
	if len(pos) != 1 {
		return usage("give one message file (\"-\" for standard input)")
	}
	if len(to) == 0 {
		return usage("give at least one --to recipient")
	}
	var clientAddr netip.Addr
	if *client != "" {
		if clientAddr, err = netip.ParseAddr(*client); err != nil {
			return usage("--client %q is not an IP address", *client)
		}
		clientAddr = clientAddr.Unmap()
	}
	injected := map[pipeline.StageName]pipeline.Finding{}
	var injectedOrder []pipeline.StageName
	for _, s := range inject {
		f, err := parseFinding(s)
		if err != nil {
			return usage("--finding %q: %v", s, err)
		}
		if _, dup := injected[f.Stage]; dup {
			return usage("--finding: %s given twice", f.Stage)
		}
		injected[f.Stage] = f
		injectedOrder = append(injectedOrder, f.Stage)
	}

	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitFailure
	}
	msg, err := readMessage(pos[0], int64(cfg.MaxMessageBytes))
	if err != nil {
		fmt.Fprintf(stderr, "foxproxy policy test: %v\n", err)
		return exitFailure
	}

	// The production wiring, minus the quarantine store: a dry run
	// quarantines nothing and must not create quarantine.dir.
	dry := *cfg
	dry.Quarantine.Dir = ""
	dry.Database.URL = ""
	log := cliLogger(cfg, stderr)
	defer log.Sync()
	w, err := wire(&dry, log)
	if err != nil {
		fmt.Fprintf(stderr, "foxproxy policy test: %v\n", err)
		return exitFailure
	}
	defer w.close()
	var run []pipeline.Stage
	if !*noStages {
		for _, s := range w.Pipeline.Stages() {
			if _, ok := injected[s.Name()]; !ok {
				run = append(run, s)
			}
		}
	}

	tx := &pipeline.Transaction{ID: "policy-test", Client: clientAddr, Helo: *helo, From: *from, Rcpts: to, Message: msg}
	p := pipeline.New(run...)
	ctx, cancel := context.WithTimeout(lists.NewContext(context.Background(), w.Runtime.Lists.Current()), cfg.Timeouts.Stages.D())
	defer cancel()
	p.PrefetchClient(clientAddr) // what the proxy does at MAIL
	found, err := p.Run(ctx, tx)
	if err != nil {
		fmt.Fprintf(stderr, "foxproxy policy test: %v (foxproxy would answer 451 4.3.0)\n", err)
		return exitFailure
	}
	// The findings in pipeline order, injected ones in their stage's place
	// (or after the stages, for a stage that is not configured).
	var findings []pipeline.Finding
	ran := map[pipeline.StageName]pipeline.Finding{}
	for _, f := range found {
		ran[f.Stage] = f
	}
	for _, s := range w.Pipeline.Stages() {
		if f, ok := injected[s.Name()]; ok {
			findings = append(findings, f)
		} else if f, ok := ran[s.Name()]; ok {
			findings = append(findings, f)
		}
	}
	for _, name := range injectedOrder {
		if !slices.ContainsFunc(w.Pipeline.Stages(), func(s pipeline.Stage) bool { return s.Name() == name }) {
			findings = append(findings, injected[name])
		}
	}
	v := w.Policy.Decide(tx, findings)

	out := stdout
	row := func(k, format string, a ...any) { fmt.Fprintf(out, "%-9s "+format+"\n", append([]any{k}, a...)...) }
	row("config", "%s", cfg.File)
	row("message", "%s, %d bytes", pos[0], msg.Size())
	c := "(unknown)"
	if clientAddr.IsValid() {
		c = clientAddr.String()
	}
	rcpts := make([]string, len(to))
	for i, r := range to {
		rcpts[i] = addr(r)
	}
	row("envelope", "client %s, helo %q, from %s, to %s", c, *helo, addr(*from), strings.Join(rcpts, ", "))
	for _, s := range w.Pipeline.Stages() {
		if _, ok := injected[s.Name()]; ok {
			row("stage", "%s: not run, finding given with --finding", s.Name())
		} else if *noStages {
			row("stage", "%s: not run (--no-stages)", s.Name())
		} else {
			row("stage", "%s: %s", s.Name(), liveNote(cfg, s.Name()))
		}
	}
	if len(w.Pipeline.Stages()) == 0 {
		row("stage", "none configured")
	}
	fmt.Fprintln(out, "findings")
	if len(findings) == 0 {
		fmt.Fprintln(out, "  (none)")
	}
	for _, f := range findings {
		src := fmt.Sprintf("%v", f.Duration.Round(time.Millisecond))
		if _, ok := injected[f.Stage]; ok {
			src = "injected"
		}
		extra := ""
		if f.Detail != "" && f.Status != pipeline.Infected {
			extra = "  " + printable(f.Detail)
		}
		fmt.Fprintf(out, "  %-40s %s%s\n", f.Trace(), src, extra)
		for _, it := range f.Items {
			fmt.Fprintf(out, "      %s listed in %s: %s\n", printable(it.What), printable(it.Zone), printable(it.Category))
		}
	}
	row("verdict", "%s, %s", v.Action, decidedBy(cfg, v))
	switch v.Action {
	case policy.Reject, policy.Tempfail:
		if r := v.Reply; r != nil {
			row("reply", "%d %d.%d.%d %s", r.Code, r.Enhanced[0], r.Enhanced[1], r.Enhanced[2], printable(r.Text))
		}
	case policy.Tag, policy.Deliver:
		for _, h := range v.Headers {
			row("header", "%s: %s", printable(h.Name), printable(h.Value))
		}
		if v.SubjectPrefix != "" {
			row("subject", "prefixed with %q", v.SubjectPrefix)
		}
	case policy.Quarantine:
		row("store", "in quarantine.dir %s (not in this dry run)", cfg.Quarantine.Dir)
	case policy.Encrypt:
		row("encrypt", "for %s (keys are not looked up in this dry run)", printable(strings.Join(v.EncryptRcpts, ", ")))
		if v.SubjectTag != "" {
			row("subject", "%q removed", v.SubjectTag)
		}
	}
	if v.RewriteLinks {
		row("links", "rewritten to point at %s", printable(cfg.Click.BaseURL))
	}
	return exitOK
}

// decidedBy names the rule that decided v and where it is written.
func decidedBy(cfg *config.Config, v policy.Verdict) string {
	rule := v.Rule
	switch v.Reason {
	case policy.ReasonDefault:
		return "no rule matched (the default)"
	case policy.ReasonInfected, policy.ReasonUnscanned:
		key := "policy." + rule
		if l := cfg.Line(key); l > 0 {
			return fmt.Sprintf("by %s (%s:%d)", key, cfg.File, l)
		}
		return fmt.Sprintf("by %s (its default)", key)
	}
	for i, r := range cfg.Policy.Rules {
		name := r.Name
		if name == "" {
			name = fmt.Sprintf("rule-%d", i+1)
		}
		if name == rule {
			return fmt.Sprintf("rule %q, policy.rules[%d] (%s:%d)", rule, i, cfg.File, cfg.Line(fmt.Sprintf("policy.rules[%d]", i)))
		}
	}
	return fmt.Sprintf("rule %q", rule)
}

// liveNote says what running a stage does, so nobody is surprised by
// lookups or scans leaving the machine.
func liveNote(cfg *config.Config, stage pipeline.StageName) string {
	switch stage {
	case reputation.ERSStage:
		zones := make([]string, len(cfg.ERS.Zones))
		for i, z := range cfg.ERS.Zones {
			zones[i] = z.Zone
		}
		return fmt.Sprintf("real DNS lookups of the client in %s via %s", strings.Join(zones, ", "), resolvers(cfg))
	case reputation.WRSStage:
		return "real lookups of the message's links"
	case scan.StageName:
		return "real scan by " + scanners(cfg)
	}
	return "run as configured"
}

func resolvers(cfg *config.Config) string {
	if len(cfg.DNS.Servers) == 0 {
		return "/etc/resolv.conf's servers"
	}
	return strings.Join(cfg.DNS.Servers, ", ")
}

func scanners(cfg *config.Config) string {
	sc := cfg.Scan
	var parts []string
	if sc.Smart.URL != "" {
		parts = append(parts, "smart "+sc.Smart.URL)
	}
	if sc.Conventional.URL != "" {
		c := "conventional " + sc.Conventional.URL
		if sc.Smart.URL != "" && sc.FallbackToConventional {
			c += " (fallback)"
		}
		parts = append(parts, c)
	}
	return fmt.Sprintf("%s (mode %s)", strings.Join(parts, ", "), sc.ActiveMode())
}

// parseFinding reads STAGE=STATUS[:WHAT] for any stage a rule can test
// (policy.StageConditions): WHAT is the categories (comma separated) of a
// listed finding, the threat of an infected one, the detail of any other.
// A stage whose categories are fixed (the lists stage's are the lists'
// names) takes only those.
func parseFinding(s string) (pipeline.Finding, error) {
	name, rest, ok := strings.Cut(s, "=")
	i := slices.IndexFunc(policy.StageConditions, func(sc policy.StageCondition) bool { return string(sc.Stage) == name })
	if !ok || i < 0 {
		var names []string
		for _, sc := range policy.StageConditions {
			names = append(names, string(sc.Stage))
		}
		return pipeline.Finding{}, fmt.Errorf("want STAGE=STATUS[:WHAT] with STAGE one of %s", strings.Join(names, ", "))
	}
	sc := policy.StageConditions[i]
	status, what, _ := strings.Cut(rest, ":")
	if !slices.Contains(sc.Statuses, pipeline.Status(status)) {
		var words []string
		for _, st := range sc.Statuses {
			words = append(words, string(st))
		}
		return pipeline.Finding{}, fmt.Errorf("%s status %q is not one of %s", name, status, strings.Join(words, ", "))
	}
	f := pipeline.Finding{Stage: sc.Stage, Status: pipeline.Status(status)}
	switch {
	case status == string(pipeline.Listed):
		for _, c := range strings.Split(what, ",") {
			if c = strings.TrimSpace(c); c != "" && !slices.Contains(f.Categories, c) {
				f.Categories = append(f.Categories, c)
			}
		}
		slices.Sort(f.Categories)
		if len(f.Categories) == 0 && sc.AnyCategory {
			f.Categories = []string{reputation.CategoryListed}
		}
		if !sc.AnyCategory {
			if len(f.Categories) == 0 {
				return pipeline.Finding{}, fmt.Errorf("%s=listed needs :WHAT, one or more of %s", name, strings.Join(sc.Words, ", "))
			}
			for _, c := range f.Categories {
				if !slices.Contains(sc.Words, c) {
					return pipeline.Finding{}, fmt.Errorf("%s category %q is not one of %s", name, c, strings.Join(sc.Words, ", "))
				}
			}
		}
	default:
		f.Detail = what
	}
	return f, nil
}

// readMessage reads a message file into a spool. Line ends become CRLF,
// as they are on the wire (a file saved from a mail client often has LF).
func readMessage(path string, max int64) (*spool.Message, error) {
	var r io.Reader = os.Stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s is larger than max_message_bytes (%d): foxproxy would refuse it with 552 5.3.4", path, max)
	}
	if len(b) == 0 {
		return nil, errors.New(path + " is empty")
	}
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	b = bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n"))
	return spool.FromBytes(b), nil
}

// cliLogger logs the stages' own lines (an ERS zone failing its check, a
// scanner down) readably on stderr.
func cliLogger(cfg *config.Config, w io.Writer) *zap.Logger {
	encCfg := zap.NewDevelopmentEncoderConfig()
	encCfg.EncodeTime = zapcore.TimeEncoderOfLayout("15:04:05.000")
	return zap.New(zapcore.NewCore(zapcore.NewConsoleEncoder(encCfg), zapcore.Lock(zapcore.AddSync(w)),
		zap.NewAtomicLevelAt(parseLevel(cfg.Log.Level))))
}
