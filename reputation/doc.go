// Package reputation judges senders and links against DNS block lists
// (DNSxLs, RFC 5782): the email reputation stage (ERS) and, later, the web
// reputation stage (WRS), on top of one shared DNS-list client.
//
// The package has three layers:
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
//     errors, TXT reasons, and the §5 test points.
//   - ERS is the pipeline stage. It fixes the appliance's "first-mail
//     latch" (DESIGN.md §4 row 1): the first message runs each zone's
//     connectivity check; a zone that fails is disabled and re-checked every
//     RecheckInterval until it recovers by itself; a zone that passed is
//     never disabled by later failures, which only make that message's
//     finding Skipped.
//
// A listing is a value (Result.Listed, pipeline.Listed), never an error;
// errors are failures to find out, wrapped with %w around the sentinels
// below so callers can use errors.Is.
package reputation
