package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// PostfixOptions configures StartPostfix. The zero value is usable: every
// address left empty gets a free loopback port.
type PostfixOptions struct {
	// FilterAddr is foxproxy's address, where the inbound smtpd's
	// content_filter sends mail. Nothing needs to listen there yet: mail then
	// waits in the deferred queue.
	FilterAddr string
	// InboundAddr is the smtpd that tests send to (content_filter → FilterAddr).
	InboundAddr string
	// ReinjectAddr is the smtpd foxproxy delivers to (no content filter,
	// XFORWARD allowed from 127.0.0.0/8).
	ReinjectAddr string
	// BeforeQueue adds a before-queue smtpd on BeforeQueueAddr (a free port)
	// with smtpd_proxy_filter → FilterAddr: there foxproxy's reply to the end of
	// DATA goes straight to the SMTP client.
	BeforeQueue bool

	// MainCF lines are appended to main.cf ("name = value"; a later setting
	// wins), e.g. "maximal_queue_lifetime = 0" to bounce at the first 4xx.
	MainCF []string
	// Extra "-o name=value" options (write them without "-o") for each service.
	// A value with spaces is passed as "-o { name = value }".
	InboundOptions     []string
	ReinjectOptions    []string
	FilterOptions      []string // the smtp client that delivers to FilterAddr
	BeforeQueueOptions []string

	// RejectRecipients are refused by the re-injection smtpd at RCPT with
	// "550 5.1.1 <addr>: Recipient address rejected: User unknown".
	RejectRecipients []string
	// RecipientAccess maps more addresses to an access(5) action for the
	// re-injection smtpd, e.g. "450 4.2.1 Mailbox busy" or "DISCARD".
	RecipientAccess map[string]string

	// NetNS, when set, runs the instance inside that network namespace
	// (NewNetNS), as a container with an address of its own: give
	// ReinjectAddr (and FilterAddr) on the namespace's addresses, allow
	// foxproxy's address with ReinjectOptions (mynetworks,
	// smtpd_authorized_xforward_hosts), and send with SendOptions.NetNS.
	// Addresses left empty are free ports on the namespace's own loopback.
	NetNS *NetNS

	// Retry timers; defaults 1s, 2s and 4s (Postfix's own: 300s, 300s, 4000s),
	// so that deferred mail is retried within seconds without a Flush.
	QueueRunDelay, MinBackoff, MaxBackoff string
}

// Postfix is a private Postfix instance (see StartPostfix).
type Postfix struct {
	// Dir holds etc/ (main.cf, master.cf), queue/, mail/ and maillog.
	Dir string
	// The addresses in use, with the defaults filled in.
	InboundAddr, ReinjectAddr, FilterAddr, BeforeQueueAddr string

	t       testing.TB
	opt     PostfixOptions
	script  string
	bins    map[string]string // postqueue, postsuper
	maillog logFile
}

// QueueEntry is one message in the queue, as "postqueue -j" reports it.
type QueueEntry struct {
	QueueName    string           `json:"queue_name"` // incoming, active, deferred, hold, maildrop
	QueueID      string           `json:"queue_id"`
	ArrivalTime  int64            `json:"arrival_time"`
	MessageSize  int64            `json:"message_size"`
	ForcedExpire bool             `json:"forced_expire"`
	Sender       string           `json:"sender"`
	Recipients   []QueueRecipient `json:"recipients"`
}

// QueueRecipient is a recipient of a queued message and why it waits, e.g.
// "connect to 127.0.0.1[127.0.0.1]:10025: Connection refused" or
// "host 127.0.0.1[127.0.0.1] said: 451 4.3.0 ... (in reply to end of DATA command)".
type QueueRecipient struct {
	Address     string `json:"address"`
	DelayReason string `json:"delay_reason"`
}

// Message is one delivered mail, a file in a Maildir's new/ directory.
type Message struct {
	Path string
	Data []byte // as stored: LF line ends, with Return-Path, Delivered-To, Received added
}

// Header parses the message's header (nil if it does not parse).
func (m Message) Header() mail.Header {
	msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
	if err != nil {
		return nil
	}
	return msg.Header
}

// Body returns what follows the header.
func (m Message) Body() []byte {
	if i := bytes.Index(m.Data, []byte("\n\n")); i >= 0 {
		return m.Data[i+2:]
	}
	return nil
}

// StartPostfix writes a private Postfix instance with integration/scripts/postfix.sh,
// starts it, and waits until its smtpd ports accept connections. The instance
// is stopped (by its master's PID) and removed when the test ends.
func StartPostfix(t testing.TB, opt PostfixOptions) *Postfix {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("harness: StartPostfix must run as root (postfix -c DIR start needs it)")
	}
	bins := map[string]string{}
	for _, name := range []string{"postfix", "postqueue", "postsuper", "postconf", "bash"} {
		bins[name] = requireBin(t, name)
	}
	root, err := moduleRoot()
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	script := filepath.Join(root, "integration", "scripts", "postfix.sh")
	if _, err := os.Stat(script); err != nil {
		t.Fatalf("harness: %v", err)
	}

	for _, a := range []*string{&opt.FilterAddr, &opt.InboundAddr, &opt.ReinjectAddr} {
		if *a == "" {
			*a = FreeAddr(t)
		}
	}
	p := &Postfix{
		Dir:          tempDir(t, "postfix"),
		InboundAddr:  opt.InboundAddr,
		ReinjectAddr: opt.ReinjectAddr,
		FilterAddr:   opt.FilterAddr,
		t:            t,
		opt:          opt,
		script:       script,
		bins:         bins,
	}
	if opt.BeforeQueue {
		p.BeforeQueueAddr = FreeAddr(t)
	}
	p.maillog = logFile{path: filepath.Join(p.Dir, "maillog")}
	access := map[string]string{}
	for _, a := range opt.RejectRecipients {
		access[a] = "550 5.1.1 User unknown"
	}
	for a, action := range opt.RecipientAccess {
		access[a] = action
	}
	if err := p.writeAccess(access); err != nil {
		t.Fatalf("harness: %v", err)
	}

	// Registered before the start, so that a start that fails half-way is
	// cleaned up too. The directory's removal was registered earlier and so
	// runs after this.
	t.Cleanup(func() {
		if out, err := p.runScript("stop"); err != nil {
			t.Errorf("harness: postfix stop: %v\n%s", err, out)
		}
		if t.Failed() {
			t.Logf("harness: postfix maillog %s, last lines:\n%s", p.maillog.path, p.maillog.tail(60))
		}
	})
	p.start(t)
	return p
}

// env is the environment for integration/scripts/postfix.sh.
func (p *Postfix) env() []string {
	lines := func(l []string) string { return strings.Join(l, "\n") }
	or := func(v, def string) string {
		if v == "" {
			return def
		}
		return v
	}
	return append(os.Environ(),
		"PATH="+os.Getenv("PATH")+":/usr/sbin:/sbin",
		"DIR="+p.Dir,
		"INBOUND="+p.InboundAddr,
		"REINJECT="+p.ReinjectAddr,
		"FILTER="+p.FilterAddr,
		"BEFOREQUEUE="+p.BeforeQueueAddr,
		"QUEUE_RUN_DELAY="+or(p.opt.QueueRunDelay, "1s"),
		"MIN_BACKOFF="+or(p.opt.MinBackoff, "2s"),
		"MAX_BACKOFF="+or(p.opt.MaxBackoff, "4s"),
		"MAIN_CF_EXTRA="+lines(p.opt.MainCF),
		"INBOUND_OPTS="+lines(p.opt.InboundOptions),
		"REINJECT_OPTS="+lines(p.opt.ReinjectOptions),
		"FILTER_OPTS="+lines(p.opt.FilterOptions),
		"BEFOREQUEUE_OPTS="+lines(p.opt.BeforeQueueOptions),
	)
}

// script_ runs integration/scripts/postfix.sh with cmd (start, stop, status).
func (p *Postfix) runScript(cmd string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := exec.CommandContext(ctx, p.bins["bash"], p.script, cmd)
	if p.opt.NetNS != nil {
		c = p.opt.NetNS.Command(ctx, p.bins["bash"], p.script, cmd)
	}
	c.Env = p.env()
	out, err := c.CombinedOutput()
	return string(out), err
}

// postCmd runs a Postfix command line tool on this instance with a bounded time.
func (p *Postfix) postCmd(tool string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := exec.CommandContext(ctx, p.bins[tool], append([]string{"-c", p.ConfigDir()}, args...)...)
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	if err := c.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %v: %s", tool, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

func (p *Postfix) start(t testing.TB) {
	t.Helper()
	began := time.Now()
	if out, err := p.runScript("start"); err != nil {
		t.Fatalf("harness: postfix start: %v\n%s", err, out)
	}
	alive := func() error {
		if out, err := p.runScript("status"); err != nil {
			return fmt.Errorf("postfix is not running: %s", strings.TrimSpace(out))
		}
		return nil
	}
	for _, addr := range []string{p.InboundAddr, p.ReinjectAddr, p.BeforeQueueAddr} {
		if addr == "" {
			continue
		}
		wait := waitPort
		if p.opt.NetNS != nil {
			wait = p.opt.NetNS.waitPort
		}
		if err := wait(addr, startTimeout, alive); err != nil {
			t.Fatalf("harness: postfix: %v; last lines of %s:\n%s", err, p.maillog.path, p.maillog.tail(30))
		}
	}
	bq := ""
	if p.BeforeQueueAddr != "" {
		bq = ", before-queue " + p.BeforeQueueAddr
	}
	t.Logf("harness: postfix up in %v: inbound %s, reinject %s, filter %s%s (dir %s)",
		time.Since(began).Round(time.Millisecond), p.InboundAddr, p.ReinjectAddr, p.FilterAddr, bq, p.Dir)
}

// ConfigDir is the instance's config directory, for "postfix -c".
func (p *Postfix) ConfigDir() string { return filepath.Join(p.Dir, "etc") }

// Stop stops the instance: SIGTERM to the master (what "postfix stop" sends),
// then a wait until the master and its process group are gone. The queue and
// the Maildirs stay; Start brings the instance back on the same ports.
func (p *Postfix) Stop() {
	p.t.Helper()
	if out, err := p.runScript("stop"); err != nil {
		p.t.Fatalf("harness: postfix stop: %v\n%s", err, out)
	}
}

// Start starts a stopped instance again with the same directory and ports.
func (p *Postfix) Start() {
	p.t.Helper()
	p.start(p.t)
}

// Restart is Stop and Start. Unlike "postfix reload", which lets running
// smtpd processes finish with the old settings, the next connection after
// Restart is certain to see the new configuration.
func (p *Postfix) Restart() {
	p.t.Helper()
	p.Stop()
	p.Start()
}

// Postconf adds main.cf settings ("name = value") and restarts the instance.
func (p *Postfix) Postconf(lines ...string) {
	p.t.Helper()
	p.opt.MainCF = append(p.opt.MainCF, lines...)
	p.Restart()
}

// SetRecipientAccess replaces the re-injection smtpd's recipient table
// (address → access(5) action, e.g. "550 5.1.1 User unknown") and restarts
// the instance.
func (p *Postfix) SetRecipientAccess(access map[string]string) {
	p.t.Helper()
	if err := p.writeAccess(access); err != nil {
		p.t.Fatalf("harness: %v", err)
	}
	p.Restart()
}

// writeAccess writes etc/reinject_access, the texthash table behind the
// re-injection smtpd's check_recipient_access.
func (p *Postfix) writeAccess(access map[string]string) error {
	if err := os.MkdirAll(p.ConfigDir(), 0o755); err != nil {
		return err
	}
	keys := make([]string, 0, len(access))
	for a := range access {
		keys = append(keys, a)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, a := range keys {
		fmt.Fprintf(&b, "%s %s\n", a, access[a])
	}
	path := filepath.Join(p.ConfigDir(), "reinject_access")
	if err := writeFile(path, []byte(b.String()), 0o644); err != nil {
		return err
	}
	// Postfix re-reads a table whose mtime is in the current second until it
	// is older (about 2 s per process): backdate it. The script does the
	// same for what it writes.
	old := time.Now().Add(-10 * time.Second)
	return os.Chtimes(path, old, old)
}

// Queue lists the messages in the queue (all of incoming, active, deferred, hold).
func (p *Postfix) Queue() []QueueEntry {
	p.t.Helper()
	q, err := p.queue()
	if err != nil {
		p.t.Fatalf("harness: %v", err)
	}
	return q
}

func (p *Postfix) queue() ([]QueueEntry, error) {
	out, err := p.postCmd("postqueue", "-j")
	if err != nil {
		return nil, err
	}
	var q []QueueEntry
	for _, line := range strings.Split(out, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var e QueueEntry
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			return nil, fmt.Errorf("postqueue -j: %v in %q", err, line)
		}
		q = append(q, e)
	}
	return q, nil
}

// Flush asks Postfix to retry all deferred mail now ("postqueue -f"); it also
// lifts the "delivery temporarily suspended" state of an unreachable filter.
func (p *Postfix) Flush() {
	p.t.Helper()
	if _, err := p.postCmd("postqueue", "-f"); err != nil {
		p.t.Fatalf("harness: %v", err)
	}
}

// Reset deletes all queued mail and all delivered messages, so that subtests
// sharing one instance start clean. Call it when no mail is in flight (after
// WaitQueueEmpty, say). The maillog is kept; use MaillogMark to look only at
// what comes after.
func (p *Postfix) Reset() {
	p.t.Helper()
	if _, err := p.postCmd("postsuper", "-d", "ALL"); err != nil {
		p.t.Fatalf("harness: %v", err)
	}
	for _, box := range []string{BoxRcpt, BoxSender, BoxOther} {
		for _, sub := range []string{"new", "cur", "tmp"} {
			files, _ := filepath.Glob(filepath.Join(p.Dir, "mail", box, sub, "*"))
			for _, f := range files {
				if err := os.Remove(f); err != nil {
					p.t.Fatalf("harness: %v", err)
				}
			}
		}
	}
}

// Maillog returns Postfix's whole log. Services log under distinct names:
// postfix/inbound/smtpd, postfix/foxproxy/smtp (delivery to FilterAddr),
// postfix/reinject/smtpd, postfix/beforequeue/smtpd, postfix/virtual (Maildir).
func (p *Postfix) Maillog() string { return p.maillog.String() }

// MaillogPath is the log file.
func (p *Postfix) MaillogPath() string { return p.maillog.path }

// MaillogMark returns the current end of the maillog, for WaitLogSince.
func (p *Postfix) MaillogMark() int { return p.maillog.mark() }

// WaitLog waits until a maillog line matches pattern (a regexp; one that does
// not compile is taken literally) and returns that line's submatches, element
// 0 being the whole match. It fails the test on timeout with the log's tail.
// Put the queue ID in the pattern to tell messages apart, e.g.
// ID+`: to=<.*status=(sent|deferred|bounced) \((.*)\)`.
func (p *Postfix) WaitLog(t testing.TB, pattern string, timeout time.Duration) []string {
	t.Helper()
	return p.maillog.waitSince(t, "postfix", 0, pattern, timeout, nil)
}

// WaitLogSince is WaitLog that ignores the lines before mark (from MaillogMark).
func (p *Postfix) WaitLogSince(t testing.TB, mark int, pattern string, timeout time.Duration) []string {
	t.Helper()
	return p.maillog.waitSince(t, "postfix", mark, pattern, timeout, nil)
}

// CountLog returns how many maillog lines match pattern.
func (p *Postfix) CountLog(pattern string) int {
	return p.maillog.count(compilePattern(pattern))
}

// MaildirPath is the directory holding a box's new/, cur/ and tmp/.
func (p *Postfix) MaildirPath(box string) string { return filepath.Join(p.Dir, "mail", box) }

// Delivered returns the messages in a box (BoxRcpt, BoxSender, BoxOther),
// oldest first.
func (p *Postfix) Delivered(box string) []Message {
	p.t.Helper()
	msgs, err := p.delivered(box)
	if err != nil {
		p.t.Fatalf("harness: %v", err)
	}
	return msgs
}

func (p *Postfix) delivered(box string) ([]Message, error) {
	dir := filepath.Join(p.MaildirPath(box), "new")
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil, nil // virtual(8) makes the Maildir with the first delivery
	}
	if err != nil {
		return nil, err
	}
	type file struct {
		Message
		mod time.Time
	}
	var files []file
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // gone meanwhile
		}
		path := filepath.Join(dir, e.Name())
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		files = append(files, file{Message{Path: path, Data: data}, info.ModTime()})
	}
	// Maildir names start with the delivery time in seconds; the mtime orders
	// deliveries within one second.
	sort.Slice(files, func(i, j int) bool {
		if !files[i].mod.Equal(files[j].mod) {
			return files[i].mod.Before(files[j].mod)
		}
		return files[i].Path < files[j].Path
	})
	msgs := make([]Message, len(files))
	for i, f := range files {
		msgs[i] = f.Message
	}
	return msgs, nil
}

// WaitDelivered waits until box holds at least n messages and returns them
// all. It fails the test on timeout with the queue and the maillog's tail.
// To check that no more than n arrive, compare len() after WaitQueueEmpty.
func (p *Postfix) WaitDelivered(t testing.TB, box string, n int, timeout time.Duration) []Message {
	t.Helper()
	var msgs []Message
	var err error
	if waitFor(timeout, func() bool {
		msgs, err = p.delivered(box)
		return err == nil && len(msgs) >= n
	}) {
		return msgs
	}
	t.Fatalf("harness: postfix: %d message(s) in box %q after %v, want %d (err %v)\n%s",
		len(msgs), box, timeout, n, err, p.diagnosis())
	return nil
}

// WaitQueueEmpty waits until the queue is empty, or fails the test.
func (p *Postfix) WaitQueueEmpty(t testing.TB, timeout time.Duration) {
	t.Helper()
	var q []QueueEntry
	var err error
	if waitFor(timeout, func() bool {
		q, err = p.queue()
		return err == nil && len(q) == 0
	}) {
		return
	}
	t.Fatalf("harness: postfix: queue not empty after %v (%d message(s), err %v)\n%s",
		timeout, len(q), err, p.diagnosis())
}

// WaitDeferred waits until at least n messages are in the deferred queue and
// returns the deferred entries, or fails the test.
func (p *Postfix) WaitDeferred(t testing.TB, n int, timeout time.Duration) []QueueEntry {
	t.Helper()
	var deferred []QueueEntry
	var err error
	if waitFor(timeout, func() bool {
		var q []QueueEntry
		q, err = p.queue()
		deferred = deferred[:0]
		for _, e := range q {
			if e.QueueName == "deferred" {
				deferred = append(deferred, e)
			}
		}
		return err == nil && len(deferred) >= n
	}) {
		return deferred
	}
	t.Fatalf("harness: postfix: %d deferred message(s) after %v, want %d (err %v)\n%s",
		len(deferred), timeout, n, err, p.diagnosis())
	return nil
}

// diagnosis is what a failed wait shows: the queue and the maillog's tail.
func (p *Postfix) diagnosis() string {
	var b strings.Builder
	if q, err := p.queue(); err != nil {
		fmt.Fprintf(&b, "queue: %v\n", err)
	} else {
		fmt.Fprintf(&b, "queue (%d):\n", len(q))
		for _, e := range q {
			fmt.Fprintf(&b, "  %s %s from=<%s>", e.QueueName, e.QueueID, e.Sender)
			for _, r := range e.Recipients {
				fmt.Fprintf(&b, " to=<%s> (%s)", r.Address, r.DelayReason)
			}
			b.WriteString("\n")
		}
	}
	fmt.Fprintf(&b, "last lines of %s:\n%s", p.maillog.path, p.maillog.tail(40))
	return b.String()
}
