// Package scan is foxproxy's malware scan stage: the Scanner backends
// (clamd, ICAP) and the smart/conventional failover of failure table row 4, README.md.
//
// # Backends
//
// A Scanner answers clean or infected(name), or fails with an *Error whose
// kind tells why: ErrUnavailable (unreachable, timeout, connection lost,
// ICAP 5xx: retrying later may work), ErrProtocol (an answer this client
// cannot parse), ErrSizeLimit (the scanner refuses the size) and
// ErrScanFailed (the scanner's own error for this request, such as an ICAP
// 404, or the message could not be read). Clamd speaks zINSTREAM to a
// ClamAV daemon, reusing connections as clamd sessions (IDSESSION); ICAP
// speaks RFC 3507 RESPMOD with previews and keep-alive connections.
// NewScanner picks one from an address. Both bound their concurrency, their
// waits (Options.Timeout, DialTimeout) and what they read from the server.
//
// # Modes, in the appliance's terms
//
// Smart scan is the remote scanner (an ICAP service, or a remote clamd);
// conventional scan is the local clamd. The stage reproduces the
// appliance's documented behaviour when smart scan's server cannot be
// reached, and adds recovery:
//
//  1. Without FallbackToConventional a message that smart cannot scan gets
//     Finding Unavailable; the policy answers 451 4.7.1 and Postfix keeps
//     the message queued. Nothing is delivered unscanned.
//  2. With FallbackToConventional that message is scanned with the local
//     clamd at once. After DisableSmartAfter consecutive smart failures the
//     mode switches to conventional, so (1) no longer happens and messages
//     stop paying smart's timeout. While switched, smart is probed every
//     RecheckInterval and the mode switches back when it answers (the
//     appliance needed an administrator; StayConventional keeps that).
//
// Both scanners down gives Finding Unavailable. Every mode switch and every
// backend going down or up is logged once, with its reason; Health returns
// the state for the status endpoint.
//
// # Findings
//
//	clean         Backend "smart" or "conventional"      scan=clean(smart)
//	infected      Detail = threat name, Backend          scan=infected(Eicar-Test-Signature.UNOFFICIAL)
//	unavailable   no scanner answered (Detail says why)  scan=unavailable
//	error         a scanner answered wrongly or refused  scan=error
//	skipped       larger than MaxSize, OversizePass      scan=skipped
//
// A message larger than MaxSize is not sent to any scanner: with
// OversizePass it is Skipped ("too large (N bytes > limit)"), with
// OversizeTempfail Unavailable. A scanner's own size-limit refusal is
// treated the same way and does not count as a failure.
//
// What counts as a failure for the failover: ErrUnavailable, ErrProtocol
// and ErrScanFailed from smart all trigger the per-message fallback and
// count towards DisableSmartAfter: a smart scanner that answers garbage
// or 404 cannot scan either. The finding is Unavailable when the last
// scanner tried was unreachable and Error when it answered wrongly.
//
// # Scanner pitfalls the configuration must respect
//
// Found with Debian 12's c-icap 0.5.10, libc-icap-mod-virus-scan 0.5.5
// and clamd 1.4 (real_test.go keeps each one under test):
//
//   - virus_scan in its default mode ("Service avscan virus_scan.so")
//     commits to a 200 before scanning a body over about 4 KB; when it then
//     finds a virus it only truncates the echoed body, with no
//     X-Infection-Found. This client counts a 200 whose echo is not exactly
//     the message as infected("unknown"), but the threat name is lost. Use
//     the service with mode=simple, as Debian's own virus_scan.conf does:
//     "ServiceAlias avscan virus_scan?allow204=on&sizelimit=off&mode=simple"
//     (or put "?mode=simple&sizelimit=off" in the ICAP URL).
//   - Without sizelimit=off, virus_scan passes objects larger than its
//     MaxObjectSize (default 5M) unscanned, echoed whole: indistinguishable
//     from clean. Keep MaxSize below it, or use sizelimit=off.
//   - c-icap started while its clamd is unreachable has no engine and
//     answers 204 to everything ("Antivirus engine is not available, allow
//     204") until restarted. Options.PingTestVirus makes probes scan the
//     EICAR test file and report such a scanner as failing.
//   - c-icap answers OPTIONS while its clamd is down (RESPMOD gets 500),
//     which is why ICAP.Ping also scans a few bytes.
//   - clamd's .hdb signatures match whole files: EICAR as a mail's text
//     body is not found, as a base64 attachment it is (clamd decodes it).
//   - clamd answers "INSTREAM size limit exceeded. ERROR" and closes as soon
//     as StreamMaxLength (default 25M) is passed, mid-upload; the reply is
//     read concurrently with the upload so it is not lost to a broken pipe.
package scan
