package pgstore

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/foxproxy/foxproxy/quarantine"
)

// errClaimLost is MarkSending's error when the claim is no longer ours:
// its lease ran out (this host could not renew it) and another host took
// the entry over. The caller must not send.
var errClaimLost = errors.New("pgstore: the claim was lost (its lease expired and another host took the entry over); nothing was sent")

// Claim claims an entry. Without force an existing claim is never taken
// over; with force, only one that is no longer running (its lease ran
// out) or that was marked uncertain. The claim is renewed every third of
// the lease until it is dropped or kept uncertain.
func (s *Store) Claim(ctx context.Context, id string, force bool) (quarantine.Claim, error) {
	if !quarantine.ValidID(id) {
		return nil, quarantine.ErrNotFound
	}
	c := &claim{s: s, id: id, token: rand.Text(), stopped: make(chan struct{})}
	c.ctx, c.stop = context.WithCancel(context.Background())
	for attempt := 0; ; attempt++ {
		var got bool
		err := s.query(ctx, func(ctx context.Context) error {
			tag, err := s.db.pool.Exec(ctx, `UPDATE entries SET claim_token = $3, claim_host = $4, claim_pid = $5,
					claim_time = now(), claim_expires = now() + $6 * interval '1 millisecond', sending = false, uncertain = ''
				WHERE area = $1 AND id = $2
				AND (claim_token IS NULL OR ($7 AND (claim_expires < now() OR uncertain <> '')))`,
				s.area, id, c.token, s.db.opts.Host, os.Getpid(), s.db.cfg.ClaimLease.Milliseconds(), force)
			if err != nil {
				return s.db.fail(err)
			}
			got = tag.RowsAffected() == 1
			return nil
		})
		if err != nil {
			return nil, err
		}
		if got {
			go c.renew()
			return c, nil
		}
		ce, ok, err := s.claimed(ctx, id)
		if err != nil {
			return nil, err
		}
		if ok {
			return nil, ce
		}
		if attempt > 0 {
			return nil, fmt.Errorf("pgstore: %s: the claim changed hands while it was taken; try again", id)
		}
		// No entry, or a claim dropped between the two statements.
		if has, err := s.Has(ctx, id); err != nil {
			return nil, err
		} else if !has {
			return nil, quarantine.ErrNotFound
		}
	}
}

// Claimed reports the claim on an entry, if there is one. An error reading
// it counts as no claim (show and list print what they can).
func (s *Store) Claimed(ctx context.Context, id string) (*quarantine.ClaimedError, bool) {
	ce, ok, _ := s.claimed(ctx, id)
	return ce, ok
}

func (s *Store) claimed(ctx context.Context, id string) (*quarantine.ClaimedError, bool, error) {
	var ce *quarantine.ClaimedError
	err := s.query(ctx, func(ctx context.Context) error {
		var host *string
		var pid *int32
		var at *time.Time
		var expired, sending bool
		var uncertain string
		var token *string
		err := s.db.pool.QueryRow(ctx, `SELECT claim_token, claim_host, claim_pid, claim_time,
				coalesce(claim_expires < now(), false), sending, uncertain
			FROM entries WHERE area = $1 AND id = $2`, s.area, id).Scan(&token, &host, &pid, &at, &expired, &sending, &uncertain)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return s.db.fail(err)
		}
		if token == nil {
			return nil
		}
		ce = &quarantine.ClaimedError{ID: id, Running: !expired, Uncertain: uncertain}
		if host != nil {
			ce.Host = *host
		}
		if pid != nil {
			ce.PID = int(*pid)
		}
		if at != nil {
			ce.Time = at.UTC()
		}
		if sending && expired && ce.Uncertain == "" {
			ce.Uncertain = "it stopped after it began to send the message, before it recorded the downstream's answer (its claim's lease ran out)"
		}
		return nil
	})
	return ce, ce != nil, err
}

// claim is a held claim on an entry of the database.
type claim struct {
	s     *Store
	id    string
	token string

	mu   sync.Mutex
	done bool
	// ctx is the renewal's, cancelled by stop when the claim ends: a
	// renewal waiting for the database then gives up at once, so Drop
	// and KeepUncertain never wait for it.
	ctx     context.Context
	stop    context.CancelFunc
	stopped chan struct{}
}

// renew extends the lease every third of it while the claim is held, so
// that a long rescan or a slow downstream keeps its claim and a dead host
// loses it. Each renewal waits at most database.timeout, like every other
// wait for the database.
func (c *claim) renew() {
	defer close(c.stopped)
	lease := c.s.db.cfg.ClaimLease
	t := time.NewTicker(lease / 3)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := c.s.db.bound(c.ctx)
		c.s.db.pool.Exec(ctx, `UPDATE entries SET claim_expires = now() + $4 * interval '1 millisecond'
			WHERE area = $1 AND id = $2 AND claim_token = $3 AND uncertain = ''`,
			c.s.area, c.id, c.token, lease.Milliseconds())
		cancel()
		// A failed renewal is retried at the next tick; should the lease
		// run out meanwhile, MarkSending finds out before anything is sent.
	}
}

// finish stops the renewal; it reports false when the claim was given up
// or kept already.
func (c *claim) finish() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		return false
	}
	c.done = true
	c.stop()
	<-c.stopped
	return true
}

func (c *claim) exec(sql string, args ...any) (int64, error) {
	var n int64
	err := c.s.query(context.Background(), func(ctx context.Context) error {
		tag, err := c.s.db.pool.Exec(ctx, sql, append([]any{c.s.area, c.id, c.token}, args...)...)
		if err != nil {
			return c.s.db.fail(err)
		}
		n = tag.RowsAffected()
		return nil
	})
	return n, err
}

// Drop gives the claim up. Should the database not answer, the claim
// lapses with its lease; it was not sending, so another release may take
// it then.
func (c *claim) Drop() {
	if !c.finish() {
		return
	}
	c.exec(`UPDATE entries SET claim_token = NULL, claim_host = NULL, claim_pid = NULL, claim_time = NULL,
		claim_expires = NULL, sending = false, uncertain = '' WHERE area = $1 AND id = $2 AND claim_token = $3`)
}

// KeepUncertain marks the claim uncertain and leaves it in place.
func (c *claim) KeepUncertain(why string) error {
	if !c.finish() {
		return nil
	}
	_, err := c.exec(`UPDATE entries SET uncertain = $4, claim_expires = now()
		WHERE area = $1 AND id = $2 AND claim_token = $3`, why)
	return err
}

// MarkSending records that the message is about to be sent, renewing the
// lease. It fails, and nothing may be sent, when the claim is no longer
// this claim's.
func (c *claim) MarkSending() error {
	c.mu.Lock()
	done := c.done
	c.mu.Unlock()
	if done {
		return errors.New("pgstore: claim already given up")
	}
	n, err := c.exec(`UPDATE entries SET sending = true, claim_expires = now() + $4 * interval '1 millisecond'
		WHERE area = $1 AND id = $2 AND claim_token = $3 AND uncertain = ''`, c.s.db.cfg.ClaimLease.Milliseconds())
	if err != nil {
		return err
	}
	if n == 0 {
		return errClaimLost
	}
	return nil
}
