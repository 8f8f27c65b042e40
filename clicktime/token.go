package clicktime

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Token layout, before base64url (RFC 4648 §5, no padding):
//
//	version   1 byte, tokenVersion
//	key id    1 byte length, then the id (1..maxKeyIDLen bytes)
//	msg ref   uvarint length, then the reference (0..MaxRefLen bytes)
//	url       the rest, up to the tag
//	tag       HMAC-SHA256 under the key, over every byte above (32 bytes)
//
// Binary rather than JSON: a link is copied into every message, so each
// byte is paid for many times, and there is nothing to negotiate.
const (
	tokenVersion = 1
	tagLen       = sha256.Size
	maxKeyIDLen  = 32
	// MaxRefLen bounds the message reference carried in a token; longer
	// ones are cut.
	MaxRefLen = 128
	// MaxURLLen bounds the URL a token carries. Longer links are left as
	// they are (Result.Unchanged): a token for them would make lines no
	// mail client handles well.
	MaxURLLen = 4096
	// MinSecretLen is the shortest secret NewSigner accepts: HMAC-SHA256's
	// block of security (RFC 2104 §3 recommends at least the hash's
	// output length).
	MinSecretLen = 32
	// maxPayload and maxTokenLen bound what Verify decodes, so a long
	// garbage path costs nothing.
	maxPayload  = 1 + 1 + maxKeyIDLen + binary.MaxVarintLen64 + MaxRefLen + MaxURLLen + tagLen
	maxTokenLen = (maxPayload*8 + 5) / 6
)

// Why a token did not verify. All of them get the same 400 page; the
// distinction is for the log.
var (
	// ErrMalformed: not base64url, too short or too long, an unknown
	// version, a bad length field, or a URL that is not absolute http(s).
	ErrMalformed = errors.New("malformed token")
	// ErrUnknownKey: the key id is not (or no longer) configured.
	ErrUnknownKey = errors.New("unknown key id")
	// ErrBadMAC: the tag does not match: the token was altered or forged.
	ErrBadMAC = errors.New("bad MAC")
)

// Key is one HMAC key: ID travels in each token so that Verify knows which
// secret to use.
type Key struct {
	ID     string
	Secret []byte
}

// Signer makes and checks tokens. The first key signs; every key verifies,
// so a new key can be put first while links made with the old one keep
// working until it is removed. A Signer is immutable and safe for
// concurrent use.
type Signer struct {
	keys []Key
	byID map[string][]byte
}

// NewSigner returns a Signer for keys, or an error when there is no key, a
// key id is empty, longer than 32 bytes, not printable ASCII without
// spaces, or used twice, or a secret is shorter than MinSecretLen bytes.
func NewSigner(keys []Key) (*Signer, error) {
	if len(keys) == 0 {
		return nil, errors.New("clicktime: no keys")
	}
	s := &Signer{byID: make(map[string][]byte, len(keys))}
	for i, k := range keys {
		if err := validKeyID(k.ID); err != nil {
			return nil, fmt.Errorf("clicktime: key %d: %w", i, err)
		}
		if _, dup := s.byID[k.ID]; dup {
			return nil, fmt.Errorf("clicktime: key id %q used twice", k.ID)
		}
		if len(k.Secret) < MinSecretLen {
			return nil, fmt.Errorf("clicktime: key %q: secret has %d bytes, need at least %d", k.ID, len(k.Secret), MinSecretLen)
		}
		sec := append([]byte(nil), k.Secret...)
		s.keys = append(s.keys, Key{ID: k.ID, Secret: sec})
		s.byID[k.ID] = sec
	}
	return s, nil
}

func validKeyID(id string) error {
	if id == "" || len(id) > maxKeyIDLen {
		return fmt.Errorf("key id %q must have 1 to %d characters", id, maxKeyIDLen)
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] > '~' {
			return fmt.Errorf("key id %q must be printable ASCII without spaces", id)
		}
	}
	return nil
}

// SigningKeyID is the id of the key that signs new tokens.
func (s *Signer) SigningKeyID() string { return s.keys[0].ID }

// Token returns the token for rawURL in the message msgRef, signed with the
// first key. msgRef is cut to MaxRefLen bytes. Token does not check rawURL;
// the rewriter passes only absolute http(s) URLs of at most MaxURLLen
// bytes, and Verify refuses anything else.
func (s *Signer) Token(rawURL, msgRef string) string {
	if len(msgRef) > MaxRefLen {
		msgRef = msgRef[:MaxRefLen]
	}
	k := s.keys[0]
	b := make([]byte, 0, 2+len(k.ID)+binary.MaxVarintLen64+len(msgRef)+len(rawURL)+tagLen)
	b = append(b, tokenVersion, byte(len(k.ID)))
	b = append(b, k.ID...)
	b = binary.AppendUvarint(b, uint64(len(msgRef)))
	b = append(b, msgRef...)
	b = append(b, rawURL...)
	b = append(b, sum(k.Secret, b)...)
	return base64.RawURLEncoding.EncodeToString(b)
}

// tokenLen is len(s.Token(rawURL, msgRef)), without making it.
func tokenLen(rawURL, msgRef string, s *Signer) int {
	if len(msgRef) > MaxRefLen {
		msgRef = msgRef[:MaxRefLen]
	}
	var v [binary.MaxVarintLen64]byte
	n := 2 + len(s.keys[0].ID) + binary.PutUvarint(v[:], uint64(len(msgRef))) + len(msgRef) + len(rawURL) + tagLen
	return base64.RawURLEncoding.EncodedLen(n)
}

// Verify checks token and returns what it carries and the id of the key
// that signed it. The error wraps ErrMalformed, ErrUnknownKey or ErrBadMAC.
// The tag is compared in constant time.
func (s *Signer) Verify(token string) (rawURL, msgRef, keyID string, err error) {
	if len(token) > maxTokenLen {
		return "", "", "", fmt.Errorf("%w: %d characters", ErrMalformed, len(token))
	}
	// Strict: the last character of a token whose length is not a multiple
	// of four carries padding bits that a lenient decoder ignores (RFC 4648
	// §3.5), so up to 16 spellings of one token would verify. One token has
	// one spelling; anything else is altered.
	b, err := base64.RawURLEncoding.Strict().DecodeString(token)
	if err != nil {
		return "", "", "", fmt.Errorf("%w: not base64url", ErrMalformed)
	}
	if len(b) < 2+1+tagLen || b[0] != tokenVersion {
		return "", "", "", fmt.Errorf("%w: too short or unknown version", ErrMalformed)
	}
	body, tag := b[:len(b)-tagLen], b[len(b)-tagLen:]
	idLen := int(body[1])
	if idLen == 0 || idLen > maxKeyIDLen || 2+idLen > len(body) {
		return "", "", "", fmt.Errorf("%w: bad key id length", ErrMalformed)
	}
	keyID = string(body[2 : 2+idLen])
	secret, ok := s.byID[keyID]
	if !ok {
		return "", "", "", fmt.Errorf("%w %q", ErrUnknownKey, sanitize(keyID))
	}
	if !hmac.Equal(sum(secret, body), tag) {
		return "", "", "", fmt.Errorf("%w (key %s)", ErrBadMAC, keyID)
	}
	// Authenticated from here on: a bad field now means a bug in Token or
	// a leaked key, still refused.
	rest := body[2+idLen:]
	refLen, n := binary.Uvarint(rest)
	if n <= 0 || refLen > MaxRefLen || uint64(len(rest)-n) < refLen {
		return "", "", "", fmt.Errorf("%w: bad reference length", ErrMalformed)
	}
	msgRef = string(rest[n : n+int(refLen)])
	rawURL = string(rest[n+int(refLen):])
	if !validTarget(rawURL) {
		return "", "", "", fmt.Errorf("%w: not an absolute http(s) URL", ErrMalformed)
	}
	return rawURL, msgRef, keyID, nil
}

// validTarget: what a click may redirect to, whoever signed it. No control
// characters or spaces (they would end up in a Location header), an http
// or https scheme, a host.
func validTarget(s string) bool {
	if s == "" || len(s) > MaxURLLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] == 0x7f {
			return false
		}
	}
	u, err := url.Parse(s)
	if err != nil {
		return false
	}
	scheme := strings.ToLower(u.Scheme)
	return (scheme == "http" || scheme == "https") && u.Host != ""
}

// sum is the HMAC-SHA256 tag of msg under secret.
func sum(secret, msg []byte) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write(msg)
	return h.Sum(nil)
}

// sanitize makes an unauthenticated key id safe to log.
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r > '~' {
			return '?'
		}
		return r
	}, s)
}
