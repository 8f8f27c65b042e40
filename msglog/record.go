// Package msglog is foxproxy's message log: one Record per message that
// reached foxproxy (what it was, who sent it, what each stage found, the
// verdict and the reply), kept where an administrator can search it.
//
// Two stores share one search: Ring keeps the last few records in memory
// (every foxproxy, database or not), and Writer appends every record to a
// PostgreSQL table (message_log, partitioned by day) off the mail path:
// Writer.Add never blocks and never fails, and a record that cannot be
// written is dropped and counted, because a log must never cost mail.
// Search reads the table, Ring.Search the ring, with the same Query.
//
// The package knows nothing of the SMTP side: cmd/foxproxy turns the
// proxy's MessageEvent into a Record.
package msglog

import (
	"net/netip"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/foxproxy/foxproxy/pipeline"
)

// Record is one message's log row.
type Record struct {
	// ID is assigned by the store (the table's sequence, the ring's
	// counter); with Time it is the order of Search and its cursor.
	ID   int64
	Time time.Time
	// Host is the foxproxy that handled the message (its hostname).
	Host string
	// MsgID is foxproxy's own ID of the message (msg_id in its log).
	MsgID string
	// QueueID is the upstream Postfix's queue ID, DownstreamQueueID the
	// one the downstream gave when it accepted the message.
	QueueID           string
	DownstreamQueueID string
	// MessageID is the Message-ID header field's value, as written.
	MessageID  string
	Client     netip.Addr // invalid when unknown
	ClientName string
	Helo       string
	Sender     string
	Rcpts      []string
	Size       int64
	Stages     []Stage
	Verdict    string
	Rule       string
	ReplyCode  int
	ReplyText  string // the enhanced code and text, e.g. "2.0.0 Ok: queued as 4ABC"
	// QuarantineID is the quarantine or held-mail entry the message went
	// to, if any.
	QuarantineID string
}

// Stage is one stage's finding, as the log keeps it (stored as JSON).
type Stage struct {
	Stage      string   `json:"stage"`
	Status     string   `json:"status"`
	Categories []string `json:"categories,omitempty"`
	Detail     string   `json:"detail,omitempty"`
	Reason     string   `json:"reason,omitempty"`
	Backend    string   `json:"backend,omitempty"`
	Items      []string `json:"items,omitempty"` // "what zone category", at most maxItems
	Incomplete bool     `json:"incomplete,omitempty"`
	TookMS     float64  `json:"took_ms"`
}

// maxItems bounds the listed items kept per stage: enough to see why, as
// the summary log line keeps ten.
const maxItems = 10

// StagesFrom converts the pipeline's findings.
func StagesFrom(fs []pipeline.Finding) []Stage {
	if len(fs) == 0 {
		return nil
	}
	out := make([]Stage, len(fs))
	for i, f := range fs {
		s := Stage{Stage: string(f.Stage), Status: string(f.Status), Categories: f.Categories, Detail: f.Detail,
			Reason: f.Reason, Backend: f.Backend, Incomplete: f.Incomplete,
			TookMS: float64(f.Duration.Microseconds()) / 1000}
		for j, it := range f.Items {
			if j == maxItems {
				break
			}
			s.Items = append(s.Items, it.What+" "+it.Zone+" "+it.Category)
		}
		out[i] = s
	}
	return out
}

// Bounds of what a record keeps: an address is at most 254 octets (RFC
// 5321 §4.5.3.1 with RFC 3696 erratum 1690), a header line 998 (RFC 5322
// §2.1.1); the rest is generous. They keep one odd message from making a
// row (and a COPY batch) large.
const (
	maxField    = 998
	maxRcpts    = 1000
	maxStages   = 32
	maxStageStr = 512
)

// clean makes r storable: PostgreSQL's text refuses invalid UTF-8 and NUL
// (and jsonb the escape \u0000), and one such row would fail its whole
// batch; and it bounds every field.
func (r *Record) clean() {
	r.Time = r.Time.UTC().Truncate(time.Microsecond) // PostgreSQL's precision, so cursors compare equal
	r.Client = r.Client.Unmap()                      // 192.0.2.1, not ::ffff:192.0.2.1: one address, one way to find it
	for _, p := range []*string{&r.Host, &r.MsgID, &r.QueueID, &r.DownstreamQueueID, &r.MessageID,
		&r.ClientName, &r.Helo, &r.Sender, &r.Verdict, &r.Rule, &r.ReplyText, &r.QuarantineID} {
		*p = cleanString(*p, maxField)
	}
	if len(r.Rcpts) > maxRcpts {
		r.Rcpts = r.Rcpts[:maxRcpts]
	}
	rcpts := make([]string, len(r.Rcpts)) // the caller's slice is not ours to change
	for i, s := range r.Rcpts {
		rcpts[i] = cleanString(s, maxField)
	}
	r.Rcpts = rcpts
	if len(r.Stages) > maxStages {
		r.Stages = r.Stages[:maxStages]
	}
	if len(r.Stages) == 0 {
		r.Stages = nil
		return
	}
	stages := make([]Stage, len(r.Stages))
	for i, s := range r.Stages {
		for _, p := range []*string{&s.Stage, &s.Status, &s.Detail, &s.Reason, &s.Backend} {
			*p = cleanString(*p, maxStageStr)
		}
		s.Categories = cleanStrings(s.Categories)
		s.Items = cleanStrings(s.Items)
		stages[i] = s
	}
	r.Stages = stages
}

func cleanStrings(ss []string) []string {
	if len(ss) == 0 {
		return nil // as a record read back from the table has it
	}
	if len(ss) > maxItems*4 {
		ss = ss[:maxItems*4]
	}
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = cleanString(s, maxStageStr)
	}
	return out
}

// cleanString returns s as valid UTF-8 without NUL, cut to at most max
// bytes on a character boundary.
func cleanString(s string, max int) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if strings.IndexByte(s, 0) >= 0 {
		s = strings.ReplaceAll(s, "\x00", "")
	}
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	return s
}
