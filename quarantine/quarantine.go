// Package quarantine keeps messages the policy did not deliver, so an
// administrator can look at them, release them or delete them. It defines
// the entry, the Store interface every custody implements (package pgstore
// is the shared one, in PostgreSQL), and DirStore, the default: a
// directory on this host's disk.
//
// In a DirStore, each entry is two files in one directory: ID.eml (the message as
// received) and ID.json (envelope, client, findings, rule, time). Both are
// written to temporary names, fsynced, and renamed: first the message, then
// the metadata. An entry exists when its .json exists, so a crash at any
// point leaves either a whole entry or none (an orphaned .eml without its
// .json is invisible and removed by Purge). Files are mode 0600 in a 0700
// directory: quarantined mail is still somebody's mail.
package quarantine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Entry is the metadata of one quarantined message.
type Entry struct {
	ID       string            `json:"id"`
	Time     time.Time         `json:"time"`
	From     string            `json:"from"`
	Rcpts    []string          `json:"rcpts"`
	Client   string            `json:"client,omitempty"`
	QueueID  string            `json:"queue_id,omitempty"`
	Xforward map[string]string `json:"xforward,omitempty"`
	Size     int64             `json:"size"`
	Rule     string            `json:"rule"`
	Reason   string            `json:"reason,omitempty"`
	Findings []Finding         `json:"findings,omitempty"`
	// MailOptions keeps the envelope parameters (BODY, SMTPUTF8, DSN) that a
	// release must send again.
	MailOptions map[string]string `json:"mail_options,omitempty"`
	// RcptOptions keeps each recipient's DSN parameters (NOTIFY, ORCPT).
	RcptOptions map[string]map[string]string `json:"rcpt_options,omitempty"`
	// Encrypt lists the recipients whose copies must be encrypted when
	// released: the message waits for their keys (an encryption exception).
	Encrypt []string `json:"encrypt,omitempty"`
	// Released records partial releases: recipients the downstream accepted
	// are delivered and leave Rcpts, which keeps only those still to send.
	Released []Release `json:"released,omitempty"`
	// Arrived is when the local Postfix received the message, for held
	// entries (from its Received header; see the proxy's hold decision).
	Arrived time.Time `json:"arrived,omitzero"`
	// Host is the foxproxy that took the message in (its hostname): with
	// a store that several hosts share, where to look for its log lines.
	Host string `json:"host,omitempty"`
}

// Release is one release that delivered the message to some recipients.
type Release struct {
	Time     time.Time `json:"time"`
	Rcpts    []string  `json:"rcpts"`
	QueuedAs string    `json:"queued_as,omitempty"`
}

// Finding is a stage's finding as stored.
type Finding struct {
	Stage      string   `json:"stage"`
	Status     string   `json:"status"`
	Categories []string `json:"categories,omitempty"`
	Detail     string   `json:"detail,omitempty"`
	Backend    string   `json:"backend,omitempty"`
}

// DirStore is a quarantine directory: the Store on this host's disk.
type DirStore struct {
	dir string
	now func() time.Time
	// failAfterMessage is a test hook: fail between the two renames, as a
	// crash would.
	failAfterMessage bool
}

// Open opens (creating if needed) the quarantine directory.
func Open(dir string) (*DirStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("quarantine: %w", err)
	}
	return &DirStore{dir: dir, now: time.Now}, nil
}

// OpenExisting opens a quarantine directory that must exist already (for
// the command line, which should not create directories where a mistyped
// configuration points).
func OpenExisting(dir string) (*DirStore, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("quarantine: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("quarantine: %s is not a directory", dir)
	}
	return &DirStore{dir: dir, now: time.Now}, nil
}

// Dir returns the directory.
func (s *DirStore) Dir() string { return s.dir }

var _ Store = (*DirStore)(nil)

// Describe names the store: its directory.
func (s *DirStore) Describe() string { return s.dir }

func (s *DirStore) newID() string { return NewID(s.now()) }

// Put stores a message and its metadata and returns the entry's ID. It
// returns only when both files are durable.
func (s *DirStore) Put(_ context.Context, e Entry, content io.Reader) (string, error) {
	e.ID = s.newID()
	return s.put(e, content)
}

func (s *DirStore) put(e Entry, content io.Reader) (string, error) {
	if e.Time.IsZero() {
		e.Time = s.now().UTC()
	}
	meta, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		return "", fmt.Errorf("quarantine: %w", err)
	}
	msgTmp, err := s.writeTemp(e.ID+".eml", content)
	if err != nil {
		return "", err
	}
	metaTmp, err := s.writeTemp(e.ID+".json", strings.NewReader(string(meta)))
	if err != nil {
		os.Remove(msgTmp)
		return "", err
	}
	if err := os.Rename(msgTmp, s.path(e.ID, ".eml")); err != nil {
		os.Remove(msgTmp)
		os.Remove(metaTmp)
		return "", fmt.Errorf("quarantine: %w", err)
	}
	if s.failAfterMessage {
		os.Remove(metaTmp)
		return "", errors.New("quarantine: simulated crash between the writes")
	}
	if err := os.Rename(metaTmp, s.path(e.ID, ".json")); err != nil {
		os.Remove(metaTmp)
		os.Remove(s.path(e.ID, ".eml"))
		return "", fmt.Errorf("quarantine: %w", err)
	}
	if err := syncDir(s.dir); err != nil {
		return "", fmt.Errorf("quarantine: %w", err)
	}
	return e.ID, nil
}

func (s *DirStore) path(id, ext string) string { return filepath.Join(s.dir, id+ext) }

func (s *DirStore) writeTemp(name string, r io.Reader) (string, error) {
	f, err := os.CreateTemp(s.dir, ".tmp-"+name+"-*")
	if err != nil {
		return "", fmt.Errorf("quarantine: %w", err)
	}
	_, err = io.Copy(f, r)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("quarantine: %w", err)
	}
	return f.Name(), nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// ErrNotFound is returned for an ID that is not in the quarantine.
var ErrNotFound = errors.New("quarantine: no such entry")

// Get returns an entry's metadata.
func (s *DirStore) Get(_ context.Context, id string) (Entry, error) {
	if !idPattern.MatchString(id) {
		return Entry{}, ErrNotFound
	}
	b, err := os.ReadFile(s.path(id, ".json"))
	if errors.Is(err, os.ErrNotExist) {
		return Entry{}, ErrNotFound
	}
	if err != nil {
		return Entry{}, fmt.Errorf("quarantine: %w", err)
	}
	var e Entry
	if err := json.Unmarshal(b, &e); err != nil {
		return Entry{}, fmt.Errorf("quarantine: %s.json: %w", id, err)
	}
	return e, nil
}

// Open returns an entry's message.
func (s *DirStore) Open(ctx context.Context, id string) (Message, error) {
	if _, err := s.Get(ctx, id); err != nil {
		return nil, err
	}
	f, err := os.Open(s.path(id, ".eml"))
	if err != nil {
		return nil, fmt.Errorf("quarantine: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("quarantine: %w", err)
	}
	return fileMessage{File: f, size: st.Size()}, nil
}

// fileMessage is a stored message file with its size.
type fileMessage struct {
	*os.File
	size int64
}

func (m fileMessage) Size() int64 { return m.size }

// List returns all entries, oldest first.
func (s *DirStore) List(ctx context.Context) ([]Entry, error) {
	names, err := filepath.Glob(filepath.Join(s.dir, "*.json"))
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, n := range names {
		id := strings.TrimSuffix(filepath.Base(n), ".json")
		e, err := s.Get(ctx, id)
		if err != nil {
			continue // an entry deleted meanwhile
		}
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Time.Equal(out[j].Time) {
			return out[i].Time.Before(out[j].Time)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// Delete removes an entry: the metadata first, so it is gone at once.
func (s *DirStore) Delete(_ context.Context, id string) error {
	if !idPattern.MatchString(id) {
		return ErrNotFound
	}
	if err := os.Remove(s.path(id, ".json")); errors.Is(err, os.ErrNotExist) {
		return ErrNotFound
	} else if err != nil {
		return fmt.Errorf("quarantine: %w", err)
	}
	os.Remove(s.path(id, ".eml"))
	os.Remove(s.path(id, claimExt))
	return syncDir(s.dir)
}

// Update replaces an existing entry's metadata (after a partial release),
// atomically: readers see the old or the new version, never a mix.
func (s *DirStore) Update(ctx context.Context, e Entry) error {
	if _, err := s.Get(ctx, e.ID); err != nil {
		return err
	}
	meta, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		return fmt.Errorf("quarantine: %w", err)
	}
	tmp, err := s.writeTemp(e.ID+".json", strings.NewReader(string(meta)))
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, s.path(e.ID, ".json")); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("quarantine: %w", err)
	}
	return syncDir(s.dir)
}

// Purge deletes entries older than age and removes leftovers of
// interrupted writes. It returns how many entries it deleted.
func (s *DirStore) Purge(ctx context.Context, age time.Duration) (int, error) {
	entries, err := s.List(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	cutoff := s.now().Add(-age)
	for _, e := range entries {
		if e.Time.Before(cutoff) {
			if err := s.Delete(ctx, e.ID); err == nil {
				n++
			}
		}
	}
	// Orphans: temp files and messages without metadata, older than a
	// minute (younger ones may belong to a Put in progress).
	files, _ := os.ReadDir(s.dir)
	for _, f := range files {
		name := f.Name()
		info, err := f.Info()
		if err != nil || s.now().Sub(info.ModTime()) < time.Minute {
			continue
		}
		orphan := strings.HasPrefix(name, ".tmp-")
		for _, ext := range []string{".eml", claimExt} {
			if id, ok := strings.CutSuffix(name, ext); ok {
				if _, err := os.Stat(s.path(id, ".json")); errors.Is(err, os.ErrNotExist) {
					orphan = true
				}
			}
		}
		if orphan {
			os.Remove(filepath.Join(s.dir, name))
		}
	}
	return n, nil
}
