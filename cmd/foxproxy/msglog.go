package main

import (
	"sync/atomic"

	"github.com/foxproxy/foxproxy/msglog"
	"github.com/foxproxy/foxproxy/proxy"
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
