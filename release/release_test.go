package release

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/foxproxy/foxproxy/delivery"
	"github.com/foxproxy/foxproxy/quarantine"
)

// stored puts an entry for three recipients into a new store and claims it.
func stored(t *testing.T) (quarantine.Store, quarantine.Entry, quarantine.Claim) {
	t.Helper()
	s, err := quarantine.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e := quarantine.Entry{From: "s@example.test", Rcpts: []string{"a@example.test", "b@example.test", "c@example.test"},
		Size: 20, Rule: "virus", QueueID: "4ABC",
		Xforward:    map[string]string{"NAME": "mx.example.net", "ADDR": "192.0.2.1", "IDENT": "4ABC"},
		MailOptions: map[string]string{"RET": "HDRS"},
		RcptOptions: map[string]map[string]string{"b@example.test": {"NOTIFY": "SUCCESS"}}}
	id, err := s.Put(context.Background(), e, strings.NewReader("Subject: x\r\n\r\nbody\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if e, err = s.Get(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	c, err := s.Claim(context.Background(), id, false)
	if err != nil {
		t.Fatal(err)
	}
	return s, e, c
}

// claimFile is the claim's record as stored, "" when there is none.
func claimFile(s quarantine.Store, id string) string {
	b, _ := os.ReadFile(filepath.Join(s.Describe(), id+".claim"))
	return string(b)
}

// A downstream that refuses one recipient of three: the message went to
// the other two, so the entry keeps only the refused one, records who got
// it, and its claim is given up; the envelope sent was the one received,
// and the claim said "sending" before DATA.
func TestReleasePartialRefusalKeepsRefusedOnly(t *testing.T) {
	s, e, claim := stored(t)
	now := time.Date(2026, 11, 27, 15, 0, 0, 0, time.UTC)
	var sentEnv delivery.Envelope
	var claimWhileSending string
	res, err := Release(context.Background(), Request{Store: s, Claim: claim, Entry: e, Size: 99, Now: func() time.Time { return now },
		Send: func(_ context.Context, o delivery.ReinjectOptions, env delivery.Envelope) (*delivery.Reinjected, error) {
			sentEnv = env
			if err := o.BeforeData(); err != nil {
				return nil, err
			}
			claimWhileSending = claimFile(s, e.ID)
			return &delivery.Reinjected{Reply: "2.0.0 Ok: queued as Q1", QueuedAs: "Q1",
				Accepted: []string{"a@example.test", "c@example.test"},
				Refused:  []delivery.RcptRefusal{{Rcpt: "b@example.test", Code: 550, Reply: "5.1.1 User unknown"}}}, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	want := delivery.Envelope{From: e.From, Rcpts: e.Rcpts, MailParams: e.MailOptions, RcptParams: e.RcptOptions,
		Xforward: delivery.Xforward{Name: "mx.example.net", Addr: "192.0.2.1", Ident: "4ABC"}, Size: 99}
	if fmt.Sprint(sentEnv) != fmt.Sprint(want) {
		t.Errorf("envelope sent %+v, want %+v", sentEnv, want)
	}
	if !strings.Contains(claimWhileSending, `"sending":true`) {
		t.Errorf("claim before DATA %q: not marked sending", claimWhileSending)
	}
	got, err := s.Get(context.Background(), e.ID)
	if err != nil {
		t.Fatalf("entry gone after a partial release: %v", err)
	}
	if !slices.Equal(got.Rcpts, []string{"b@example.test"}) || !slices.Equal(res.Entry.Rcpts, got.Rcpts) {
		t.Errorf("entry keeps %v (result says %v), want the refused recipient only", got.Rcpts, res.Entry.Rcpts)
	}
	if len(got.Released) != 1 || !got.Released[0].Time.Equal(now) || got.Released[0].QueuedAs != "Q1" ||
		!slices.Equal(got.Released[0].Rcpts, []string{"a@example.test", "c@example.test"}) {
		t.Errorf("release record %+v", got.Released)
	}
	if _, claimed := s.Claimed(context.Background(), e.ID); claimed {
		t.Error("claim kept after a recorded partial release: the refused recipient could never be retried")
	}
}

// The downstream took the message for everyone: the entry is gone.
func TestReleaseDeliveredDeletes(t *testing.T) {
	s, e, claim := stored(t)
	_, err := Release(context.Background(), Request{Store: s, Claim: claim, Entry: e,
		Send: func(_ context.Context, _ delivery.ReinjectOptions, env delivery.Envelope) (*delivery.Reinjected, error) {
			return &delivery.Reinjected{Reply: "2.0.0 Ok: queued as Q2", QueuedAs: "Q2", Accepted: env.Rcpts}, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(context.Background(), e.ID); !errors.Is(err, quarantine.ErrNotFound) {
		t.Fatalf("entry after delivery: %v", err)
	}
}

// Nothing delivered: the entry stays as it was and may be released again.
// Outcome unknown: the entry stays and its claim says so.
func TestReleaseFailureKeepsEntry(t *testing.T) {
	for name, sendErr := range map[string]error{
		"refused":   &delivery.ReinjectError{Stage: "MAIL", Code: 451, Reply: "4.3.0 try later"},
		"uncertain": fmt.Errorf("reinject: %w (EOF)", delivery.ErrReinjectUncertain),
	} {
		s, e, claim := stored(t)
		res, err := Release(context.Background(), Request{Store: s, Claim: claim, Entry: e,
			Send: func(context.Context, delivery.ReinjectOptions, delivery.Envelope) (*delivery.Reinjected, error) {
				return nil, sendErr
			}})
		if res != nil || !errors.Is(err, sendErr) {
			t.Errorf("%s: result %v, error %v", name, res, err)
		}
		got, gerr := s.Get(context.Background(), e.ID)
		if gerr != nil || !slices.Equal(got.Rcpts, e.Rcpts) || len(got.Released) != 0 {
			t.Errorf("%s: entry %+v, %v", name, got, gerr)
		}
		ce, claimed := s.Claimed(context.Background(), e.ID)
		switch {
		case name == "refused" && claimed:
			t.Errorf("refused: claim kept (%v); the entry could not be released again", ce)
		case name == "uncertain" && (!claimed || ce.Uncertain == ""):
			t.Errorf("uncertain: claim %v (kept %v), want it kept and marked", ce, claimed)
		}
	}
}
