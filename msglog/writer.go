package msglog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"
)

// Options configure a Writer. Zero values take the defaults.
type Options struct {
	// QueueSize is how many records wait for the database at most; more
	// are dropped. Default 10000.
	QueueSize int
	// BatchSize is the most records per COPY (default 500);
	// FlushInterval the longest a record waits for its batch to fill
	// (default 200ms).
	BatchSize     int
	FlushInterval time.Duration
	// WriteTimeout bounds one batch's write, connecting included
	// (default 5s): a database slower than that loses the batch, not
	// the queue's time.
	WriteTimeout time.Duration
	// RetryAfter is the pause after a failed write (default 1s): a dead
	// database is not hammered, and records that arrive meanwhile wait
	// in the queue (and are dropped when it is full).
	RetryAfter time.Duration
	// Retention is how long rows are kept (default 30 days); negative:
	// forever (no partition is dropped).
	Retention time.Duration
	// MaintainEvery is how often partitions are created ahead and
	// expired ones dropped (default 1h; the first run is at start).
	MaintainEvery time.Duration
	// Now is the clock of maintenance (default time.Now).
	Now func() time.Time
	Log *zap.Logger
}

func (o *Options) defaults() {
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 10000
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 500
	}
	def(&o.FlushInterval, 200*time.Millisecond)
	def(&o.WriteTimeout, 5*time.Second)
	def(&o.RetryAfter, time.Second)
	def(&o.Retention, 30*24*time.Hour)
	def(&o.MaintainEvery, time.Hour)
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
}

// Writer appends records to the message_log table in the background.
type Writer struct {
	db    DB
	opt   Options
	queue chan Record
	// closing is set by Close; Add then drops.
	closing atomic.Bool
	stop    chan struct{} // closed by Close: flush and end
	// writeCtx is the parent of every write; Close cancels it when its
	// own context is done, so a write in progress then gives up too.
	writeCtx    context.Context
	writeCancel context.CancelFunc
	done        chan struct{} // closed when the batching goroutine ended
	mdone       chan struct{} // closed when the maintenance goroutine ended
	mcancel     context.CancelFunc
	once        sync.Once

	written, dropped, failed atomic.Uint64

	// days are the days whose partition is known to exist (only the
	// batching goroutine touches it).
	days map[time.Time]bool
}

// Stats are a Writer's counters since it started.
type Stats struct {
	Written uint64 // rows committed
	// Dropped are rows lost: the queue was full, their batch failed, or
	// they came after Close (foxproxy_message_log_dropped_total).
	Dropped uint64
	Failed  uint64 // batch writes that failed (each dropped its rows)
	Queued  int    // rows waiting now
}

// NewWriter starts a Writer on db, which must have the schema (pgstore's
// migrations). It does not wait for the database.
func NewWriter(db DB, opt Options) *Writer {
	opt.defaults()
	ctx, cancel := context.WithCancel(context.Background())
	w := &Writer{db: db, opt: opt, queue: make(chan Record, opt.QueueSize), stop: make(chan struct{}),
		done: make(chan struct{}), mdone: make(chan struct{}), mcancel: cancel, days: map[time.Time]bool{}}
	w.writeCtx, w.writeCancel = context.WithCancel(context.Background())
	go w.run()
	go w.maintain(ctx)
	return w
}

// Add queues r for writing. It never blocks: a full queue drops r and
// counts it, as does a Writer closing or closed. It is called on the mail
// path. (An Add racing with Close may leave its record queued, neither
// written nor counted: stop the mail before closing the log.)
func (w *Writer) Add(r Record) {
	if w.closing.Load() {
		w.dropped.Add(1)
		return
	}
	select {
	case w.queue <- r:
	default:
		w.dropped.Add(1)
	}
}

// Stats returns the counters.
func (w *Writer) Stats() Stats {
	return Stats{Written: w.written.Load(), Dropped: w.dropped.Load(), Failed: w.failed.Load(), Queued: len(w.queue)}
}

// Close writes what is queued, until ctx is done; what is left then is
// dropped and counted, and Close says how many.
func (w *Writer) Close(ctx context.Context) error {
	before := w.dropped.Load()
	w.once.Do(func() {
		w.closing.Store(true)
		w.mcancel()
		close(w.stop)
	})
	defer context.AfterFunc(ctx, w.writeCancel)()
	// When ctx is done, the write in progress is cancelled and the
	// flush gives up, counting what it leaves as dropped.
	<-w.done
	<-w.mdone
	w.writeCancel()
	if lost := w.dropped.Load() - before; lost > 0 {
		return fmt.Errorf("message log: %d rows dropped at close: cannot write them", lost)
	}
	return nil
}

// run collects batches and writes them.
func (w *Writer) run() {
	defer close(w.done)
	batch := make([]Record, 0, w.opt.BatchSize)
	tick := time.NewTicker(w.opt.FlushInterval)
	defer tick.Stop()
	for {
		select {
		case r := <-w.queue:
			batch = append(batch, r)
			if len(batch) < w.opt.BatchSize {
				continue
			}
		case <-tick.C:
		case <-w.stop:
			w.drain(batch)
			return
		}
		if len(batch) == 0 {
			continue
		}
		ok := w.write(w.writeCtx, batch)
		batch = batch[:0]
		if !ok {
			// Pause; a Close meanwhile still gets its flush.
			select {
			case <-time.After(w.opt.RetryAfter):
			case <-w.stop:
				w.drain(batch)
				return
			}
		}
	}
}

// drain writes batch and everything queued: Close's flush, bounded by
// Close's context (and WriteTimeout per batch). After the first failure
// the rest is dropped and counted.
func (w *Writer) drain(batch []Record) {
	for {
		for len(batch) < w.opt.BatchSize {
			select {
			case r := <-w.queue:
				batch = append(batch, r)
				continue
			default:
			}
			break
		}
		if len(batch) == 0 {
			return
		}
		if !w.write(w.writeCtx, batch) {
			for len(w.queue) > 0 {
				<-w.queue
				w.dropped.Add(1)
			}
			return
		}
		batch = batch[:0]
	}
}

var columns = []string{"time", "host", "msg_id", "queue_id", "downstream_queue_id", "message_id", "client",
	"client_name", "helo", "sender", "rcpts", "rcpts_lc", "size", "stages", "verdict", "rule", "reply_code",
	"reply_text", "quarantine_id"}

// write COPYs batch; on failure its rows are dropped and counted.
func (w *Writer) write(parent context.Context, batch []Record) bool {
	ctx, cancel := context.WithTimeout(parent, w.opt.WriteTimeout)
	defer cancel()
	rows := make([][]any, len(batch))
	var all, missing []time.Time
	seen := map[time.Time]bool{}
	for i := range batch {
		r := &batch[i]
		r.clean()
		rows[i] = row(r)
		if d := dayOf(r.Time); !seen[d] {
			seen[d] = true
			all = append(all, d)
			if !w.days[d] {
				missing = append(missing, d)
			}
		}
	}
	err := w.copy(ctx, missing, rows)
	if isNoPartition(err) {
		// A partition this writer knew was dropped since (retention of
		// an old day, or by hand): create the batch's days again, once.
		clear(w.days)
		err = w.copy(ctx, all, rows)
	}
	if err != nil {
		w.failed.Add(1)
		w.dropped.Add(uint64(len(batch)))
		w.opt.Log.Warn("message log rows dropped: cannot write them to the database",
			zap.Int("rows", len(batch)), zap.Error(err))
		return false
	}
	w.written.Add(uint64(len(batch)))
	return true
}

func (w *Writer) copy(ctx context.Context, days []time.Time, rows [][]any) error {
	if len(days) > 0 {
		if err := EnsurePartitions(ctx, w.db, days...); err != nil {
			return err
		}
		for _, d := range days {
			w.days[d] = true
		}
	}
	_, err := w.db.CopyFrom(ctx, pgx.Identifier{"message_log"}, columns, pgx.CopyFromRows(rows))
	return err
}

// isNoPartition: "no partition of relation found for row" (SQLSTATE
// 23514, check_violation).
func isNoPartition(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23514" && strings.Contains(pe.Message, "no partition")
}

func row(r *Record) []any {
	var client any
	if r.Client.IsValid() {
		client = r.Client
	}
	lc := make([]string, len(r.Rcpts))
	for i, a := range r.Rcpts {
		lc[i] = strings.ToLower(a)
	}
	stages := r.Stages
	if stages == nil {
		stages = []Stage{}
	}
	js, _ := json.Marshal(stages) // plain strings and numbers: cannot fail
	return []any{r.Time, r.Host, r.MsgID, r.QueueID, r.DownstreamQueueID, r.MessageID, client,
		r.ClientName, r.Helo, r.Sender, r.Rcpts, lc, r.Size, string(js), r.Verdict, r.Rule, int32(r.ReplyCode),
		r.ReplyText, r.QuarantineID}
}

// maintain creates partitions ahead and drops expired ones, at start and
// every MaintainEvery, until Close.
func (w *Writer) maintain(ctx context.Context) {
	defer close(w.mdone)
	t := time.NewTicker(w.opt.MaintainEvery)
	defer t.Stop()
	for {
		w.MaintainOnce(ctx, w.opt.Now())
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}

// MaintainOnce creates the partitions of now's day and the next two and,
// unless retention is off, drops the expired ones (on one host at a time).
// Errors are logged: the next run tries again.
func (w *Writer) MaintainOnce(ctx context.Context, now time.Time) {
	ctx, cancel := context.WithTimeout(ctx, 4*w.opt.WriteTimeout)
	defer cancel()
	if err := EnsurePartitions(ctx, w.db, upcomingDays(now)...); err != nil {
		w.opt.Log.Warn("message log: cannot create partitions ahead", zap.Error(err))
	}
	if w.opt.Retention < 0 {
		return
	}
	dropped, err := DropExpired(ctx, w.db, now, w.opt.Retention)
	switch {
	case errors.Is(err, ErrRetentionBusy):
	case err != nil:
		w.opt.Log.Warn("message log: retention failed", zap.Error(err))
	case len(dropped) > 0:
		w.opt.Log.Info("message log: dropped expired partitions", zap.Int("days", len(dropped)),
			zap.Time("oldest", dropped[0]), zap.Time("newest", dropped[len(dropped)-1]))
	}
}
