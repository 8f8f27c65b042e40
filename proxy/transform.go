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

// contentRules is what applying a verdict to a message's content needs.
type contentRules struct {
	links       LinkRewriter // nil: no click service
	removeTrace bool         // remove_incoming_trace
	limit       int64        // header bytes examined
	spool       spool.Options
	log         *zap.Logger // with the message's ID
}

// deliveryContent applies the verdict's changes to a message's content.
func (ss *session) deliveryContent(tx *transaction, msg *spool.Message, v policy.Verdict) *content {
	cfg := ss.rt.Config
	return applyVerdict(contentRules{
		links:       ss.rt.Links,
		removeTrace: cfg.RemoveIncomingTrace,
		limit:       int64(cfg.Limits.MaxHeaderBytes),
		// Rewritten links are longer; the bound only stops a runaway.
		spool: spool.Options{Dir: cfg.Spool.Dir, MemoryThreshold: int64(cfg.Spool.MemoryThreshold), MaxBytes: 2*ss.s.maxMessageBytes + 1<<20},
		log:   ss.log.With(zap.String("msg_id", tx.id)),
	}, tx.id, msg.Open, v)
}

// applyVerdict is the content a verdict delivers, for live mail and held
// mail alike, in the order a reader would expect: forged X-Foxproxy fields
// removed, the subject (tag removed, prefix added), then links. open must
// return a fresh reader of the whole message each time. Each step that can
// fail leaves the message as it was and says so in the trace header: a
// message is never held back because it could not be rewritten.
func applyVerdict(r contentRules, ref string, open func() io.Reader, v policy.Verdict) *content {
	c := &content{}
	strip := false
	if r.removeTrace && hasOurFields(open(), r.limit) {
		_, n := removeOurFields(open(), r.limit)
		r.log.Warn("message arrived with X-Foxproxy header fields foxproxy did not write; removed them", zap.Int("fields", n))
		c.notes = append(c.notes, fmt.Sprintf("removed=%d-forged-fields", n))
		strip = true
	}
	c.open = func() io.Reader {
		m := open()
		if strip {
			m, _ = removeOurFields(m, r.limit)
		}
		if v.SubjectTag != "" {
			m = removeSubjectTag(m, v.SubjectTag, r.limit)
		}
		if v.SubjectPrefix != "" {
			m = prefixSubject(m, sanitizeText(v.SubjectPrefix)+" ", r.limit)
		}
		return m
	}
	if !v.RewriteLinks {
		return c
	}
	if r.links == nil {
		// Configuration validation makes this unreachable; be loud if not.
		r.log.Error("a rule rewrites links but no click service is configured; delivering links as they are")
		c.notes = append(c.notes, "links=not-rewritten:unconfigured")
		return c
	}
	w := spool.NewWriter(r.spool)
	note, err := r.links.RewriteLinks(ref, c.open(), w)
	var rewritten *spool.Message
	if err == nil {
		rewritten, err = w.Finish()
	}
	if err != nil {
		w.Discard()
		r.log.Warn("cannot rewrite links; delivering them as they are", zap.Error(err))
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
