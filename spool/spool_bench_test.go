package spool

import (
	"bytes"
	"io"
	"testing"
)

// BenchmarkSpoolSpill2MB is a message past the default memory threshold
// (1 MiB): the first MiB in memory, then everything in an unlinked
// temporary file, written in 32 KB pieces as the proxy copies content and
// read back once, as delivery does.
func BenchmarkSpoolSpill2MB(b *testing.B) {
	msg := bytes.Repeat([]byte("a line of a typical message body......\r\n"), 2<<20/40)
	buf := make([]byte, 32<<10)
	dir := b.TempDir()
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		w := NewWriter(Options{Dir: dir, MemoryThreshold: 1 << 20})
		for p := msg; len(p) > 0; {
			n := min(len(p), len(buf))
			if _, err := w.Write(p[:n]); err != nil {
				b.Fatal(err)
			}
			p = p[n:]
		}
		m, err := w.Finish()
		if err != nil {
			b.Fatal(err)
		}
		if m.InMemory() {
			b.Fatal("2 MB stayed in memory")
		}
		if _, err := io.CopyBuffer(io.Discard, m.Open(), buf); err != nil {
			b.Fatal(err)
		}
		m.Close()
	}
}
