package main

import (
	"context"
	"fmt"
	"net/netip"
	"sync/atomic"

	"github.com/foxproxy/foxproxy/console"
	"github.com/foxproxy/foxproxy/msglog"
	"github.com/foxproxy/foxproxy/proxy"
	"github.com/foxproxy/foxproxy/quarantine"
)

// messageLog is the Observer that keeps every message's record: in the
// ring always (the console's recent messages), and in the database's
// message log once one is configured.
type messageLog struct {
	nopObserver // only Message matters
	ring        *msglog.Ring
	// sink is the running configuration's message log in the database
	// (nil fields without database.url); a reload points it at the new
	// one.
	sink atomic.Pointer[logSink]
}

// logSink is where records go and are searched besides the ring.
type logSink struct {
	writer *msglog.Writer
	// db is the pool searches of the database's log use (the writer's
	// own, bounded pool).
	db msglog.DB
}

// use sends the records from now on to w, and searches to db (both nil:
// the ring only).
func (l *messageLog) use(w *msglog.Writer, db msglog.DB) {
	l.sink.Store(&logSink{writer: w, db: db})
}

func newMessageLog() *messageLog {
	return &messageLog{ring: msglog.NewRing(msglog.DefaultRingSize)}
}

// Message records ev. It runs on the mail path: the ring only copies, and
// Writer.Add never waits.
func (l *messageLog) Message(ev proxy.MessageEvent) {
	r := recordFromEvent(ev)
	l.ring.Add(r)
	if s := l.sink.Load(); s != nil && s.writer != nil {
		s.writer.Add(r)
	}
}

// recordFromEvent is the message log's row of a message event.
func recordFromEvent(ev proxy.MessageEvent) msglog.Record {
	return msglog.Record{
		Time:              ev.Time,
		Host:              ev.Host,
		MsgID:             ev.ID,
		QueueID:           ev.QueueID,
		DownstreamQueueID: ev.DownstreamQueueID,
		MessageID:         ev.MessageID,
		Client:            ev.Client,
		ClientName:        ev.ClientName,
		Helo:              ev.Helo,
		Sender:            ev.From,
		Rcpts:             ev.Recipients,
		Size:              ev.Size,
		Stages:            msglog.StagesFrom(ev.Findings),
		Verdict:           ev.Verdict,
		Rule:              ev.Rule,
		ReplyCode:         ev.ReplyCode,
		ReplyText:         ev.ReplyText,
		QuarantineID:      ev.QuarantineID,
	}
}

// nopObserver ignores everything; messageLog embeds it.
type nopObserver struct{}

func (nopObserver) SessionOpened()             {}
func (nopObserver) SessionClosed()             {}
func (nopObserver) Refused(string, int)        {}
func (nopObserver) Spooled(int64)              {}
func (nopObserver) Message(proxy.MessageEvent) {}

var _ console.Messages = (*messageLog)(nil)

// Searchable reports whether Search sees the whole log: only with the
// database's message log, else the ring's last messages.
func (l *messageLog) Searchable() bool { return l.searchDB() != nil }

// searchDB is the database's log to search, nil without one.
func (l *messageLog) searchDB() msglog.DB {
	if s := l.sink.Load(); s != nil {
		return s.db
	}
	return nil
}

// Search is the console's and the API's search of the message log: the
// database's when there is one, else the ring's.
func (l *messageLog) Search(ctx context.Context, q console.MessageQuery) (console.MessagePage, error) {
	mq := msglog.Query{Sender: q.Sender, Recipient: q.Rcpt, QueueID: q.QueueID, MessageID: q.MessageID,
		Verdict: q.Verdict, Rule: q.Rule, Since: q.Since, Until: q.Until, Limit: q.Limit}
	if q.Client != "" {
		a, err := netip.ParseAddr(q.Client)
		if err != nil {
			return console.MessagePage{}, fmt.Errorf("client %q is not an IP address", q.Client)
		}
		mq.Client = a
	}
	if q.Cursor != "" {
		c, err := msglog.ParseCursor(q.Cursor)
		if err != nil {
			return console.MessagePage{}, err
		}
		mq.After = &c
	}
	var page msglog.Page
	var err error
	if db := l.searchDB(); db != nil {
		ctx, cancel := context.WithTimeout(ctx, logSearchWait)
		defer cancel()
		page, err = msglog.Search(ctx, db, mq)
	} else {
		page, err = l.ring.Search(mq)
	}
	if err != nil {
		return console.MessagePage{}, err
	}
	out := console.MessagePage{Messages: make([]console.Message, 0, len(page.Records))}
	for _, r := range page.Records {
		out.Messages = append(out.Messages, consoleMessage(r))
	}
	if page.Next != nil {
		out.Next = page.Next.String()
	}
	return out, nil
}

// consoleMessage is a log record as the console shows it.
func consoleMessage(r msglog.Record) console.Message {
	m := console.Message{Time: r.Time, Host: r.Host, ID: r.MsgID, QueueID: r.QueueID, DownstreamQueueID: r.DownstreamQueueID,
		MessageID: r.MessageID, ClientName: r.ClientName, Helo: r.Helo, Sender: r.Sender, Rcpts: r.Rcpts, Size: r.Size,
		Verdict: r.Verdict, Rule: r.Rule, Reply: r.ReplyCode, QuarantineID: r.QuarantineID}
	if r.Client.IsValid() {
		m.Client = r.Client.String()
	}
	for _, st := range r.Stages {
		m.Findings = append(m.Findings, quarantine.Finding{Stage: st.Stage, Status: st.Status, Categories: st.Categories,
			Detail: st.Detail, Backend: st.Backend})
	}
	if m.QuarantineID != "" {
		m.Area = "quarantine"
		if r.Verdict == "hold" {
			m.Area = "held"
		}
	}
	return m
}
