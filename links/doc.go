// Package links finds the web links in a mail message and turns them into
// the keys that reputation lists look up: registrable domains, host names
// and IP addresses.
//
// It sits below the pipeline and every stage: pipeline.Transaction.Links
// runs one extraction per message for the stages that need the links, web
// reputation (package reputation, WRS) asks its DNS URI block lists and
// Safe Browsing about Result.Keys and Result.URLs, and the lists stage
// (package lists/liststage) looks the hosts up in blocked_urls. It imports
// none of them. Everything is bounded (Limits) and nothing fails: a message
// that cannot be fully read yields what was found and notes that say why
// the rest is missing.
//
// # What is read
//
// Every MIME part is walked as github.com/emersion/go-message walks it:
// nested multiparts, attached messages (message/rfc822, message/global)
// and, in multipart/digest, parts without a Content-Type (RFC 2046 §5.1.5).
// The body of a multipart message is read ahead, up to 256 KiB; when it
// ends there, a multipart in it whose structure is exact (RFC 2046 §5.1.1
// delimiters, a close delimiter, plain part headers) is split by this
// package; any other multipart is read by go-message, with the same result.
// Quoted-printable and base64 are decoded, leniently as mail clients do
// (stray bytes are skipped rather than ending the part), and so is the
// part's charset; an unknown charset is read as-is (URLs are ASCII in every
// ASCII-compatible charset) and noted. text/html (and an attachment named
// *.html) is tokenized as golang.org/x/net/html tokenizes it: the common
// markup (text, tags, comments, <style>, <title>) by a byte scanner of this
// package, anything else by that tokenizer, which takes over for the rest of
// the part; an HTML part without a MIME charset uses its <meta charset>.
// Other text/* parts are plain text. Headers are not scanned: their URLs
// (List-Unsubscribe, DKIM) belong to the sender's infrastructure, not to
// what the reader is asked to click.
//
// In HTML the URL attributes are taken (href, src, action, formaction,
// background, cite, data, poster, srcset, ping and a few legacy ones), any
// other attribute holding "://" (event handlers, meta refresh) is scanned as
// text, as are style sheets and the visible text, which is joined across
// inline tags as it is displayed ("http://ev<b></b>il.example" is one URL).
// Scripts and comments are skipped (mail clients neither run nor show
// them); <noscript> is parsed as markup. Relative links are ignored: they
// point to the <base href> host, which is reported itself.
//
// In text, URLs with an http, https or ftp scheme are found with
// mvdan.cc/xurls' strict rule. Text also yields scheme-less hosts, as
// URIBL users expect (SpamAssassin and rspamd do the same): "www." followed
// by a name in a known top-level domain, or any such name followed by a
// path ("example.com/login"). A bare "example.com" is not taken: too many
// file names (readme.md, setup.sh) look like one. Config.StrictText turns
// scheme-less matching off. Japanese text runs on after a URL without a
// space ("詳細はhttp://example.jp/をご覧ください。"), and xurls, which accepts
// IRIs, would take the sentence in: a URL in text ends where CJK text or
// punctuation, or a quotation mark, follows an ASCII character (host labels
// written in CJK, as in http://日本語.jp/, are kept).
//
// # Normalisation
//
// Each URL is parsed the way a browser would (WHATWG URL rules for special
// schemes, on the RFC 3986 syntax): the scheme and host are lower-cased,
// userinfo, port and fragment are removed, an internationalised host is
// converted to Punycode (RFC 5891 §5, UTS #46 mapping: bücher.example is
// xn--bcher-kva.example, full-width ｅｘａｍｐｌｅ．ｃｏｍ is example.com) and a
// trailing dot is dropped. A host whose last label is numeric is an IPv4
// address in any form a browser accepts (http://3232235777/,
// http://0xC0A80101/ and http://0300.0250.1.1/ are all 192.168.1.1) and is
// reported as that address, flagged Obfuscated unless it was written as the
// dotted quad; bracketed IPv6 literals are addresses too (IPv4-mapped ones
// as their IPv4 address). Userinfo and percent-encoded hosts also set
// Obfuscated, a signal policy may use. A host that is not a valid DNS name,
// or that has no registrable domain (localhost, co.jp), is dropped with a
// note. The registrable domain comes from the Public Suffix List including
// its private section, so a blog at victim.blogspot.com is its own domain.
//
// Known redirectors (Config.Redirectors, e.g. DefaultRedirectors: Google
// /url?q=, Microsoft Safe Links, Proofpoint URL Defense) are unwrapped: both
// the wrapper and its target are reported, the target with Via set, so a
// listed wrapper still counts and a listed target is not hidden.
//
// URLs are de-duplicated on their normalised form, kept in order of first
// appearance, at most Limits.MaxURLs of them and Limits.MaxURLsPerHost per
// host; Result.Keys gives the distinct lookup keys in a fixed order.
//
// # Limits
//
// Reaching MaxURLs, MaxParts, MaxBytes or MaxInputBytes stops the
// extraction; MaxDepth and MaxHeaderBytes skip what is too deep or too big
// and go on. Each sets Result.Truncated and adds a note, so WRS can tell
// "clean" from "clean as far as we looked". MaxURLsPerHost skips only links
// that add no lookup key and does not set Truncated. The work per message
// is linear in MaxBytes and MaxInputBytes. Memory is a few buffers of 4 to
// 32 KiB, the read-ahead (at most 256 KiB) and the kept URLs, plus at worst
// the largest single HTML token (at most MaxBytes) and a part header inside
// go-message (at most about 80 times MaxHeaderBytes).
//
// # Why not plain go-message decoding
//
// Three guards sit around go-message, each found necessary by tests or
// fuzzing: part headers are capped before go-message reads them (it keeps
// whole headers in memory); quoted-printable lines longer than 4 KiB and
// stray control bytes, which make mime/quotedprintable give up, are
// repaired; and bytes outside the base64 alphabet, and base64 that goes on
// after "=" padding, are handled as mail clients handle them instead of
// ending the part. A broken multipart is read to its end as plain text.
package links
