package proxy

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/emersion/go-smtp"

	"github.com/foxproxy/foxproxy/delivery"
	"github.com/foxproxy/foxproxy/policy"
)

// Every SMTP reply foxproxy itself makes is built in this file.
//
// go-smtp picks the reply code with a plain type assertion on *smtp.SMTPError:
// any other error from Session.Data becomes "554 5.0.0 Error: transaction
// failed: <error text>", a permanent bounce that also leaks internals. So
// session methods return only values made here, and details go to the log,
// never to the peer.

func reply(code int, enh [3]int, text string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: smtp.EnhancedCode(enh), Message: text}
}

// Temporary failures: the upstream Postfix keeps the message and retries.
var (
	errDownstreamUnavailable = reply(451, [3]int{4, 4, 1}, "Error: delivery service temporarily unavailable, try again later")
	errDownstreamFailed      = reply(451, [3]int{4, 4, 2}, "Error: delivery service failed, try again later")
	errLocalProblem          = reply(451, [3]int{4, 3, 0}, "Error: temporary local problem, try again later")
	errClientTimeout         = reply(451, [3]int{4, 4, 2}, "Error: timeout while receiving the message")
	errNoTransaction         = reply(503, [3]int{5, 5, 1}, "Error: need MAIL command")
	errNestedMail            = reply(503, [3]int{5, 5, 1}, "Error: nested MAIL command")
)

// Permanent failures caused by what the client sent.
var (
	errTooBig     = reply(552, [3]int{5, 3, 4}, "Error: message file too big")
	errBareNL     = reply(550, [3]int{5, 5, 2}, "Error: bare <CR> or <LF> received in message content (RFC 5321 section 2.3.8)")
	errNULInData  = reply(550, [3]int{5, 6, 0}, "Error: NUL character received in message content")
	errBadAddress = reply(501, [3]int{5, 1, 7}, "Error: bad address syntax")
)

// RFC 5321 §4.1.2: a Mailbox has no control characters. Such an address is
// refused before it reaches the downstream and the transaction state stays
// as it was, so the client may go on (RFC 3463: X.1.7 is a bad sender
// address syntax, X.1.3 a bad destination address syntax).
var (
	errSenderControlChar    = reply(501, [3]int{5, 1, 7}, "Error: control character in sender address")
	errRecipientControlChar = reply(501, [3]int{5, 1, 3}, "Error: control character in recipient address")
)

// Replies to commands foxproxy does not know, does not offer, or gets out
// of order. go-smtp answers all of these with 501 or 502, so the guard
// answers the first kinds itself (guard.go: commandRefusal) and turns
// go-smtp's 502 for a command out of order into 503 (guard.go: Write).
var (
	// RFC 5321 §4.2.4: 500 for a command not recognised, 502 for one
	// recognised but not implemented.
	replyUnknownCommand  = reply(500, [3]int{5, 5, 2}, "Error: command not recognized")
	replyEmptyCommand    = reply(500, [3]int{5, 5, 2}, "Error: empty command line")
	replyNotImplemented  = reply(502, [3]int{5, 5, 1}, "Error: command not implemented")
	replyParameterSyntax = reply(501, [3]int{5, 5, 4}, "Error: syntax error in parameters or arguments")
	// RFC 5321 §4.1.4, §4.2.4: 503 for a bad sequence of commands; RFC 3463
	// X.5.1 is an invalid command (here: invalid now).
	replyNeedHelo    = reply(503, [3]int{5, 5, 1}, "Error: send HELO/EHLO first")
	replyNeedRcpt    = reply(503, [3]int{5, 5, 1}, "Error: need RCPT command")
	replyBadSequence = reply(503, [3]int{5, 5, 1}, "Error: bad sequence of commands")
)

// Replies written by the connection guard itself, before or around go-smtp.
var (
	replyAccessDenied      = reply(554, [3]int{5, 7, 1}, "Error: access denied")
	replyTooManySessions   = reply(421, [3]int{4, 3, 2}, "Error: too many connections, try again later")
	replyShuttingDown      = reply(421, [3]int{4, 3, 2}, "Service shutting down, closing transmission channel")
	replyTooManyCommands   = reply(421, [3]int{4, 7, 0}, "Error: too many commands, closing transmission channel")
	replyLineTooLong       = reply(500, [3]int{5, 5, 2}, "Error: command line too long")
	replyXforwardOK        = reply(250, [3]int{2, 0, 0}, "Ok")
	replyXforwardForbidden = reply(550, [3]int{5, 7, 0}, "Error: insufficient authorization")
	replyXforwardInTx      = reply(503, [3]int{5, 5, 1}, "Error: MAIL transaction in progress")
)

func replyXforwardSyntax(msg string) *smtp.SMTPError {
	return reply(501, [3]int{5, 5, 4}, sanitizeText(msg))
}

// formatReply renders a reply for writing on the wire.
func formatReply(r *smtp.SMTPError) string {
	return fmt.Sprintf("%d %d.%d.%d %s\r\n", r.Code, r.EnhancedCode[0], r.EnhancedCode[1], r.EnhancedCode[2], r.Message)
}

// verdictReply turns a policy reply into an SMTP reply, refusing to let a
// rule produce a reply class that contradicts its action: a reject is always
// 5xx and a tempfail always 4xx.
func verdictReply(v policy.Verdict) *smtp.SMTPError {
	switch v.Action {
	case policy.Reject:
		r := reply(550, [3]int{5, 7, 1}, "Error: message rejected by policy")
		if v.Reply != nil && v.Reply.Code >= 500 && v.Reply.Code <= 599 {
			r = reply(v.Reply.Code, enhancedOr(v.Reply.Enhanced, 5, [3]int{5, 7, 1}), textOr(v.Reply.Text, r.Message))
		}
		return r
	case policy.Tempfail:
		r := reply(451, [3]int{4, 7, 1}, "Error: message temporarily deferred, try again later")
		if v.Reply != nil && v.Reply.Code >= 400 && v.Reply.Code <= 499 {
			r = reply(v.Reply.Code, enhancedOr(v.Reply.Enhanced, 4, [3]int{4, 7, 1}), textOr(v.Reply.Text, r.Message))
		}
		return r
	}
	return nil
}

func enhancedOr(e [3]int, class int, def [3]int) [3]int {
	if e[0] != class {
		return def
	}
	return e
}

func textOr(s, def string) string {
	s = sanitizeText(s)
	if s == "" {
		return def
	}
	return s
}

// sanitizeText makes s safe as the text of one reply line: printable ASCII
// only, bounded length (the same rule as for a header field's value).
func sanitizeText(s string) string { return delivery.PrintableText(s) }

// delivered is the reply after the downstream accepted the message: its own
// text (which carries its queue ID), so Postfix's log shows where the mail
// went. Returned from Data as an *smtp.SMTPError with code 250, which go-smtp
// writes as is.
func delivered(downstreamText string) *smtp.SMTPError {
	enh, text := splitEnhanced(downstreamText)
	if enh[0] != 2 {
		enh = [3]int{2, 0, 0}
	}
	text = sanitizeText(strings.ReplaceAll(text, "\n", " "))
	if text == "" {
		text = "Ok"
	}
	return reply(250, enh, text)
}

// mirrored copies a downstream error reply for the upstream client: the
// downstream's judgement (an unknown user, a full mailbox) is what the
// upstream must act on.
func mirrored(e *smtp.SMTPError) *smtp.SMTPError {
	enh := [3]int(e.EnhancedCode)
	class := e.Code / 100
	if enh[0] != class {
		enh = [3]int{class, 0, 0}
	}
	text := sanitizeText(strings.ReplaceAll(e.Message, "\n", " "))
	if text == "" {
		text = "Error"
	}
	if class != 4 && class != 5 {
		// Never turn an odd downstream answer into a success upstream.
		return errDownstreamFailed
	}
	return reply(e.Code, enh, text)
}

// splitEnhanced separates a leading RFC 3463 enhanced status code.
func splitEnhanced(s string) ([3]int, string) {
	code, rest, ok := strings.Cut(s, " ")
	if !ok {
		code, rest = s, ""
	}
	parts := strings.Split(code, ".")
	if len(parts) != 3 {
		return [3]int{}, s
	}
	var e [3]int
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n > 999 {
			return [3]int{}, s
		}
		e[i] = n
	}
	return e, rest
}
