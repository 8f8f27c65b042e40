package spool

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
)

func TestSmallMessageStaysInMemory(t *testing.T) {
	w := NewWriter(Options{MemoryThreshold: 1024})
	io.WriteString(w, "Subject: x\r\n\r\nhello\r\n")
	m, err := w.Finish()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if !m.InMemory() {
		t.Fatal("a small message spilled to disk")
	}
	got, _ := io.ReadAll(m.Open())
	if string(got) != "Subject: x\r\n\r\nhello\r\n" || m.Size() != int64(len(got)) {
		t.Fatalf("content %q size %d", got, m.Size())
	}
}

func TestLargeMessageSpillsToUnlinkedFile(t *testing.T) {
	dir := t.TempDir()
	w := NewWriter(Options{Dir: dir, MemoryThreshold: 100})
	want := bytes.Repeat([]byte("0123456789abcdef"), 1000)
	for i := 0; i < len(want); i += 333 {
		if _, err := w.Write(want[i:min(i+333, len(want))]); err != nil {
			t.Fatal(err)
		}
	}
	m, err := w.Finish()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.InMemory() {
		t.Fatal("message past the threshold stayed in memory")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Fatalf("spill file is visible in the spool dir: %v", entries)
	}
	// Two independent readers see the whole content.
	a, _ := io.ReadAll(m.Open())
	b, _ := io.ReadAll(m.Open())
	if !bytes.Equal(a, want) || !bytes.Equal(b, want) {
		t.Fatal("spilled content differs")
	}
}

func TestSizeLimit(t *testing.T) {
	w := NewWriter(Options{MemoryThreshold: 10, MaxBytes: 20})
	if _, err := w.Write([]byte(strings.Repeat("x", 20))); err != nil {
		t.Fatalf("exactly the limit must fit: %v", err)
	}
	if _, err := w.Write([]byte("y")); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("one byte over the limit: err = %v", err)
	}
	if _, err := w.Finish(); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Finish after overflow: %v", err)
	}
}

func TestSpillDirMissingIsAnError(t *testing.T) {
	w := NewWriter(Options{Dir: "/nonexistent/foxproxy", MemoryThreshold: 1})
	if _, err := w.Write([]byte("abc")); err == nil {
		t.Fatal("spill into a missing directory succeeded")
	}
}

func BenchmarkSpoolSmall(b *testing.B) {
	msg := bytes.Repeat([]byte("a line of a typical message body......\r\n"), 250) // 10 KB
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		w := NewWriter(Options{MemoryThreshold: 1 << 20})
		w.Write(msg)
		m, _ := w.Finish()
		io.Copy(io.Discard, m.Open())
		m.Close()
	}
}
