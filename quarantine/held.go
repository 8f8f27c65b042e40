package quarantine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The held area keeps messages that no scanner could scan for longer than
// scan.hold_after: foxproxy answered 250 for them, and they wait for a
// rescan (package rescan) rather than for an administrator. It is a Store
// of its own in the subdirectory held/ of the quarantine directory, with
// the same two-file entries and claims. Being a separate directory keeps
// its entries out of List and Purge of the quarantine: retention never
// deletes mail that was never checked, and a held entry is never shown or
// released as if the policy had quarantined it.
//
// An entry moves from the held area to the quarantine under the same ID
// (PutAs), so a move interrupted by a crash is finished, not repeated:
// whoever finds the ID on both sides deletes the held copy.
const heldDir = "held"

// Held opens (creating if needed) the held area of the quarantine.
func (s *DirStore) Held() (Store, error) {
	h, err := Open(filepath.Join(s.dir, heldDir))
	if err != nil {
		return nil, err
	}
	h.now = s.now
	return h, nil
}

// HeldView is the held area for the command line, which must not create
// it: when it does not exist, it simply has no entries.
func (s *DirStore) HeldView() Store {
	return &DirStore{dir: filepath.Join(s.dir, heldDir), now: s.now}
}

// ErrExists is returned by PutAs when the ID is taken already.
var ErrExists = errors.New("quarantine: entry exists already")

// PutAs stores a message under a given ID (an entry moving here from the
// held area keeps its ID). It returns ErrExists, and writes nothing, when
// the entry exists already: an earlier move got this far.
func (s *DirStore) PutAs(_ context.Context, id string, e Entry, content io.Reader) error {
	if !idPattern.MatchString(id) {
		return fmt.Errorf("quarantine: bad ID %q", id)
	}
	if _, err := os.Stat(s.path(id, ".json")); err == nil {
		return ErrExists
	}
	e.ID = id
	_, err := s.put(e, content)
	return err
}

// Has reports whether an entry exists.
func (s *DirStore) Has(_ context.Context, id string) (bool, error) {
	if !idPattern.MatchString(id) {
		return false, nil
	}
	_, err := os.Stat(s.path(id, ".json"))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// Stats counts the entries and returns the time of the oldest, from the
// file names alone (an ID begins with its UTC time), so that /status and
// the metrics can ask often without reading every entry.
func (s *DirStore) Stats(_ context.Context) (n int, oldest time.Time, err error) {
	files, err := os.ReadDir(s.dir)
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("quarantine: %w", err)
	}
	for _, f := range files {
		id, ok := strings.CutSuffix(f.Name(), ".json")
		if !ok || !idPattern.MatchString(id) {
			continue
		}
		n++
		t, err := time.Parse("20060102T150405", id[:15])
		if err == nil && (oldest.IsZero() || t.Before(oldest)) {
			oldest = t
		}
	}
	return n, oldest, nil
}

// Tidy removes the leftovers of interrupted writes and deletes (Purge's
// orphans) and nothing else: for the held area, whose entries retention
// never deletes.
func (s *DirStore) Tidy(ctx context.Context) error {
	_, err := s.Purge(ctx, math.MaxInt64)
	return err
}

// DerivedID is the ID an entry gets from when its message arrived and a key
// that names the message (its upstream queue ID and envelope): the same
// message held again, after Postfix retried it, finds its entry by name
// instead of by reading every entry. Two different messages can share a
// derived ID only by a 32-bit hash collision within the same second;
// callers compare the entry they find before trusting it.
func DerivedID(arrived time.Time, key string) string {
	sum := sha256.Sum256([]byte(key))
	return arrived.UTC().Format("20060102T150405") + "-" + hex.EncodeToString(sum[:4])
}
