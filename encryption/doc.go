// Package encryption is foxproxy's encryption gateway: it finds recipients'
// keys, encrypts messages for them (OpenPGP as PGP/MIME, RFC 3156; S/MIME
// enveloped data, RFC 8551), and decrypts inbound PGP/MIME messages for
// local recipients whose private keys the gateway holds.
//
// Key lookup gives each recipient one of three outcomes, and the proxy maps
// them to configured actions:
//
//   - found: a usable key (local keyring, local certificate directory, or
//     the recipient domain's Web Key Directory);
//   - absent: the recipient definitively has no usable key (nothing local,
//     and WKD is off or answered 404/410, or the only key is expired or
//     revoked);
//   - unavailable: the key service could not say (WKD timeout, refused
//     connection, TLS failure, 5xx, or a body that is not a key for that
//     address). This is the appliance's "encryption exception" case.
//
// A WKD body that is not a usable key for the address is "unavailable", not
// "absent": a broken or misconfigured server must not make mail bounce; the
// exception action (default quarantine) holds the copy until it is fixed.
//
// Nothing here ever falls back to plaintext: Encrypt either writes a whole
// encrypted message or returns an error, and what to do then is the
// caller's decision. Key material is never logged and never put in errors.
package encryption
