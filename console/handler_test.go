package console

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/foxproxy/foxproxy/quarantine"
)

const (
	adminPassword  = "correct horse battery staple"
	viewerPassword = "viewer's password"
	entryID        = "20261207T100000-0a1b2c3d"
)

var (
	hashesOnce          sync.Once
	adminHash, viewHash string
)

// testUsers are an admin with an argon2id hash and a viewer with a
// bcrypt one: both kinds of hash are verified.
func testUsers(t testing.TB) []User {
	hashesOnce.Do(func() {
		var err error
		if adminHash, err = HashPassword(adminPassword); err != nil {
			panic(err)
		}
		b, err := bcrypt.GenerateFromPassword([]byte(viewerPassword), bcrypt.MinCost)
		if err != nil {
			panic(err)
		}
		viewHash = string(b)
	})
	return []User{{Name: "alice", Role: Admin, PasswordHash: adminHash}, {Name: "victor", Role: Viewer, PasswordHash: viewHash}}
}

type testEnv struct {
	srv              *Server
	quarantine, held *fakeArea
	audit            *fakeAudit
	clock            *fakeClock
	local            bool
}

const hostileMessage = "From: =?utf-8?q?=3Cscript=3Ewindow.=5F=5Fpwned=3D1=3C/script=3E?= <evil@example.test>\r\n" +
	"Subject: <img src=x onerror=alert(1)>\r\n" +
	"X-Link: javascript:alert(2)\r\n" +
	"Content-Type: text/html; charset=utf-8\r\n\r\n" +
	"<p>Hi</p><script>alert(3)</script><a href=\"javascript:alert(4)\">click</a>\r\n"

func newTestEnv(t testing.TB, users []User) *testEnv {
	env := &testEnv{quarantine: newFakeArea(), held: newFakeArea(), audit: &fakeAudit{},
		clock: &fakeClock{t: time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)}}
	for _, a := range []*fakeArea{env.quarantine, env.held} {
		a.put(quarantine.Entry{ID: entryID, From: "evil@example.test", Rcpts: []string{"rcpt@example.test"}, Rule: "virus",
			Findings: []quarantine.Finding{{Stage: "scan", Status: "infected", Detail: "Eicar-Test-Signature"}}}, hostileMessage)
	}
	env.srv = New(Options{
		Config:     Config{Users: users, SessionIdle: Duration(30 * time.Minute), SessionMax: Duration(12 * time.Hour)},
		Quarantine: env.quarantine, Held: env.held, Audit: env.audit, Host: "mx1.example.test",
		Messages: &fakeMessages{msgs: []Message{{Sender: "evil@example.test", Verdict: "quarantine", QuarantineID: entryID, Area: "quarantine"}}},
		Local:    func(*http.Request) bool { return env.local },
		Now:      env.clock.now,
	})
	return env
}

// session logs a user in directly and returns the cookie and CSRF token.
func (e *testEnv) session(name string, role Role) (*http.Cookie, string) {
	ss := e.srv.sessions.create(name, role)
	return &http.Cookie{Name: sessionCookieName, Value: ss.token}, ss.csrf
}

func (e *testEnv) do(r *http.Request) *httptest.ResponseRecorder {
	if r.RemoteAddr == "" || r.RemoteAddr == "192.0.2.1:1234" {
		r.RemoteAddr = "198.51.100.7:40000"
	}
	w := httptest.NewRecorder()
	e.srv.ServeHTTP(w, r)
	return w
}

type route struct {
	method, path string
	write        bool // changes something: admin only
	api          bool
}

var routes = []route{
	{"GET", "/console/", false, false},
	{"GET", "/console/messages?sender=evil", false, false},
	{"GET", "/console/quarantine", false, false},
	{"GET", "/console/held", false, false},
	{"GET", "/console/quarantine/" + entryID, false, false},
	{"GET", "/console/held/" + entryID, false, false},
	{"GET", "/console/quarantine/" + entryID + "/eml", true, false},
	{"GET", "/console/held/" + entryID + "/eml", true, false},
	{"POST", "/console/quarantine/action?do=release", true, false},
	{"POST", "/console/held/action?do=release", true, false},
	{"POST", "/console/quarantine/action?do=delete", true, false},
	{"POST", "/console/held/action?do=delete", true, false},
	{"GET", "/api/messages?sender=evil", false, true},
	{"GET", "/api/quarantine", false, true},
	{"GET", "/api/held", false, true},
	{"GET", "/api/quarantine/" + entryID, false, true},
	{"GET", "/api/held/" + entryID, false, true},
	{"POST", "/api/quarantine/" + entryID + "/release", true, true},
	{"POST", "/api/quarantine/" + entryID + "/delete", true, true},
	{"POST", "/api/held/" + entryID + "/release", true, true},
	{"POST", "/api/held/" + entryID + "/delete", true, true},
}

// Every route, for every kind of caller: nobody, a viewer, an admin, and
// an admin whose form carries a wrong CSRF token. Pages authenticate by
// session, the API by HTTP Basic only (a session cookie is no API
// credential, so the fourth caller is refused there as nobody is).
func TestRoutesByRole(t *testing.T) {
	users := testUsers(t)
	for _, rt := range routes {
		for _, who := range []string{"nobody", "viewer", "admin", "admin-bad-csrf"} {
			t.Run(rt.method+" "+rt.path+" "+who, func(t *testing.T) {
				env := newTestEnv(t, users)
				u, _ := url.Parse(rt.path)
				form := url.Values{}
				if rt.method == "POST" && !rt.api {
					form.Set("action", u.Query().Get("do"))
					form.Add("id", entryID)
				}
				var cookie *http.Cookie
				switch who {
				case "viewer":
					var csrf string
					cookie, csrf = env.session("victor", Viewer)
					form.Set("csrf", csrf)
				case "admin":
					var csrf string
					cookie, csrf = env.session("alice", Admin)
					form.Set("csrf", csrf)
				case "admin-bad-csrf":
					cookie, _ = env.session("alice", Admin)
					form.Set("csrf", "not-the-token")
				}
				var body io.Reader
				if rt.method == "POST" && !rt.api {
					body = strings.NewReader(form.Encode())
				}
				r := httptest.NewRequest(rt.method, rt.path, body)
				if body != nil {
					r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				}
				if rt.api {
					switch who {
					case "viewer":
						r.SetBasicAuth("victor", viewerPassword)
					case "admin":
						r.SetBasicAuth("alice", adminPassword)
					case "admin-bad-csrf":
						r.AddCookie(cookie)
					}
				} else if cookie != nil {
					r.AddCookie(cookie)
				}
				w := env.do(r)
				want := expectedStatus(rt, who)
				if w.Code != want {
					t.Fatalf("status %d, want %d; body:\n%s", w.Code, want, w.Body)
				}
				if w.Header().Get("X-Content-Type-Options") != "nosniff" ||
					!strings.Contains(w.Header().Get("Content-Security-Policy"), "default-src 'none'") {
					t.Errorf("security headers missing: %v", w.Header())
				}
				if rt.api && w.Code >= 400 {
					var e struct{ Error string }
					if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Error == "" {
						t.Errorf("API error is not JSON {\"error\": ...}: %s", w.Body)
					}
					if w.Code == 401 && w.Header().Get("WWW-Authenticate") == "" {
						t.Errorf("401 without WWW-Authenticate")
					}
				}
				// Only an admin's write changes anything.
				rel, del := env.quarantine.actions()
				hrel, hdel := env.held.actions()
				changed := len(rel)+len(del)+len(hrel)+len(hdel) > 0
				wantChange := rt.method == "POST" && who == "admin"
				if changed != wantChange {
					t.Errorf("changed=%v (released %v %v, deleted %v %v), want %v", changed, rel, hrel, del, hdel, wantChange)
				}
				if wantChange || strings.HasSuffix(u.Path, "/eml") && strings.HasPrefix(who, "admin") {
					if n := len(env.audit.all()); n != 1 {
						t.Errorf("%d audit events, want 1", n)
					}
				} else if n := len(env.audit.all()); n != 0 {
					t.Errorf("%d audit events for a request that did nothing", n)
				}
			})
		}
	}
}

func expectedStatus(rt route, who string) int {
	switch {
	case rt.api && (who == "nobody" || who == "admin-bad-csrf"):
		return http.StatusUnauthorized
	case rt.api && who == "viewer" && rt.write:
		return http.StatusForbidden
	case rt.api:
		return http.StatusOK
	case who == "nobody" && rt.method == "GET":
		return http.StatusSeeOther // to the login form
	case who == "nobody":
		return http.StatusForbidden
	case who == "viewer" && rt.write:
		return http.StatusForbidden
	case who == "admin-bad-csrf" && rt.method == "POST":
		return http.StatusForbidden
	}
	return http.StatusOK
}

// A form posted from another site rides on the victim's valid session
// cookie (were SameSite not honoured) but cannot know the token: refused,
// and nothing is released. A browser that says it is cross-site is
// refused even with a token.
func TestCrossSitePostRefused(t *testing.T) {
	env := newTestEnv(t, testUsers(t))
	cookie, csrf := env.session("alice", Admin)
	for name, form := range map[string]url.Values{
		"no token":    {"action": {"release"}, "id": {entryID}},
		"empty token": {"action": {"release"}, "id": {entryID}, "csrf": {""}},
	} {
		r := httptest.NewRequest("POST", "/console/quarantine/action", strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.AddCookie(cookie)
		if w := env.do(r); w.Code != http.StatusForbidden {
			t.Errorf("%s: status %d, want 403", name, w.Code)
		}
	}
	form := url.Values{"action": {"release"}, "id": {entryID}, "csrf": {csrf}}
	r := httptest.NewRequest("POST", "/console/quarantine/action", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Sec-Fetch-Site", "cross-site")
	r.AddCookie(cookie)
	if w := env.do(r); w.Code != http.StatusForbidden {
		t.Errorf("Sec-Fetch-Site cross-site: status %d, want 403", w.Code)
	}
	r = httptest.NewRequest("POST", "/api/quarantine/"+entryID+"/release", nil)
	r.Header.Set("Origin", "https://evil.example")
	r.SetBasicAuth("alice", adminPassword)
	if w := env.do(r); w.Code != http.StatusForbidden {
		t.Errorf("API from another origin: status %d, want 403", w.Code)
	}
	if rel, _ := env.quarantine.actions(); len(rel) != 0 {
		t.Fatalf("released: %v", rel)
	}
	// The same form with the token, from the console itself, works.
	r = httptest.NewRequest("POST", "/console/quarantine/action", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Sec-Fetch-Site", "same-origin")
	r.AddCookie(cookie)
	if w := env.do(r); w.Code != http.StatusOK {
		t.Fatalf("same-origin with token: status %d\n%s", w.Code, w.Body)
	}
	if rel, _ := env.quarantine.actions(); len(rel) != 1 || rel[0] != entryID+" by alice" {
		t.Fatalf("released: %v", rel)
	}
}

func postLogin(env *testEnv, addr, name, password string) *httptest.ResponseRecorder {
	form := url.Values{"name": {name}, "password": {password}, "next": {"/console/messages"}}
	r := httptest.NewRequest("POST", "/console/login", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.RemoteAddr = addr
	return env.do(r)
}

// 50 wrong passwords from one address: after the bucket's burst, the
// rest are refused with 429 without a password check, and then even the
// right password waits; another address is not affected. The bucket
// refills with time.
func TestLoginBruteForceThrottled(t *testing.T) {
	env := newTestEnv(t, testUsers(t))
	const attacker = "203.0.113.9:5555"
	counts := map[int]int{}
	for i := 0; i < 50; i++ {
		counts[postLogin(env, attacker, "alice", fmt.Sprintf("guess %d", i)).Code]++
	}
	if counts[http.StatusUnauthorized] != loginBurst || counts[http.StatusTooManyRequests] != 50-loginBurst {
		t.Fatalf("statuses of 50 failed logins: %v, want %d×401 then 429", counts, loginBurst)
	}
	if w := postLogin(env, attacker, "alice", adminPassword); w.Code != http.StatusTooManyRequests {
		t.Fatalf("right password while throttled: %d, want 429", w.Code)
	}
	if w := postLogin(env, "203.0.113.10:5555", "alice", adminPassword); w.Code != http.StatusSeeOther {
		t.Fatalf("another address: %d, want 303", w.Code)
	}
	// Basic auth on the API counts against the same address.
	r := httptest.NewRequest("GET", "/api/quarantine", nil)
	r.RemoteAddr = attacker
	r.SetBasicAuth("alice", adminPassword)
	if w := env.do(r); w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" {
		t.Fatalf("API while throttled: %d %v", w.Code, w.Header())
	}
	env.clock.advance(loginRefill)
	if w := postLogin(env, attacker, "alice", adminPassword); w.Code != http.StatusSeeOther {
		t.Fatalf("after a refill: %d, want 303", w.Code)
	}
}

// A login sets a cookie the browser keeps to this site and from scripts
// (HttpOnly, SameSite=Strict, Secure under TLS); the session ends after
// the idle timeout, and after the absolute one however busy it is.
func TestLoginSessionCookieAndTimeouts(t *testing.T) {
	env := newTestEnv(t, testUsers(t))
	w := postLogin(env, "192.0.2.50:1000", "alice", adminPassword)
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/console/messages" {
		t.Fatalf("login: %d %v", w.Code, w.Header())
	}
	c := w.Result().Cookies()[0]
	if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Secure || c.Path != "/" {
		t.Fatalf("cookie %+v", c)
	}
	get := func() int {
		r := httptest.NewRequest("GET", "/console/quarantine", nil)
		r.AddCookie(c)
		return env.do(r).Code
	}
	if get() != http.StatusOK {
		t.Fatal("session not accepted")
	}
	// Used every 29 minutes: alive until the absolute timeout.
	for elapsed := time.Duration(0); elapsed+29*time.Minute < 12*time.Hour; elapsed += 29 * time.Minute {
		env.clock.advance(29 * time.Minute)
		if code := get(); code != http.StatusOK {
			t.Fatalf("after %s: %d", elapsed+29*time.Minute, code)
		}
	}
	env.clock.advance(29 * time.Minute)
	if code := get(); code != http.StatusSeeOther {
		t.Fatalf("past session_max: %d, want 303 to login", code)
	}

	w = postLogin(env, "192.0.2.50:1000", "alice", adminPassword)
	c = w.Result().Cookies()[0]
	env.clock.advance(31 * time.Minute)
	if code := get(); code != http.StatusSeeOther {
		t.Fatalf("past session_idle: %d, want 303 to login", code)
	}

	// Under TLS the cookie is Secure.
	form := url.Values{"name": {"alice"}, "password": {adminPassword}}
	r := httptest.NewRequest("POST", "https://console.example/console/login", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.TLS = &tls.ConnectionState{}
	w = env.do(r)
	if cs := w.Result().Cookies(); len(cs) != 1 || !cs[0].Secure {
		t.Fatalf("cookie under TLS: %+v", cs)
	}
}

// Logout needs the token (a cross-site logout is refused) and ends the
// session.
func TestLogout(t *testing.T) {
	env := newTestEnv(t, testUsers(t))
	cookie, csrf := env.session("victor", Viewer)
	r := httptest.NewRequest("POST", "/console/logout", strings.NewReader("csrf=wrong"))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.AddCookie(cookie)
	if w := env.do(r); w.Code != http.StatusForbidden {
		t.Fatalf("logout with a wrong token: %d", w.Code)
	}
	r = httptest.NewRequest("POST", "/console/logout", strings.NewReader("csrf="+url.QueryEscape(csrf)))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.AddCookie(cookie)
	if w := env.do(r); w.Code != http.StatusSeeOther {
		t.Fatalf("logout: %d", w.Code)
	}
	r = httptest.NewRequest("GET", "/console/", nil)
	r.AddCookie(cookie)
	if w := env.do(r); w.Code != http.StatusSeeOther {
		t.Fatalf("after logout: %d, want 303 to login", w.Code)
	}
}

// An account removed or demoted by a reload loses its sessions.
func TestReloadEndsSessionsOfChangedAccounts(t *testing.T) {
	users := testUsers(t)
	env := newTestEnv(t, users)
	cookie, _ := env.session("alice", Admin)
	demoted := []User{{Name: "alice", Role: Viewer, PasswordHash: users[0].PasswordHash}}
	env.srv.SetConfig(Config{Users: demoted, SessionIdle: Duration(time.Hour), SessionMax: Duration(2 * time.Hour)})
	r := httptest.NewRequest("GET", "/console/", nil)
	r.AddCookie(cookie)
	if w := env.do(r); w.Code != http.StatusSeeOther {
		t.Fatalf("demoted admin's session: %d, want 303", w.Code)
	}
}

// Without accounts, a client on loopback reads (today's behaviour for
// mail data) and cannot write; any other client gets nothing.
func TestWithoutUsers(t *testing.T) {
	env := newTestEnv(t, nil)
	env.local = false
	for _, p := range []string{"/console/", "/console/quarantine", "/api/quarantine"} {
		w := env.do(httptest.NewRequest("GET", p, nil))
		if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "console.users") {
			t.Errorf("%s off loopback: %d %s", p, w.Code, w.Body)
		}
	}
	env.local = true
	for _, p := range []string{"/console/", "/console/quarantine", "/console/quarantine/" + entryID, "/api/quarantine"} {
		if w := env.do(httptest.NewRequest("GET", p, nil)); w.Code != http.StatusOK {
			t.Errorf("%s on loopback: %d", p, w.Code)
		}
	}
	w := env.do(httptest.NewRequest("GET", "/console/quarantine", nil))
	if strings.Contains(w.Body.String(), "release-selected") {
		t.Error("release button shown without an admin")
	}
	if w := env.do(httptest.NewRequest("POST", "/api/quarantine/"+entryID+"/release", nil)); w.Code != http.StatusForbidden {
		t.Errorf("release on loopback without users: %d", w.Code)
	}
	if w := env.do(httptest.NewRequest("GET", "/console/quarantine/"+entryID+"/eml", nil)); w.Code != http.StatusForbidden {
		t.Errorf("download on loopback without users: %d", w.Code)
	}
	if rel, _ := env.quarantine.actions(); len(rel) != 0 {
		t.Fatal("released without an account")
	}
}

// The .eml download is an attachment of a type no browser renders, and
// audited.
func TestDownloadIsAnAttachment(t *testing.T) {
	env := newTestEnv(t, testUsers(t))
	cookie, _ := env.session("alice", Admin)
	r := httptest.NewRequest("GET", "/console/quarantine/"+entryID+"/eml", nil)
	r.AddCookie(cookie)
	w := env.do(r)
	if w.Code != 200 || w.Header().Get("Content-Type") != "application/octet-stream" ||
		w.Header().Get("Content-Disposition") != `attachment; filename="`+entryID+`.eml"` || w.Body.String() != hostileMessage {
		t.Fatalf("download: %d %v", w.Code, w.Header())
	}
	ev := env.audit.all()
	if len(ev) != 1 || ev[0].Action != "download" || ev[0].User != "alice" || ev[0].Entry != entryID || ev[0].Host != "mx1.example.test" {
		t.Fatalf("audit: %+v", ev)
	}
}

// Hostile header values and bodies are escaped text in the page: no tag
// of theirs survives, and links are not links. (The browser test checks
// that nothing runs; this one names the markup.)
func TestEntryPageEscapesMessage(t *testing.T) {
	env := newTestEnv(t, testUsers(t))
	cookie, _ := env.session("alice", Admin)
	for _, p := range []string{"/console/quarantine/" + entryID, "/console/quarantine", "/console/messages"} {
		r := httptest.NewRequest("GET", p, nil)
		r.AddCookie(cookie)
		body := env.do(r).Body.String()
		for _, bad := range []string{"<script", "<img", `href="javascript:`, "<a href=\"javascript"} {
			if strings.Contains(body, bad) {
				t.Errorf("%s contains %q", p, bad)
			}
		}
		if p == "/console/quarantine/"+entryID {
			for _, want := range []string{"&lt;script&gt;window.__pwned=1&lt;/script&gt;", "&lt;img src=x onerror=alert(1)&gt;",
				"javascript:alert(2)", "&lt;a href=&#34;javascript:alert(4)&#34;&gt;", "HTML, shown as its source", "scan=infected(Eicar-Test-Signature)"} {
				if !strings.Contains(body, want) {
					t.Errorf("entry page lacks %q", want)
				}
			}
		}
	}
}

func TestNotFound(t *testing.T) {
	env := newTestEnv(t, testUsers(t))
	cookie, _ := env.session("alice", Admin)
	r := httptest.NewRequest("GET", "/console/quarantine/20261207T100000-ffffffff", nil)
	r.AddCookie(cookie)
	if w := env.do(r); w.Code != http.StatusNotFound {
		t.Errorf("missing entry: %d", w.Code)
	}
	r = httptest.NewRequest("GET", "/api/nothing/here/at/all", nil)
	r.SetBasicAuth("alice", adminPassword)
	if w := env.do(r); w.Code != http.StatusNotFound || !strings.Contains(w.Body.String(), `"error"`) {
		t.Errorf("unknown API route: %d %s", w.Code, w.Body)
	}
	r = httptest.NewRequest("GET", "/api/messages?since=yesterday", nil)
	r.SetBasicAuth("alice", adminPassword)
	if w := env.do(r); w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "since") {
		t.Errorf("bad since: %d %s", w.Code, w.Body)
	}
}

// The login redirect stays on the console.
func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{
		"/console/messages?sender=a": "/console/messages?sender=a",
		"https://evil.example/":      "/console/",
		"//evil.example/console/":    "/console/",
		"/console/\\evil":            "/console/",
		"":                           "/console/",
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

// An entry that was released or deleted is gone (404), but when its Area
// still knows its history (the database's audit) the API's 404 carries it
// and the page shows it, as text.
func TestGoneEntryShowsItsHistory(t *testing.T) {
	env := newTestEnv(t, testUsers(t))
	const gone = "20261207T090000-0badcafe"
	env.quarantine.mu.Lock()
	env.quarantine.history[gone] = []Event{{Time: env.clock.now(), User: "alice", Action: "release", Host: "mx2.example.test",
		Result: "delivered: queued as <b>4XYZ</b>"}}
	env.quarantine.mu.Unlock()

	r := httptest.NewRequest("GET", "/api/quarantine/"+gone, nil)
	r.SetBasicAuth("victor", viewerPassword)
	w := env.do(r)
	var body struct {
		Error   string  `json:"error"`
		History []Event `json:"history"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || w.Code != http.StatusNotFound {
		t.Fatalf("API: %d %s (%v)", w.Code, w.Body, err)
	}
	if !strings.Contains(body.Error, "released or deleted") || len(body.History) != 1 || body.History[0].Host != "mx2.example.test" ||
		body.History[0].User != "alice" || body.History[0].Action != "release" {
		t.Fatalf("API 404 body: %+v", body)
	}

	cookie, _ := env.session("victor", Viewer)
	r = httptest.NewRequest("GET", "/console/quarantine/"+gone, nil)
	r.AddCookie(cookie)
	w = env.do(r)
	page := w.Body.String()
	if w.Code != http.StatusNotFound || !strings.Contains(page, `id="history"`) || !strings.Contains(page, "mx2.example.test") ||
		!strings.Contains(page, "&lt;b&gt;4XYZ&lt;/b&gt;") || strings.Contains(page, "<b>4XYZ") {
		t.Fatalf("page: %d\n%s", w.Code, page)
	}

	// Without a history, a missing entry is a plain 404.
	r = httptest.NewRequest("GET", "/api/quarantine/20261207T090000-00000000", nil)
	r.SetBasicAuth("victor", viewerPassword)
	if w := env.do(r); w.Code != http.StatusNotFound || strings.Contains(w.Body.String(), "history") {
		t.Fatalf("missing entry without history: %d %s", w.Code, w.Body)
	}
}

// A listing's filter is bounded like a search field, on the page and in
// the API.
func TestListFilterBounded(t *testing.T) {
	env := newTestEnv(t, testUsers(t))
	cookie, _ := env.session("alice", Admin)
	long := strings.Repeat("x", maxSearchField+1)
	r := httptest.NewRequest("GET", "/console/quarantine?q="+long, nil)
	r.AddCookie(cookie)
	if w := env.do(r); w.Code != http.StatusBadRequest {
		t.Errorf("page, long filter: %d", w.Code)
	}
	r = httptest.NewRequest("GET", "/api/held?q="+long, nil)
	r.SetBasicAuth("alice", adminPassword)
	if w := env.do(r); w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), `"error"`) {
		t.Errorf("API, long filter: %d %s", w.Code, w.Body)
	}
	r = httptest.NewRequest("GET", "/api/held?q="+long[:maxSearchField], nil)
	r.SetBasicAuth("alice", adminPassword)
	if w := env.do(r); w.Code != http.StatusOK {
		t.Errorf("API, filter at the bound: %d %s", w.Code, w.Body)
	}
}

// At most maxVerifying password checks run at once; a request that waits
// for its turn and whose client goes away is answered without a check.
func TestPasswordChecksBounded(t *testing.T) {
	env := newTestEnv(t, testUsers(t))
	for range maxVerifying {
		env.srv.verifying <- struct{}{}
	}
	r := httptest.NewRequest("GET", "/api/quarantine", nil)
	r.SetBasicAuth("alice", adminPassword)
	r.RemoteAddr = "198.51.100.9:40000"
	ctx, cancel := context.WithCancel(r.Context())
	cancel()
	if _, code, _ := env.srv.checkPassword(r.WithContext(ctx), "alice", adminPassword, "api"); code != http.StatusTooManyRequests {
		t.Errorf("all slots taken, client gone: %d, want 429", code)
	}
	for range maxVerifying {
		<-env.srv.verifying
	}
	if w := env.do(r); w.Code != http.StatusOK {
		t.Errorf("slots free again: %d %s", w.Code, w.Body)
	}
}
