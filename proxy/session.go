package proxy

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/emersion/go-smtp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/foxproxy/foxproxy/delivery"
	"github.com/foxproxy/foxproxy/lists"
	"github.com/foxproxy/foxproxy/pipeline"
	"github.com/foxproxy/foxproxy/policy"
	"github.com/foxproxy/foxproxy/spool"
)

// session is one upstream SMTP connection. go-smtp calls its methods from
// the connection's goroutine (Data, for BDAT, from one more goroutine while
// the connection goroutine waits), except Logout, which Server.Close calls
// from its own: see busy.
type session struct {
	s    *Server
	rt   *Runtime
	conn *smtp.Conn
	g    *guardConn
	log  *zap.Logger
	peer netip.Addr
	port string
	ds   *delivery.Conn
	tx   *transaction

	released bool // Logout gave rt back

	// busy is held while a command handler runs. go-smtp's Server.Close
	// calls Logout from its own goroutine, while the connection's
	// goroutine may be in Data (a drain that ran out of time); Logout
	// then only asks for the logout (logoutAsked) and cuts the
	// downstream, and the handler logs out when it returns.
	busy        sync.Mutex
	logoutAsked atomic.Bool
	dsAbort     atomic.Pointer[delivery.Conn] // the downstream, for that cut
}

// transaction is one MAIL ... end-of-data exchange.
type transaction struct {
	id           string
	start        time.Time
	from         string
	opts         *smtp.MailOptions
	rcpts        []string
	xfwd         Xforward
	client       netip.Addr
	clientSource string // "xforward", "received" or "peer"
	// notes are trace-header tokens about what was done to the message
	// before the stages saw it (e.g. decrypted).
	notes []string
	// rcptOpts are the RCPT parameters (DSN) by recipient, for copies
	// delivered in transactions of their own.
	rcptOpts map[string]*smtp.RcptOptions
	// envelopeChecked: the first RCPT has asked the policy whether the
	// envelope alone refuses the message (before_queue; see
	// refuseBeforeData); early is its answer, nil to go on to DATA.
	envelopeChecked bool
	early           *earlyAnswer
}

// earlyAnswer is a verdict reached before DATA: every RCPT of the
// transaction gets its reply, and the message's log line is written when
// the transaction ends.
type earlyAnswer struct {
	verdict  policy.Verdict
	reply    *smtp.SMTPError
	findings []pipeline.Finding
	stages   time.Duration
	queueID  string
	refused  int      // RCPTs answered with reply
	rcpts    []string // those RCPTs' addresses, for the message log
}

var _ smtp.Session = (*session)(nil)

func (s *Server) newSession(c *smtp.Conn) (smtp.Session, error) {
	g, ok := c.Conn().(*guardConn)
	if !ok {
		// Only possible if someone serves go-smtp without our listener.
		return nil, errLocalProblem
	}
	peer := addrOf(c.Conn().RemoteAddr())
	_, port, _ := net.SplitHostPort(c.Conn().RemoteAddr().String())
	ss := &session{s: s, rt: s.acquireRuntime(), conn: c, g: g, peer: peer, port: port}
	ss.log = s.log.With(zap.String("session", newID()), zap.Stringer("peer", peer))
	return ss, nil
}

func newID() string {
	var b [10]byte
	rand.Read(b[:])
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// Mail mirrors MAIL to the downstream: its answer is the answer.
func (ss *session) mail(from string, opts *smtp.MailOptions) error {
	if ss.tx != nil {
		return errNestedMail
	}
	if hasControlChar(from) {
		ss.log.Info("refused MAIL: control character in sender address", zap.String("from", from))
		ss.s.obs.Refused("MAIL", errSenderControlChar.Code)
		return errSenderControlChar
	}
	if opts.Size > ss.s.maxMessageBytes {
		return errTooBig
	}
	tx := &transaction{id: newID(), start: ss.s.now(), from: from, opts: opts, xfwd: ss.g.Xforward()}
	tx.client, tx.clientSource = ss.peer, "peer"
	if a, ok := tx.xfwd.ClientAddr(); ok {
		tx.client, tx.clientSource = a, "xforward"
	}
	if tx.clientSource == "xforward" || !ss.g.cfg.trustedXforward {
		// The client is known now: let stages (ERS) start their lookups
		// while the envelope and content are still coming.
		ss.rt.Pipeline.PrefetchClient(tx.client)
	}
	err := ss.withDownstream(func(d *delivery.Conn) error {
		return d.Mail(from, opts, ss.forwardAttrs(tx))
	})
	if err != nil {
		r := ss.downstreamError("MAIL", tx, err)
		ss.s.obs.Refused("MAIL", r.(*smtp.SMTPError).Code)
		return r
	}
	if bad := ss.ds.XforwardProblems(); len(bad) > 0 {
		ss.log.Warn("downstream refused XFORWARD; its log will show foxproxy as the client",
			zap.String("command", bad[0].Command), zap.Int("code", bad[0].Code), zap.String("reply", bad[0].Reply))
	}
	ss.tx = tx
	return nil
}

// forwardAttrs is what the downstream hears about the original client:
// what the upstream forwarded, else the client foxproxy itself sees.
func (ss *session) forwardAttrs(tx *transaction) Xforward {
	if !tx.xfwd.IsZero() {
		return tx.xfwd
	}
	proto := "SMTP"
	if ss.conn.Hostname() != "" {
		proto = "ESMTP" // go-smtp does not tell HELO from EHLO; EHLO is the norm
	}
	return Xforward{Name: "[UNAVAILABLE]", Addr: ss.peer.String(), Port: ss.port, Proto: proto, Helo: ss.conn.Hostname()}
}

// withDownstream runs fn on the session's downstream connection, taking
// one from the server's pool (an idle connection that answered RSET, or a
// new one) if the session holds none. A reused connection that turns out
// dead at fn (the downstream closed it after the RSET) is replaced by a
// fresh dial and fn runs once more: nothing of the transaction was
// accepted yet, so the message costs one retry, never a 4xx.
func (ss *session) withDownstream(fn func(*delivery.Conn) error) error {
	reused := true // the session's own connection from an earlier command
	if ss.ds == nil || ss.ds.Broken() {
		var err error
		if reused, err = ss.takeDownstream(); err != nil {
			return err
		}
	}
	err := fn(ss.ds)
	if err != nil && ss.ds.Broken() && reused {
		ss.log.Debug("reused downstream connection failed; reconnecting", zap.Error(err))
		if err := ss.dial(); err != nil {
			return err
		}
		err = fn(ss.ds)
	}
	return err
}

// takeDownstream gets the session a connection from the pool. A dial is
// bounded by timeouts.downstream_connect through DialOptions (connecting,
// the greeting and EHLO), so no context deadline is made for every
// transaction that finds an idle connection.
func (ss *session) takeDownstream() (reused bool, err error) {
	ss.dropDownstream()
	c, reused, err := ss.s.pool.Get(context.Background(), ss.dialOptions())
	if err != nil {
		return false, &dialError{err}
	}
	ss.setDownstream(c)
	return reused, nil
}

// dial gets the session a new connection, past the pool's idle ones.
func (ss *session) dial() error {
	ss.dropDownstream()
	ctx, cancel := context.WithTimeout(context.Background(), ss.rt.Config.Timeouts.DownstreamConnect.D())
	defer cancel()
	c, err := ss.s.pool.Dial(ctx, ss.dialOptions())
	if err != nil {
		return &dialError{err}
	}
	ss.setDownstream(c)
	return nil
}

func (ss *session) dialOptions() delivery.DialOptions {
	cfg := ss.rt.Config
	return delivery.DialOptions{
		Addr:           cfg.Downstream,
		Hostname:       cfg.HostnameOrDefault(),
		ConnectTimeout: cfg.Timeouts.DownstreamConnect.D(),
		CommandTimeout: cfg.Timeouts.DownstreamCommand.D(),
		DataTimeout:    cfg.Timeouts.DownstreamData.D(),
	}
}

func (ss *session) setDownstream(c *delivery.Conn) {
	ss.ds = c
	ss.dsAbort.Store(c)
}

// releaseDownstream ends the session's use of its connection at the end of
// a transaction: the pool keeps it if the transaction ended cleanly.
func (ss *session) releaseDownstream() {
	if ss.ds != nil {
		ss.dsAbort.Store(nil)
		ss.s.pool.Put(ss.ds)
		ss.ds = nil
	}
}

// dropDownstream closes the session's connection, if any, without giving
// it back: it is broken or about to be replaced.
func (ss *session) dropDownstream() {
	if ss.ds != nil {
		ss.dsAbort.Store(nil)
		ss.ds.Close()
		ss.ds = nil
	}
}

type dialError struct{ err error }

func (e *dialError) Error() string { return "connect to downstream: " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// downstreamError logs what went wrong with the downstream and picks the
// reply: the downstream's own 4xx/5xx to a command of the transaction is
// mirrored, anything else (connecting included) is 4xx.
func (ss *session) downstreamError(stage string, tx *transaction, err error) error {
	var de *dialError
	var se *smtp.SMTPError
	if !errors.As(err, &de) && errors.As(err, &se) {
		ss.log.Info("downstream refused "+stage, zap.String("msg_id", tx.id),
			zap.Int("code", se.Code), zap.String("reply", se.Message))
		return mirrored(se)
	}
	ss.log.Warn("downstream failed at "+stage, zap.String("msg_id", tx.id),
		zap.String("downstream", ss.rt.Config.Downstream), zap.Error(err))
	if de != nil {
		// Also a 4xx or 5xx greeting or EHLO reply: it refuses the
		// connection, not this message, so it is never mirrored (a 5xx
		// would bounce the mail); Postfix's own smtp client skips a 5xx
		// greeting too (smtp_skip_5xx_greeting).
		return errDownstreamUnavailable
	}
	return errDownstreamFailed
}

// Rcpt mirrors RCPT to the downstream, so a recipient is refused exactly
// the way the downstream refuses it.
func (ss *session) rcpt(to string, opts *smtp.RcptOptions) error {
	tx := ss.tx
	if tx == nil {
		return errNoTransaction
	}
	if hasControlChar(to) {
		ss.log.Info("refused RCPT: control character in recipient address", zap.String("msg_id", tx.id), zap.String("to", to))
		ss.s.obs.Refused("RCPT", errRecipientControlChar.Code)
		return errRecipientControlChar
	}
	if !tx.envelopeChecked {
		tx.envelopeChecked = true
		tx.early = ss.refuseBeforeData(tx)
	}
	if tx.early != nil {
		// Not forwarded: the downstream never hears of the recipient,
		// and the client never sends the body.
		// A refused RCPT does not count towards go-smtp's
		// max_recipients, so only max_commands ends them: the list
		// for the message log keeps at most max_recipients.
		tx.early.refused++
		if len(tx.early.rcpts) < ss.rt.Config.Limits.MaxRecipients {
			tx.early.rcpts = append(tx.early.rcpts, to)
		}
		ss.s.obs.Refused("RCPT", tx.early.reply.Code)
		return tx.early.reply
	}
	if ss.ds == nil || ss.ds.Broken() {
		ss.s.obs.Refused("RCPT", errDownstreamFailed.Code)
		return errDownstreamFailed
	}
	if err := ss.ds.Rcpt(to, opts); err != nil {
		r := ss.downstreamError("RCPT", tx, err)
		ss.s.obs.Refused("RCPT", r.(*smtp.SMTPError).Code)
		return r
	}
	tx.rcpts = append(tx.rcpts, to)
	if tx.rcptOpts == nil {
		tx.rcptOpts = map[string]*smtp.RcptOptions{}
	}
	tx.rcptOpts[to] = opts
	return nil
}

// refuseBeforeData answers a message at RCPT when its envelope alone
// decides a reject or tempfail, as the appliance's sender filter answered a
// client of bad reputation before the body was sent. Only a before-queue
// foxproxy does: it talks to the sending client in real time, while after
// the queue Postfix has already accepted the message and a refusal at RCPT
// would only become a bounce, as one after DATA does.
//
// The stages that can judge the envelope (ERS, whose lookups started at
// MAIL, and the client and sender lists) run here, ERS within its budget;
// the policy then decides only if no rule that needs the content could
// decide first (policy.EnvelopeDecider). A lookup that was skipped or
// disabled, a client that only the Received header will name, or a rule
// that needs the content: nil, and the message goes on to DATA, where the
// stages run again (ERS from its cache) as they always did.
func (ss *session) refuseBeforeData(tx *transaction) *earlyAnswer {
	cfg := ss.rt.Config
	d, ok := ss.rt.Policy.(policy.EnvelopeDecider)
	if cfg.Deployment != "before_queue" || !ok {
		return nil
	}
	if tx.clientSource == "peer" && ss.g.cfg.trustedXforward && cfg.ClientFromReceived {
		return nil // the client is known only after DATA (pipelineTransaction)
	}
	ptx := &pipeline.Transaction{
		ID:         tx.id,
		Client:     tx.client,
		ClientName: tx.xfwd.Name,
		Helo:       tx.xfwd.Helo,
		QueueID:    tx.xfwd.Ident,
		From:       tx.from,
		Rcpts:      tx.rcpts,
	}
	if ptx.Helo == "" {
		ptx.Helo = ss.conn.Hostname()
	}
	if delivery.Unavailable(ptx.QueueID) {
		ptx.QueueID = ""
	}
	ctx, cancel := context.WithTimeout(lists.NewContext(context.Background(), ss.rt.Lists.Current()), cfg.Timeouts.Stages.D())
	defer cancel()
	start := time.Now()
	findings, err := ss.rt.Pipeline.RunEnvelope(ctx, ptx)
	stages := time.Since(start)
	if err != nil {
		// After DATA the same stage runs again and its failure gets the
		// usual 4xx; here it only costs the early answer.
		ss.log.Error("envelope check failed; deciding after DATA", zap.String("msg_id", tx.id), zap.Error(err))
		return nil
	}
	v, decided := d.DecideBeforeData(ptx, findings)
	if !decided || (v.Action != policy.Reject && v.Action != policy.Tempfail) {
		return nil
	}
	return &earlyAnswer{verdict: v, reply: verdictReply(v), findings: findings, stages: stages, queueID: ptx.QueueID}
}

// endTransaction writes the log line of a message answered before DATA
// (one answered after DATA has had its line from Data).
func (ss *session) endTransaction() {
	tx := ss.tx
	if tx == nil || tx.early == nil {
		return
	}
	e := tx.early
	ss.logSummary(&summary{tx: tx, queueID: e.queueID, verdict: string(e.verdict.Action), rule: e.verdict.Rule,
		findings: e.findings, stages: e.stages, reply: e.reply, answeredAtRcpt: true, rcpts: e.refused,
		rcptList: e.rcpts})
}

// hasControlChar reports a control character: C0 and DEL, which RFC 5321
// §4.1.2 keeps out of a Mailbox, and the C1 controls, which no SMTPUTF8
// address needs. go-smtp's address parser lets them through, and a NUL or
// CR in an address could split it in a downstream's log or in a header.
func hasControlChar(s string) bool {
	return strings.IndexFunc(s, unicode.IsControl) >= 0
}

// reset ends the transaction, here and downstream (go-smtp calls Reset for
// RSET and after every DATA), and gives the downstream connection back to
// the pool: between transactions a session holds none.
func (ss *session) reset() {
	ss.endTransaction()
	ss.tx = nil
	if ss.ds != nil {
		ss.ds.Reset()
		ss.releaseDownstream()
	}
}

// Mail, Rcpt, Reset and Data are the go-smtp handlers: each runs under
// busy, and logs out on its way out when Logout was asked meanwhile.
func (ss *session) Mail(from string, opts *smtp.MailOptions) error {
	ss.enter()
	defer ss.leave()
	return ss.mail(from, opts)
}

func (ss *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	ss.enter()
	defer ss.leave()
	return ss.rcpt(to, opts)
}

func (ss *session) Reset() {
	ss.enter()
	defer ss.leave()
	ss.reset()
}

func (ss *session) Data(r io.Reader) error {
	ss.enter()
	defer ss.leave()
	return ss.data(r)
}

func (ss *session) enter() { ss.busy.Lock() }

// leave ends a handler. A Logout asked while it ran (it set logoutAsked
// before it tried busy) is carried out here; logout is idempotent, so a
// Logout that got busy after the unlock does no harm.
func (ss *session) leave() {
	ss.busy.Unlock()
	if ss.logoutAsked.Load() && ss.busy.TryLock() {
		ss.logout()
		ss.busy.Unlock()
	}
}

// Logout ends the session. go-smtp calls it from the connection's
// goroutine when the client leaves, and from Server.Close's goroutine
// while a handler may still run: then the downstream connection is cut,
// so that the handler ends soon, and the handler logs out (leave).
func (ss *session) Logout() error {
	ss.logoutAsked.Store(true)
	if !ss.busy.TryLock() {
		if c := ss.dsAbort.Load(); c != nil {
			c.Abort()
		}
		return nil
	}
	defer ss.busy.Unlock()
	ss.logout()
	return nil
}

// logout ends the session: the transaction's log line, the downstream
// connection back to the pool, the runtime. Only under busy.
func (ss *session) logout() {
	ss.endTransaction()
	ss.tx = nil
	if ss.ds != nil {
		ss.ds.Reset()
		ss.releaseDownstream()
	}
	if !ss.released {
		ss.released = true
		ss.s.releaseRuntime(ss.rt)
	}
}

// Data receives the content, checks it and carries out the verdict. Every
// return value is an *smtp.SMTPError made in reply.go (see there why).
func (ss *session) data(r io.Reader) (result error) {
	if c := ss.g.Content(); c != nil {
		r = c // DATA: the guard delivers the content (see content.go)
	}
	tx := ss.tx
	if tx == nil {
		io.Copy(io.Discard, r)
		return errNoTransaction
	}
	sum := &summary{tx: tx}
	defer func() {
		if v := recover(); v != nil {
			ss.log.Error("internal error while handling a message", zap.String("msg_id", tx.id),
				zap.Any("panic", v), zap.ByteString("stack", debug.Stack()))
			result = errLocalProblem
			sum.verdict = "error"
		}
		se, _ := result.(*smtp.SMTPError)
		sum.reply = se
		ss.logSummary(sum)
	}()

	msg, err := ss.receive(r, tx)
	if err != nil {
		sum.verdict = "aborted" // never complete: the client left, or spooling failed
		if err == errTooBig {
			sum.verdict = "refused"
		}
		return err
	}
	ss.s.obs.Spooled(msg.Size())
	sum.messageID = messageID(msg.Open(), int64(ss.rt.Config.Limits.MaxHeaderBytes))
	received := msg
	defer func() {
		received.Close()
		ss.s.obs.Spooled(-received.Size())
	}()
	sum.size = msg.Size()
	if t := ss.g.Taint(); t.any() {
		ss.log.Warn("message refused: line ending abuse in content (possible SMTP smuggling)",
			zap.String("msg_id", tx.id), zap.String("found", t.String()))
		sum.verdict = "refused"
		if t.bareCR || t.bareLF {
			return errBareNL
		}
		return errNULInData
	}

	if plain := ss.decryptInbound(tx, msg); plain != nil {
		// The stages check, and the recipients get, what the sender
		// wrote: a scanner cannot look inside an encrypted message.
		defer plain.Close()
		msg = plain
	}
	ptx := ss.pipelineTransaction(tx, msg, sum)
	// Every stage judges the message by the lists in force now.
	ctx, cancel := context.WithTimeout(lists.NewContext(context.Background(), ss.rt.Lists.Current()), ss.rt.Config.Timeouts.Stages.D())
	defer cancel()
	stagesStart := time.Now()
	findings, err := ss.rt.Pipeline.Run(ctx, ptx)
	sum.stages = time.Since(stagesStart)
	sum.findings = findings
	if err != nil {
		var pe *pipeline.PanicError
		if errors.As(err, &pe) {
			ss.log.Error("stage panicked", zap.String("msg_id", tx.id), zap.String("stage", pe.Stage),
				zap.Any("panic", pe.Value), zap.ByteString("stack", pe.Stack))
		}
		sum.verdict = "error"
		return errLocalProblem
	}
	v := ss.rt.Policy.Decide(ptx, findings)
	sum.verdict, sum.rule = string(v.Action), v.Rule
	return ss.execute(&message{ctx: ctx, tx: tx, ptx: ptx, content: msg, findings: findings, verdict: v, sum: sum})
}

// message is one received message from its checks on: what carrying out
// its verdict needs, passed as one (session.go, hold.go, encrypt.go).
type message struct {
	// ctx bounds the checks and the verdict's lookups and storage
	// (timeouts.stages); the downstream has timeouts of its own.
	ctx context.Context
	tx  *transaction
	ptx *pipeline.Transaction // what the stages and the policy saw
	// content is the message as received, or decrypted when it was
	// encrypted for a local recipient.
	content  *spool.Message
	findings []pipeline.Finding
	verdict  policy.Verdict
	sum      *summary // the message's log line, filled in on the way
}

// receive spools the content. Errors are already replies.
func (ss *session) receive(r io.Reader, tx *transaction) (*spool.Message, error) {
	cfg := ss.rt.Config
	w := spool.NewWriter(spool.Options{
		Dir:             cfg.Spool.Dir,
		MemoryThreshold: int64(cfg.Spool.MemoryThreshold),
		MaxBytes:        ss.s.maxMessageBytes,
	})
	readErr, writeErr := copyContent(w, r)
	if readErr == nil && writeErr == nil {
		m, err := w.Finish()
		if err == nil {
			return m, nil
		}
		writeErr = err
	}
	w.Discard()
	var se *smtp.SMTPError
	switch {
	case errors.As(readErr, &se) && se.Code == 552, errors.Is(writeErr, spool.ErrTooLarge):
		ss.log.Info("message refused: larger than max_message_bytes", zap.String("msg_id", tx.id),
			zap.Int64("max_message_bytes", ss.s.maxMessageBytes))
		return nil, errTooBig
	case writeErr != nil:
		ss.log.Error("cannot spool message", zap.String("msg_id", tx.id), zap.Error(writeErr))
		return nil, errLocalProblem
	default:
		// The client went away or stalled; it will not hear this reply,
		// and nothing was forwarded.
		ss.log.Info("message not received completely", zap.String("msg_id", tx.id), zap.Error(readErr))
		return nil, errClientTimeout
	}
}

// copyContent is io.Copy that tells a failing reader (the client) from a
// failing writer (the spool): they need different replies.
func copyContent(w io.Writer, r io.Reader) (readErr, writeErr error) {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return nil, werr
			}
		}
		if err == io.EOF {
			return nil, nil
		}
		if err != nil {
			return err, nil
		}
	}
}

func (ss *session) pipelineTransaction(tx *transaction, msg *spool.Message, sum *summary) *pipeline.Transaction {
	cfg := ss.rt.Config
	ptx := &pipeline.Transaction{
		ID:         tx.id,
		Client:     tx.client,
		ClientName: tx.xfwd.Name,
		Helo:       tx.xfwd.Helo,
		QueueID:    tx.xfwd.Ident,
		From:       tx.from,
		Rcpts:      tx.rcpts,
		Message:    msg,
	}
	if ptx.Helo == "" {
		ptx.Helo = ss.conn.Hostname()
	}
	if delivery.Unavailable(ptx.QueueID) {
		ptx.QueueID = ""
	}
	needClient := tx.clientSource == "peer" && ss.g.cfg.trustedXforward && cfg.ClientFromReceived
	if needClient || ptx.QueueID == "" {
		if v := topReceived(msg.Open(), int64(cfg.Limits.MaxHeaderBytes)); v != "" {
			client, name, qid := fromReceived(v)
			if needClient && client.IsValid() {
				tx.client, tx.clientSource = client, "received"
				ptx.Client, ptx.ClientName = client, name
			}
			if ptx.QueueID == "" && (tx.clientSource != "peer" || ss.g.cfg.trustedXforward) {
				ptx.QueueID = qid
			}
		}
	}
	sum.queueID = ptx.QueueID
	sum.clientName, sum.helo = ptx.ClientName, ptx.Helo
	return ptx
}

// execute carries out the verdict.
func (ss *session) execute(m *message) error {
	tx, v := m.tx, m.verdict
	switch v.Action {
	case policy.Deliver, policy.Tag:
		return ss.deliver(m)
	case policy.Encrypt:
		return ss.deliverEncrypted(m)
	case policy.Quarantine:
		if ss.rt.Quarantine == nil {
			ss.log.Error("policy chose quarantine but no quarantine is configured; deferring the message",
				zap.String("msg_id", tx.id))
			ss.ds.Reset()
			return errLocalProblem
		}
		qid, err := ss.rt.Quarantine.Quarantine(m.ctx, ss.quarantineItem(m))
		if err != nil {
			ss.log.Error("cannot quarantine message; deferring it", zap.String("msg_id", tx.id), zap.Error(err))
			ss.ds.Reset()
			return errLocalProblem
		}
		m.sum.quarantineID = qid
		ss.ds.Reset()
		return reply(250, [3]int{2, 0, 0}, "Ok: quarantined as "+qid)
	case policy.Discard:
		ss.ds.Reset()
		return reply(250, [3]int{2, 0, 0}, "Ok: discarded")
	case policy.Reject, policy.Tempfail:
		if held, r := ss.hold(m); held {
			return r // scan.hold_after: see hold.go
		}
		ss.ds.Reset()
		return verdictReply(v)
	}
	ss.log.Error("unknown verdict action; deferring the message", zap.String("action", string(v.Action)))
	ss.ds.Reset()
	return errLocalProblem
}

// copyBufs are the buffers messages are copied through: two per message
// otherwise, which was 80% of all bytes allocated under load.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// deliver sends the message on the upstream's transaction, which is open
// downstream with every recipient.
func (ss *session) deliver(m *message) error {
	tx := m.tx
	if ss.ds == nil || ss.ds.Broken() || !ss.ds.InTransaction() {
		ss.log.Warn("downstream connection lost before delivery", zap.String("msg_id", tx.id))
		return errDownstreamFailed
	}
	c := ss.deliveryContent(m)
	defer c.Close()
	head := delivery.Header(ss.rt.Config.HostnameOrDefault(), tx.id, m.verdict, m.findings, append(tx.notes, c.Notes...)...)
	text, err := ss.ds.Data([]byte(head), c.Open(), ss.s.now().Add(ss.rt.Config.Timeouts.DownstreamData.D()))
	if err != nil {
		return ss.downstreamError("DATA", tx, err)
	}
	m.sum.downstreamID = delivery.QueuedAs(text)
	return delivered(text)
}

// summary is the one log line per message.
type summary struct {
	tx           *transaction
	size         int64
	queueID      string
	downstreamID string
	quarantineID string
	verdict      string
	rule         string
	findings     []pipeline.Finding
	stages       time.Duration
	reply        *smtp.SMTPError
	encCopies    map[string]int // encrypt verdicts: see MessageEvent.EncryptionCopies
	// answeredAtRcpt: the verdict was given at RCPT, before DATA, to
	// rcpts recipients (see refuseBeforeData).
	answeredAtRcpt bool
	rcpts          int
	rcptList       []string // answeredAtRcpt: the recipients answered
	// For the message log (MessageEvent): set once the content is
	// received and checked; else logSummary takes what the envelope
	// says.
	messageID        string
	clientName, helo string
}

func (ss *session) logSummary(s *summary) {
	rcpts := len(s.tx.rcpts)
	if s.answeredAtRcpt {
		rcpts = s.rcpts
	}
	fields := []zap.Field{
		zap.String("msg_id", s.tx.id),
		zap.String("queue_id", s.queueID),
		zap.String("downstream_queue_id", s.downstreamID),
		zap.Stringer("client", s.tx.client),
		zap.String("client_source", s.tx.clientSource),
		zap.String("from", s.tx.from),
		zap.Int("rcpts", rcpts),
		zap.Int64("size", s.size),
		zap.String("verdict", s.verdict),
	}
	if s.answeredAtRcpt {
		fields = append(fields, zap.String("answered_at", "RCPT"))
	}
	if s.rule != "" {
		fields = append(fields, zap.String("rule", s.rule))
	}
	if s.quarantineID != "" {
		fields = append(fields, zap.String("quarantine_id", s.quarantineID))
	}
	if len(s.findings) > 0 {
		fields = append(fields, zap.Array("findings", findingsLog(s.findings)), zap.Duration("stages", s.stages))
	}
	if s.reply != nil {
		fields = append(fields, zap.String("reply", fmt.Sprintf("%d %d.%d.%d %s", s.reply.Code,
			s.reply.EnhancedCode[0], s.reply.EnhancedCode[1], s.reply.EnhancedCode[2], s.reply.Message)))
	}
	now := ss.s.now()
	fields = append(fields, zap.Duration("duration", now.Sub(s.tx.start)))
	ss.log.Info("message", fields...)
	rcptList := s.tx.rcpts
	if s.answeredAtRcpt {
		rcptList = s.rcptList
	}
	ev := MessageEvent{
		Time: now, Host: ss.rt.Config.HostnameOrDefault(), ID: s.tx.id, QueueID: s.queueID,
		DownstreamQueueID: s.downstreamID, QuarantineID: s.quarantineID, MessageID: s.messageID,
		Client: s.tx.client, ClientName: s.clientName, Helo: s.helo, From: s.tx.from, Rcpts: rcpts,
		Recipients: rcptList, Size: s.size,
		Verdict: s.verdict, Rule: s.rule, Findings: s.findings, Stages: s.stages, Duration: now.Sub(s.tx.start),
		EncryptionCopies: s.encCopies,
	}
	if ev.ClientName == "" && ev.Helo == "" {
		// Not checked (answered at RCPT, or before its checks ran): what
		// the envelope says, as pipelineTransaction would have taken it.
		ev.ClientName, ev.Helo = s.tx.xfwd.Name, s.tx.xfwd.Helo
		if ev.Helo == "" {
			ev.Helo = ss.conn.Hostname()
		}
	}
	if delivery.Unavailable(ev.ClientName) {
		ev.ClientName = ""
	}
	if s.reply != nil {
		ev.ReplyCode = s.reply.Code
		ev.ReplyText = replyText(s.reply)
		if s.answeredAtRcpt {
			ev.ReplyCommand = "RCPT"
		}
	}
	ss.s.obs.Message(ev)
}

// replyText is a reply's enhanced status code (RFC 3463), if it has one,
// and text.
func replyText(r *smtp.SMTPError) string {
	if c := r.EnhancedCode; c != smtp.NoEnhancedCode && c != (smtp.EnhancedCode{}) {
		return fmt.Sprintf("%d.%d.%d %s", c[0], c[1], c[2], r.Message)
	}
	return r.Message
}

type findingsLog []pipeline.Finding

func (fs findingsLog) MarshalLogArray(enc zapcore.ArrayEncoder) error {
	for _, f := range fs {
		enc.AppendObject(findingLog(f))
	}
	return nil
}

type findingLog pipeline.Finding

func (f findingLog) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	enc.AddString("stage", string(f.Stage))
	enc.AddString("status", string(f.Status))
	if len(f.Categories) > 0 {
		enc.AddString("categories", strings.Join(f.Categories, ","))
	}
	if f.Detail != "" {
		enc.AddString("detail", f.Detail)
	}
	if f.Backend != "" {
		enc.AddString("backend", f.Backend)
	}
	for i, it := range f.Items {
		if i == 10 {
			enc.AddInt("more_items", len(f.Items)-10)
			break
		}
		enc.AddString(fmt.Sprintf("item%d", i), it.What+" "+it.Zone+" "+it.Category)
	}
	enc.AddDuration("took", f.Duration)
	return nil
}

// quarantineItem is what the quarantine keeps of the message: enough to
// release it later exactly as it was received.
func (ss *session) quarantineItem(m *message) QuarantineItem {
	return QuarantineItem{Tx: m.ptx, Xforward: ss.forwardAttrs(m.tx), MailParams: delivery.MailParams(m.tx.opts),
		RcptParams: m.tx.rcptParams(m.tx.rcpts), Findings: m.findings, Verdict: m.verdict}
}

// rcptParams records the DSN parameters of rcpts' RCPTs; nil when none
// had any.
func (tx *transaction) rcptParams(rcpts []string) map[string]map[string]string {
	var m map[string]map[string]string
	for _, r := range rcpts {
		if p := delivery.RcptParams(tx.rcptOpts[r]); p != nil {
			if m == nil {
				m = map[string]map[string]string{}
			}
			m[r] = p
		}
	}
	return m
}
