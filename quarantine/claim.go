package quarantine

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// A release sends an entry to the downstream and deletes it only after the
// downstream's 250. Two things could still deliver a message twice: two
// releases of one entry at the same time, and a release that sent the
// message but never learnt the outcome (it crashed, or the connection broke
// after the final dot). A claim, the file ID.claim created exclusively
// before the release connects, covers both: while it exists, another
// release of the entry is refused and says why.
const claimExt = ".claim"

// claimRecord is the content of a claim file.
type claimRecord struct {
	PID  int       `json:"pid"`
	Time time.Time `json:"time"`
	// Uncertain says the release sent the message and did not learn
	// whether the downstream took it.
	Uncertain string `json:"uncertain,omitempty"`
	// Instance tells this process from an earlier one with the same PID
	// (a restarted container's foxproxy is PID 1 again).
	Instance string `json:"instance,omitempty"`
	// Sending: the claimer was about to send the message, or sent it; if
	// it is gone, whether the downstream took the message is unknown.
	Sending bool `json:"sending,omitempty"`
}

// instance identifies this process in claims.
var instance = func() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}()

// dirClaim is a held claim on an entry of a DirStore: its claim file.
type dirClaim struct {
	s    *DirStore
	id   string
	done bool
}

// ClaimedError is returned by Claim when the entry is claimed already.
type ClaimedError struct {
	ID string
	// Host is the claimer's host, when the store is shared by several
	// (empty for a DirStore: this host).
	Host string
	PID  int
	Time time.Time
	// Running: the claiming process still runs (a release in progress).
	// Otherwise it was interrupted, or Uncertain says what went wrong; the
	// message may have been delivered.
	Running   bool
	Uncertain string
}

func (e *ClaimedError) Error() string {
	proc := fmt.Sprintf("process %d", e.PID)
	if e.Host != "" {
		proc += " on " + e.Host
	}
	if e.Running && e.Uncertain == "" {
		return fmt.Sprintf("quarantine: %s is being released by %s (since %s)", e.ID, proc, e.Time.Format(time.RFC3339))
	}
	why := "was interrupted"
	if e.Uncertain != "" {
		why = "did not learn whether the downstream took the message (" + e.Uncertain + ")"
	}
	return fmt.Sprintf("quarantine: an earlier release of %s (%s, %s) %s; it may have been delivered", e.ID, proc, e.Time.Format(time.RFC3339), why)
}

// Claim claims an entry for a release. It fails with *ClaimedError when the
// entry is claimed already, unless force is set and the claimer is no
// longer running (an interrupted or uncertain release), in which case the
// claim is taken over. A claim of a running process is never taken over.
func (s *DirStore) Claim(ctx context.Context, id string, force bool) (Claim, error) {
	if _, err := s.Get(ctx, id); err != nil {
		return nil, err
	}
	rec, _ := json.Marshal(claimRecord{PID: os.Getpid(), Time: s.now().UTC(), Instance: instance})
	for attempt := 0; ; attempt++ {
		f, err := os.OpenFile(s.path(id, claimExt), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err == nil {
			_, err = f.Write(rec)
			if err == nil {
				err = f.Sync()
			}
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err == nil {
				err = syncDir(s.dir)
			}
			if err != nil {
				os.Remove(s.path(id, claimExt))
				return nil, fmt.Errorf("quarantine: %w", err)
			}
			return &dirClaim{s: s, id: id}, nil
		}
		if !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("quarantine: %w", err)
		}
		ce := s.readClaim(id)
		if !force || (ce.Running && ce.Uncertain == "") || attempt > 0 {
			return nil, ce
		}
		os.Remove(s.path(id, claimExt))
	}
}

func (s *DirStore) readClaim(id string) *ClaimedError {
	ce := &ClaimedError{ID: id}
	b, err := os.ReadFile(s.path(id, claimExt))
	var rec claimRecord
	if err != nil || json.Unmarshal(b, &rec) != nil {
		// Unreadable: a claim cut short by a crash.
		return ce
	}
	ce.PID, ce.Time, ce.Uncertain = rec.PID, rec.Time, rec.Uncertain
	ce.Running = rec.PID > 0 && processRunning(rec.PID)
	if rec.PID == os.Getpid() && rec.Instance != "" && rec.Instance != instance {
		ce.Running = false // an earlier process that had our PID
	}
	if rec.Sending && !ce.Running && ce.Uncertain == "" {
		ce.Uncertain = "it stopped after it began to send the message, before it recorded the downstream's answer"
	}
	return ce
}

func processRunning(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// Drop gives the claim up: the release certainly delivered nothing (or
// the entry was updated or deleted after the downstream's answer).
func (c *dirClaim) Drop() {
	if c.done {
		return
	}
	c.done = true
	os.Remove(c.s.path(c.id, claimExt))
	syncDir(c.s.dir)
}

// KeepUncertain leaves the claim in place, marked with why the outcome is
// unknown, so that the next release of the entry is refused until an
// administrator checks the downstream and forces or deletes it.
func (c *dirClaim) KeepUncertain(why string) error {
	if c.done {
		return nil
	}
	c.done = true
	return c.rewrite(claimRecord{PID: os.Getpid(), Time: c.s.now().UTC(), Instance: instance, Uncertain: why})
}

// MarkSending records durably, before the message is sent, that the
// outcome is about to become uncertain: should this process die before it
// deletes the entry or drops the claim, the claim says the message may
// have been delivered, and nobody sends it again without a decision.
func (c *dirClaim) MarkSending() error {
	if c.done {
		return errors.New("quarantine: claim already given up")
	}
	return c.rewrite(claimRecord{PID: os.Getpid(), Time: c.s.now().UTC(), Instance: instance, Sending: true})
}

func (c *dirClaim) rewrite(r claimRecord) error {
	rec, _ := json.Marshal(r)
	tmp, err := c.s.writeTemp(c.id+claimExt, bytes.NewReader(rec))
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, c.s.path(c.id, claimExt)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("quarantine: %w", err)
	}
	return syncDir(c.s.dir)
}

// Claimed reports the claim on an entry, if there is one (for show).
func (s *DirStore) Claimed(_ context.Context, id string) (*ClaimedError, bool) {
	if _, err := os.Stat(s.path(id, claimExt)); err != nil {
		return nil, false
	}
	return s.readClaim(id), true
}
