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
	// writer is the running configuration's database writer (nil
	// without database.url); a reload points it at the new one.
	writer atomic.Pointer[msglog.Writer]
}

// use sends the records from now on to w (nil: the ring only).
func (l *messageLog) use(w *msglog.Writer) { l.writer.Store(w) }

func newMessageLog() *messageLog {
	return &messageLog{ring: msglog.NewRing(msglog.DefaultRingSize)}
}

// Message records ev. It runs on the mail path: the ring only copies, and
// Writer.Add never waits.
func (l *messageLog) Message(ev proxy.MessageEvent) {
	r := recordFromEvent(ev)
	l.ring.Add(r)
	if w := l.writer.Load(); w != nil {
		w.Add(r)
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
