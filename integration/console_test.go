package integration

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/foxproxy/foxproxy/integration/harness"
)

// passwdHash makes a console password hash with the built binary's
// `foxproxy passwd`, as an administrator does.
func passwdHash(t *testing.T, password string) string {
	t.Helper()
	cmd := exec.Command(harness.BuildFoxproxy(t), "passwd")
	cmd.Stdin = strings.NewReader(password + "\n")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("foxproxy passwd: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// writeCert writes a self-signed certificate for 127.0.0.1 with the given
// serial number to certFile and keyFile.
func writeCert(t *testing.T, certFile, keyFile string, serial int64) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "foxproxy admin test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func b64word(s string) string {
	return "=?UTF-8?B?" + base64.StdEncoding.EncodeToString([]byte(s)) + "?="
}

// Hostile messages: markup and script in every place a message can carry
// it, plain and RFC 2047 encoded. Each payload calls pwned(...) (a binding
// the test exposes) and sets window.__pwned if it ever runs.
var hostileMessages = []struct{ from, data, visible string }{
	{"mallory@hostile.test", "From: \"<img src=x onerror=\\\"window.__pwned=1;pwned('from')\\\">\" <mallory@hostile.test>\r\n" +
		"To: <rcpt@example.test>\r\n" +
		"Subject: <script>window.__pwned=1;pwned('subject')</script> invoice\r\n" +
		"X-Note: <svg onload=\"pwned('x-note')\"></svg> javascript:pwned('x-note-link')\r\n" +
		"Message-ID: <hostile.1@hostile.test>\r\n" +
		"X-Test-Verdict: quarantine\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: text/html; charset=utf-8\r\n\r\n" +
		"<html><body><p>Pay <a href=\"javascript:pwned('body-link')\">here</a></p><script>window.__pwned=1;pwned('body-script')</script>" +
		"<img src=x onerror=\"pwned('body-img')\"><iframe src=\"javascript:pwned('iframe')\"></iframe></body></html>\r\n",
		"<script>window.__pwned=1;pwned('subject')</script> invoice"},
	{"mallory2@hostile.test", "From: " + b64word("<img src=x onerror=pwned('from-b64')>") + " <mallory2@hostile.test>\r\n" +
		"To: <rcpt@example.test>\r\n" +
		"Subject: " + b64word("<script>window.__pwned=2;pwned('subject-b64')</script>") + "\r\n" +
		"X-Link: " + b64word("javascript:pwned('x-link-b64')") + "\r\n" +
		"Message-ID: <hostile.2@hostile.test>\r\n" +
		"X-Test-Verdict: quarantine\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n" +
		"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n<script>pwned('text-part')</script> see javascript:pwned('text-link')\r\n" +
		"--b1\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" +
		"<img src=3Dx onerror=3D\"pwned('qp-img')\"><a href=3D\"javascript:pwned('qp-link')\">open</a>\r\n" +
		"--b1--\r\n",
		"<script>window.__pwned=2;pwned('subject-b64')</script>"},
}

const releaseMe = "From: Big Boss <boss@partner.test>\r\n" +
	"To: <rcpt@example.test>\r\n" +
	"Subject: Contract for signature\r\n" +
	"Message-ID: <release-me.1@partner.test>\r\n" +
	"X-Test-Verdict: quarantine\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n" +
	"--alt\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello,\r\n\r\nthe contract is attached to the portal: https://partner.test/contracts/42\r\n\r\nRegards\r\n" +
	"--alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Hello,</p><p>the contract is on <a href=\"https://partner.test/contracts/42\">the portal</a>.</p>\r\n" +
	"--alt--\r\n"

// sendQuarantined sends a message through Postfix and returns the
// quarantine entry foxproxy made of it.
func sendConsoleQuarantined(t *testing.T, pf *harness.Postfix, from string, data string) string {
	t.Helper()
	res := harness.Send(t, harness.SendOptions{Server: pf.InboundAddr, From: from, Data: []byte(data)})
	if res.Code != 250 {
		t.Fatalf("inbound smtpd: %s", res.Reply)
	}
	return pf.WaitLog(t, res.QueueID+`: to=<rcpt@example\.test>.*status=sent \(250 2\.0\.0 Ok: quarantined as (\S+)\)`, 20*time.Second)[1]
}

// browserWatch records every sign of a script running in the pages: calls
// of the exposed pwned(), console calls and dialogs.
type browserWatch struct {
	mu    sync.Mutex
	fired []string
}

func (w *browserWatch) add(s string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.fired = append(w.fired, s)
}

func (w *browserWatch) all() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.fired...)
}

func watchBrowser(t *testing.T, ctx context.Context) *browserWatch {
	w := &browserWatch{}
	consoleCalls := chromedp.Events(ctx, runtime.ConsoleAPICalled)
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	if err := chromedp.Do(ctx, chromedp.ExposeFunc("pwned", func(ctx context.Context, arg string) (chromedp.Void, error) {
		w.add("pwned(" + arg + ")")
		return chromedp.Void{}, nil
	})); err != nil {
		t.Fatal(err)
	}
	go func() {
		for ev, err := range consoleCalls {
			if err != nil {
				return
			}
			w.add("console." + string(ev.Type))
		}
	}()
	go func() {
		for ev, err := range dialogs {
			if err != nil {
				return
			}
			w.add("dialog: " + ev.Message)
			chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
		}
	}()
	return w
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func run[T any](t *testing.T, ctx context.Context, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// waitLocation waits until the page's URL contains want.
func waitLocation(t *testing.T, ctx context.Context, want string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		loc := run(t, ctx, chromedp.Location())
		if strings.Contains(loc, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the browser is at %s, want %s", loc, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func login(t *testing.T, ctx context.Context, base, name, password string) {
	t.Helper()
	must(t, chromedp.Do(ctx, chromedp.Navigate(base+"/console/login"), chromedp.WaitVisible(chromedp.ID("name")),
		chromedp.SendKeys(chromedp.ID("name"), name), chromedp.SendKeys(chromedp.ID("password"), password),
		chromedp.Click(chromedp.ID("login"))))
	waitLocation(t, ctx, "/console/")
	must(t, chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS("nav"))))
}

// assertInert checks the page as the browser has it: nothing ran, no
// element came from a message's markup, no link leaves the console.
func assertInert(t *testing.T, ctx context.Context, w *browserWatch, what string) {
	t.Helper()
	// Give an onerror or a javascript: URL time to fire, were there one.
	must(t, chromedp.Do(ctx, chromedp.Sleep(300*time.Millisecond)))
	if fired := w.all(); len(fired) > 0 {
		t.Fatalf("%s: script ran in the console: %v", what, fired)
	}
	if pwned := run(t, ctx, chromedp.Evaluate[bool](`window.__pwned !== undefined`)); pwned {
		t.Fatalf("%s: window.__pwned is set", what)
	}
	if n := run(t, ctx, chromedp.Evaluate[int](`document.querySelectorAll('script,img,svg,iframe,object,embed,[onerror],[onload],[onclick],[style]').length`)); n != 0 {
		t.Fatalf("%s: %d elements from message markup in the DOM", what, n)
	}
	if n := run(t, ctx, chromedp.Evaluate[int](`[...document.querySelectorAll('a')].filter(a => !a.href.startsWith(location.origin + '/')).length`)); n != 0 {
		t.Fatalf("%s: %d links leave the console", what, n)
	}
}

// The console end to end, in headless Chromium, against foxproxy with a
// real Postfix and the file store, over admin_tls: an admin logs in,
// finds a message by its sender, opens the quarantined entry and releases
// it (delivered once, audited); a viewer sees no release button, and a
// release form it forges is refused. Hostile messages are listed and
// opened with nothing run. The run writes the screenshots in docs/img.
func TestConsoleInChromium(t *testing.T) {
	pf := harness.StartPostfix(t, harness.PostfixOptions{})
	qdir := filepath.Join(t.TempDir(), "quarantine")
	certDir := t.TempDir()
	certFile, keyFile := filepath.Join(certDir, "admin.crt"), filepath.Join(certDir, "admin.key")
	writeCert(t, certFile, keyFile, 1)
	const alicePW, victorPW = "alice: correct horse", "victor: battery staple"
	fp := startFoxproxy(t, pf.FilterAddr, pf.ReinjectAddr,
		"quarantine: {dir: "+qdir+"}",
		"policy:", "  rules:", `    - {name: suspect, if: {header: [{name: X-Test-Verdict, matches: "^quarantine$"}]}, then: quarantine}`,
		"admin_tls: {cert_file: "+certFile+", key_file: "+keyFile+"}",
		"console:", "  users:",
		`    - {name: alice, role: admin, password_hash: "`+passwdHash(t, alicePW)+`"}`,
		`    - {name: victor, role: viewer, password_hash: "`+passwdHash(t, victorPW)+`"}`,
	)
	base := strings.Replace(fp.Admin, "http://", "https://", 1)

	clean := harness.Send(t, harness.SendOptions{Server: pf.InboundAddr, From: "carol@clean.test", Subject: "Quarterly numbers"})
	if clean.Code != 250 {
		t.Fatalf("clean: %s", clean.Reply)
	}
	pf.WaitDelivered(t, harness.BoxRcpt, 1, 20*time.Second)
	var hostileIDs []string
	for _, m := range hostileMessages {
		hostileIDs = append(hostileIDs, sendConsoleQuarantined(t, pf, m.from, m.data))
	}
	bossID := sendConsoleQuarantined(t, pf, "boss@partner.test", releaseMe)

	ctx := harness.Chromium(t)
	ctx, cancel := context.WithTimeout(ctx, 4*time.Minute)
	defer cancel()
	w := watchBrowser(t, ctx)

	// Not logged in: the console sends the browser to the login form.
	must(t, chromedp.Do(ctx, chromedp.Navigate(base+"/console/messages")))
	waitLocation(t, ctx, "/console/login?next=")

	login(t, ctx, base, "alice", alicePW)
	cookies, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{base + "/console/"}})
	must(t, err)
	if len(cookies.Cookies) != 1 || c0(cookies).Name != "foxproxy_session" || !c0(cookies).Secure || !c0(cookies).HTTPOnly || c0(cookies).SameSite != network.CookieSameSiteStrict {
		t.Fatalf("session cookie: %+v", cookies.Cookies)
	}

	// Every message, then a search by sender.
	must(t, chromedp.Do(ctx, chromedp.Navigate(base+"/console/messages"), chromedp.WaitVisible(chromedp.ID("messages")),
		chromedp.EmulateViewport(1280, 760)))
	if n := run(t, ctx, chromedp.Evaluate[int](`document.querySelectorAll('#messages tr.message').length`)); n != 4 {
		t.Fatalf("%d messages listed, want 4", n)
	}
	assertInert(t, ctx, w, "messages page")
	shot(t, ctx, "console-messages.png")
	must(t, chromedp.Do(ctx, chromedp.SendKeys(chromedp.ID("q-sender"), "boss@partner.test"), chromedp.Click(chromedp.ID("search"))))
	waitLocation(t, ctx, "sender=boss%40partner.test")
	senders := run(t, ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('#messages td.sender')].map(e => e.textContent)`))
	if len(senders) != 1 || senders[0] != "boss@partner.test" {
		t.Fatalf("search by sender found %v", senders)
	}

	// Open the quarantined message from its row.
	must(t, chromedp.Do(ctx, chromedp.Click(chromedp.CSS("a.entry-link"))))
	waitLocation(t, ctx, "/console/quarantine/"+bossID)
	must(t, chromedp.Do(ctx, chromedp.WaitVisible(chromedp.ID("release"))))
	text := run(t, ctx, chromedp.Text(chromedp.CSS("main")))
	for _, want := range []string{"boss@partner.test", "Contract for signature", "suspect", "foxproxy.test",
		"https://partner.test/contracts/42", `<a href="https://partner.test/contracts/42">the portal</a>`, "Download .eml"} {
		if !strings.Contains(text, want) {
			t.Errorf("entry page lacks %q", want)
		}
	}
	assertInert(t, ctx, w, "entry page")
	shotFull(t, ctx, "console-entry.png")

	// Release: delivered once, with who released it, and audited.
	must(t, chromedp.Do(ctx, chromedp.Click(chromedp.ID("release")), chromedp.WaitVisible(chromedp.ID("results"))))
	outcome := run(t, ctx, chromedp.Text(chromedp.CSS("#results")))
	if !strings.Contains(outcome, "released to rcpt@example.test, queued as") {
		t.Fatalf("release: %s", outcome)
	}
	pf.WaitDelivered(t, harness.BoxRcpt, 2, 20*time.Second)
	pf.WaitQueueEmpty(t, 10*time.Second)
	var released []harness.Message
	for _, m := range pf.Delivered(harness.BoxRcpt) {
		if m.Header().Get("Message-ID") == "<release-me.1@partner.test>" {
			released = append(released, m)
		}
	}
	if len(released) != 1 {
		t.Fatalf("the released message was delivered %d times", len(released))
	}
	if r := released[0].Header().Get("X-Foxproxy-Released"); !strings.Contains(r, "id="+bossID) || !strings.Contains(r, "by=alice") || !strings.Contains(r, "via=console") {
		t.Fatalf("X-Foxproxy-Released: %q", r)
	}
	fp.WaitLog(t, `"msg":"console audit","user":"alice","action":"release","area":"quarantine","entry":"`+regexp.QuoteMeta(bossID)+
		`","host":"foxproxy.test","client":"127\.0\.0\.1","result":"delivered, queued as \w+"`, 10*time.Second)
	if _, err := os.Stat(filepath.Join(qdir, bossID+".json")); !os.IsNotExist(err) {
		t.Fatalf("entry still there after the release: %v", err)
	}

	// The viewer: no buttons, and a forged release form is refused.
	must(t, chromedp.Do(ctx, chromedp.Navigate(base+"/console/quarantine"), chromedp.WaitVisible(chromedp.ID("entries")),
		chromedp.Click(chromedp.CSS(`form[action="/console/logout"] button`))))
	waitLocation(t, ctx, "/console/login")
	login(t, ctx, base, "victor", victorPW)
	must(t, chromedp.Do(ctx, chromedp.Navigate(base+"/console/quarantine"), chromedp.WaitVisible(chromedp.ID("entries"))))
	if n := run(t, ctx, chromedp.Evaluate[int](`document.querySelectorAll('#entries tr.entry').length`)); n != len(hostileIDs) {
		t.Fatalf("viewer sees %d entries, want %d", n, len(hostileIDs))
	}
	assertInert(t, ctx, w, "quarantine list")
	controls := `document.querySelectorAll('#release,#delete,#download,#release-selected,#delete-selected,input[type=checkbox]').length`
	if n := run(t, ctx, chromedp.Evaluate[int](controls)); n != 0 {
		t.Fatalf("viewer's list has %d release/delete controls", n)
	}
	for i, id := range hostileIDs {
		must(t, chromedp.Do(ctx, chromedp.Navigate(base+"/console/quarantine/"+id), chromedp.WaitVisible(chromedp.ID("header"))))
		assertInert(t, ctx, w, "hostile entry "+id)
		if n := run(t, ctx, chromedp.Evaluate[int](controls)); n != 0 {
			t.Fatalf("viewer's entry page has %d release/delete controls", n)
		}
		body := run(t, ctx, chromedp.Evaluate[string](`document.body.innerText`))
		if !strings.Contains(body, hostileMessages[i].visible) {
			t.Fatalf("entry %s does not show %q as text:\n%s", id, hostileMessages[i].visible, body)
		}
	}
	body := run(t, ctx, chromedp.Evaluate[string](`document.body.innerText`))
	for _, want := range []string{"<img src=x onerror=pwned('from-b64')>", "javascript:pwned('x-link-b64')", "<script>pwned('text-part')</script>",
		`<img src=x onerror="pwned('qp-img')"><a href="javascript:pwned('qp-link')">open</a>`} {
		if !strings.Contains(body, want) {
			t.Errorf("the encoded entry does not show %q as text", want)
		}
	}
	token := run(t, ctx, chromedp.Evaluate[string](`document.querySelector('form[action="/console/logout"] input[name=csrf]').value`))
	for _, withToken := range []bool{true, false} {
		forge := `(() => { const f = document.createElement('form'); f.method = 'post'; f.action = '/console/quarantine/action';
			for (const [k, v] of [['action', 'release'], ['id', '` + hostileIDs[0] + `']` + map[bool]string{true: `, ['csrf', '` + token + `']`, false: ``}[withToken] + `]) {
				const i = document.createElement('input'); i.type = 'hidden'; i.name = k; i.value = v; f.appendChild(i); }
			document.body.appendChild(f); f.submit(); })()`
		resp, err := chromedp.RunResponse(ctx, chromedp.Evaluate[chromedp.Void](forge))
		must(t, err)
		if resp.Status != http.StatusForbidden {
			t.Fatalf("viewer's forged release (token %v): %d, want 403", withToken, resp.Status)
		}
	}
	if _, err := os.Stat(filepath.Join(qdir, hostileIDs[0]+".json")); err != nil {
		t.Fatalf("the entry a viewer tried to release is gone: %v", err)
	}
	fp.WaitLog(t, `"console write refused: role viewer".*"user":"victor"`, 5*time.Second)

	// The API with the same roles.
	api := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	for _, c := range []struct {
		user, pw string
		want     int
	}{{"", "", 401}, {"victor", victorPW, 403}, {"alice", "wrong", 401}} {
		req, _ := http.NewRequest("POST", base+"/api/quarantine/"+hostileIDs[0]+"/delete", nil)
		if c.user != "" {
			req.SetBasicAuth(c.user, c.pw)
		}
		resp, err := api.Do(req)
		must(t, err)
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.want || !strings.Contains(b.String(), `"error"`) {
			t.Fatalf("API delete as %q: %d %s, want %d", c.user, resp.StatusCode, b.String(), c.want)
		}
	}
	if fired := w.all(); len(fired) > 0 {
		t.Fatalf("script ran in the console: %v", fired)
	}
}

func c0(r network.GetCookiesResult) *network.Cookie { return r.Cookies[0] }

// shotFull saves a screenshot of the whole page, below the fold too.
func shotFull(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	writeShot(t, name, run(t, ctx, chromedp.FullScreenshot(100)))
}

// writeShot keeps a screenshot: in docs/img, for the README, when
// FOXPROXY_SCREENSHOTS=1 asks for new ones
// (FOXPROXY_SCREENSHOTS=1 go test -run TestConsoleInChromium ./integration/),
// else in the test's directory, so that an ordinary run leaves the work
// tree as it was.
func writeShot(t *testing.T, name string, png []byte) {
	t.Helper()
	if len(png) < 1000 || string(png[1:4]) != "PNG" {
		t.Fatalf("screenshot %s: %d bytes, not a PNG", name, len(png))
	}
	dir := t.TempDir()
	if os.Getenv("FOXPROXY_SCREENSHOTS") == "1" {
		dir = filepath.Join("..", "docs", "img")
	}
	must(t, os.MkdirAll(dir, 0o755))
	must(t, os.WriteFile(filepath.Join(dir, name), png, 0o644))
}

// shot saves a screenshot of the page for docs/img (the README shows it).
func shot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	writeShot(t, name, run(t, ctx, chromedp.CaptureScreenshot()))
}

// admin_tls is re-read on SIGHUP: new connections get the renewed
// certificate without a restart.
func TestAdminTLSReloadsOnSIGHUP(t *testing.T) {
	pf := harness.StartPostfix(t, harness.PostfixOptions{})
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "admin.crt"), filepath.Join(dir, "admin.key")
	writeCert(t, certFile, keyFile, 1001)
	fp := startFoxproxy(t, pf.FilterAddr, pf.ReinjectAddr, "admin_tls: {cert_file: "+certFile+", key_file: "+keyFile+"}")
	addr := strings.TrimPrefix(fp.Admin, "http://")
	serial := func() int64 {
		t.Helper()
		c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
		must(t, err)
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
	}
	if s := serial(); s != 1001 {
		t.Fatalf("serial %d, want 1001", s)
	}
	writeCert(t, certFile, keyFile, 1002)
	mark := fp.LogMark()
	fp.Signal(syscall.SIGHUP)
	fp.WaitLogSince(t, mark, `"SIGHUP: admin_tls certificate re-read"`, 10*time.Second)
	if s := serial(); s != 1002 {
		t.Fatalf("serial after SIGHUP %d, want 1002", s)
	}
	// A broken certificate is refused; the running one stays.
	must(t, os.WriteFile(certFile, []byte("not a certificate"), 0o644))
	mark = fp.LogMark()
	fp.Signal(syscall.SIGHUP)
	fp.WaitLogSince(t, mark, `SIGHUP: new configuration refused; keeping the running one`, 10*time.Second)
	if s := serial(); s != 1002 {
		t.Fatalf("serial after a bad SIGHUP %d, want 1002", s)
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}).Get("https://" + addr + "/healthz")
	must(t, err)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/healthz over TLS: %d", resp.StatusCode)
	}
}
