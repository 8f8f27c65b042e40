package console

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/foxproxy/foxproxy/pipeline"
	"github.com/foxproxy/foxproxy/quarantine"
)

//go:embed templates/*.html static/*
var assets embed.FS

// Bounds of the console's own state and of one request.
const (
	maxSessions       = 1000
	maxVerifying      = 4 // password checks at once: an argon2id check takes 19 MiB
	maxThrottled      = 10000
	loginBurst        = 10              // failed logins an address may make at once...
	loginRefill       = 6 * time.Second // ...and one more per this
	maxFormBytes      = 64 << 10
	maxBulk           = 500 // entries one form may act on
	defaultPageSize   = 50
	maxPageSize       = 500
	defaultListLimit  = 1000
	maxSearchField    = 1000 // bytes of one search field or filter
	sessionCookieName = "foxproxy_session"
)

// Options configure a Server.
type Options struct {
	Config Config
	// Quarantine and Held are the two areas; nil when this configuration
	// has no such area.
	Quarantine, Held Area
	Messages         Messages
	// Audit keeps audit events beyond the log line (nil: the log only).
	Audit Audit
	Log   *zap.Logger
	// Local reports whether a request came over loopback: without users,
	// only such requests get mail data.
	Local func(*http.Request) bool
	// Host is this foxproxy's host name, for the audit and the pages.
	Host string
	// StatusURL is the admin status page the overview links to.
	StatusURL string
	Now       func() time.Time
}

// Server serves the console's pages under /console/ and its API under
// /api/.
type Server struct {
	o        Options
	users    atomic.Pointer[map[string]User]
	sessions *sessions
	throttle *throttle
	mux      *http.ServeMux
	pages    map[string]*template.Template
	cop      *http.CrossOriginProtection
	// verifying bounds the password checks that run at once.
	verifying chan struct{}
}

// New returns a Server. Options.Config must be valid (Config.Validate).
func New(o Options) *Server {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if o.Local == nil {
		o.Local = func(*http.Request) bool { return false }
	}
	if o.StatusURL == "" {
		o.StatusURL = "/status"
	}
	s := &Server{o: o, verifying: make(chan struct{}, maxVerifying)}
	s.sessions = newSessions(maxSessions, o.Config.SessionIdle.D(), o.Config.SessionMax.D(), o.Now)
	s.throttle = newThrottle(maxThrottled, loginBurst, loginRefill, o.Now)
	s.SetConfig(o.Config)
	s.pages = parsePages()
	// Defence in depth under the CSRF token: a browser's cross-site
	// request (Sec-Fetch-Site, or an Origin that is not this host) never
	// reaches a handler that changes something.
	s.cop = http.NewCrossOriginProtection()
	s.cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.refuse(w, r, http.StatusForbidden, "cross-site request refused")
	}))
	s.routes()
	return s
}

// SetConfig applies a reloaded console section: sessions of accounts that
// are gone or whose role changed end at their next request.
func (s *Server) SetConfig(c Config) {
	m := make(map[string]User, len(c.Users))
	for _, u := range c.Users {
		m[u.Name] = u
	}
	s.users.Store(&m)
	if s.sessions != nil {
		s.sessions.setTimeouts(c.SessionIdle.D(), c.SessionMax.D())
	}
}

// HasUsers reports whether accounts are configured: then mail data needs
// a login wherever the request comes from.
func (s *Server) HasUsers() bool { return len(*s.users.Load()) > 0 }

func (s *Server) user(name string) (User, bool) {
	u, ok := (*s.users.Load())[name]
	return u, ok
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cache-Control", "no-store")
	s.mux.ServeHTTP(w, r)
}

// principal is who a request acts for.
type principal struct {
	name string
	role Role
	sess *session // nil for HTTP Basic and for loopback without users
}

func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// fromSession returns the logged-in user of a session cookie.
func (s *Server) fromSession(r *http.Request) (principal, bool) {
	c, err := r.Cookie(sessionCookieName)
	if err != nil {
		return principal{}, false
	}
	ss, ok := s.sessions.get(c.Value)
	if !ok {
		return principal{}, false
	}
	u, ok := s.user(ss.user)
	if !ok || u.Role != ss.role {
		s.sessions.remove(ss.token)
		return principal{}, false
	}
	return principal{name: ss.user, role: ss.role, sess: ss}, true
}

// checkPassword verifies name and password, throttled per client
// address; a refusal is logged. It returns the HTTP status to answer
// when it fails: 401, or 429 when the address is throttled (or the
// client went away while it waited for its turn: at most maxVerifying
// checks run at once).
func (s *Server) checkPassword(r *http.Request, name, password, via string) (User, int, time.Duration) {
	addr := clientAddr(r)
	if ok, wait := s.throttle.allow(addr); !ok {
		s.o.Log.Warn("console login throttled", zap.String("client", addr), zap.String("user", clipName(name)),
			zap.String("via", via), zap.Duration("retry_after", wait))
		return User{}, http.StatusTooManyRequests, wait
	}
	u, known := s.user(name)
	hash := u.PasswordHash
	if !known {
		hash = dummyHash()
	}
	// The throttle counts failures only after they happen, so concurrent
	// tries (from one address, or many) would each hash at once.
	select {
	case s.verifying <- struct{}{}:
	case <-r.Context().Done():
		return User{}, http.StatusTooManyRequests, time.Second // the client is gone
	}
	ok := VerifyPassword(hash, password)
	<-s.verifying
	if !ok || !known {
		s.throttle.fail(addr)
		s.o.Log.Warn("console login failed", zap.String("client", addr), zap.String("user", clipName(name)),
			zap.Bool("known_user", known), zap.String("via", via))
		return User{}, http.StatusUnauthorized, 0
	}
	return u, http.StatusOK, 0
}

// clipName cuts a name a client sent to the length an account name may
// have (validName), for the log and the login form: a longer one is no
// account, and the client chose its size.
func clipName(name string) string {
	if len(name) <= maxNameBytes {
		return name
	}
	return strings.ToValidUTF8(name[:maxNameBytes], "") + "…"
}

// LoggedIn reports whether r carries a valid console login: a session
// cookie or HTTP Basic credentials. Package admin asks it before it
// shows mail data in /status and, with admin_metrics_auth, /metrics.
func (s *Server) LoggedIn(r *http.Request) bool {
	if _, ok := s.fromSession(r); ok {
		return true
	}
	if name, pw, ok := r.BasicAuth(); ok {
		_, code, _ := s.checkPassword(r, name, pw, "basic")
		return code == http.StatusOK
	}
	return false
}

// Challenge answers 401 asking for HTTP Basic credentials.
func Challenge(w http.ResponseWriter, msg string) {
	w.Header().Set("WWW-Authenticate", `Basic realm="foxproxy", charset="UTF-8"`)
	http.Error(w, msg, http.StatusUnauthorized)
}

func (s *Server) routes() {
	m := http.NewServeMux()
	m.HandleFunc("GET /console/static/style.css", func(w http.ResponseWriter, r *http.Request) {
		css, _ := fs.ReadFile(assets, "static/style.css")
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Write(css)
	})
	m.HandleFunc("GET /console/login", s.loginPage)
	m.Handle("POST /console/login", s.cop.Handler(http.HandlerFunc(s.login)))
	m.Handle("POST /console/logout", s.cop.Handler(http.HandlerFunc(s.logout)))
	m.HandleFunc("GET /console/{$}", s.page(s.overview))
	m.HandleFunc("GET /console/messages", s.page(s.messages))
	m.HandleFunc("GET /console/{area}", s.page(s.list))
	m.HandleFunc("GET /console/{area}/{id}", s.page(s.entry))
	m.HandleFunc("GET /console/{area}/{id}/eml", s.page(s.download))
	m.Handle("POST /console/{area}/action", s.cop.Handler(s.page(s.action)))
	m.HandleFunc("/console/", s.page(func(w http.ResponseWriter, r *http.Request, p principal) {
		s.refuse(w, r, http.StatusNotFound, "no such page")
	}))

	m.HandleFunc("GET /api/messages", s.api(s.apiMessages))
	m.HandleFunc("GET /api/{area}", s.api(s.apiList))
	m.HandleFunc("GET /api/{area}/{id}", s.api(s.apiEntry))
	m.Handle("POST /api/{area}/{id}/release", s.cop.Handler(s.api(s.apiRelease)))
	m.Handle("POST /api/{area}/{id}/delete", s.cop.Handler(s.api(s.apiDelete)))
	m.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeJSONError(w, http.StatusNotFound, "no such API route: see docs/operations.md, \"Web console\"")
	})
	s.mux = m
}

// page authenticates a page request: a session when users are
// configured; without users, a client on loopback reads (role viewer) and
// anyone else is refused. A GET without a session goes to the login form.
func (s *Server) page(next func(http.ResponseWriter, *http.Request, principal)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.HasUsers() {
			if !s.o.Local(r) {
				s.refuse(w, r, http.StatusForbidden, "mail data is served only to clients on loopback while console.users is empty: "+
					"set console.users (foxproxy passwd makes the hashes) to log in from other hosts")
				return
			}
			next(w, r, principal{name: "loopback", role: Viewer})
			return
		}
		p, ok := s.fromSession(r)
		if !ok {
			if r.Method == http.MethodGet {
				http.Redirect(w, r, "/console/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			s.refuse(w, r, http.StatusForbidden, "not logged in (or the session ended): log in again")
			return
		}
		if r.Method == http.MethodPost {
			// The synchronizer token (OWASP): a value only pages served
			// to this session carry, compared in constant time.
			r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
			if err := r.ParseForm(); err != nil {
				s.refuse(w, r, http.StatusBadRequest, "bad form: "+err.Error())
				return
			}
			if !csrfOK(r.PostForm.Get("csrf"), p.sess.csrf) {
				s.o.Log.Warn("console request without a valid CSRF token refused", zap.String("client", clientAddr(r)),
					zap.String("user", p.name), zap.String("path", r.URL.Path))
				s.refuse(w, r, http.StatusForbidden, "the form's token is missing or stale: reload the page and try again")
				return
			}
		}
		next(w, r, p)
	}
}

// api authenticates an API request: HTTP Basic when users are
// configured; without users, a client on loopback reads (role viewer).
func (s *Server) api(next func(http.ResponseWriter, *http.Request, principal)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.HasUsers() {
			if !s.o.Local(r) {
				writeJSONError(w, http.StatusForbidden, "the API is served only to clients on loopback while console.users is empty: set console.users to use it from other hosts")
				return
			}
			next(w, r, principal{name: "loopback", role: Viewer})
			return
		}
		name, pw, ok := r.BasicAuth()
		if !ok {
			w.Header().Set("WWW-Authenticate", `Basic realm="foxproxy", charset="UTF-8"`)
			writeJSONError(w, http.StatusUnauthorized, "credentials needed: HTTP Basic with a console.users account")
			return
		}
		u, code, wait := s.checkPassword(r, name, pw, "api")
		switch code {
		case http.StatusTooManyRequests:
			w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds())+1))
			writeJSONError(w, code, "too many failed logins from this address: wait and try again")
			return
		case http.StatusUnauthorized:
			w.Header().Set("WWW-Authenticate", `Basic realm="foxproxy", charset="UTF-8"`)
			writeJSONError(w, code, "wrong user name or password")
			return
		}
		next(w, r, principal{name: u.Name, role: u.Role})
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeJSONError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

// area returns the named area; false when this configuration has none.
func (s *Server) area(name string) (Area, bool) {
	switch name {
	case "quarantine":
		return s.o.Quarantine, s.o.Quarantine != nil
	case "held":
		return s.o.Held, s.o.Held != nil
	}
	return nil, false
}

// listFilter reads a listing's filter (q) from the URL, or answers 400
// when it is longer than a search field may be.
func (s *Server) listFilter(w http.ResponseWriter, r *http.Request) (Filter, bool) {
	q := r.URL.Query().Get("q")
	if len(q) > maxSearchField {
		s.refuse(w, r, http.StatusBadRequest, fmt.Sprintf("the filter is longer than %d bytes", maxSearchField))
		return Filter{}, false
	}
	return Filter{Text: q, Limit: defaultListLimit}, true
}

// pathArea returns the area the request's path names ({area}), or
// answers 404 (a page, or JSON for the API) and returns false.
func (s *Server) pathArea(w http.ResponseWriter, r *http.Request) (string, Area, bool) {
	name := r.PathValue("area")
	a, ok := s.area(name)
	if !ok {
		s.refuse(w, r, http.StatusNotFound, areaMissing(name))
	}
	return name, a, ok
}

// mayWrite reports whether p may release, delete and download; if not,
// it logs the refusal and answers 403.
func (s *Server) mayWrite(w http.ResponseWriter, r *http.Request, p principal) bool {
	if p.role.CanWrite() && s.HasUsers() {
		return true
	}
	s.o.Log.Warn("console write refused: role viewer", zap.String("user", p.name), zap.String("client", clientAddr(r)), zap.String("path", r.URL.Path))
	s.refuse(w, r, http.StatusForbidden, s.noWrite())
	return false
}

func areaMissing(name string) string {
	switch name {
	case "quarantine":
		return "no quarantine: quarantine.dir is empty or no rule quarantines"
	case "held":
		return "no held area: this configuration holds no mail (scan.hold_after)"
	}
	return "no such page"
}

// audit writes an audit event: always one log line, and a record in the
// Audit (a database) when there is one.
func (s *Server) audit(ctx context.Context, r *http.Request, p principal, action, area, id, result string) {
	ev := AuditEvent{Time: s.o.Now().UTC(), User: p.name, Action: action, Area: area, Entry: id, Host: s.o.Host,
		Client: clientAddr(r), Result: result}
	s.o.Log.Info("console audit", zap.String("user", ev.User), zap.String("action", action), zap.String("area", area),
		zap.String("entry", id), zap.String("host", ev.Host), zap.String("client", ev.Client), zap.String("result", result))
	if s.o.Audit != nil {
		// The action is done whether or not the user's browser is still
		// there; its record must not be lost with the request (the Audit
		// bounds its own wait).
		if err := s.o.Audit.Record(context.WithoutCancel(ctx), ev); err != nil {
			s.o.Log.Error("console audit record failed (the log line above is the record)", zap.String("entry", id), zap.Error(err))
		}
	}
}

// act releases or deletes one entry, audited.
func (s *Server) act(ctx context.Context, r *http.Request, p principal, areaName string, a Area, action, id string) (ReleaseResult, error) {
	var res ReleaseResult
	var err error
	switch action {
	case "release":
		res, err = a.Release(ctx, id, p.name)
	case "delete":
		err = a.Delete(ctx, id, p.name)
	default:
		return res, fmt.Errorf("unknown action %q: release or delete", action)
	}
	result := "ok"
	switch {
	case err != nil:
		result = "failed: " + err.Error()
	case action == "release" && !res.Delivered && len(res.Accepted) > 0:
		result = "partial: delivered to " + strings.Join(res.Accepted, ", ") + ", queued as " + res.QueuedAs + "; " + res.Detail
	case action == "release" && !res.Delivered:
		result = "partial: " + res.Detail
	case action == "release":
		result = "delivered, queued as " + res.QueuedAs
	}
	s.audit(ctx, r, p, action, areaName, id, result)
	return res, err
}

// ---- API ----

func (s *Server) apiMessages(w http.ResponseWriter, r *http.Request, p principal) {
	if s.o.Messages == nil {
		writeJSONError(w, http.StatusNotFound, "no message log")
		return
	}
	q, err := parseQuery(r.URL.Query())
	if err != nil {
		writeJSONError(w, http.StatusBadRequest, err.Error())
		return
	}
	page, err := s.o.Messages.Search(r.Context(), q)
	if err != nil {
		writeJSONError(w, http.StatusInternalServerError, "search failed: "+err.Error())
		return
	}
	if page.Messages == nil {
		page.Messages = []Message{}
	}
	writeJSON(w, http.StatusOK, struct {
		MessagePage
		Complete bool `json:"complete"`
	}{page, s.o.Messages.Searchable()})
}

func (s *Server) apiList(w http.ResponseWriter, r *http.Request, p principal) {
	_, a, ok := s.pathArea(w, r)
	if !ok {
		return
	}
	f, ok := s.listFilter(w, r)
	if !ok {
		return
	}
	es, err := a.List(r.Context(), f)
	if err != nil {
		writeJSONError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if es == nil {
		es = []quarantine.Entry{}
	}
	writeJSON(w, http.StatusOK, es)
}

func (s *Server) apiEntry(w http.ResponseWriter, r *http.Request, p principal) {
	_, a, ok := s.pathArea(w, r)
	if !ok {
		return
	}
	id := r.PathValue("id")
	e, err := a.Get(r.Context(), id)
	if errors.Is(err, ErrNotFound) {
		// The entry is gone (released in full, or deleted); with a
		// database its audit stays, and the 404 carries it.
		if hist, _ := a.History(r.Context(), id); len(hist) > 0 {
			writeJSON(w, http.StatusNotFound, struct {
				Error   string  `json:"error"`
				History []Event `json:"history"`
			}{"no such entry: it was released or deleted; its history is kept", hist})
			return
		}
		writeJSONError(w, http.StatusNotFound, "no such entry")
		return
	}
	if err != nil {
		writeJSONError(w, http.StatusInternalServerError, err.Error())
		return
	}
	hist, _ := a.History(r.Context(), e.ID)
	if hist == nil {
		hist = []Event{}
	}
	writeJSON(w, http.StatusOK, struct {
		quarantine.Entry
		History []Event `json:"history"`
	}{e, hist})
}

func (s *Server) apiWrite(w http.ResponseWriter, r *http.Request, p principal, action string) {
	name, a, ok := s.pathArea(w, r)
	if !ok {
		return
	}
	if !s.mayWrite(w, r, p) {
		return
	}
	id := r.PathValue("id")
	res, err := s.act(r.Context(), r, p, name, a, action, id)
	switch {
	case errors.Is(err, ErrNotFound):
		writeJSONError(w, http.StatusNotFound, "no such entry")
	case err != nil:
		writeJSONError(w, http.StatusConflict, err.Error())
	case action == "delete":
		writeJSON(w, http.StatusOK, map[string]string{"id": id, "result": "deleted"})
	default:
		writeJSON(w, http.StatusOK, res)
	}
}

func (s *Server) noWrite() string {
	if !s.HasUsers() {
		return "releasing, deleting and downloading need a login with role admin: set console.users (or use foxproxy quarantine on this host)"
	}
	return errNoWrite.Error()
}

func (s *Server) apiRelease(w http.ResponseWriter, r *http.Request, p principal) {
	s.apiWrite(w, r, p, "release")
}

func (s *Server) apiDelete(w http.ResponseWriter, r *http.Request, p principal) {
	s.apiWrite(w, r, p, "delete")
}

// parseQuery reads a message search from URL parameters.
func parseQuery(v url.Values) (MessageQuery, error) {
	q := MessageQuery{
		Sender: v.Get("sender"), Rcpt: v.Get("rcpt"), Client: v.Get("client"), QueueID: v.Get("queue_id"),
		MessageID: v.Get("message_id"), Verdict: v.Get("verdict"), Rule: v.Get("rule"), Cursor: v.Get("cursor"),
		Limit: defaultPageSize,
	}
	for _, f := range []string{q.Sender, q.Rcpt, q.Client, q.QueueID, q.MessageID, q.Verdict, q.Rule, q.Cursor} {
		if len(f) > maxSearchField {
			return q, fmt.Errorf("a search field is longer than %d bytes", maxSearchField)
		}
	}
	for _, t := range []struct {
		key string
		to  *time.Time
	}{{"since", &q.Since}, {"until", &q.Until}} {
		s := v.Get(t.key)
		if s == "" {
			continue
		}
		var err error
		if *t.to, err = parseTime(s); err != nil {
			return q, fmt.Errorf("%s: %q is not a time (RFC 3339, e.g. 2026-12-07T10:00:00Z, or 2026-12-07T10:00 in UTC, or 2026-12-07)", t.key, s)
		}
	}
	if l := v.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > maxPageSize {
			return q, fmt.Errorf("limit: %q is not a number from 1 to %d", l, maxPageSize)
		}
		q.Limit = n
	}
	return q, nil
}

func parseTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, errors.New("bad time")
}

// traceOf is the findings as the X-Foxproxy trace header writes them.
func traceOf(fs []quarantine.Finding) string {
	var parts []string
	for _, f := range fs {
		parts = append(parts, pipeline.Finding{Stage: pipeline.StageName(f.Stage), Status: pipeline.Status(f.Status),
			Categories: f.Categories, Detail: f.Detail, Backend: f.Backend}.Trace())
	}
	return strings.Join(parts, " ")
}

// copyBody streams a stored message to an attachment download.
func copyBody(w io.Writer, rc io.ReadCloser) error {
	defer rc.Close()
	_, err := io.Copy(w, rc)
	return err
}
