package delivery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"

	"github.com/emersion/go-smtp"
	"go.uber.org/zap"

	"github.com/foxproxy/foxproxy/pipeline"
	"github.com/foxproxy/foxproxy/policy"
	"github.com/foxproxy/foxproxy/spool"
)

// ReinjectOptions says where Reinject delivers: normally the configured
// downstream with its timeouts.
type ReinjectOptions struct {
	Addr     string // host:port of the re-injection smtpd
	Hostname string // EHLO name
	// Timeouts; zero values mean 30s, 5m and 10m, like the defaults of
	// timeouts.downstream_connect, _command and _data.
	ConnectTimeout, CommandTimeout, DataTimeout time.Duration
	// BeforeData, when set, runs after the recipients are accepted and
	// before DATA: the last moment at which nothing has been delivered (the
	// rescan records there, durably, that the outcome may become
	// uncertain). An error from it abandons the transaction.
	BeforeData func() error
	// Links rewrites links for a verdict that asks for it (ReinjectVerdict).
	Links LinkRewriter
	// RemoveIncomingTrace: ReinjectVerdict removes the X-Foxproxy fields
	// the message arrived with (remove_incoming_trace).
	RemoveIncomingTrace bool
	// Log, when set, hears what ReinjectVerdict changed or could not.
	Log *zap.Logger
}

// Envelope is the SMTP envelope of a message received earlier, to be sent
// again as it was received.
type Envelope struct {
	From  string   // "" is the null sender
	Rcpts []string // at least one
	// MailParams are the MAIL parameters recorded at receipt (see
	// MailParams): BODY, SMTPUTF8 (present: set), RET, ENVID.
	MailParams map[string]string
	// Xforward is what the downstream hears about the original client,
	// for the downstream's log (orig_client=, orig_queue_id=).
	Xforward Xforward
	// Size, when known, is announced with SIZE=.
	Size int64
	// RcptParams are the RCPT parameters recorded at receipt, by
	// recipient (see RcptParams).
	RcptParams map[string]map[string]string
}

// Reinjected is the outcome of a Reinject that delivered to at least one
// recipient.
type Reinjected struct {
	// Reply is the downstream's reply to the end of data, e.g.
	// "2.0.0 Ok: queued as 4Xyz"; QueuedAs is the ID in it, if any.
	Reply    string
	QueuedAs string
	// Accepted are the recipients the message went to; Refused the ones
	// the downstream refused at RCPT (it was not sent to them).
	Accepted []string
	Refused  []RcptRefusal
	// XforwardRefused is set when the downstream refused XFORWARD: the
	// message went, but the downstream's log names this host as the client.
	XforwardRefused string
}

// RcptRefusal is a recipient that the downstream refused.
type RcptRefusal struct {
	Rcpt  string
	Code  int    // e.g. 550
	Reply string // e.g. "5.1.1 <x@example.org>: Recipient address rejected: User unknown"
}

// ReinjectError is a Reinject that delivered nothing because the
// downstream refused: the sender, every recipient, or the message.
type ReinjectError struct {
	Stage   string // "MAIL", "RCPT" or "DATA"
	Code    int    // the downstream's reply code (for RCPT: the first refusal's)
	Reply   string
	Refused []RcptRefusal // for RCPT: every recipient and why
}

func (e *ReinjectError) Error() string {
	if e.Stage == "RCPT" && len(e.Refused) > 0 {
		parts := make([]string, len(e.Refused))
		for i, r := range e.Refused {
			parts[i] = fmt.Sprintf("<%s>: %d %s", r.Rcpt, r.Code, r.Reply)
		}
		return "downstream refused every recipient: " + strings.Join(parts, "; ")
	}
	return fmt.Sprintf("downstream refused %s: %d %s", e.Stage, e.Code, e.Reply)
}

// Temporary reports whether the downstream's refusal was a 4xx.
func (e *ReinjectError) Temporary() bool { return e.Code/100 == 4 }

// ErrReinjectUncertain is wrapped by a Reinject error when the message was
// sent but no reply to its end came (the connection broke or timed out
// after the final dot): the downstream may have queued it.
var ErrReinjectUncertain = errors.New("the message was sent but the downstream's reply never came: it may have been queued")

var queuedAs = regexp.MustCompile(`queued as ([0-9A-Za-z]+)`)

// QueuedAs returns the queue ID in a downstream's reply to the end of data
// ("2.0.0 Ok: queued as 4Xyz"), or "" when it names none.
func QueuedAs(reply string) string {
	if m := queuedAs.FindStringSubmatch(reply); m != nil {
		return m[1]
	}
	return ""
}

// Reinject delivers a message received earlier (a quarantined one, on
// release) to the re-injection smtpd in one SMTP transaction, with its
// original envelope: XFORWARD with env.Xforward (when the downstream offers
// it), MAIL with env.From and the recorded parameters, RCPT for each
// recipient, then content as it is (the caller adds any header lines in
// front). It is the same client the proxy uses for live mail.
//
// It returns an error when nothing was delivered: a *ReinjectError when
// the downstream refused, an error wrapping ErrReinjectUncertain when the
// outcome is unknown, and otherwise a connection or content problem
// before the final dot (nothing sent). When some recipients are refused
// and others accepted, the message goes to the accepted ones, and
// Reinjected.Refused lists the others: the caller decides what becomes of
// them. ctx bounds the whole exchange.
func Reinject(ctx context.Context, o ReinjectOptions, env Envelope, content io.Reader) (*Reinjected, error) {
	if len(env.Rcpts) == 0 {
		return nil, errors.New("reinject: no recipients")
	}
	opts, err := reinjectMailOptions(env)
	if err != nil {
		return nil, err
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 30 * time.Second
	}
	if o.CommandTimeout <= 0 {
		o.CommandTimeout = 5 * time.Minute
	}
	if o.DataTimeout <= 0 {
		o.DataTimeout = 10 * time.Minute
	}
	d, err := Dial(ctx, DialOptions{Addr: o.Addr, Hostname: o.Hostname,
		ConnectTimeout: o.ConnectTimeout, CommandTimeout: o.CommandTimeout, DataTimeout: o.DataTimeout})
	if err != nil {
		return nil, fmt.Errorf("connect to downstream %s: %w", o.Addr, err)
	}
	// ctx ending breaks off the exchange: every read and write then fails.
	stop := context.AfterFunc(ctx, func() { d.conn.Close() })
	defer stop()
	defer d.Close()

	res := &Reinjected{}
	if err := d.Mail(env.From, opts, env.Xforward); err != nil {
		return nil, reinjectFailure("MAIL", err)
	}
	if bad := d.XforwardProblems(); len(bad) > 0 {
		res.XforwardRefused = fmt.Sprintf("%s: %d %s", bad[0].Command, bad[0].Code, bad[0].Reply)
	}
	for _, rcpt := range env.Rcpts {
		err := d.Rcpt(rcpt, reinjectRcptOptions(env.RcptParams[rcpt]))
		var se *smtp.SMTPError
		switch {
		case err == nil:
			res.Accepted = append(res.Accepted, rcpt)
		case errors.As(err, &se) && se.Code != 421:
			res.Refused = append(res.Refused, RcptRefusal{Rcpt: rcpt, Code: se.Code, Reply: smtpReplyText(se)})
		default:
			return nil, reinjectFailure("RCPT", err)
		}
	}
	if len(res.Accepted) == 0 {
		d.Reset()
		return nil, &ReinjectError{Stage: "RCPT", Code: res.Refused[0].Code, Reply: res.Refused[0].Reply, Refused: res.Refused}
	}

	// The content goes through go-smtp's DataCommand directly (not
	// Conn.Data) to tell the two kinds of failure apart: before the
	// final dot nothing is delivered; after it, without a reply, the
	// outcome is unknown.
	if o.BeforeData != nil {
		if err := o.BeforeData(); err != nil {
			d.Reset()
			return nil, fmt.Errorf("reinject: before DATA: %w", err)
		}
	}
	w, err := d.client.Data()
	if err != nil {
		return nil, reinjectFailure("DATA", d.note(err))
	}
	if _, err := io.Copy(w, content); err != nil {
		d.broken = true // the final dot must never follow a partial message
		return nil, fmt.Errorf("reinject: sending the message: %w", err)
	}
	resp, err := w.CloseWithResponse()
	d.txActive = false
	if err != nil {
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			return nil, reinjectFailure("DATA", d.note(err))
		}
		d.broken = true
		return nil, fmt.Errorf("reinject: %w (%v)", ErrReinjectUncertain, err)
	}
	res.Reply = strings.TrimSpace(resp.StatusText)
	res.QueuedAs = QueuedAs(res.Reply)
	return res, nil
}

// reinjectFailure turns a downstream reply into a *ReinjectError; other
// errors (network, timeouts) are wrapped as they are.
func reinjectFailure(stage string, err error) error {
	var se *smtp.SMTPError
	if errors.As(err, &se) && se.Code >= 400 {
		return &ReinjectError{Stage: stage, Code: se.Code, Reply: smtpReplyText(se)}
	}
	return fmt.Errorf("reinject: %s: %w", stage, err)
}

func smtpReplyText(se *smtp.SMTPError) string {
	text := strings.ReplaceAll(se.Message, "\n", " ")
	if se.EnhancedCode != (smtp.EnhancedCode{}) && se.EnhancedCode != smtp.NoEnhancedCode {
		text = fmt.Sprintf("%d.%d.%d %s", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2], text)
	}
	return text
}

// reinjectMailOptions rebuilds the MAIL parameters recorded at receipt.
func reinjectMailOptions(env Envelope) (*smtp.MailOptions, error) {
	opts := &smtp.MailOptions{Size: env.Size}
	for k, v := range env.MailParams {
		switch strings.ToUpper(k) {
		case "BODY":
			opts.Body = smtp.BodyType(strings.ToUpper(v))
		case "SMTPUTF8":
			opts.UTF8 = true
		case "RET":
			opts.Return = smtp.DSNReturn(strings.ToUpper(v))
		case "ENVID":
			opts.EnvelopeID = v
		default:
			return nil, fmt.Errorf("reinject: unknown MAIL parameter %q", k)
		}
	}
	return opts, nil
}

// MailParams records the MAIL parameters a later re-injection must repeat
// (see Envelope.MailParams).
func MailParams(o *smtp.MailOptions) map[string]string {
	m := map[string]string{}
	if o == nil {
		return m
	}
	if o.Body != "" {
		m["BODY"] = string(o.Body)
	}
	if o.UTF8 {
		m["SMTPUTF8"] = ""
	}
	if o.Return != "" {
		m["RET"] = string(o.Return)
	}
	if o.EnvelopeID != "" {
		m["ENVID"] = o.EnvelopeID
	}
	return m
}

// RcptParams records the DSN parameters of one RCPT (NOTIFY, ORCPT) that a
// later re-injection must repeat, so the sender's delivery notifications
// still work for quarantined and held mail. nil when there are none.
func RcptParams(o *smtp.RcptOptions) map[string]string {
	if o == nil {
		return nil
	}
	m := map[string]string{}
	if len(o.Notify) > 0 {
		n := make([]string, len(o.Notify))
		for i, v := range o.Notify {
			n[i] = string(v)
		}
		m["NOTIFY"] = strings.Join(n, ",")
	}
	if o.OriginalRecipient != "" {
		m["ORCPT"] = string(o.OriginalRecipientType) + ";" + o.OriginalRecipient
	}
	if len(m) == 0 {
		return nil
	}
	return m
}

// reinjectRcptOptions turns recorded RCPT parameters back into options.
// Unknown or malformed ones are dropped: they only refine notifications,
// and refusing the release for them would keep the mail from the
// recipient.
func reinjectRcptOptions(params map[string]string) *smtp.RcptOptions {
	if len(params) == 0 {
		return nil
	}
	o := &smtp.RcptOptions{}
	if n := params["NOTIFY"]; n != "" {
		for _, v := range strings.Split(n, ",") {
			o.Notify = append(o.Notify, smtp.DSNNotify(strings.ToUpper(strings.TrimSpace(v))))
		}
	}
	if t, addr, ok := strings.Cut(params["ORCPT"], ";"); ok && addr != "" {
		o.OriginalRecipientType, o.OriginalRecipient = smtp.DSNAddressType(strings.ToUpper(t)), addr
	}
	return o
}

// ReinjectVerdict delivers a message that was checked outside an SMTP
// session (a held message after its rescan) the way a live message with
// verdict v is delivered (ApplyVerdict, then Header for id), with
// Reinject's envelope and outcomes. open must return a fresh reader of the
// whole message each time; maxHeaderBytes bounds the header block the
// verdict's changes examine.
func ReinjectVerdict(ctx context.Context, o ReinjectOptions, env Envelope, host, id string, v policy.Verdict,
	findings []pipeline.Finding, open func() io.Reader, maxHeaderBytes int64) (*Reinjected, error) {
	log := o.Log
	if log == nil {
		log = zap.NewNop()
	}
	c := ApplyVerdict(Rules{Links: o.Links, RemoveTrace: o.RemoveIncomingTrace, Limit: maxHeaderBytes,
		Spool: spool.Options{MemoryThreshold: 1 << 20}, Log: log.With(zap.String("held_id", id))}, id, open, v)
	defer c.Close()
	head := Header(host, id, v, findings, c.Notes...)
	if env.Size > 0 {
		// SIZE= is an estimate (Postfix enforces its limit on what
		// arrives); never more than the message may be, lest a message
		// that fits be refused for its announcement.
		env.Size += int64(len(head)) + int64(len(v.SubjectPrefix)) + 1
	}
	return Reinject(ctx, o, env, io.MultiReader(strings.NewReader(head), c.Open()))
}
