package msglog

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Search returns the records of the message_log table that match q,
// newest first, one page of at most q.Limit. Every value is a bound
// parameter; only the shape of the WHERE clause depends on q.
func Search(ctx context.Context, db DB, q Query) (Page, error) {
	if err := q.check(); err != nil {
		return Page{}, err
	}
	var where []string
	var args []any
	cond := func(sql string, v any) {
		args = append(args, v)
		where = append(where, strings.ReplaceAll(sql, "$?", "$"+strconv.Itoa(len(args))))
	}
	if q.Sender != "" {
		cond("lower(sender) = lower($?)", q.Sender)
	}
	if q.Recipient != "" {
		// rcpts_lc holds the recipients lowercased by the writer (Go's
		// strings.ToLower, as here): the GIN index serves @>.
		cond("rcpts_lc @> ARRAY[$?::text]", strings.ToLower(q.Recipient))
	}
	if q.Client.IsValid() {
		cond("client = $?", q.Client.Unmap())
	}
	if q.QueueID != "" {
		cond("(queue_id = $? OR downstream_queue_id = $?)", q.QueueID)
	}
	if q.MessageID != "" {
		cond("message_id = $?", q.MessageID)
	}
	if q.MsgID != "" {
		cond("msg_id = $?", q.MsgID)
	}
	if q.Verdict != "" {
		cond("verdict = $?", q.Verdict)
	}
	if q.Rule != "" {
		cond("rule = $?", q.Rule)
	}
	if !q.Since.IsZero() {
		cond("time >= $?", q.Since)
	}
	if !q.Until.IsZero() {
		cond("time < $?", q.Until)
	}
	if c := q.After; c != nil {
		args = append(args, c.Time, c.ID)
		where = append(where, fmt.Sprintf("(time, id) < ($%d, $%d)", len(args)-1, len(args)))
	}
	sql := "SELECT id, time, host, msg_id, queue_id, downstream_queue_id, message_id, client, client_name, helo," +
		" sender, rcpts, size, stages, verdict, rule, reply_code, reply_text, quarantine_id FROM message_log"
	if len(where) > 0 {
		sql += " WHERE " + strings.Join(where, " AND ")
	}
	limit := q.limit()
	args = append(args, limit+1) // one more tells whether there is a next page
	sql += fmt.Sprintf(" ORDER BY time DESC, id DESC LIMIT $%d", len(args))

	rows, err := db.Query(ctx, sql, args...)
	if err != nil {
		return Page{}, fmt.Errorf("message log search: %w", err)
	}
	recs, err := pgx.CollectRows(rows, scanRecord)
	if err != nil {
		return Page{}, fmt.Errorf("message log search: %w", err)
	}
	return page(recs, limit), nil
}

// page cuts recs (up to limit+1) to a page.
func page(recs []Record, limit int) Page {
	p := Page{Records: recs}
	if len(recs) > limit {
		p.Records = recs[:limit]
		last := p.Records[limit-1]
		p.Next = &Cursor{Time: last.Time, ID: last.ID}
	}
	return p
}

func scanRecord(row pgx.CollectableRow) (Record, error) {
	var r Record
	var client *netip.Addr
	var stages []byte
	var code int32
	err := row.Scan(&r.ID, &r.Time, &r.Host, &r.MsgID, &r.QueueID, &r.DownstreamQueueID, &r.MessageID, &client,
		&r.ClientName, &r.Helo, &r.Sender, &r.Rcpts, &r.Size, &stages, &r.Verdict, &r.Rule, &code, &r.ReplyText,
		&r.QuarantineID)
	if err != nil {
		return r, err
	}
	r.Time = r.Time.UTC()
	if client != nil {
		r.Client = *client
	}
	r.ReplyCode = int(code)
	if len(stages) > 0 {
		if err := json.Unmarshal(stages, &r.Stages); err != nil {
			return r, fmt.Errorf("stages of row %d: %w", r.ID, err)
		}
		if len(r.Stages) == 0 {
			r.Stages = nil
		}
	}
	return r, nil
}
