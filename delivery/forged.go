package delivery

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// Fields named X-Foxproxy or X-Foxproxy-* are foxproxy's own statements
// about a message (the trace header, tag flags, release records). Copies of
// them that arrive with a message were written by someone else, perhaps to
// make a filter downstream believe a verdict foxproxy never gave, so they
// are removed before delivery, as amavisd-new removes the X-Spam fields it
// did not write. Only the header block is looked at.

// isOurField reports whether a header line starts a field named X-Foxproxy
// or X-Foxproxy-anything.
func isOurField(line []byte) bool {
	const name = "x-foxproxy"
	if len(line) < len(name)+1 || !bytes.EqualFold(line[:len(name)], []byte(name)) {
		return false
	}
	c := line[len(name)]
	if c == '-' {
		return true
	}
	// "X-Foxproxy:" or "X-Foxproxy :" (obsolete syntax allows blanks).
	rest := bytes.TrimLeft(line[len(name):], " \t")
	return len(rest) > 0 && rest[0] == ':'
}

// hasOurFields scans the header block (up to limit bytes) for such fields
// without keeping anything: most messages have none and pay only the scan.
func hasOurFields(r io.Reader, limit int64) bool {
	br := headReaders.Get().(*bufio.Reader)
	br.Reset(io.LimitReader(r, limit))
	defer headReaders.Put(br)
	start := true
	for {
		line, err := br.ReadSlice('\n')
		if start {
			if len(bytes.TrimRight(line, "\r\n")) == 0 {
				return false // end of the header block
			}
			if isOurField(line) {
				return true
			}
		}
		start = !errors.Is(err, bufio.ErrBufferFull)
		if err != nil && start {
			return false
		}
	}
}

// removeOurFields returns the message without the X-Foxproxy fields of its
// header block (each with its continuation lines) and how many it removed.
// The header block is read up to limit bytes; the body streams through.
func removeOurFields(r io.Reader, limit int64) (io.Reader, int) {
	br := bufio.NewReader(r)
	var head bytes.Buffer
	var read int64
	removed := 0
	dropping, inLine := false, false
	for read < limit {
		line, err := br.ReadSlice('\n')
		read += int64(len(line))
		start := !inLine
		inLine = errors.Is(err, bufio.ErrBufferFull)
		if start {
			if len(bytes.TrimRight(line, "\r\n")) == 0 {
				head.Write(line)
				break
			}
			switch {
			case line[0] == ' ' || line[0] == '\t':
				// a continuation: belongs to the field before
			case isOurField(line):
				dropping = true
				removed++
			default:
				dropping = false
			}
		}
		if !dropping {
			head.Write(line)
		}
		if err != nil && !inLine {
			break
		}
	}
	return io.MultiReader(&head, br), removed
}

// RemoveIncomingTrace is the message without the X-Foxproxy fields it
// arrived with, and their number: for a release, which puts only its own
// X-Foxproxy-Released on top.
func RemoveIncomingTrace(r io.Reader, limit int64) (io.Reader, int) { return removeOurFields(r, limit) }
