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
// time, as it is asked for, and keeps only the last cachedChunks chunks
// read.
func (s *Store) Open(ctx context.Context, id string) (quarantine.Message, error) {
	if !quarantine.ValidID(id) {
		return nil, quarantine.ErrNotFound
	}
	m := &message{s: s, id: id}
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

// cachedChunks is how many chunks an open message keeps: one for each of
// the readers that read it at once (a rescan's stages run concurrently,
// each with its own reader, and one chunk shared by all would be fetched
// again at every turn of another reader).
const cachedChunks = 4

// message is a stored message, read chunk by chunk. ReadAt is safe for
// concurrent use (a rescan's stages may read at once).
type message struct {
	s     *Store
	id    string
	size  int64
	chunk int64

	mu     sync.Mutex
	cached []cachedChunk // at most cachedChunks, the most recently used last
	loads  int           // chunks fetched, for the tests
	off    int64         // for Read
}

type cachedChunk struct {
	seq  int64
	data []byte
}

func (m *message) Size() int64 { return m.size }

func (m *message) Close() error {
	m.mu.Lock()
	m.cached = nil
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
		buf, err := m.get(seq)
		if err != nil {
			return n, err
		}
		k := copy(p[n:], buf[off-seq*m.chunk:])
		n += k
		off += int64(k)
	}
	return n, nil
}

// get returns chunk seq, from the cache or else the database (m.mu held).
func (m *message) get(seq int64) ([]byte, error) {
	for i, c := range m.cached {
		if c.seq == seq {
			copy(m.cached[i:], m.cached[i+1:])
			m.cached[len(m.cached)-1] = c
			return c.data, nil
		}
	}
	data, err := m.load(seq)
	if err != nil {
		return nil, err
	}
	if len(m.cached) == cachedChunks {
		copy(m.cached, m.cached[1:])
		m.cached = m.cached[:len(m.cached)-1]
	}
	m.cached = append(m.cached, cachedChunk{seq: seq, data: data})
	return data, nil
}

// load reads one chunk from the database.
func (m *message) load(seq int64) ([]byte, error) {
	m.loads++
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
		return nil, err
	}
	want := m.chunk
	if rest := m.size - seq*m.chunk; rest < want {
		want = rest
	}
	if int64(len(data)) != want {
		return nil, fmt.Errorf("pgstore: entry %s: chunk %d has %d bytes, want %d", m.id, seq, len(data), want)
	}
	return data, nil
}
