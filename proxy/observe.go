package proxy

import (
	"net/netip"
	"time"

	"github.com/foxproxy/foxproxy/pipeline"
)

// Observer is told what the proxy does, for metrics and the status page.
// Its methods are called on the mail path: they must be cheap and must
// never block.
type Observer interface {
	// SessionOpened and SessionClosed bracket every admitted connection.
	SessionOpened()
	SessionClosed()
	// Refused is called when MAIL or RCPT is refused (code is the reply's).
	Refused(command string, code int)
	// Spooled is the change in bytes of message content held (in memory
	// or in spill files).
	Spooled(delta int64)
	// Message is called once per message that reached DATA, or that was
	// answered at RCPT before DATA (MessageEvent.ReplyCommand), with what
	// happened to it.
	Message(MessageEvent)
}

// MessageEvent is one message's outcome: what the summary log line says,
// and what the message log keeps.
type MessageEvent struct {
	Time time.Time
	// Host is this foxproxy's hostname (hostname in the configuration).
	Host              string
	ID                string
	QueueID           string
	DownstreamQueueID string
	QuarantineID      string
	// MessageID is the Message-ID field's value as written; "" when the
	// message has none or was answered before its content.
	MessageID string
	Client    netip.Addr
	// ClientName and Helo are the client's name and HELO as the upstream
	// forwarded them (XFORWARD, else its Received field) or, without an
	// upstream, as the client gave them; "" when unknown.
	ClientName string
	Helo       string
	From       string
	Rcpts      int
	// Recipients are the envelope recipients of the message: those the
	// downstream accepted, or those answered at RCPT (ReplyCommand).
	Recipients []string
	Size       int64
	Verdict    string // deliver, tag, ... or "refused", "error" when no verdict was reached
	Rule       string
	Findings   []pipeline.Finding
	Stages     time.Duration
	Duration   time.Duration
	ReplyCode  int
	// ReplyText is the reply's enhanced status code and text, e.g.
	// "2.0.0 Ok: queued as 4ABC"; "" when no reply was made.
	ReplyText string
	// ReplyCommand is the command ReplyCode answered: "" for the end of
	// DATA, "RCPT" for a message answered before DATA (each of its RCPTs
	// was also reported to Refused).
	ReplyCommand string
	// EncryptionCopies counts an encrypt verdict's recipients by what
	// became of their copies (CopyEncrypted, ...); nil for other verdicts.
	EncryptionCopies map[string]int
}

// What became of a recipient's copy under an encrypt verdict. A tempfail
// or reject answers for the whole message: then only the recipients that
// caused it are counted.
const (
	CopyEncrypted   = "encrypted"
	CopyQuarantined = "quarantined" // no key: kept until one can be had
	CopyRejected    = "rejected"    // no key: the message refused (5xx)
	CopyTempfailed  = "tempfailed"  // no key yet: the message deferred (4xx)
	CopyUnencrypted = "unencrypted" // no key: delivered in clear, as configured
)

// CopyOutcomes are the values of MessageEvent.EncryptionCopies' keys.
var CopyOutcomes = []string{CopyEncrypted, CopyQuarantined, CopyRejected, CopyTempfailed, CopyUnencrypted}

type nopObserver struct{}

func (nopObserver) SessionOpened()       {}
func (nopObserver) SessionClosed()       {}
func (nopObserver) Refused(string, int)  {}
func (nopObserver) Spooled(int64)        {}
func (nopObserver) Message(MessageEvent) {}

// SetObserver installs o; call it before Serve.
func (s *Server) SetObserver(o Observer) {
	if o == nil {
		o = nopObserver{}
	}
	s.obs = o
}
