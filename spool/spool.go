// Package spool keeps a message's content while foxproxy checks it.
//
// Small messages stay in memory; a message that grows past the threshold
// spills to a private temporary file, so a 50 MB message costs a file, not
// 50 MB of RAM. The file is unlinked as soon as it is created: it lives only
// as long as its descriptor, so a crash or SIGKILL never leaves message
// content behind on disk.
package spool

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
)

// ErrTooLarge is returned by Write when the message exceeds the limit.
var ErrTooLarge = errors.New("spool: message exceeds the size limit")

// Options configure a Writer.
type Options struct {
	// Dir holds spill files; empty means os.TempDir().
	Dir string
	// MemoryThreshold is the number of bytes kept in memory before spilling.
	MemoryThreshold int64
	// MaxBytes bounds the message; 0 means no bound.
	MaxBytes int64
}

// bufPool recycles the in-memory buffers of small messages, which are most
// messages: it keeps the per-message allocation flat under load.
var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// Writer accumulates one message. It is not safe for concurrent use.
type Writer struct {
	opts Options
	buf  *bytes.Buffer
	file *os.File
	size int64
	err  error
}

// NewWriter returns an empty Writer.
func NewWriter(opts Options) *Writer {
	b := bufPool.Get().(*bytes.Buffer)
	b.Reset()
	return &Writer{opts: opts, buf: b}
}

// Write appends p. After an error every later Write fails the same way.
func (w *Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.opts.MaxBytes > 0 && w.size+int64(len(p)) > w.opts.MaxBytes {
		w.err = ErrTooLarge
		return 0, w.err
	}
	if w.file == nil && int64(w.buf.Len()+len(p)) > w.opts.MemoryThreshold {
		if err := w.spill(); err != nil {
			w.err = err
			return 0, err
		}
	}
	var n int
	var err error
	if w.file != nil {
		n, err = w.file.Write(p)
	} else {
		n, err = w.buf.Write(p)
	}
	w.size += int64(n)
	if err != nil {
		w.err = fmt.Errorf("spool: %w", err)
	}
	return n, w.err
}

func (w *Writer) spill() error {
	f, err := os.CreateTemp(w.opts.Dir, "foxproxy-spool-*")
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	// Unlink at once: the open descriptor keeps the data, nothing survives
	// a crash.
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return fmt.Errorf("spool: %w", err)
	}
	if _, err := f.Write(w.buf.Bytes()); err != nil {
		f.Close()
		return fmt.Errorf("spool: %w", err)
	}
	w.file = f
	w.release()
	return nil
}

func (w *Writer) release() {
	if w.buf != nil {
		if w.buf.Cap() <= 4<<20 { // don't pin huge buffers in the pool
			bufPool.Put(w.buf)
		}
		w.buf = nil
	}
}

// Size returns the number of bytes written so far.
func (w *Writer) Size() int64 { return w.size }

// Finish returns the finished message. The Writer must not be used after.
func (w *Writer) Finish() (*Message, error) {
	if w.err != nil {
		w.Discard()
		return nil, w.err
	}
	m := &Message{size: w.size}
	if w.file != nil {
		m.file = w.file
		m.ra = w.file
	} else {
		m.buf = w.buf
		m.ra = bytes.NewReader(w.buf.Bytes())
	}
	w.file, w.buf = nil, nil
	return m, nil
}

// Discard drops whatever was written.
func (w *Writer) Discard() {
	if w.file != nil {
		w.file.Close()
		w.file = nil
	}
	w.release()
}

// Message is a finished, immutable message. Open may be called any number of
// times, from any number of goroutines.
type Message struct {
	size int64
	ra   io.ReaderAt
	buf  *bytes.Buffer
	file *os.File
}

// FromBytes wraps b as a Message (for tests and for re-reading stored mail).
func FromBytes(b []byte) *Message {
	return &Message{size: int64(len(b)), ra: bytes.NewReader(b)}
}

// Size returns the message's length in bytes.
func (m *Message) Size() int64 { return m.size }

// Open returns a new reader positioned at the start of the message.
func (m *Message) Open() io.Reader { return io.NewSectionReader(m.ra, 0, m.size) }

// InMemory reports whether the message never spilled to disk.
func (m *Message) InMemory() bool { return m.file == nil }

// Close releases the memory or the spill file. Readers must not be used after.
func (m *Message) Close() error {
	var err error
	if m.file != nil {
		err = m.file.Close()
		m.file = nil
	}
	if m.buf != nil {
		if m.buf.Cap() <= 4<<20 {
			bufPool.Put(m.buf)
		}
		m.buf = nil
	}
	return err
}
