package proxy

import (
	"context"
	"fmt"
	"io"
	"strings"

	"go.uber.org/zap"

	"github.com/foxproxy/foxproxy/delivery"
	"github.com/foxproxy/foxproxy/spool"
)

// Encryptor is the encryption gateway as the proxy uses it (package
// encryption, adapted in cmd/foxproxy).
type Encryptor interface {
	// Lookup finds each recipient's key, bounded in time by the gateway.
	Lookup(ctx context.Context, rcpts []string) []KeyLookup
	// Encrypt writes src, a whole message, encrypted for keys (all found,
	// all of one method) to dst.
	Encrypt(keys []KeyLookup, src io.Reader, dst io.Writer) error
	// Decrypt writes src decrypted to dst when it is encrypted for one of
	// rcpts whose private key the gateway holds.
	Decrypt(rcpts []string, src io.Reader, dst io.Writer) (Decrypted, error)
}

// Outcomes of a key lookup.
const (
	KeyFound       = "found"
	KeyAbsent      = "absent"      // definitively none (WKD 404, no certificate)
	KeyUnavailable = "unavailable" // the key service could not answer
)

// KeyLookup is one recipient's key lookup.
type KeyLookup struct {
	Rcpt    string
	Outcome string // KeyFound, KeyAbsent or KeyUnavailable
	Method  string // "openpgp" or "smime" when found
	Source  string // where the key came from, for the log
	Err     error  // why absent or unavailable; never key material
	Key     any    // the gateway's own handle
}

// Decrypted says what Decrypt did.
type Decrypted struct {
	Applicable bool   // the message was encrypted for a local recipient
	Decrypted  bool   // and dst holds the decrypted message
	Note       string // why not, when Applicable && !Decrypted
}

// EncryptionActions say what happens to a recipient's copy that cannot be
// encrypted: quarantine, tempfail, reject or deliver_unencrypted.
type EncryptionActions struct {
	KeyServiceUnavailable string
	KeyAbsent             string
}

// encryptPlan sorts an encrypt verdict's recipients by what happens to
// their copies.
type encryptPlan struct {
	plain       []string               // not selected for encryption: delivered as deliver would
	unencrypted []KeyLookup            // deliver_unencrypted, by explicit configuration
	byMethod    map[string][]KeyLookup // encrypted copies, one per method
	methods     []string               // byMethod's keys in first-seen order
	quarantine  []KeyLookup
	reject      []KeyLookup
	tempfail    []KeyLookup
}

func planEncryption(rcpts []string, lookups []KeyLookup, acts EncryptionActions) *encryptPlan {
	p := &encryptPlan{byMethod: map[string][]KeyLookup{}}
	selected := map[string]bool{}
	for _, l := range lookups {
		selected[l.Rcpt] = true
		action := "encrypt"
		switch l.Outcome {
		case KeyFound:
		case KeyAbsent:
			action = acts.KeyAbsent
		default:
			action = acts.KeyServiceUnavailable
		}
		switch action {
		case "encrypt":
			if _, ok := p.byMethod[l.Method]; !ok {
				p.methods = append(p.methods, l.Method)
			}
			p.byMethod[l.Method] = append(p.byMethod[l.Method], l)
		case "deliver_unencrypted":
			p.unencrypted = append(p.unencrypted, l)
		case "reject":
			p.reject = append(p.reject, l)
		case "tempfail":
			p.tempfail = append(p.tempfail, l)
		default: // quarantine, and anything unknown: the safe choice
			p.quarantine = append(p.quarantine, l)
		}
	}
	for _, r := range rcpts {
		if !selected[r] {
			p.plain = append(p.plain, r)
		}
	}
	return p
}

// delivered counts the selected recipients' copies by outcome once every
// copy has been delivered.
func (p *encryptPlan) delivered() map[string]int {
	m := map[string]int{}
	for _, ls := range p.byMethod {
		m[CopyEncrypted] += len(ls)
	}
	if n := len(p.quarantine); n > 0 {
		m[CopyQuarantined] = n
	}
	if n := len(p.unencrypted); n > 0 {
		m[CopyUnencrypted] = n
	}
	return m
}

func rcptsOf(ls []KeyLookup) []string {
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = l.Rcpt
	}
	return out
}

func whyNot(ls []KeyLookup) string {
	var b strings.Builder
	for i, l := range ls {
		if i == 3 {
			fmt.Fprintf(&b, " and %d more", len(ls)-3)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("<" + l.Rcpt + ">")
	}
	return b.String()
}

// copyToSend is one delivery of an encrypt verdict: some recipients, one
// content.
type copyToSend struct {
	rcpts []string
	c     *delivery.Content
}

// deliverEncrypted carries out an encrypt verdict. Every recipient's copy
// is handled by its own key lookup. A tempfail or reject of any copy
// answers for the whole message before anything is delivered (SMTP has one
// reply to the final dot); then copies that must wait for a key go to the
// quarantine, durably, before any copy leaves; then each group is
// delivered, encrypted once per method. Plaintext never goes to a recipient
// selected for encryption unless deliver_unencrypted was written in the
// configuration.
func (ss *session) deliverEncrypted(m *message) error {
	tx, v, sum := m.tx, m.verdict, m.sum
	enc := ss.rt.Encryption
	if enc == nil {
		ss.log.Error("a rule encrypts but no encryption is configured; deferring the message", zap.String("msg_id", tx.id))
		ss.ds.Reset()
		return errLocalProblem
	}
	lookups := enc.Lookup(m.ctx, v.EncryptRcpts)
	p := planEncryption(tx.rcpts, lookups, ss.rt.EncryptionActions)
	for _, l := range lookups {
		fields := []zap.Field{zap.String("msg_id", tx.id), zap.String("rcpt", l.Rcpt), zap.String("outcome", l.Outcome)}
		if l.Outcome == KeyFound {
			ss.log.Debug("encryption key", append(fields, zap.String("method", l.Method), zap.String("source", l.Source))...)
		} else {
			ss.log.Warn("no encryption key for recipient", append(fields, zap.Error(l.Err))...)
		}
	}
	if len(p.tempfail) > 0 {
		ss.ds.Reset()
		sum.encCopies = map[string]int{CopyTempfailed: len(p.tempfail)}
		return reply(451, [3]int{4, 7, 0}, sanitizeText("Error: no encryption key could be had for "+whyNot(p.tempfail)+" yet, try again later"))
	}
	if len(p.reject) > 0 {
		ss.ds.Reset()
		sum.encCopies = map[string]int{CopyRejected: len(p.reject)}
		return reply(550, [3]int{5, 7, 1}, sanitizeText("Error: message must be encrypted but there is no key for "+whyNot(p.reject)))
	}
	var notes []string
	if len(p.quarantine) > 0 {
		qid, err := ss.quarantineCopy(m, rcptsOf(p.quarantine))
		if err != nil {
			return err
		}
		sum.quarantineID = qid
		sum.encCopies = map[string]int{CopyQuarantined: len(p.quarantine)} // kept, whatever happens next
		notes = append(notes, fmt.Sprintf("quarantined=%d:%s", len(p.quarantine), qid))
	}
	for _, l := range p.unencrypted {
		ss.log.Warn("DELIVERING UNENCRYPTED: no encryption key and on_key_service_unavailable or on_key_absent is deliver_unencrypted",
			zap.String("msg_id", tx.id), zap.String("rcpt", l.Rcpt), zap.String("outcome", l.Outcome))
	}

	var copies []copyToSend
	defer func() {
		for _, c := range copies {
			c.c.Close()
		}
	}()
	for _, method := range p.methods {
		c, err := ss.encryptedContent(m, p.byMethod[method])
		if err != nil {
			ss.log.Error("cannot encrypt message; deferring it", zap.String("msg_id", tx.id), zap.String("method", method), zap.Error(err))
			ss.ds.Reset()
			return errLocalProblem
		}
		copies = append(copies, copyToSend{rcptsOf(p.byMethod[method]), c})
	}
	if plain := append(append([]string(nil), p.plain...), rcptsOf(p.unencrypted)...); len(plain) > 0 {
		c := ss.deliveryContent(m)
		if len(p.unencrypted) > 0 {
			c.Notes = append(c.Notes, "encrypted=no:deliver_unencrypted")
		}
		copies = append(copies, copyToSend{plain, c})
	}
	if len(copies) == 0 {
		ss.ds.Reset()
		return reply(250, [3]int{2, 0, 0}, "Ok: quarantined as "+sum.quarantineID+" until encryption keys can be had")
	}
	var queued []string
	for i, cp := range copies {
		// The upstream's transaction is open downstream with every
		// recipient. When one copy goes to all of them it is delivered
		// there; otherwise each copy gets a transaction of its own.
		text, err := ss.sendCopy(m, cp, len(copies) == 1 && len(cp.rcpts) == len(tx.rcpts), notes)
		if err != nil {
			if i > 0 {
				ss.log.Error("delivery of a later copy failed after earlier copies were delivered; the upstream will retry all of them",
					zap.String("msg_id", tx.id), zap.Strings("delivered", queued), zap.Error(err))
			}
			return ss.downstreamError("DATA", tx, err)
		}
		if id := delivery.QueuedAs(text); id != "" {
			queued = append(queued, id)
		}
	}
	sum.downstreamID = strings.Join(queued, ",")
	sum.encCopies = p.delivered()
	if len(copies) == 1 && len(p.quarantine) == 0 {
		return reply(250, [3]int{2, 0, 0}, "Ok: queued as "+sum.downstreamID)
	}
	text := "Ok: queued as " + sum.downstreamID
	if sum.quarantineID != "" {
		text += "; quarantined as " + sum.quarantineID + " for " + fmt.Sprint(len(p.quarantine)) + " recipient(s) until their keys can be had"
	}
	return reply(250, [3]int{2, 0, 0}, sanitizeText(text))
}

// encryptedContent is the message as delivered to keys' recipients: the
// verdict's changes (subject tag removed, links rewritten) applied first,
// then encrypted.
func (ss *session) encryptedContent(m *message, keys []KeyLookup) (*delivery.Content, error) {
	src := ss.deliveryContent(m)
	defer src.Close()
	w := spool.NewWriter(spool.Options{
		Dir:             ss.rt.Config.Spool.Dir,
		MemoryThreshold: int64(ss.rt.Config.Spool.MemoryThreshold),
		MaxBytes:        3*ss.s.maxMessageBytes + 1<<20, // base64 and armour grow it by a third
	})
	if err := ss.rt.Encryption.Encrypt(keys, src.Open(), w); err != nil {
		w.Discard()
		return nil, err
	}
	out, err := w.Finish()
	if err != nil {
		w.Discard()
		return nil, err
	}
	c := &delivery.Content{Open: out.Open, Notes: append(src.Notes, "encrypted="+keys[0].Method)}
	c.AddCloser(func() { out.Close() })
	return c, nil
}

// sendCopy delivers one copy: on the upstream's open transaction when
// whole is true, else in a transaction of its own for cp.rcpts.
func (ss *session) sendCopy(m *message, cp copyToSend, whole bool, notes []string) (string, error) {
	tx := m.tx
	if ss.ds == nil || ss.ds.Broken() || (whole && !ss.ds.InTransaction()) {
		return "", errDownstreamFailed
	}
	if !whole {
		ss.ds.Reset()
		if err := ss.ds.Mail(tx.from, tx.opts, ss.forwardAttrs(tx)); err != nil {
			return "", err
		}
		for _, r := range cp.rcpts {
			if err := ss.ds.Rcpt(r, tx.rcptOpts[r]); err != nil {
				return "", err
			}
		}
	}
	head := delivery.Header(ss.rt.Config.HostnameOrDefault(), tx.id, m.verdict, m.findings, append(append(append([]string(nil), tx.notes...), cp.c.Notes...), notes...)...)
	return ss.ds.Data([]byte(head), cp.c.Open(), ss.s.now().Add(ss.rt.Config.Timeouts.DownstreamData.D()))
}

// quarantineCopy keeps the copy for rcpts as it would have been encrypted
// (subject tag removed, links rewritten), marked so that a release
// encrypts it: a release never sends it in clear by accident.
func (ss *session) quarantineCopy(m *message, rcpts []string) (string, error) {
	tx := m.tx
	if ss.rt.Quarantine == nil {
		ss.log.Error("an encryption exception quarantines but no quarantine is configured; deferring the message",
			zap.String("msg_id", tx.id))
		ss.ds.Reset()
		return "", errLocalProblem
	}
	c := ss.deliveryContent(m)
	defer c.Close()
	w := spool.NewWriter(spool.Options{
		Dir:             ss.rt.Config.Spool.Dir,
		MemoryThreshold: int64(ss.rt.Config.Spool.MemoryThreshold),
		MaxBytes:        2*ss.s.maxMessageBytes + 1<<20,
	})
	_, err := io.Copy(w, c.Open())
	var prepared *spool.Message
	if err == nil {
		prepared, err = w.Finish()
	}
	if err != nil {
		w.Discard()
		ss.log.Error("cannot prepare the copy to quarantine; deferring the message", zap.String("msg_id", tx.id), zap.Error(err))
		ss.ds.Reset()
		return "", errLocalProblem
	}
	defer prepared.Close()
	part := *m.ptx
	part.Rcpts = rcpts
	part.Message = prepared
	it := ss.quarantineItem(m)
	it.Tx, it.RcptParams = &part, tx.rcptParams(rcpts)
	it.Verdict.EncryptRcpts = rcpts
	it.Reason = "encryption exception: no key could be had for " + whyNot(lookupsFor(rcpts))
	qid, err := ss.rt.Quarantine.Quarantine(m.ctx, it)
	if err != nil {
		ss.log.Error("cannot quarantine message; deferring it", zap.String("msg_id", tx.id), zap.Error(err))
		ss.ds.Reset()
		return "", errLocalProblem
	}
	return qid, nil
}

func lookupsFor(rcpts []string) []KeyLookup {
	out := make([]KeyLookup, len(rcpts))
	for i, r := range rcpts {
		out[i].Rcpt = r
	}
	return out
}

// decryptInbound decrypts a message encrypted for a local recipient whose
// private key the gateway holds, and returns it; nil leaves the message as
// it came (not encrypted, not for us, or not decryptable: then with a note
// in the trace header, and delivered untouched).
func (ss *session) decryptInbound(tx *transaction, msg *spool.Message) *spool.Message {
	enc := ss.rt.Encryption
	if enc == nil {
		return nil
	}
	w := spool.NewWriter(spool.Options{
		Dir:             ss.rt.Config.Spool.Dir,
		MemoryThreshold: int64(ss.rt.Config.Spool.MemoryThreshold),
		MaxBytes:        ss.s.maxMessageBytes,
	})
	res, err := enc.Decrypt(tx.rcpts, msg.Open(), w)
	if err == nil && res.Decrypted {
		plain, ferr := w.Finish()
		if ferr == nil {
			tx.notes = append(tx.notes, "decrypted=openpgp")
			ss.log.Info("message decrypted for a local recipient", zap.String("msg_id", tx.id))
			return plain
		}
		err = ferr
	}
	w.Discard()
	switch {
	case err != nil:
		ss.log.Warn("cannot decrypt message; delivering it as it came", zap.String("msg_id", tx.id), zap.Error(err))
		tx.notes = append(tx.notes, "decrypted=no:error")
	case res.Applicable:
		ss.log.Info("cannot decrypt message; delivering it as it came", zap.String("msg_id", tx.id), zap.String("why", res.Note))
		tx.notes = append(tx.notes, "decrypted=no:"+res.Note)
	}
	return nil
}
