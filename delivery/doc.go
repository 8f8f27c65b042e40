// Package delivery is foxproxy's SMTP client side: everything that puts a
// message into the downstream smtpd (Postfix's re-injection smtpd), for
// live mail and for mail delivered later (a quarantine release, a held
// message after its rescan).
//
// It owns the envelope (Envelope, Xforward, the MAIL and RCPT parameters
// that must be repeated), the connection to the downstream (Conn: XFORWARD
// in front of MAIL, BODY as the sender gave it, dot-stuffing), re-injection
// in one transaction (Reinject, with its outcomes: delivered, refused,
// uncertain), what a verdict changes in a message's content (ApplyVerdict:
// forged X-Foxproxy fields removed, subject tag and prefix, links
// rewritten) and the header lines foxproxy adds (Header, FoldHeader).
//
// It never answers an SMTP client: replies to the upstream are package
// proxy's (proxy/reply.go), which uses this package and turns its errors
// into replies. It never stores a message either (package quarantine) and
// never decides what happens to one (package policy).
package delivery
