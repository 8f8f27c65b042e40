package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/user"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/foxproxy/foxproxy/config"
	"github.com/foxproxy/foxproxy/delivery"
	"github.com/foxproxy/foxproxy/pipeline"
	"github.com/foxproxy/foxproxy/quarantine"
	"github.com/foxproxy/foxproxy/release"
	"github.com/foxproxy/foxproxy/settings"
)

const quarantineUsage = `usage: foxproxy quarantine COMMAND [-config FILE] ...
  list [--json]                      the entries, oldest first
  show [--json] [--body | --raw] ID  an entry's envelope, findings and header
  release [--force] ID...            re-inject to the downstream, then delete
  delete ID...                       delete without delivering
  purge [--older-than D]             delete entries older than D (default quarantine.retention)
  import [-dir DIR] [-keep]          copy a file store into the database (foxproxy quarantine import -h)
With --held, list, show, release and delete work on the held area: mail
accepted while no scanner answered (scan.hold_after), waiting for its rescan.
Releasing a held message delivers it unscanned.
The quarantine is database.url of -config when set (shared by every host
pointing at it), else quarantine.dir (default: the embedded configuration's). Exit status: 0 done, 1 failed, 2 usage error.
`

// quarantineCmd runs "foxproxy quarantine ...".
func quarantineCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprint(stderr, quarantineUsage)
		return exitUsage
	}
	sub, args := args[0], args[1:]
	if sub == "import" {
		return quarantineImportCmd(args, stdout, stderr) // quarantine_import.go
	}
	fs := flag.NewFlagSet("foxproxy quarantine "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "configuration file (YAML); empty: the embedded default")
	var jsonOut, body, raw, force, held bool
	var olderThan string
	var unencrypted bool
	nargs := "none" // positional arguments: none, one, some
	switch sub {
	case "list":
		fs.BoolVar(&jsonOut, "json", false, "print the entries as a JSON array")
	case "show":
		fs.BoolVar(&jsonOut, "json", false, "print the metadata as JSON")
		fs.BoolVar(&body, "body", false, "print the whole message, not only its header")
		fs.BoolVar(&raw, "raw", false, "print only the stored message, byte for byte")
		nargs = "one"
	case "release":
		fs.BoolVar(&force, "force", false, "release even though an earlier release was interrupted and may have delivered it")
		fs.BoolVar(&unencrypted, "unencrypted", false, "send a copy that waits for its recipients' encryption keys in clear")
		nargs = "some"
	case "delete":
		nargs = "some"
	case "purge":
		fs.StringVar(&olderThan, "older-than", "", "age, e.g. 30d or 12h (default: quarantine.retention)")
	default:
		fmt.Fprintf(stderr, "foxproxy quarantine: unknown command %q\n%s", sub, quarantineUsage)
		return exitUsage
	}
	if sub != "purge" {
		fs.BoolVar(&held, "held", false, "the held area: mail waiting for a rescan (scan.hold_after)")
	}
	ids, err := parseArgs(fs, args)
	if err != nil {
		return exitUsage
	}
	switch {
	case nargs == "none" && len(ids) > 0:
		fmt.Fprintf(stderr, "foxproxy quarantine %s: unexpected argument %q\n", sub, ids[0])
		return exitUsage
	case nargs == "one" && len(ids) != 1, nargs == "some" && len(ids) == 0:
		fmt.Fprintf(stderr, "foxproxy quarantine %s: give the ID of an entry (see foxproxy quarantine list)\n", sub)
		return exitUsage
	case body && raw:
		fmt.Fprintf(stderr, "foxproxy quarantine show: --body and --raw exclude each other\n")
		return exitUsage
	}
	age := time.Duration(-1)
	if olderThan != "" {
		if age, err = settings.ParseDuration(olderThan); err != nil {
			fmt.Fprintf(stderr, "foxproxy quarantine purge: --older-than: %v\n", err)
			return exitUsage
		}
	}

	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitFailure
	}
	store, closeStore, err := openCustodyCLI(cfg) // database.go
	if err != nil {
		fmt.Fprintf(stderr, "foxproxy quarantine: %v\n", err)
		return exitFailure
	}
	defer closeStore()
	q := &quarantineCLI{cfg: cfg, store: store, stdout: stdout, stderr: stderr, now: time.Now}
	q.unencrypted = unencrypted
	if held {
		q.store, q.held = store.HeldView(), true
	}
	switch sub {
	case "list":
		return q.list(jsonOut)
	case "show":
		return q.show(ids[0], jsonOut, body, raw)
	case "release":
		ok := true
		for _, id := range ids {
			ok = q.release(context.Background(), id, force) && ok
		}
		return exitCode(ok)
	case "delete":
		ok := true
		for _, id := range ids {
			ok = q.delete(id) && ok
		}
		return exitCode(ok)
	default: // purge
		return q.purge(age)
	}
}

func exitCode(ok bool) int {
	if ok {
		return exitOK
	}
	return exitFailure
}

type quarantineCLI struct {
	cfg            *config.Config
	store          quarantine.Store
	stdout, stderr io.Writer
	now            func() time.Time
	held           bool // working on the held area (quarantinehold.go)
	// unencrypted releases copies that wait for encryption keys in clear.
	unencrypted bool
}

func (q *quarantineCLI) fail(id string, err error) bool {
	if errors.Is(err, quarantine.ErrNotFound) {
		fmt.Fprintf(q.stderr, "foxproxy quarantine: %s: no such entry\n", printable(id))
		return false
	}
	fmt.Fprintf(q.stderr, "foxproxy quarantine: %s: %v\n", printable(id), strings.TrimPrefix(err.Error(), "quarantine: "))
	return false
}

func (q *quarantineCLI) list(jsonOut bool) int {
	entries, err := q.store.List(context.Background())
	if err != nil {
		fmt.Fprintf(q.stderr, "foxproxy quarantine: %v\n", err)
		return exitFailure
	}
	if jsonOut {
		if entries == nil {
			entries = []quarantine.Entry{}
		}
		enc := json.NewEncoder(q.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(entries); err != nil {
			return exitFailure
		}
		return exitOK
	}
	tw := tabwriter.NewWriter(q.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTIME (UTC)\tFROM\tRCPTS\tSIZE\tRULE\tFINDINGS")
	for _, e := range entries {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", e.ID, e.Time.UTC().Format("2006-01-02 15:04:05"),
			truncate(addr(e.From), 40), len(e.Rcpts), humanSize(e.Size), printable(e.Rule), shortFindings(e.Findings)+q.claimNote(e.ID))
	}
	tw.Flush()
	fmt.Fprintf(q.stdout, "%d %s in %s\n", len(entries), plural(len(entries), "entry", "entries"), q.store.Describe())
	return exitOK
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// truncate shortens s to n runes.
func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-3]) + "..."
}

// trace renders a stored finding the way the X-Foxproxy header does.
func trace(f quarantine.Finding) string {
	return pipeline.Finding{Stage: pipeline.StageName(f.Stage), Status: pipeline.Status(f.Status), Categories: f.Categories,
		Detail: f.Detail, Backend: f.Backend}.Trace()
}

// shortFindings are the findings worth a column: what was not clean.
func shortFindings(fs []quarantine.Finding) string {
	var parts []string
	for _, f := range fs {
		if f.Status != string(pipeline.Clean) {
			parts = append(parts, trace(f))
		}
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, " ")
}

func (q *quarantineCLI) show(id string, jsonOut, body, raw bool) int {
	ctx := context.Background() // the store bounds its own waits
	e, err := q.store.Get(ctx, id)
	if err != nil {
		q.fail(id, err)
		return exitFailure
	}
	if jsonOut {
		enc := json.NewEncoder(q.stdout)
		enc.SetIndent("", "  ")
		enc.Encode(e)
		return exitOK
	}
	f, err := q.store.Open(ctx, id)
	if err != nil {
		q.fail(id, err)
		return exitFailure
	}
	defer f.Close()
	if raw {
		if _, err := io.Copy(q.stdout, f); err != nil {
			q.fail(id, err)
			return exitFailure
		}
		return exitOK
	}

	w := q.stdout
	row := func(k, v string) { fmt.Fprintf(w, "%-10s %s\n", k+":", v) }
	row("ID", e.ID)
	row("Time", e.Time.UTC().Format("2006-01-02 15:04:05 UTC"))
	row("From", addr(e.From))
	for _, r := range e.Rcpts {
		if p := e.RcptOptions[r]; len(p) > 0 {
			row("To", addr(r)+" "+formatParams(p))
			continue
		}
		row("To", addr(r))
	}
	client := printable(e.Client)
	if client == "" {
		client = "(unknown)"
	}
	var about []string
	for _, k := range []string{"NAME", "HELO"} {
		if v := e.Xforward[k]; v != "" {
			about = append(about, strings.ToLower(k)+" "+printable(v))
		}
	}
	if len(about) > 0 {
		client += " (" + strings.Join(about, ", ") + ")"
	}
	row("Client", client)
	if e.QueueID != "" {
		row("Queue ID", printable(e.QueueID)+" (upstream)")
	}
	row("Size", fmt.Sprintf("%d bytes", e.Size))
	row("Rule", printable(e.Rule))
	if e.Reason != "" {
		row("Reason", printable(e.Reason))
	}
	if len(e.Encrypt) > 0 {
		row("Encrypt", "a release encrypts it for "+printable(strings.Join(e.Encrypt, ", ")))
	}
	for _, f := range e.Findings {
		row("Finding", printable(trace(f))+detailOf(f))
	}
	if len(e.MailOptions) > 0 {
		row("MAIL", formatParams(e.MailOptions))
	}
	for _, r := range e.Released {
		var to []string
		for _, a := range r.Rcpts {
			to = append(to, addr(a))
		}
		row("Released", fmt.Sprintf("%s to %s (queued as %s)", r.Time.UTC().Format("2006-01-02 15:04:05 UTC"), strings.Join(to, ", "), printable(r.QueuedAs)))
	}
	if ce, ok := q.store.Claimed(ctx, id); ok {
		row("Claim", strings.TrimPrefix(ce.Error(), "quarantine: "))
	}
	fmt.Fprintln(w)

	br := bufio.NewReader(f)
	limit := int64(q.cfg.Limits.MaxHeaderBytes)
	var read int64
	inHeader := true
	for {
		line, err := br.ReadString('\n')
		read += int64(len(line))
		trimmed := strings.TrimRight(line, "\r\n")
		if inHeader && trimmed == "" && line != "" {
			if !body {
				break
			}
			inHeader = false
		}
		if line != "" {
			fmt.Fprintln(w, printable(trimmed))
		}
		if err != nil {
			break
		}
		if inHeader && read > limit {
			fmt.Fprintf(w, "[header longer than limits.max_header_bytes (%d): cut]\n", limit)
			break
		}
	}
	if !body {
		fmt.Fprintf(w, "\n[body not shown: %d bytes in all; use --body or --raw]\n", e.Size)
	}
	return exitOK
}

func detailOf(f quarantine.Finding) string {
	if f.Detail == "" || f.Status == string(pipeline.Infected) {
		return ""
	}
	return " " + printable(f.Detail)
}

func formatParams(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		if m[k] == "" {
			parts = append(parts, printable(k))
		} else {
			parts = append(parts, printable(k+"="+m[k]))
		}
	}
	return strings.Join(parts, " ")
}

func (q *quarantineCLI) delete(id string) bool {
	if err := q.store.Delete(context.Background(), id); err != nil {
		return q.fail(id, err)
	}
	fmt.Fprintf(q.stdout, "%s: deleted\n", id)
	return true
}

func (q *quarantineCLI) purge(age time.Duration) int {
	if age < 0 {
		age = q.cfg.Quarantine.Retention.D()
		if age == 0 {
			fmt.Fprintf(q.stdout, "quarantine.retention is 0 (keep mail forever): nothing purged; use --older-than\n")
			return exitOK
		}
	}
	n, err := q.store.Purge(context.Background(), age)
	if err != nil {
		fmt.Fprintf(q.stderr, "foxproxy quarantine purge: %v\n", err)
		return exitFailure
	}
	fmt.Fprintf(q.stdout, "purged %d %s older than %s from %s\n", n, plural(n, "entry", "entries"), humanDuration(age), q.store.Describe())
	return exitOK
}

// release re-injects one entry with its original envelope and deletes it
// once the downstream has said 250. See README, "Quarantine", for what
// happens when the downstream refuses some recipients.
func (q *quarantineCLI) release(ctx context.Context, id string, force bool) bool {
	if q.held {
		fmt.Fprintf(q.stderr, "foxproxy quarantine: %s: releasing a held message: it is delivered unscanned\n", id)
	}
	e, res, err := q.releaseByHand(ctx, id, force, releasedBy())
	var ce *quarantine.ClaimedError
	if errors.As(err, &ce) {
		q.fail(id, err)
		if !ce.Running || ce.Uncertain != "" {
			fmt.Fprintf(q.stderr, "  look for it in the downstream's log (orig_queue_id=%s), then either\n"+
				"  foxproxy quarantine release %s--force %s   (send it, perhaps again), or\n"+
				"  foxproxy quarantine delete %s%s\n", printable(e.QueueID), q.heldFlag(), id, q.heldFlag(), id)
		}
		return false
	}
	var recErr *release.RecordError
	switch {
	case errors.Is(err, delivery.ErrReinjectUncertain):
		q.fail(id, err)
		fmt.Fprintf(q.stderr, "  the entry is kept and marked; look for it in the downstream's log (orig_queue_id=%s),\n"+
			"  then run release --force or delete\n", printable(e.QueueID))
		return false
	case errors.As(err, &recErr) && recErr.Op == "deleted":
		q.fail(id, fmt.Errorf("released, queued as %s, but the entry could not be deleted: %w; delete it, do not release it again", res.QueuedAs, recErr.Err))
		return false
	case errors.As(err, &recErr):
		q.fail(id, fmt.Errorf("released to %s (queued as %s), but the entry could not be updated: %w", strings.Join(addrs(res.Accepted), ", "), res.QueuedAs, recErr.Err))
		return false
	case err != nil:
		q.fail(id, fmt.Errorf("not released: %w; the entry is kept", err))
		return false
	}
	if res.XforwardRefused != "" {
		fmt.Fprintf(q.stderr, "foxproxy quarantine: %s: warning: the downstream refused XFORWARD (%s): its log names this host as the client\n",
			id, printable(res.XforwardRefused))
	}
	fmt.Fprintf(q.stdout, "%s: released to %s: 250 %s\n", id, strings.Join(addrs(res.Accepted), ", "), printable(res.Reply))
	if len(res.Refused) == 0 {
		return true
	}
	var why []string
	for _, r := range res.Refused {
		why = append(why, fmt.Sprintf("%s: %d %s", addr(r.Rcpt), r.Code, printable(r.Reply)))
	}
	fmt.Fprintf(q.stderr, "foxproxy quarantine: %s: the downstream refused %s\n  the entry is kept for %s only: release it again to retry, or delete it\n",
		id, strings.Join(why, "; "), plural(len(res.Refused), "that recipient", "those recipients"))
	return false
}

// addrs are addresses as the command line shows them.
func addrs(as []string) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = addr(a)
	}
	return out
}

// releasedBy names who released: the user, and who used sudo to become it.
func releasedBy() []string {
	name := fmt.Sprint(os.Getuid())
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	by := []string{"by=" + pipeline.TraceToken(name)}
	if s := os.Getenv("SUDO_USER"); s != "" {
		by = append(by, "sudo_user="+pipeline.TraceToken(s))
	}
	return by
}

// releasedHeader is the one line a released message gets on top, like the
// X-Foxproxy trace header of delivered mail: that foxproxy released it,
// from which entry, why it was held, who released it and when.
//
//	X-Foxproxy-Released: foxproxy/0.1.0; host=mx.example.org;
//		id=20261127T140000-1a2b3c4d; rule=virus;
//		scan=infected(Eicar-Test-Signature); by=root;
//		Fri, 27 Nov 2026 15:00:00 +0000
func releasedHeader(host string, e quarantine.Entry, by []string, now time.Time) string {
	parts := []string{"foxproxy/" + delivery.Version, "host=" + pipeline.TraceToken(host), "id=" + e.ID,
		"rule=" + pipeline.TraceToken(e.Rule)}
	for _, f := range e.Findings {
		if f.Status != string(pipeline.Clean) {
			parts = append(parts, trace(f))
		}
	}
	parts = append(parts, by...)
	parts = append(parts, now.Format(time.RFC1123Z))
	return delivery.FoldHeader("X-Foxproxy-Released", parts)
}
