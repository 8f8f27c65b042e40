package quarantine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"regexp"
	"time"
)

// Store is custody of messages foxproxy answered 250 for and did not
// deliver: the quarantine, or its held area (Held). Two implementations
// exist: DirStore, a directory on this host's disk (the default), and
// package pgstore, a PostgreSQL database that every foxproxy pointing at it
// shares. Callers (the proxy's quarantiner, package release, package
// rescan, the command line) use this interface only, so they keep one
// meaning whichever store holds the mail.
//
// Methods take a context because a store may be across a network; each
// implementation also bounds every wait itself, so a context without a
// deadline never makes a caller wait forever.
type Store interface {
	// Put stores a message and its metadata under a new ID and returns the
	// ID only once both are durable: the caller answers 250 after it.
	Put(ctx context.Context, e Entry, content io.Reader) (string, error)
	// PutAs stores under a given ID (an entry moving from the held area
	// keeps its ID); ErrExists, with nothing written, when it is taken.
	PutAs(ctx context.Context, id string, e Entry, content io.Reader) error
	// Get returns an entry's metadata, or ErrNotFound.
	Get(ctx context.Context, id string) (Entry, error)
	// Open returns an entry's message, or ErrNotFound.
	Open(ctx context.Context, id string) (Message, error)
	// List returns every entry, oldest first.
	List(ctx context.Context) ([]Entry, error)
	// Delete removes an entry, or returns ErrNotFound.
	Delete(ctx context.Context, id string) error
	// Update replaces an existing entry's metadata atomically (after a
	// partial release).
	Update(ctx context.Context, e Entry) error
	// Purge deletes entries older than age and returns how many.
	Purge(ctx context.Context, age time.Duration) (int, error)
	// Tidy removes leftovers of interrupted writes and nothing else.
	Tidy(ctx context.Context) error
	// Claim claims an entry for a release; see DirStore.Claim for force.
	Claim(ctx context.Context, id string, force bool) (Claim, error)
	// Claimed reports the claim on an entry, if there is one.
	Claimed(ctx context.Context, id string) (*ClaimedError, bool)
	// Has reports whether an entry exists.
	Has(ctx context.Context, id string) (bool, error)
	// Stats counts the entries and returns the oldest one's time.
	Stats(ctx context.Context) (n int, oldest time.Time, err error)
	// Held is the held area of this quarantine (created if needed).
	Held() (Store, error)
	// HeldView is the held area for the command line, which must not
	// create anything: a held area that does not exist has no entries.
	HeldView() Store
	// Describe names the store for people: its directory, or the
	// database (without a password) and area.
	Describe() string
}

// Claim is a held claim on an entry: while it stands, no other release of
// the entry starts. Every method is durable when it returns.
type Claim interface {
	// Drop gives the claim up: the release certainly delivered nothing,
	// or the entry was updated or deleted after the downstream's answer.
	Drop()
	// KeepUncertain leaves the claim in place, marked with why the outcome
	// is unknown, so the next release is refused until an administrator
	// decides (--force or delete).
	KeepUncertain(why string) error
	// MarkSending records, before the message is sent, that the outcome
	// is about to become uncertain. An error means the claim is lost (or
	// cannot be marked): the caller must not send.
	MarkSending() error
}

// Message is a stored message: read it from the start, or at any offset
// (a rescan reads it once per stage).
type Message interface {
	io.Reader
	io.ReaderAt
	io.Closer
	// Size is the stored message's length in bytes.
	Size() int64
}

var idPattern = regexp.MustCompile(`^[0-9]{8}T[0-9]{6}-[0-9a-f]{8}$`)

// ValidID reports whether id has the form of an entry ID (UTC time, a dash
// and 8 hex digits), the only form any store accepts: an ID is a file
// name in a DirStore, and must never be a path.
func ValidID(id string) bool { return idPattern.MatchString(id) }

// NewID is a fresh entry ID for a message stored at now: its UTC time to
// the second (so IDs sort by time, and Stats can read the oldest from
// names alone) and 32 random bits.
func NewID(now time.Time) string {
	var b [4]byte
	rand.Read(b[:])
	return now.UTC().Format("20060102T150405") + "-" + hex.EncodeToString(b[:])
}

// IDTime is the time an ID begins with.
func IDTime(id string) (time.Time, bool) {
	if !ValidID(id) {
		return time.Time{}, false
	}
	t, err := time.Parse("20060102T150405", id[:15])
	return t, err == nil
}
