package integration

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-message"

	"github.com/foxproxy/foxproxy/clicktime"
	"github.com/foxproxy/foxproxy/integration/harness"
)

// clickSetup is a click service's configuration: a key file (0600) and
// the YAML lines that use it.
type clickSetup struct {
	addr, base string
	key        clicktime.Key
	signer     *clicktime.Signer
}

func newClickSetup(t *testing.T) *clickSetup {
	t.Helper()
	c := &clickSetup{addr: harness.FreeAddr(t)}
	c.base = "http://" + c.addr
	c.key = clicktime.Key{ID: "k1", Secret: []byte("0123456789abcdef0123456789abcdef-integration")}
	s, err := clicktime.NewSigner([]clicktime.Key{c.key})
	if err != nil {
		t.Fatal(err)
	}
	c.signer = s
	return c
}

// yaml returns the configuration lines: the URI list of wrs_test.go, fast
// timeouts, and the click section with the given fail mode.
func (c *clickSetup) yaml(t *testing.T, rbl *harness.Rbldnsd, mode string, extra ...string) []string {
	t.Helper()
	keyFile := filepath.Join(t.TempDir(), "click-k1")
	if err := os.WriteFile(keyFile, append(c.key.Secret, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	return append([]string{
		"dns: {servers: [" + rbl.Addr() + "], timeout: 500ms}",
		"wrs:",
		"  zones: [{zone: dbl.example.test, codes: {127.0.1.2: spam, 127.0.1.4: phish}}]",
		"  budget: 3s",
		"  breaker_failures: 100",
		"click:",
		"  listen: " + c.addr,
		"  base_url: " + c.base,
		"  keys: [{id: k1, secret_file: " + keyFile + "}]",
		"  on_unavailable: " + mode,
		"  check_timeout: 3s",
	}, extra...)
}

// noRedirect is a client that shows a redirect instead of following it.
var noRedirect = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Timeout:       20 * time.Second,
}

func click(t *testing.T, link string) (int, string, string) {
	t.Helper()
	resp, err := noRedirect.Get(link)
	if err != nil {
		t.Fatalf("GET %s: %v", link, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Location"), string(b)
}

// The click service of the real binary against a real rbldnsd: clean →
// 302, listed → block page, zone down → the configured fail mode (warn,
// then block and allow after SIGHUP reloads); bad tokens → 400; clicks
// logged without paths and counted; what a person sees in Chromium.
func TestClickService(t *testing.T) {
	rbl := startURIList(t)
	c := newClickSetup(t)
	fp := startFoxproxy(t, harness.FreeAddr(t), harness.FreeAddr(t), c.yaml(t, rbl, "warn")...)
	fp.WaitLog(t, `"click service listening"`, 5*time.Second)
	harness.WaitPort(t, c.addr, 5*time.Second)
	link := func(u string) string { return c.base + "/c/" + c.signer.Token(u, "msg-it-1") }

	code, loc, _ := click(t, link("https://www.example.org/welcome?id=1"))
	if code != http.StatusFound || loc != "https://www.example.org/welcome?id=1" {
		t.Fatalf("clean: %d %q", code, loc)
	}
	listed := link("https://login.evil.example/account?user=alice")
	code, loc, body := click(t, listed)
	if code != http.StatusForbidden || loc != "" || !strings.Contains(body, "phish") {
		t.Fatalf("listed: %d %q\n%s", code, loc, body)
	}
	for _, bad := range []string{c.base + "/c/", c.base + "/c/AQJrMQ", link("https://www.example.org/")[:len(c.base)+30],
		c.base + "/c/" + strings.Replace(c.signer.Token("https://a.example/", "m"), "A", "B", 1)} {
		if code, loc, _ := click(t, bad); code != http.StatusBadRequest || loc != "" {
			t.Fatalf("bad token %s: %d %q", bad, code, loc)
		}
	}
	if code, _, _ := click(t, c.base+"/healthz"); code != http.StatusOK {
		t.Fatalf("healthz %d", code)
	}

	// What a person sees on the block page.
	dom := harness.BrowserDOM(t, listed, 2*time.Second)
	for _, want := range []string{"This link was blocked", "phish", `id="dest">https://login.evil.example/account?user=alice<`} {
		if !strings.Contains(dom, want) {
			t.Fatalf("block page in Chromium lacks %q:\n%s", want, dom)
		}
	}
	if strings.Contains(dom, `href="https://login.evil.example`) {
		t.Fatalf("block page links to the listed site:\n%s", dom)
	}

	// The list goes down: a domain not in the cache cannot be checked.
	rbl.Stop()
	down := link("https://fresh.example/doc?x=1&y=<2>")
	code, loc, body = click(t, down)
	if code != http.StatusOK || loc != "" || !strings.Contains(body, "could not be checked") {
		t.Fatalf("unavailable, warn: %d %q\n%s", code, loc, body)
	}
	dom = harness.BrowserDOM(t, down, 2*time.Second)
	for _, want := range []string{"This link could not be checked", `id="dest">https://fresh.example/doc?x=1&amp;y=&lt;2&gt;<`,
		`id="continue" href="https://fresh.example/doc?x=1&amp;y=%3c2%3e"`, "Continue to the site"} {
		if !strings.Contains(dom, want) {
			t.Fatalf("warning page in Chromium lacks %q:\n%s", want, dom)
		}
	}
	if png := harness.BrowserScreenshot(t, down, time.Second); fileSize(t, png) < 1000 {
		t.Fatalf("screenshot %s is empty", png)
	}

	// block, then allow, by SIGHUP.
	for _, mode := range []struct {
		name string
		code int
		loc  string
	}{{"block", http.StatusServiceUnavailable, ""}, {"allow", http.StatusFound, "https://fresh.example/doc?x=1&y=<2>"}} {
		cfg := strings.Join(append([]string{"listen: " + fp.Addr, "downstream: " + harness.FreeAddr(t), "hostname: foxproxy.test",
			"admin_listen: " + strings.TrimPrefix(fp.Admin, "http://")}, c.yaml(t, rbl, mode.name)...), "\n") + "\n"
		if err := os.WriteFile(fp.ConfigPath, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		mark := fp.LogMark()
		fp.Signal(syscall.SIGHUP)
		fp.WaitLogSince(t, mark, `"SIGHUP: configuration reloaded"`, 10*time.Second)
		code, loc, _ = click(t, down)
		if code != mode.code || loc != mode.loc {
			t.Fatalf("unavailable, %s: %d %q", mode.name, code, loc)
		}
	}

	// One log line per click, with the host and not the path or query.
	var lines []string
	for _, l := range strings.Split(fp.Log(), "\n") {
		if strings.Contains(l, `"msg":"click"`) {
			lines = append(lines, l)
		}
	}
	if len(lines) != 12 || !strings.Contains(lines[1], `"host":"login.evil.example"`) || !strings.Contains(lines[1], `"msg_ref":"msg-it-1"`) ||
		!strings.Contains(lines[1], `"verdict":"listed"`) || !strings.Contains(lines[1], `"key_id":"k1"`) {
		t.Fatalf("click log lines:\n%s", strings.Join(lines, "\n"))
	}
	if strings.Contains(fp.Log(), "user=alice") || strings.Contains(fp.Log(), "/account") {
		t.Fatal("the log holds a clicked URL's path or query")
	}
	_, text := httpGet(t, fp.Admin+"/metrics", "")
	for sample, want := range map[string]float64{
		`foxproxy_clicks_total{verdict="clean"}`:             1,
		`foxproxy_clicks_total{verdict="listed"}`:            2,
		`foxproxy_clicks_total{verdict="invalid"}`:           4,
		`foxproxy_clicks_total{verdict="unavailable_warn"}`:  3,
		`foxproxy_clicks_total{verdict="unavailable_block"}`: 1,
		`foxproxy_clicks_total{verdict="unavailable_allow"}`: 1,
	} {
		if v, ok := metric(text, sample); !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", sample, v, ok, want)
		}
	}
}

func fileSize(t *testing.T, path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

var clickLink = regexp.MustCompile(`http://127\.0\.0\.1:\d+/c/[A-Za-z0-9_-]+`)

// linkMail is a multipart/alternative newsletter: the link in a plain
// text part and in a quoted-printable HTML part.
func linkMail(subject, link string) []byte {
	qp := strings.ReplaceAll(link, "=", "=3D")
	return []byte(strings.ReplaceAll(`From: shop@sender.example
To: rcpt@rcpt.example
Subject: `+subject+`
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="b1"

--b1
Content-Type: text/plain; charset=utf-8

Our offer: `+link+`
--b1
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: quoted-printable

<p>Our <a href=3D"`+qp+`">offer</a>, Sch=C3=B6n.</p>
--b1--
`, "\n", "\r\n"))
}

// deliveredLinks returns the click links in a delivered message's parts,
// as a mail client decodes them.
func deliveredLinks(t *testing.T, m harness.Message) []string {
	t.Helper()
	e, err := message.Read(bytes.NewReader(m.Data))
	if err != nil {
		t.Fatalf("delivered message does not parse: %v", err)
	}
	var links []string
	mr := e.MultipartReader()
	if mr == nil {
		t.Fatal("delivered message is not multipart any more")
	}
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(p.Body)
		links = append(links, clickLink.FindAllString(string(b), -1)...)
	}
	return links
}

// Done means: through real Postfix, a delivered message's links point at
// the click service, and clicking them does what the configuration says
// in each WRS state.
func TestClickThroughPostfix(t *testing.T) {
	rbl := startURIList(t)
	c := newClickSetup(t)
	pf := harness.StartPostfix(t, harness.PostfixOptions{})
	fp := startFoxproxy(t, pf.FilterAddr, pf.ReinjectAddr, c.yaml(t, rbl, "warn",
		"policy:",
		"  rules:",
		"    - {name: protect, then: deliver, rewrite_links: true}")...)
	fp.WaitLog(t, `"click service listening"`, 5*time.Second)

	send := func(subject, link string) []string {
		t.Helper()
		res := harness.Send(t, harness.SendOptions{Server: pf.InboundAddr, Data: linkMail(subject, link)})
		if res.Code != 250 {
			t.Fatalf("inbound smtpd: %s", res.Reply)
		}
		m := waitSubject(t, pf, subject)
		if tr := m.Header().Get("X-Foxproxy"); !strings.Contains(tr, "links=rewritten:2") {
			t.Fatalf("trace header %q", tr)
		}
		if strings.Contains(string(m.Data), link) {
			t.Fatalf("the original link is still in the delivered message:\n%s", m.Data)
		}
		links := deliveredLinks(t, m)
		if len(links) != 2 || links[0] != links[1] {
			t.Fatalf("click links %q", links)
		}
		return links
	}

	clean := send("clean link", "https://www.example.org/news?a=1&b=2")
	if code, loc, _ := click(t, clean[0]); code != http.StatusFound || loc != "https://www.example.org/news?a=1&b=2" {
		t.Fatalf("clean: %d %q", code, loc)
	}
	listed := send("listed link", "http://www.spammy.example/offer")
	if code, loc, body := click(t, listed[1]); code != http.StatusForbidden || loc != "" || !strings.Contains(body, "spam") {
		t.Fatalf("listed: %d %q\n%s", code, loc, body)
	}
	rbl.Stop()
	down := send("list down", "https://unseen.example/path")
	code, loc, body := click(t, down[0])
	if code != http.StatusOK || loc != "" || !strings.Contains(body, `href="https://unseen.example/path"`) {
		t.Fatalf("unavailable: %d %q\n%s", code, loc, body)
	}
	// The list is back: the link that could not be checked is judged
	// again at the next click (a listed one, by then).
	rbl.SetZone(harness.Zone{Name: "dbl.example.test", Type: "dnset", Lines: []string{
		"$SOA 0 ns.dbl.example.test hostmaster.example.test 0 1h 10m 1d 1m",
		":127.0.1.4:Phishing $",
		"test",
		"unseen.example",
	}})
	rbl.Start()
	waitFor(t, "the click to be judged again", 20*time.Second, func() bool {
		code, _, _ := click(t, down[0])
		return code == http.StatusForbidden
	})
}
