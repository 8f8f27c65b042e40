package proxy

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

// content is a message as it will be delivered: the spooled original with
// the verdict's changes applied, plus notes for the trace header.
type content struct {
	open    func() io.Reader
	notes   []string
	closers []func()
}

func (c *content) close() {
	for _, f := range c.closers {
		f()
	}
}

// deliveryContent applies the verdict's changes to a message's content, in
// the order a reader would expect: the subject first (tag removed, prefix
// added), then links. Each step that can fail leaves the message as it was
// and says so in the trace header: a message is never held back because
// it could not be rewritten.
func (ss *session) deliveryContent(tx *transaction, msg *spool.Message, v policy.Verdict) *content {
	limit := int64(ss.rt.Config.Limits.MaxHeaderBytes)
	c := &content{}
	strip := ss.rt.Config.RemoveIncomingTrace
	if strip {
		if _, n := withoutForgedTrace(msg.Open, limit); n > 0 {
			ss.log.Warn("message arrived with X-Foxproxy header fields foxproxy did not write; removed them",
				zap.String("msg_id", tx.id), zap.Int("fields", n))
			c.notes = append(c.notes, fmt.Sprintf("removed=%d-forged-fields", n))
		} else {
			strip = false // nothing to remove: the message goes as it came
		}
	}
	c.open = func() io.Reader {
		var r io.Reader = msg.Open()
		if strip {
			r, _ = removeOurFields(r, limit)
		}
		if v.SubjectTag != "" {
			r = removeSubjectTag(r, v.SubjectTag, limit)
		}
		if v.SubjectPrefix != "" {
			r = prefixSubject(r, sanitizeText(v.SubjectPrefix)+" ", limit)
		}
		return r
	}
	if !v.RewriteLinks {
		return c
	}
	if ss.rt.Links == nil {
		// Configuration validation makes this unreachable; be loud if not.
		ss.log.Error("a rule rewrites links but no click service is configured; delivering links as they are",
			zap.String("msg_id", tx.id))
		c.notes = append(c.notes, "links=not-rewritten:unconfigured")
		return c
	}
	w := spool.NewWriter(spool.Options{
		Dir:             ss.rt.Config.Spool.Dir,
		MemoryThreshold: int64(ss.rt.Config.Spool.MemoryThreshold),
		// Rewritten links are longer; the bound only stops a runaway.
		MaxBytes: 2*ss.s.maxMessageBytes + 1<<20,
	})
	note, err := ss.rt.Links.RewriteLinks(tx.id, c.open(), w)
	var rewritten *spool.Message
	if err == nil {
		rewritten, err = w.Finish()
	}
	if err != nil {
		w.Discard()
		ss.log.Warn("cannot rewrite links; delivering them as they are", zap.String("msg_id", tx.id), zap.Error(err))
		c.notes = append(c.notes, "links=not-rewritten:error")
		return c
	}
	c.notes = append(c.notes, note)
	c.open = rewritten.Open
	c.closers = append(c.closers, func() { rewritten.Close() })
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
