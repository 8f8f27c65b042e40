package pgstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/foxproxy/foxproxy/quarantine"
)

// Open returns an entry's message. It reads the content one chunk at a
// time, as it is asked for, and keeps only the last chunk read.
func (s *Store) Open(ctx context.Context, id string) (quarantine.Message, error) {
	if !quarantine.ValidID(id) {
		return nil, quarantine.ErrNotFound
	}
	m := &message{s: s, id: id, cur: -1}
	err := s.query(ctx, func(ctx context.Context) error {
		err := s.db.pool.QueryRow(ctx, "SELECT content_size, chunk_size FROM entries WHERE area = $1 AND id = $2",
			s.area, id).Scan(&m.size, &m.chunk)
		if errors.Is(err, pgx.ErrNoRows) {
			return quarantine.ErrNotFound
		}
		return s.db.fail(err)
	})
	if err != nil {
		return nil, err
	}
	if m.chunk <= 0 {
		return nil, fmt.Errorf("pgstore: entry %s: bad chunk size %d", id, m.chunk)
	}
	return m, nil
}

// message is a stored message, read chunk by chunk. ReadAt is safe for
// concurrent use (a rescan's stages may read at once).
type message struct {
	s     *Store
	id    string
	size  int64
	chunk int64

	mu  sync.Mutex
	cur int64 // the chunk in buf; -1: none
	buf []byte
	off int64 // for Read
}

func (m *message) Size() int64 { return m.size }

func (m *message) Close() error {
	m.mu.Lock()
	m.buf, m.cur = nil, -1
	m.mu.Unlock()
	return nil
}

func (m *message) Read(p []byte) (int, error) {
	m.mu.Lock()
	off := m.off
	m.mu.Unlock()
	n, err := m.ReadAt(p, off)
	m.mu.Lock()
	m.off += int64(n)
	m.mu.Unlock()
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

func (m *message) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("pgstore: negative offset")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for n < len(p) {
		if off >= m.size {
			return n, io.EOF
		}
		seq := off / m.chunk
		if seq != m.cur {
			if err := m.load(seq); err != nil {
				return n, err
			}
		}
		k := copy(p[n:], m.buf[off-seq*m.chunk:])
		n += k
		off += int64(k)
	}
	return n, nil
}

// load reads one chunk into buf.
func (m *message) load(seq int64) error {
	var data []byte
	err := m.s.query(context.Background(), func(ctx context.Context) error {
		err := m.s.db.pool.QueryRow(ctx, "SELECT data FROM entry_chunks WHERE area = $1 AND entry_id = $2 AND seq = $3",
			m.s.area, m.id, seq).Scan(&data)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("pgstore: entry %s lost its content (deleted meanwhile?)", m.id)
		}
		return m.s.db.fail(err)
	})
	if err != nil {
		return err
	}
	want := m.chunk
	if rest := m.size - seq*m.chunk; rest < want {
		want = rest
	}
	if int64(len(data)) != want {
		return fmt.Errorf("pgstore: entry %s: chunk %d has %d bytes, want %d", m.id, seq, len(data), want)
	}
	m.buf, m.cur = data, seq
	return nil
}
