package proxy

import (
	"errors"
	"io"
	"net"
)

// DATA content is read by the guard, not by go-smtp.
//
// go-smtp's data reader takes content a byte at a time through bufio and a
// state machine that misses "<CR><LF>.<CR><LF>" right after a bare CR; on a
// 10 KB message it was a third of foxproxy's CPU time. The guard already
// owns the connection's framing, so after go-smtp's 354 the session reads
// the content straight from the guard (Content), which finds the end of data
// by RFC 5321 §4.1.1.4, removes dot-stuffing (§4.5.2) and notes bare CR,
// bare LF and NUL (§2.3.8) in one pass over large chunks. go-smtp then reads
// the end of an empty message (".\r\n") and answers with what Data returned.
//
// BDAT content has no dot-stuffing and no end marker: go-smtp copies its
// chunks in bulk, so it keeps reading them through the guard.

// content machine states.
const (
	csLine  = iota // inside a line
	csStart        // at the start of a line
	csCR           // after a CR (is it CRLF?)
	csDot          // after a "." at the start of a line
	csDotCR        // after ".\r" at the start of a line
	csEnd          // the end-of-data line was read
)

type contentState struct {
	state int
	extra []byte // output that did not fit a tiny read buffer
}

// Content returns the reader of the current DATA command's content, for a
// session's Data; nil when Data was called for BDAT (read the io.Reader
// go-smtp passed in then). Content must be called from Data before anything
// else reads, and only once per message.
func (g *guardConn) Content() io.Reader {
	if !g.dataOffered.Load() {
		return nil
	}
	// DATA's Data runs on the connection's goroutine, after go-smtp wrote
	// 354: settle now switches the guard to content.
	g.settle()
	if g.mode != modeData {
		return nil
	}
	return contentReader{g}
}

type contentReader struct{ g *guardConn }

func (r contentReader) Read(p []byte) (int, error) {
	r.g.rmu.Lock()
	defer r.g.rmu.Unlock()
	if r.g.br == nil {
		return 0, net.ErrClosed
	}
	return r.g.readContent(p)
}

// errContentDone is returned by readContent after the end of data.
var errContentDone = io.EOF

// readContent fills p with unstuffed content. It returns io.EOF after the
// end-of-data line, and the connection's error (a timeout, the client gone)
// when the content cannot be completed.
func (g *guardConn) readContent(p []byte) (int, error) {
	if len(g.content.extra) > 0 {
		n := copy(p, g.content.extra)
		g.content.extra = g.content.extra[n:]
		return n, nil
	}
	if g.mode != modeData || g.content.state == csEnd {
		return 0, errContentDone
	}
	if len(p) == 0 {
		return 0, nil
	}
	if len(p) < 2 {
		// One input byte may release a held CR too: work in a buffer
		// that has room for both.
		var two [2]byte
		n, err := g.readContent(two[:])
		c := copy(p, two[:n])
		g.content.extra = append(g.content.extra[:0], two[c:n]...)
		return c, err
	}
	if err := g.fill(); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, err
	}
	// Output is at most the input consumed plus one CR held back from the
	// previous call: taking len(p)-1 bytes of input always fits.
	in, _ := g.br.Peek(min(len(p)-1, g.br.Buffered()))
	st := g.content.state
	var t taint
	n, used := 0, 0
	for used < len(in) && st != csEnd {
		c := in[used]
		used++
		switch st {
		case csLine, csStart:
			if st == csStart && c == '.' {
				st = csDot
				continue
			}
			switch c {
			case '\r':
				st = csCR
				continue
			case '\n':
				t.bareLF = true
			case 0:
				t.nul = true
			}
			p[n] = c
			n++
			st = csLine
			// The common case: copy the rest of the line in bulk.
			for used < len(in) && n < len(p)-1 {
				c = in[used]
				if c == '\r' || c == '\n' || c == 0 {
					break
				}
				p[n] = c
				n++
				used++
			}
		case csCR:
			if c == '\n' {
				p[n], p[n+1] = '\r', '\n'
				n += 2
				st = csStart
				continue
			}
			// A bare CR: keep it (the message is refused anyway) and look
			// at c again as the start of what follows.
			t.bareCR = true
			p[n] = '\r'
			n++
			st = csLine
			used--
		case csDot:
			// The dot was stuffing (RFC 5321 §4.5.2): dropped.
			if c == '\r' {
				st = csDotCR
				continue
			}
			st = csLine
			used--
		case csDotCR:
			if c == '\n' {
				st = csEnd
				continue
			}
			t.bareCR = true
			p[n] = '\r'
			n++
			st = csLine
			used--
		}
	}
	g.br.Discard(used)
	g.content.state = st
	if t.any() {
		g.mu.Lock()
		g.taint.bareCR = g.taint.bareCR || t.bareCR
		g.taint.bareLF = g.taint.bareLF || t.bareLF
		g.taint.nul = g.taint.nul || t.nul
		g.mu.Unlock()
	}
	if st == csEnd {
		g.mode = modeFakeEnd
		g.endTransaction()
		if n == 0 {
			return 0, errContentDone
		}
	}
	return n, nil
}

// skipContent reads and drops the rest of the content.
func (g *guardConn) skipContent() error {
	var buf [32 << 10]byte
	for {
		_, err := g.readContent(buf[:])
		if err == errContentDone {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
