// Package console is foxproxy's web console and its JSON API, served on
// the admin listener: find any message in the message log, look inside a
// quarantined or held message, release or delete it, behind accounts with
// a role each (viewer: read; admin: read, release, delete, download).
//
// The console defines the interfaces it needs (Messages, Area, Audit) and
// knows nothing of where the data lives: the file store under
// quarantine.dir, or a database shared by several hosts. cmd/foxproxy
// wires the implementations; package admin mounts the handler under
// /console/ and /api/.
//
// Everything that came from the internet (subjects, display names,
// addresses, header values, bodies) is data, never markup: it is rendered
// through html/template's contexts only, bodies as text, HTML parts as
// their escaped source, and the pages carry a Content-Security-Policy
// that allows no script at all.
package console

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/foxproxy/foxproxy/quarantine"
)

// Role is what an account may do.
type Role string

const (
	// Viewer reads: messages, quarantined and held entries.
	Viewer Role = "viewer"
	// Admin reads, releases, deletes and downloads.
	Admin Role = "admin"
)

// CanWrite reports whether the role may release, delete and download.
func (r Role) CanWrite() bool { return r == Admin }

// User is one console account (console.users).
type User struct {
	Name string `yaml:"name"`
	Role Role   `yaml:"role"`
	// PasswordHash is an argon2id (PHC string format) or bcrypt hash, as
	// `foxproxy passwd` prints it; the password itself is never stored.
	PasswordHash string `yaml:"password_hash"`
}

// Config is the console: section of the configuration.
type Config struct {
	// Users may log in. Without users, mail data is served only to
	// clients on loopback, and nobody can release from the console.
	Users []User `yaml:"users"`
	// SessionIdle ends a session nobody used for this long.
	SessionIdle Duration `yaml:"session_idle"`
	// SessionMax ends a session this long after its login, used or not.
	SessionMax Duration `yaml:"session_max"`
}

// Problem is one thing wrong with a Config: Key is relative to the
// console section ("users[1].role").
type Problem struct {
	Key, Msg string
}

// Validate returns every problem of c.
func (c Config) Validate() []Problem {
	var ps []Problem
	add := func(key, format string, args ...any) {
		ps = append(ps, Problem{key, fmt.Sprintf(format, args...)})
	}
	seen := map[string]int{}
	for i, u := range c.Users {
		key := fmt.Sprintf("users[%d]", i)
		switch {
		case u.Name == "":
			add(key+".name", "must be set")
		case !validName(u.Name):
			add(key+".name", "%q: use letters, digits and . _ @ - only (at most 64)", u.Name)
		}
		if j, dup := seen[u.Name]; dup && u.Name != "" {
			add(key+".name", "%q is users[%d]'s name already", u.Name, j)
		} else {
			seen[u.Name] = i
		}
		if u.Role != Viewer && u.Role != Admin {
			add(key+".role", "%q is not one of viewer, admin", u.Role)
		}
		if err := CheckHash(u.PasswordHash); err != nil {
			add(key+".password_hash", "%v (make one with: foxproxy passwd)", err)
		}
	}
	if c.SessionIdle.D() <= 0 {
		add("session_idle", "must be positive")
	}
	if c.SessionMax.D() <= 0 {
		add("session_max", "must be positive")
	}
	if c.SessionIdle.D() > c.SessionMax.D() && c.SessionMax.D() > 0 {
		add("session_idle", "%s is longer than session_max (%s)", c.SessionIdle.D(), c.SessionMax.D())
	}
	return ps
}

// maxNameBytes is the longest account name.
const maxNameBytes = 64

// validName keeps account names to what a log line and an audit row show
// unambiguously.
func validName(s string) bool {
	if len(s) > maxNameBytes {
		return false
	}
	for _, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._@-", r)
		if !ok {
			return false
		}
	}
	return true
}

// Duration is a length of time written as Go writes it ("30m", "12h")
// or in days ("2d").
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// UnmarshalText implements encoding.TextUnmarshaler (the YAML decoder
// uses it).
func (d *Duration) UnmarshalText(b []byte) error {
	s := string(b)
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n < 0 {
			return fmt.Errorf("%q is not a duration (e.g. 30m, 12h, 2d)", s)
		}
		*d = Duration(time.Duration(n) * 24 * time.Hour)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration (e.g. 30m, 12h, 2d)", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// MessageQuery is a search of the message log. Empty fields match
// everything; Since and Until bound the time (zero: open).
type MessageQuery struct {
	Sender, Rcpt, Client, QueueID, MessageID, Verdict, Rule string
	Since, Until                                            time.Time
	// Limit is the page size; Cursor continues after the last message of
	// the previous page (MessagePage.Next), newest first.
	Limit  int
	Cursor string
}

// MessagePage is one page of a search, newest first.
type MessagePage struct {
	Messages []Message `json:"messages"`
	// Next is the cursor of the following page; "" on the last.
	Next string `json:"next,omitempty"`
}

// Message is one row of the message log.
type Message struct {
	Time              time.Time            `json:"time"`
	Host              string               `json:"host,omitempty"`
	ID                string               `json:"id,omitempty"`
	QueueID           string               `json:"queue_id,omitempty"`
	DownstreamQueueID string               `json:"downstream_queue_id,omitempty"`
	MessageID         string               `json:"message_id,omitempty"`
	Client            string               `json:"client,omitempty"`
	ClientName        string               `json:"client_name,omitempty"`
	Helo              string               `json:"helo,omitempty"`
	Sender            string               `json:"sender"`
	Rcpts             []string             `json:"rcpts,omitempty"`
	Size              int64                `json:"size"`
	Verdict           string               `json:"verdict"`
	Rule              string               `json:"rule,omitempty"`
	Reply             int                  `json:"reply,omitempty"`
	Findings          []quarantine.Finding `json:"findings,omitempty"`
	// QuarantineID names the quarantine or held entry the message became,
	// if it did (Area says which).
	QuarantineID string `json:"quarantine_id,omitempty"`
	Area         string `json:"area,omitempty"`
}

// Messages is the message log.
type Messages interface {
	Search(ctx context.Context, q MessageQuery) (MessagePage, error)
	// Searchable reports whether Search sees the whole log (a database),
	// not only the last messages this process keeps in memory.
	Searchable() bool
}

// Filter narrows a listing of an area.
type Filter struct {
	// Text matches the sender, a recipient, the client, the rule, the
	// reason, the upstream queue ID or the entry's ID (substring, any case).
	Text string
	// Limit bounds the number of entries returned (0: the Area's own
	// bound).
	Limit int
}

// Match reports whether e passes f's Text; Area implementations that
// filter in memory use it.
func (f Filter) Match(e quarantine.Entry) bool {
	if f.Text == "" {
		return true
	}
	t := strings.ToLower(f.Text)
	fields := append([]string{e.ID, e.From, e.Client, e.Rule, e.Reason, e.QueueID}, e.Rcpts...)
	for _, s := range fields {
		if strings.Contains(strings.ToLower(s), t) {
			return true
		}
	}
	return false
}

// ReleaseResult is what a release did.
type ReleaseResult struct {
	// Delivered is true when the downstream accepted the message for
	// every recipient that was left (the entry is gone).
	Delivered bool `json:"delivered"`
	// Accepted and Refused name the recipients; QueuedAs is the
	// downstream's queue ID.
	Accepted []string `json:"accepted,omitempty"`
	Refused  []string `json:"refused,omitempty"`
	QueuedAs string   `json:"queued_as,omitempty"`
	// Detail is the release's own words, for the administrator.
	Detail string `json:"detail,omitempty"`
}

// Event is one line of an entry's history.
type Event struct {
	Time   time.Time `json:"time"`
	User   string    `json:"user,omitempty"`
	Action string    `json:"action"`
	Host   string    `json:"host,omitempty"`
	Result string    `json:"result,omitempty"`
}

// ErrNotFound is an entry that is not (or no longer) there.
var ErrNotFound = quarantine.ErrNotFound

// Area is the quarantine or the held area.
type Area interface {
	List(ctx context.Context, f Filter) ([]quarantine.Entry, error)
	Get(ctx context.Context, id string) (quarantine.Entry, error)
	Open(ctx context.Context, id string) (io.ReadCloser, error)
	Delete(ctx context.Context, id, user string) error
	// Release delivers the entry. An error means nothing was delivered,
	// or that the outcome is uncertain (its text says which).
	Release(ctx context.Context, id, user string) (ReleaseResult, error)
	// History is what happened to the entry, oldest first.
	History(ctx context.Context, id string) ([]Event, error)
}

// AuditEvent is one release, delete or download.
type AuditEvent struct {
	Time   time.Time `json:"time"`
	User   string    `json:"user"`
	Action string    `json:"action"` // release, delete, download
	Area   string    `json:"area"`   // quarantine, held
	Entry  string    `json:"entry"`
	Host   string    `json:"host"`
	Client string    `json:"client"` // the console user's address
	Result string    `json:"result"`
}

// Audit keeps audit events beyond the log line the console always
// writes (a database table, shown on the entry's page).
type Audit interface {
	Record(ctx context.Context, ev AuditEvent) error
}

var errNoWrite = errors.New("this account may read only (role viewer); releasing, deleting and downloading need role admin")
