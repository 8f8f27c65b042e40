// Package reputation judges senders and links against reputation services:
// the email reputation stage (ERS) asks DNS lists (DNSxLs, RFC 5782) about
// the client's address, the web reputation stage (WRS) asks DNS URI lists
// and the Safe Browsing Lookup API about the links in the message, on top
// of one shared DNS-list client.
//
// The package has these layers:
//
//   - DNSClient is a small stub resolver for list lookups: UDP with a retry
//     over TCP when an answer is truncated, a per-attempt timeout (a context
//     deadline is always set), fallback to the next server on failure, a
//     bounded LRU cache that honours answer TTLs and negative caching
//     (RFC 2308), coalescing of identical in-flight queries, and a bound on
//     outstanding queries (globally and per zone) so that a server that never
//     answers cannot pile up goroutines.
//   - Zone, LookupIP, LookupDomain and CheckHealth speak RFC 5782 on top of
//     it: query names, answer codes mapped to category names, the
//     127.255.255.0/24 "refused" answers and answers outside 127.0.0.0/8 as
//     errors, TXT reasons, and the §5 test points (CheckHealthDomain for
//     domain lists).
//   - ERS is the pipeline stage for the client. It fixes the appliance's
//     "first-mail latch" (failure table row 1, README.md): the first message runs each
//     zone's connectivity check; a zone that fails is disabled and
//     re-checked every RecheckInterval until it recovers by itself; a zone
//     that passed is never disabled by later failures, which only make that
//     message's finding Skipped.
//   - WRS is the pipeline stage for links (failure table row 2, README.md). Package links
//     extracts and normalises the URLs; each Backend judges them: a DNS URI
//     list (DNSZone: codes or a SURBL-style bitmask, asked for the
//     registrable domain, the full host and IP literals) or Safe Browsing
//     (one batched threatMatches:find request per message, matches cached
//     for their cacheDuration). A backend that fails makes the message
//     Skipped, as on the appliance; its circuit breaker (StateClosed,
//     StateOpen, StateHalfOpen) stops the timeouts after a few failures and
//     probes in the background until the service is back. WRS has no
//     first-mail check: the breaker is its health object.
//   - Feedback reports the URLs WRS saw and its verdicts to an HTTP
//     collector and/or a JSON-lines file (failure table row 3, README.md):
//     asynchronous, bounded, batched, retried, dropped and counted when the
//     sink is down; it never delays mail.
//
// A listing is a value (Result.Listed, pipeline.Listed), never an error;
// errors are failures to find out, wrapped with %w around the sentinels
// of this package so callers can use errors.Is.
package reputation
