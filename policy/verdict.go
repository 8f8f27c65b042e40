// Package policy turns the findings of foxproxy's stages into one verdict
// for a message. It is the only place that decides: stages report facts,
// the proxy carries the verdict out over SMTP.
package policy

import (
	"fmt"

	"github.com/foxproxy/foxproxy/pipeline"
)

// Action is what happens to a message.
type Action string

const (
	// Deliver hands the message to the downstream with the trace header.
	Deliver Action = "deliver"
	// Tag delivers with extra headers (and optionally a subject prefix).
	Tag Action = "tag"
	// Quarantine keeps the message in the quarantine and answers 250.
	Quarantine Action = "quarantine"
	// Reject answers 5xx: the upstream bounces the message.
	Reject Action = "reject"
	// Tempfail answers 4xx: the upstream keeps the message and retries.
	Tempfail Action = "tempfail"
	// Discard answers 250 and delivers nothing; the log line remains.
	Discard Action = "discard"
	// Encrypt delivers the copies of the selected recipients encrypted
	// (OpenPGP or S/MIME) and the others as deliver would.
	Encrypt Action = "encrypt"
)

// Reply is an SMTP reply chosen by the policy (for reject and tempfail).
// The proxy validates it before use, so a rule can never make foxproxy answer
// 2xx for a reject or 5xx for a tempfail.
type Reply struct {
	Code     int    // e.g. 550
	Enhanced [3]int // e.g. {5, 7, 1}
	Text     string // single line, shown to the sender
}

// Header is one header field to add to a delivered message.
type Header struct {
	Name, Value string
}

// Reason says why a verdict was reached. Code that treats some verdicts
// specially (holding unscanned mail) asks the Reason, never the rule's
// name, which a configuration may give to any rule.
type Reason int

const (
	// ReasonRule: a configured rule matched (Verdict.Rule names it). It is
	// the zero value, so a verdict built without a reason is an ordinary
	// one.
	ReasonRule Reason = iota
	// ReasonDefault: no rule matched (Rule is RuleDefault).
	ReasonDefault
	// ReasonInfected: the scan found malware and policy.on_infected
	// decided (Rule is RuleOnInfected).
	ReasonInfected
	// ReasonUnscanned: no scanner could scan a message that would have
	// been delivered, and policy.on_scan_unavailable deferred it (Rule is
	// RuleOnScanUnavailable).
	ReasonUnscanned
)

func (r Reason) String() string {
	switch r {
	case ReasonRule:
		return "rule"
	case ReasonDefault:
		return "default"
	case ReasonInfected:
		return "infected"
	case ReasonUnscanned:
		return "unscanned"
	}
	return fmt.Sprintf("Reason(%d)", int(r))
}

// The names Verdict.Rule has when no configured rule decided. The last two
// are the configuration keys that decided.
const (
	RuleDefault           = "default"
	RuleOnInfected        = "on_infected"
	RuleOnScanUnavailable = "on_scan_unavailable"
)

// Verdict is the policy's decision for one message.
type Verdict struct {
	Action Action
	// Rule names the rule that decided, for the log line and the trace
	// header (RuleDefault when no rule matched).
	Rule string
	// Reason says why this verdict was reached.
	Reason Reason
	// Reply is set for Reject and Tempfail.
	Reply *Reply
	// Headers are added (after X-Foxproxy) for Deliver and Tag.
	Headers []Header
	// SubjectPrefix is prepended to the Subject for Tag.
	SubjectPrefix string
	// RewriteLinks points the links of a delivered message at the click
	// service (Deliver, Tag and Encrypt).
	RewriteLinks bool
	// EncryptRcpts are the recipients whose copies Encrypt encrypts: those
	// the rule's recipient conditions matched, or all of them.
	EncryptRcpts []string
	// SubjectTag is removed from the Subject before encrypting (the tag
	// that asked for encryption, e.g. "[secure]").
	SubjectTag string
}

// Delivers reports whether the verdict hands the message to the downstream.
func (v Verdict) Delivers() bool {
	return v.Action == Deliver || v.Action == Tag || v.Action == Encrypt
}

// Decider decides a verdict from a transaction and its findings.
type Decider interface {
	Decide(tx *pipeline.Transaction, findings []pipeline.Finding) Verdict
}

// DeliverAll is the decider of a foxproxy without rules: every message is
// delivered.
type DeliverAll struct{}

// Decide implements Decider.
func (DeliverAll) Decide(*pipeline.Transaction, []pipeline.Finding) Verdict {
	return Verdict{Action: Deliver, Rule: RuleDefault, Reason: ReasonDefault}
}
