package integration

// The soak: many messages through real Postfix → foxproxy → Postfix while
// every dependency is stopped and started on a schedule and foxproxy itself
// is restarted with SIGTERM under load. Afterwards nothing is lost and
// nothing is doubled: every message sent is delivered, quarantined or
// bounced, exactly once.
//
//	go test ./integration -run TestSoak -v                          # CI: 1000 messages
//	go test ./integration -run TestSoak -v -timeout 60m -soak.messages=5000

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/foxproxy/foxproxy/integration/harness"
)

var (
	soakMessages = flag.Int("soak.messages", 1000, "messages the soak test sends (CI: 1000; the long run: 5000)")
	soakRate     = flag.Int("soak.rate", 25, "messages per second the soak test sends")
)

// soakKind is what a soak message is, and so where it must end.
type soakKind int

const (
	soakClean  soakKind = iota // delivered
	soakEICAR                  // quarantined, never delivered
	soakListed                 // from an exploit source: rejected (bounced), or delivered with ERS skipped
	soakPhishy                 // a listed link: delivered tagged "[LINK]", or untagged with WRS skipped
	soakKinds
)

var soakKindNames = [...]string{"clean", "EICAR", "ERS-listed", "WRS-listed"}

// soakKindOf: of every 20 messages one is EICAR, one from an exploit
// source, two link to a listed domain, sixteen are clean.
func soakKindOf(i int) soakKind {
	switch i % 20 {
	case 3:
		return soakEICAR
	case 7:
		return soakListed
	case 11, 17:
		return soakPhishy
	}
	return soakClean
}

var soakID = regexp.MustCompile(`(?i)Message-ID: <soak-([0-9a-z]+)-([0-9]+)@soak\.example\.test>`)

func soakMessage(run string, i int) (client string, data []byte) {
	id := fmt.Sprintf("Message-ID: <soak-%s-%d@soak.example.test>", run, i)
	head := fmt.Sprintf("From: <%s>\r\nTo: <%s>\r\nSubject: soak %d\r\nDate: %s\r\n%s\r\n",
		harness.SenderAddr, harness.RcptAddr, i, time.Now().Format(time.RFC1123Z), id)
	client = cleanClient
	switch soakKindOf(i) {
	case soakEICAR:
		m := harness.EICARMessage(harness.SenderAddr, harness.RcptAddr)
		return client, regexp.MustCompile(`Message-ID: <[^>]*>`).ReplaceAll(m, []byte(id))
	case soakListed:
		client = exploitSource
		return client, []byte(head + "\r\nHello from a listed client.\r\n")
	case soakPhishy:
		return client, []byte(head + "\r\nPlease log in at https://login.evil.example/account?n=" + strconv.Itoa(i) + " today.\r\n")
	}
	if i%2 == 0 {
		return client, []byte(head + "\r\nThe minutes: https://www.example.org/minutes/" + strconv.Itoa(i) + "\r\n")
	}
	return client, []byte(head + "\r\nA plain message, number " + strconv.Itoa(i) + ".\r\n")
}

// soakSender sends messages to Postfix's inbound smtpd over kept
// connections, one per source address.
type soakSender struct {
	server string
	conns  map[string]*smtp.Client
}

func (s *soakSender) client(local string) (*smtp.Client, error) {
	if c := s.conns[local]; c != nil {
		return c, nil
	}
	d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	nc, err := d.Dial("tcp", s.server)
	if err != nil {
		return nil, err
	}
	c := smtp.NewClient(nc)
	c.CommandTimeout = 30 * time.Second
	c.SubmissionTimeout = 30 * time.Second
	if err := c.Hello("soak.example.test"); err != nil {
		c.Close()
		return nil, err
	}
	s.conns[local] = c
	return c, nil
}

func (s *soakSender) drop(local string) {
	if c := s.conns[local]; c != nil {
		c.Close()
		delete(s.conns, local)
	}
}

func (s *soakSender) close() {
	for local := range s.conns {
		s.drop(local)
	}
}

// errUncertain: the connection failed after the content was sent, so the
// message may have been accepted. Sending it again could make a duplicate
// that is the test's own, so it is not retried, and the soak fails.
var errUncertain = errors.New("no reply to the end of DATA")

func (s *soakSender) send(local string, data []byte) error {
	c, err := s.client(local)
	if err != nil {
		return err
	}
	if err := c.Mail(harness.SenderAddr, nil); err != nil {
		s.drop(local)
		return err
	}
	if err := c.Rcpt(harness.RcptAddr, nil); err != nil {
		s.drop(local)
		return err
	}
	w, err := c.Data()
	if err != nil {
		s.drop(local)
		return err
	}
	if _, err := w.Write(data); err != nil {
		s.drop(local)
		return err
	}
	if err := w.Close(); err != nil {
		s.drop(local)
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			return err // a refusal: not accepted
		}
		return fmt.Errorf("%w: %v", errUncertain, err)
	}
	return nil
}

func TestSoak(t *testing.T) {
	n := *soakMessages
	if n < 100 {
		t.Fatalf("-soak.messages=%d: at least 100, so that every fault of the schedule happens under load", n)
	}
	began := time.Now()
	run := strconv.FormatInt(time.Now().UnixNano(), 36)

	lists := startDNSLists(t)
	clamd, icap := scanners(t)
	qdir := filepath.Join(t.TempDir(), "quarantine")
	pf := harness.StartPostfix(t, harness.PostfixOptions{
		// Senders are not slowed down while the queue grows during an
		// outage; the soak is about foxproxy, not about Postfix's flow
		// control.
		MainCF: []string{"in_flow_delay = 0"},
	})
	fp := startFoxproxy(t, pf.FilterAddr, pf.ReinjectAddr,
		"admin_probe_interval: 1s",
		// No answer cache: each rbldnsd outage then meets the messages
		// that pass while it lasts, instead of cached answers.
		"dns: {servers: ["+lists.Addr()+"], timeout: 500ms, cache_size: 0}",
		"ers:",
		"  zones: [{zone: bl.example.test, codes: {127.0.0.2: spam, 127.0.0.4: exploit}}]",
		"  recheck_interval: 1s",
		"  budget: 3s",
		"wrs:",
		"  zones: [{zone: dbl.example.test, codes: {127.0.1.2: spam, 127.0.1.4: phish}}]",
		"  budget: 3s",
		"  breaker_failures: 3",
		"  breaker_probe_interval: 1s",
		"scan:",
		"  smart: {url: \""+icap.URL()+"\"}",
		"  conventional: {url: \"tcp://"+clamd.Addr()+"\"}",
		"  fallback_to_conventional: true",
		"  disable_smart_after: 3",
		"  recheck_interval: 1s",
		"  timeout: 5s",
		"  dial_timeout: 1s",
		"timeouts: {stages: 20s, shutdown: 8s}",
		"quarantine: {dir: "+qdir+"}",
		"policy:",
		"  rules:",
		"    - {name: ers-exploit, if: {ers: [exploit]}, then: reject}",
		"    - {name: virus, if: {scan: infected}, then: quarantine}",
		"    - {name: wrs-phish, if: {wrs: [phish]}, then: tag, subject_prefix: \"[LINK]\"}",
	)

	var next, sent atomic.Int64
	var kinds [soakKinds]atomic.Int64
	accepted := make([]bool, n)
	var mu sync.Mutex
	var sendErrs []string
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Senders: a few concurrent connections, as several MTAs would hold,
	// at a steady rate, so that each fault of the schedule meets mail on
	// its way through foxproxy rather than a queue filled beforehand.
	const workers = 6
	tokens := make(chan struct{})
	go func() {
		tick := time.NewTicker(time.Second / time.Duration(max(1, *soakRate)))
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				select {
				case tokens <- struct{}{}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := &soakSender{server: pf.InboundAddr, conns: map[string]*smtp.Client{}}
			defer s.close()
			for {
				select {
				case <-tokens:
				case <-ctx.Done():
					return
				}
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				client, data := soakMessage(run, i)
				var err error
				for attempt := 0; attempt < 5; attempt++ {
					if err = s.send(client, data); err == nil || errors.Is(err, errUncertain) {
						break
					}
					time.Sleep(200 * time.Millisecond)
				}
				if err != nil {
					mu.Lock()
					sendErrs = append(sendErrs, fmt.Sprintf("message %d: %v", i, err))
					mu.Unlock()
					continue
				}
				accepted[i] = true
				kinds[soakKindOf(i)].Add(1)
				sent.Add(1)
			}
		}()
	}

	// The fault schedule, by progress: ten slots; in nine one dependency
	// goes down and comes back half a slot (and at least 2 s) later, each
	// dependency three times; in the middle one foxproxy is restarted
	// with SIGTERM.
	type step struct {
		at    int
		what  string
		do    func()
		after *time.Time // not before 2s after this (an outage lasts at least that)
	}
	var peakRSS int64
	notePeak := func() {
		if v := vmHWM(t, fp.PID()); v > peakRSS {
			peakRSS = v
		}
	}
	deps := []struct {
		name        string
		stop, start func()
	}{
		{"rbldnsd", lists.Stop, lists.Start},
		{"clamd", clamd.Stop, clamd.Start},
		{"c-icap", icap.Stop, icap.Start},
	}
	var steps []step
	slot := n / 11
	for k, outage := 1, 0; k <= 10; k++ {
		if k == 5 {
			steps = append(steps, step{k * slot, "restart foxproxy (SIGTERM)", func() {
				notePeak()
				mark := fp.LogMark()
				fp.Restart()
				fp.WaitLogSince(t, mark, `"foxproxy started"`, 30*time.Second)
			}, nil})
			continue
		}
		d := deps[outage%len(deps)]
		outage++
		stopped := new(time.Time)
		steps = append(steps,
			step{k * slot, "stop " + d.name, func() { d.stop(); *stopped = time.Now() }, nil},
			step{k*slot + slot/2, "start " + d.name, d.start, stopped})
	}
	deadline := time.Now().Add(20 * time.Minute * time.Duration(max(1, n/1000)))
	for _, st := range steps {
		for (sent.Load() < int64(st.at) || st.after != nil && time.Since(*st.after) < 2*time.Second) &&
			len(sendErrors(&mu, &sendErrs)) == 0 {
			if time.Now().After(deadline) {
				cancel()
				t.Fatalf("soak: only %d of %d messages sent by the deadline", sent.Load(), n)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if errs := sendErrors(&mu, &sendErrs); len(errs) > 0 {
			cancel()
			wg.Wait()
			t.Fatalf("soak: the inbound Postfix refused messages: %v", errs[:min(5, len(errs))])
		}
		t.Logf("soak: %5d sent, %v: %s", sent.Load(), time.Since(began).Round(time.Second), st.what)
		st.do()
	}
	wg.Wait()
	if errs := sendErrors(&mu, &sendErrs); len(errs) > 0 {
		t.Fatalf("soak: %d messages not accepted by the inbound Postfix: %v", len(errs), errs[:min(5, len(errs))])
	}
	t.Logf("soak: all %d sent after %v; draining the queue", sent.Load(), time.Since(began).Round(time.Second))

	// Everything is up again: the queue must drain by itself; a flush
	// only saves waiting out the retry backoff.
	pf.Flush()
	pf.WaitQueueEmpty(t, 5*time.Minute)
	// A bounce is queued by Postfix only after the reject was logged, and
	// delivered locally: wait for the count to settle, then once more for
	// the queue.
	var got soakResult
	waitUntil(t, "every message to end somewhere", 2*time.Minute, func() bool {
		got = collectSoak(t, pf, qdir, run, n)
		return got.total() >= int(sent.Load())
	})
	pf.WaitQueueEmpty(t, time.Minute)
	time.Sleep(2 * time.Second) // a duplicate would need a queue run to arrive
	got = collectSoak(t, pf, qdir, run, n)
	notePeak()

	t.Logf("soak: sent %d (clean %d, EICAR %d, ERS-listed %d, WRS-listed %d) in %v",
		sent.Load(), kinds[soakClean].Load(), kinds[soakEICAR].Load(), kinds[soakListed].Load(), kinds[soakPhishy].Load(),
		time.Since(began).Round(time.Second))
	t.Logf("soak: delivered %d (of which tagged [LINK] %d, ERS-listed delivered while ERS was skipped %d), quarantined %d, rejected and bounced %d",
		got.delivered, got.tagged, got.listedDelivered, got.quarantined, got.bounced)
	t.Logf("soak: foxproxy peak RSS (VmHWM) %.1f MiB", float64(peakRSS)/(1<<20))
	t.Logf("soak: on the way foxproxy answered 451 %d times; Postfix logged %d deferrals",
		strings.Count(fp.Log(), `"reply":"451 `), pf.CountLog(`status=deferred`))

	if got.total() != int(sent.Load()) {
		t.Errorf("delivered %d + quarantined %d + bounced %d = %d, sent %d",
			got.delivered, got.quarantined, got.bounced, got.total(), sent.Load())
	}
	for _, p := range got.problems {
		t.Error(p)
	}
	for i := range n {
		if accepted[i] && got.where[i] == "" {
			t.Errorf("message %d (%s) was accepted by Postfix and never arrived anywhere", i, soakKindNames[soakKindOf(i)])
		}
	}
	if q := pf.Queue(); len(q) != 0 {
		t.Errorf("queue not empty at the end: %d messages", len(q))
	}
	list := runFoxproxyCLI(t, "quarantine", "list", "-config", fp.ConfigPath)
	if want := fmt.Sprintf("%d entries in ", got.quarantined); got.quarantined > 1 && !strings.Contains(list.stdout, want) {
		t.Errorf("foxproxy quarantine list does not say %q:\n%s", want, tail(list.stdout, 3))
	}
}

func sendErrors(mu *sync.Mutex, errs *[]string) []string {
	mu.Lock()
	defer mu.Unlock()
	return append([]string(nil), *errs...)
}

type soakResult struct {
	delivered, quarantined, bounced int
	tagged, listedDelivered         int
	where                           []string // per message: where it ended
	problems                        []string
}

func (r soakResult) total() int { return r.delivered + r.quarantined + r.bounced }

// collectSoak finds every soak message by its Message-ID: in the
// recipient's Maildir, in the quarantine, in the sender's Maildir (the
// bounce quotes the rejected message's header).
func collectSoak(t *testing.T, pf *harness.Postfix, qdir, run string, n int) soakResult {
	t.Helper()
	r := soakResult{where: make([]string, n)}
	note := func(place string, data []byte) (int, bool) {
		ids := map[int]bool{}
		for _, m := range soakID.FindAllSubmatch(data, -1) {
			if string(m[1]) != run {
				continue
			}
			i, err := strconv.Atoi(string(m[2]))
			if err == nil && i < n {
				ids[i] = true
			}
		}
		if len(ids) != 1 {
			r.problems = append(r.problems, fmt.Sprintf("a message in %s names %d soak messages", place, len(ids)))
			return 0, false
		}
		for i := range ids {
			if r.where[i] != "" {
				r.problems = append(r.problems, fmt.Sprintf("message %d (%s) is in %s and in %s: delivered twice",
					i, soakKindNames[soakKindOf(i)], r.where[i], place))
			}
			r.where[i] = place
			return i, true
		}
		return 0, false
	}
	for _, m := range pf.Delivered(harness.BoxRcpt) {
		i, ok := note("the recipient's mailbox", m.Data)
		if !ok {
			continue
		}
		r.delivered++
		h := m.Header()
		trace := h.Get("X-Foxproxy")
		if trace == "" {
			r.problems = append(r.problems, fmt.Sprintf("message %d was delivered without passing foxproxy", i))
		}
		switch soakKindOf(i) {
		case soakEICAR:
			r.problems = append(r.problems, fmt.Sprintf("EICAR (message %d) was delivered: %s", i, trace))
		case soakListed:
			r.listedDelivered++
			if !strings.Contains(trace, "ers=skipped") && !strings.Contains(trace, "ers=disabled") {
				r.problems = append(r.problems, fmt.Sprintf("message %d from an exploit source was delivered with ERS working: %s", i, trace))
			}
		case soakPhishy:
			if strings.HasPrefix(h.Get("Subject"), "[LINK] ") {
				r.tagged++
			} else if !strings.Contains(trace, "wrs=skipped") {
				r.problems = append(r.problems, fmt.Sprintf("message %d with a listed link was delivered untagged with WRS working: %s", i, trace))
			}
		}
	}
	files, _ := filepath.Glob(filepath.Join(qdir, "*.json"))
	for _, f := range files {
		data, err := os.ReadFile(strings.TrimSuffix(f, ".json") + ".eml")
		if err != nil {
			r.problems = append(r.problems, fmt.Sprintf("quarantine entry %s has no message: %v", filepath.Base(f), err))
			continue
		}
		i, ok := note("the quarantine", data)
		if !ok {
			continue
		}
		r.quarantined++
		if soakKindOf(i) != soakEICAR {
			r.problems = append(r.problems, fmt.Sprintf("message %d (%s) was quarantined", i, soakKindNames[soakKindOf(i)]))
		}
	}
	for _, m := range pf.Delivered(harness.BoxSender) {
		if !bytes.Contains(m.Data, []byte("Undelivered Mail Returned to Sender")) {
			continue
		}
		i, ok := note("a bounce", m.Data)
		if !ok {
			continue
		}
		r.bounced++
		if soakKindOf(i) != soakListed {
			r.problems = append(r.problems, fmt.Sprintf("message %d (%s) bounced", i, soakKindNames[soakKindOf(i)]))
		}
	}
	return r
}
