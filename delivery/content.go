package delivery

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	"go.uber.org/zap"

	"github.com/foxproxy/foxproxy/policy"
	"github.com/foxproxy/foxproxy/spool"
)

// LinkRewriter points a message's links at the click service
// (time-of-click protection).
type LinkRewriter interface {
	// RewriteLinks writes src, a whole message, to dst with its links
	// rewritten; msgRef goes into every link so a click can be traced to
	// the message's log line. note is for the trace header (how many links,
	// or why none were rewritten). On error dst holds nothing usable and
	// the message is delivered as it came.
	RewriteLinks(msgRef string, src io.Reader, dst io.Writer) (note string, err error)
}

// Content is a message as it will be delivered: the original with a
// verdict's changes applied, plus notes for the trace header. Close it when
// done.
type Content struct {
	// Open returns a fresh reader of the whole message each time.
	Open func() io.Reader
	// Notes are trace-header tokens (key=value) about what was done.
	Notes   []string
	closers []func()
}

// AddCloser makes Close run f (to release what Open reads from).
func (c *Content) AddCloser(f func()) { c.closers = append(c.closers, f) }

// Close releases what the content holds.
func (c *Content) Close() {
	for _, f := range c.closers {
		f()
	}
}

// Rules are what applying a verdict to a message's content needs.
type Rules struct {
	Links       LinkRewriter // nil: no click service
	RemoveTrace bool         // remove_incoming_trace
	Limit       int64        // header bytes examined (limits.max_header_bytes)
	// Spool is where rewritten content is kept; its MaxBytes only stops a
	// runaway (rewritten links are longer).
	Spool spool.Options
	Log   *zap.Logger // with the message's ID
}

// ApplyVerdict is the content a verdict delivers, for live mail and held
// mail alike, in the order a reader would expect: forged X-Foxproxy fields
// removed, the subject (tag removed, prefix added), then links. open must
// return a fresh reader of the whole message each time; ref names the
// message in rewritten links. Each step that can fail leaves the message
// as it was and says so in the notes: a message is never held back because
// it could not be rewritten.
func ApplyVerdict(r Rules, ref string, open func() io.Reader, v policy.Verdict) *Content {
	c := &Content{}
	strip := false
	if r.RemoveTrace && hasOurFields(open(), r.Limit) {
		_, n := removeOurFields(open(), r.Limit)
		r.Log.Warn("message arrived with X-Foxproxy header fields foxproxy did not write; removed them", zap.Int("fields", n))
		c.Notes = append(c.Notes, fmt.Sprintf("removed=%d-forged-fields", n))
		strip = true
	}
	c.Open = func() io.Reader {
		m := open()
		if strip {
			m, _ = removeOurFields(m, r.Limit)
		}
		if v.SubjectTag != "" {
			m = removeSubjectTag(m, v.SubjectTag, r.Limit)
		}
		if v.SubjectPrefix != "" {
			m = prefixSubject(m, PrintableText(v.SubjectPrefix)+" ", r.Limit)
		}
		return m
	}
	if !v.RewriteLinks {
		return c
	}
	if r.Links == nil {
		// Configuration validation makes this unreachable; be loud if not.
		r.Log.Error("a rule rewrites links but no click service is configured; delivering links as they are")
		c.Notes = append(c.Notes, "links=not-rewritten:unconfigured")
		return c
	}
	w := spool.NewWriter(r.Spool)
	note, err := r.Links.RewriteLinks(ref, c.Open(), w)
	var rewritten *spool.Message
	if err == nil {
		rewritten, err = w.Finish()
	}
	if err != nil {
		w.Discard()
		r.Log.Warn("cannot rewrite links; delivering them as they are", zap.Error(err))
		c.Notes = append(c.Notes, "links=not-rewritten:error")
		return c
	}
	c.Notes = append(c.Notes, note)
	c.Open = rewritten.Open
	c.AddCloser(func() { rewritten.Close() })
	return c
}

// removeSubjectTag removes the first occurrence of tag (matched without
// regard to case) from the Subject field's first line, and the blank that
// followed it. Only the header block, read up to limit bytes, is touched.
func removeSubjectTag(r io.Reader, lowerTag string, limit int64) io.Reader {
	return editHeaderBlock(r, limit, func(line []byte) []byte {
		if len(line) < 8 || !bytes.EqualFold(line[:8], []byte("subject:")) {
			return line
		}
		i := bytes.Index(bytes.ToLower(line), []byte(lowerTag))
		if i < 8 {
			return line
		}
		rest := line[i+len(lowerTag):]
		if len(rest) > 0 && rest[0] == ' ' {
			rest = rest[1:]
		} else if i > 8 && line[i-1] == ' ' {
			i-- // a tag at the end: drop the blank before it
		}
		return append(append([]byte(nil), line[:i]...), rest...)
	})
}

// editHeaderBlock passes every header line that starts a field (folded
// continuations and pieces of over-long lines pass unchanged) through edit,
// and streams the body through as is.
func editHeaderBlock(r io.Reader, limit int64, edit func(line []byte) []byte) io.Reader {
	br := bufio.NewReader(r)
	var head bytes.Buffer
	inLine := false
	for int64(head.Len()) < limit {
		line, err := br.ReadSlice('\n')
		start := !inLine
		inLine = errors.Is(err, bufio.ErrBufferFull)
		if start && len(bytes.TrimRight(line, "\r\n")) == 0 {
			head.Write(line)
			break
		}
		if start && !inLine {
			line = edit(line)
		}
		head.Write(line)
		if err != nil && !inLine {
			break
		}
	}
	return io.MultiReader(&head, br)
}
