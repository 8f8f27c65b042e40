package console

import (
	"bytes"
	"crypto/subtle"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/foxproxy/foxproxy/quarantine"
)

// pageData is what every page's layout needs.
type pageData struct {
	Title string
	// User is "" on the login page; Role says what the buttons may do.
	User     string
	Role     Role
	CanWrite bool
	// CSRF is the session's token for the forms; "" without a session.
	CSRF string
	Nav  string
	Host string
	Body any
}

var funcs = template.FuncMap{
	"when": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04:05")
	},
	"join":  func(s []string) string { return strings.Join(s, ", ") },
	"trace": traceOf,
}

func parsePages() map[string]*template.Template {
	base := template.Must(template.New("layout.html").Funcs(funcs).ParseFS(assets, "templates/layout.html"))
	pages := map[string]*template.Template{}
	for _, name := range []string{"login", "overview", "messages", "list", "entry", "gone", "result", "error"} {
		t := template.Must(template.Must(base.Clone()).ParseFS(assets, "templates/"+name+".html"))
		pages[name] = t
	}
	return pages
}

func (s *Server) render(w http.ResponseWriter, code int, name string, d pageData) {
	d.Host = s.o.Host
	var buf bytes.Buffer
	if err := s.pages[name].ExecuteTemplate(&buf, "layout.html", d); err != nil {
		s.o.Log.Error("console page failed", zap.String("page", name), zap.Error(err))
		http.Error(w, "the page failed: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	w.Write(buf.Bytes())
}

func (s *Server) data(p principal, title, nav string, body any) pageData {
	d := pageData{Title: title, User: p.name, Role: p.role, CanWrite: p.role.CanWrite() && s.HasUsers(), Nav: nav, Body: body}
	if p.sess != nil {
		d.CSRF = p.sess.csrf
	}
	return d
}

// refuse answers an error page (or JSON for the API).
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, code int, msg string) {
	if strings.HasPrefix(r.URL.Path, "/api/") {
		writeJSONError(w, code, msg)
		return
	}
	p, _ := s.fromSession(r)
	s.render(w, code, "error", s.data(p, http.StatusText(code), "", msg))
}

// ---- login ----

type loginData struct {
	Next, Name, Error string
}

// safeNext keeps a post-login redirect on this console.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/console/") || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		return "/console/"
	}
	return next
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	if !s.HasUsers() {
		s.refuse(w, r, http.StatusNotFound, "no accounts: console.users is empty, so there is nothing to log in to; "+
			"on loopback the console is open for reading at /console/")
		return
	}
	s.render(w, http.StatusOK, "login", pageData{Title: "Log in", Body: loginData{Next: safeNext(r.URL.Query().Get("next"))}})
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	if !s.HasUsers() {
		s.refuse(w, r, http.StatusNotFound, "no accounts: console.users is empty")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		s.refuse(w, r, http.StatusBadRequest, "bad form: "+err.Error())
		return
	}
	name, pw := r.PostForm.Get("name"), r.PostForm.Get("password")
	next := safeNext(r.PostForm.Get("next"))
	u, code, _ := s.checkPassword(r, name, pw, "form")
	name = clipName(name) // shown again in the form
	switch code {
	case http.StatusTooManyRequests:
		s.render(w, code, "login", pageData{Title: "Log in", Body: loginData{Next: next, Name: name,
			Error: "Too many failed logins from your address. Wait a minute and try again."}})
		return
	case http.StatusUnauthorized:
		s.render(w, code, "login", pageData{Title: "Log in", Body: loginData{Next: next, Name: name, Error: "Wrong name or password."}})
		return
	}
	if old, err := r.Cookie(sessionCookieName); err == nil {
		s.sessions.remove(old.Value) // a new login gets a new session ID
	}
	ss := s.sessions.create(u.Name, u.Role)
	http.SetCookie(w, &http.Cookie{Name: sessionCookieName, Value: ss.token, Path: "/", HttpOnly: true,
		Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode, MaxAge: int(s.sessions.maxAge().Seconds())})
	s.o.Log.Info("console login", zap.String("user", u.Name), zap.String("role", string(u.Role)), zap.String("client", clientAddr(r)))
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	p, ok := s.fromSession(r)
	if ok {
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		r.ParseForm()
		if !csrfOK(r.PostForm.Get("csrf"), p.sess.csrf) {
			s.refuse(w, r, http.StatusForbidden, "the form's token is missing or stale: reload the page and try again")
			return
		}
		s.sessions.remove(p.sess.token)
		s.o.Log.Info("console logout", zap.String("user", p.name), zap.String("client", clientAddr(r)))
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookieName, Value: "", Path: "/", HttpOnly: true, Secure: r.TLS != nil,
		SameSite: http.SameSiteStrictMode, MaxAge: -1})
	http.Redirect(w, r, "/console/login", http.StatusSeeOther)
}

// ---- pages ----

type overviewData struct {
	StatusURL        string
	Quarantine, Held int // -1: no such area
	Searchable       bool
}

func (s *Server) overview(w http.ResponseWriter, r *http.Request, p principal) {
	d := overviewData{StatusURL: s.o.StatusURL, Quarantine: -1, Held: -1}
	if s.o.Quarantine != nil {
		es, _ := s.o.Quarantine.List(r.Context(), Filter{Limit: defaultListLimit})
		d.Quarantine = len(es)
	}
	if s.o.Held != nil {
		es, _ := s.o.Held.List(r.Context(), Filter{Limit: defaultListLimit})
		d.Held = len(es)
	}
	d.Searchable = s.o.Messages != nil && s.o.Messages.Searchable()
	s.render(w, http.StatusOK, "overview", s.data(p, "Overview", "overview", d))
}

type messagesData struct {
	Query      url.Values
	Messages   []Message
	Next       string // URL of the next page
	Searchable bool
	Error      string
}

func (s *Server) messages(w http.ResponseWriter, r *http.Request, p principal) {
	d := messagesData{Query: r.URL.Query()}
	if s.o.Messages == nil {
		d.Error = "no message log in this configuration"
		s.render(w, http.StatusOK, "messages", s.data(p, "Messages", "messages", d))
		return
	}
	d.Searchable = s.o.Messages.Searchable()
	q, err := parseQuery(d.Query)
	if err != nil {
		d.Error = err.Error()
		s.render(w, http.StatusBadRequest, "messages", s.data(p, "Messages", "messages", d))
		return
	}
	page, err := s.o.Messages.Search(r.Context(), q)
	if err != nil {
		d.Error = "search failed: " + err.Error()
	}
	d.Messages = page.Messages
	if page.Next != "" {
		next := url.Values{}
		for k, v := range d.Query {
			next[k] = v
		}
		next.Set("cursor", page.Next)
		d.Next = "/console/messages?" + next.Encode()
	}
	s.render(w, http.StatusOK, "messages", s.data(p, "Messages", "messages", d))
}

type listData struct {
	Area, Title, Q string
	Entries        []quarantine.Entry
	Error          string
}

func areaTitle(name string) string {
	if name == "held" {
		return "Held"
	}
	return "Quarantine"
}

func (s *Server) list(w http.ResponseWriter, r *http.Request, p principal) {
	name, a, ok := s.pathArea(w, r)
	if !ok {
		return
	}
	f, ok := s.listFilter(w, r)
	if !ok {
		return
	}
	d := listData{Area: name, Title: areaTitle(name), Q: f.Text}
	es, err := a.List(r.Context(), f)
	if err != nil {
		d.Error = err.Error()
	}
	// Newest first, as the message log.
	for i, j := 0, len(es)-1; i < j; i, j = i+1, j-1 {
		es[i], es[j] = es[j], es[i]
	}
	d.Entries = es
	s.render(w, http.StatusOK, "list", s.data(p, d.Title, name, d))
}

type entryData struct {
	Area, AreaTitle string
	Entry           quarantine.Entry
	History         []Event
	Message         messageView
	Host            string
}

// goneData is the page of an entry that was released or deleted and has
// an audit.
type goneData struct {
	Area, AreaTitle, ID string
	History             []Event
}

func (s *Server) entry(w http.ResponseWriter, r *http.Request, p principal) {
	name, a, ok := s.pathArea(w, r)
	if !ok {
		return
	}
	id := r.PathValue("id")
	e, err := a.Get(r.Context(), id)
	if errors.Is(err, ErrNotFound) {
		// A released or deleted entry is gone, but with a database its
		// audit is not: show who did it, when and on which host.
		if hist, _ := a.History(r.Context(), id); len(hist) > 0 {
			d := goneData{Area: name, AreaTitle: areaTitle(name), ID: id, History: hist}
			s.render(w, http.StatusNotFound, "gone", s.data(p, d.AreaTitle+" "+id, name, d))
			return
		}
		s.refuse(w, r, http.StatusNotFound, "no such entry (released or deleted meanwhile?)")
		return
	}
	if err != nil {
		s.refuse(w, r, http.StatusInternalServerError, err.Error())
		return
	}
	// The host that took the message in, where the store records it
	// (a shared database); else this one, the only one a directory has.
	host := e.Host
	if host == "" {
		host = s.o.Host
	}
	d := entryData{Area: name, AreaTitle: areaTitle(name), Entry: e, Host: host}
	d.History, _ = a.History(r.Context(), e.ID)
	if rc, err := a.Open(r.Context(), e.ID); err != nil {
		d.Message.Problem = "the message cannot be read: " + err.Error()
	} else {
		d.Message = viewMessage(rc)
		rc.Close()
	}
	s.render(w, http.StatusOK, "entry", s.data(p, d.AreaTitle+" "+e.ID, name, d))
}

// download sends the stored message as an attachment of a type no
// browser renders: it is somebody's mail, and may be hostile.
func (s *Server) download(w http.ResponseWriter, r *http.Request, p principal) {
	name, a, ok := s.pathArea(w, r)
	if !ok {
		return
	}
	if !s.mayWrite(w, r, p) {
		return
	}
	id := r.PathValue("id")
	e, err := a.Get(r.Context(), id)
	if err != nil {
		s.refuse(w, r, http.StatusNotFound, "no such entry")
		return
	}
	rc, err := a.Open(r.Context(), e.ID)
	if err != nil {
		s.audit(r.Context(), r, p, "download", name, e.ID, "failed: "+err.Error())
		s.refuse(w, r, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="`+e.ID+`.eml"`)
	w.Header().Set("Content-Security-Policy", "default-src 'none'; sandbox")
	result := "ok"
	if err := copyBody(w, rc); err != nil {
		result = "failed: " + err.Error()
	}
	s.audit(r.Context(), r, p, "download", name, e.ID, result)
}

type resultRow struct {
	ID, Outcome string
	OK          bool
}

type resultData struct {
	Area, AreaTitle, Action string
	Rows                    []resultRow
}

// csrfOK compares a form's token with the session's in constant time.
func csrfOK(got, want string) bool {
	return len(want) > 0 && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// action releases or deletes the selected entries.
func (s *Server) action(w http.ResponseWriter, r *http.Request, p principal) {
	name, a, ok := s.pathArea(w, r)
	if !ok {
		return
	}
	if !s.mayWrite(w, r, p) {
		return
	}
	action := r.PostForm.Get("action")
	if action != "release" && action != "delete" {
		s.refuse(w, r, http.StatusBadRequest, "action must be release or delete")
		return
	}
	ids := r.PostForm["id"]
	if len(ids) == 0 {
		s.refuse(w, r, http.StatusBadRequest, "no entry selected: tick the boxes of the entries first")
		return
	}
	if len(ids) > maxBulk {
		s.refuse(w, r, http.StatusBadRequest, fmt.Sprintf("too many entries at once (at most %d)", maxBulk))
		return
	}
	d := resultData{Area: name, AreaTitle: areaTitle(name), Action: action}
	for _, id := range ids {
		res, err := s.act(r.Context(), r, p, name, a, action, id)
		row := resultRow{ID: id}
		switch {
		case errors.Is(err, ErrNotFound):
			row.Outcome = "no such entry (released or deleted meanwhile?)"
		case err != nil:
			row.Outcome = err.Error()
		case action == "delete":
			row.Outcome, row.OK = "deleted", true
		case res.Delivered:
			row.Outcome, row.OK = "released to "+strings.Join(res.Accepted, ", ")+", queued as "+res.QueuedAs, true
		default:
			row.Outcome = "partly released: " + res.Detail
		}
		d.Rows = append(d.Rows, row)
	}
	s.render(w, http.StatusOK, "result", s.data(p, "Result", name, d))
}
