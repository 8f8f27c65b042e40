// Package lists holds foxproxy's local lists: approved and blocked client
// addresses, approved and blocked senders, and blocked URL hosts. They are
// checked before any cloud lookup (the appliance's "approved senders" and
// local block lists), and the policy can name them (`if: {list: [...]}`).
//
// A list file has one entry per line; `#` starts a comment (at the start of
// a line or after white space), blank lines are ignored, and an invalid
// entry makes the whole file invalid, reported as file:line with the
// offending text. The formats:
//
//   - clients (approved_clients, blocked_clients): an IPv4 or IPv6 address
//     or a CIDR network ("192.0.2.1", "192.0.2.0/24", "2001:db8::/32"). A
//     network must have no host bits set, so a typo cannot silently widen
//     or narrow it.
//   - senders (approved_senders, blocked_senders): an address
//     ("user@example.com", matched without regard to case), a domain
//     ("example.com" or "@example.com": that domain only), or the
//     subdomains of one ("*.example.com" or ".example.com": every name below
//     example.com, at any depth, but not example.com itself; list both to
//     cover both). This is the policy's from/to convention.
//   - URL hosts (blocked_urls): a host name, a registrable domain or an IP
//     address; a URL ("https://evil.example/x") is taken for its host. An
//     entry blocks that host and every name below it, so "evil.example"
//     blocks "www.evil.example" too. Entries must be at or below a
//     registrable domain (eTLD+1 by the Public Suffix List): "co.uk" or
//     "com" is refused.
//
// A Set is immutable after it is built and is shared freely between
// goroutines; every lookup is a handful of map probes whatever the size of
// the lists (client networks: one probe per distinct prefix length in the
// list, at most 33 for IPv4 and 129 for IPv6). A Holder publishes the Set
// in force; a message takes Current() once when its checks start and uses
// that snapshot throughout, so a swap never changes a message's lists
// half-way.
package lists
