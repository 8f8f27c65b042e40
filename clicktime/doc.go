// Package clicktime is foxproxy's time-of-click protection (failure table
// row 6): links in delivered mail are rewritten to point at foxproxy's
// click service, which judges each link again when it is clicked, hours
// or weeks after the message arrived and its links were clean.
//
// Three pieces:
//
//   - Signer makes and checks tokens: the original URL and a message
//     reference, authenticated with HMAC-SHA256 under a key id (RFC 2104).
//     The first key signs and every configured key verifies, so a key is
//     rotated by putting a new one first and removing the old one once
//     mail carrying it no longer matters. Tokens are not encrypted: the
//     URL is readable by whoever has the link, as it was before.
//   - Rewriter rewrites a message: the href of every <a> and <area> in
//     text/html and every http(s) URL in text/plain become
//     BaseURL/c/<token>. Only those bytes change. A changed part is
//     re-encoded with its own Content-Transfer-Encoding; its charset is
//     never converted: URLs are ASCII, so they are found and replaced in
//     the raw bytes wherever a byte below 0x80 is an ASCII character
//     (see asciiSegments for Shift_JIS and ISO-2022-JP). Headers,
//     boundaries, preamble, epilogue and every other part are copied byte
//     for byte. Signed and encrypted messages are left alone by default:
//     rewriting would break the signature.
//   - Handler is the click service: GET /c/<token> verifies the token
//     (a bad one gets a 400 page, never a redirect: no open redirector),
//     asks a URLChecker (WRS) and redirects, blocks, or, when WRS cannot
//     answer, does what OnUnavailable says.
//
// # Why a walk of its own instead of go-message
//
// go-message re-serialises what it parses: header folding, boundaries and
// transfer encodings of untouched parts would change, and so would DKIM
// body hashes of parts nobody meant to touch. The rewriter instead finds
// the byte ranges of the bodies it rewrites (RFC 2045, RFC 2046 §5.1.1) and
// splices the new bodies in; go-message is used by the tests to check the
// result parses as the original did.
//
// # What is logged per click
//
// The time, the message reference, the destination's host (not its path or
// query, which may identify the recipient), the verdict and the key id. Not
// the client's address.
package clicktime
