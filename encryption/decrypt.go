package encryption

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"strings"
	"sync"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	pgperrors "github.com/ProtonMail/go-crypto/openpgp/errors"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/emersion/go-message/textproto"
	"go.uber.org/zap"
)

// DecryptResult says what Decrypt did.
type DecryptResult struct {
	// Applicable: src is PGP/MIME encrypted and the gateway holds a private
	// key of at least one of the recipients.
	Applicable bool
	// Decrypted: dst holds the decrypted message.
	Decrypted bool
	// KeyID is the (public) ID of the key that decrypted it, 16 hex digits.
	KeyID string
	// Note says why an applicable message was not decrypted, or what the
	// recipient should know about one that was; for the trace header.
	Note string
}

// Decrypt decrypts a PGP/MIME message (RFC 3156 §4) for local recipients
// whose private keys are in decrypt.key_dir. Pass the recipients the
// decrypted copy will go to: any of their keys may decrypt it.
//
// Not encrypted, or no key held for any of rcpts: Applicable is false and
// dst untouched. Applicable but not decryptable (encrypted to other keys,
// damaged, failed integrity check): Decrypted is false, Note says why, dst
// is untouched, and the caller delivers the original. Decrypted: dst holds
// the outer header without its Content-* fields, then the decrypted
// entity's Content-* fields and body, with CRLF line ends. The error is
// for reading src or writing dst only.
func (g *Gateway) Decrypt(rcpts []string, src io.Reader, dst io.Writer) (DecryptResult, error) {
	if g.secrets == nil {
		return DecryptResult{}, nil
	}
	br := bufio.NewReader(src)
	fields, err := readHeader(br)
	if err != nil {
		if errors.Is(err, errMalformedHeader) {
			return DecryptResult{}, nil // not a message we can make sense of: not ours to decrypt
		}
		return DecryptResult{}, err
	}
	var ctype string
	for _, f := range fields {
		if strings.EqualFold(f.name, "content-type") {
			ctype = fieldValue(f)
		}
	}
	t, params, err := mime.ParseMediaType(ctype)
	if err != nil || !strings.EqualFold(t, "multipart/encrypted") || !strings.EqualFold(params["protocol"], "application/pgp-encrypted") || params["boundary"] == "" {
		return DecryptResult{}, nil
	}
	now := g.now()
	if p, err := g.secrets.refresh(now); err != nil || len(p) > 0 {
		g.log.Warn("decrypt.key_dir problems; using the keys that loaded", zap.Error(errors.Join(append(p, err)...)))
	}
	var keys openpgp.EntityList
	seen := map[*openpgp.Entity]bool{}
	for _, r := range rcpts {
		for _, e := range g.secrets.get(r) {
			if !seen[e] {
				seen[e] = true
				keys = append(keys, e)
			}
		}
	}
	if len(keys) == 0 {
		return DecryptResult{}, nil
	}

	res := DecryptResult{Applicable: true}
	armored, err := encryptedPart(br, params["boundary"])
	if err != nil {
		res.Note = "malformed PGP/MIME: " + err.Error()
		return res, nil
	}
	block, err := armor.Decode(armored)
	if err != nil {
		res.Note = "malformed PGP/MIME: the encrypted part is not ASCII-armored OpenPGP data"
		return res, nil
	}
	asked := &recordingKeyRing{EntityList: keys}
	md, err := openpgp.ReadMessage(block.Body, asked, nil, &packet.Config{})
	if err != nil {
		if errors.Is(err, pgperrors.ErrKeyIncorrect) {
			res.Note = "encrypted to keys foxproxy does not hold (" + asked.ids() + ")"
		} else {
			res.Note = "cannot decrypt: " + err.Error()
		}
		return res, nil
	}
	if !md.IsEncrypted {
		res.Note = "the PGP/MIME part is not encrypted"
		return res, nil
	}
	res.KeyID = strings.ToUpper(md.DecryptedWith.PublicKey.KeyIdString())
	// The whole plaintext is read before anything is written: the integrity
	// check (MDC or AEAD tag) is known only at its end.
	plain, err := io.ReadAll(md.UnverifiedBody)
	if err != nil {
		res.Note = "decryption failed the integrity check: " + err.Error()
		res.KeyID = ""
		return res, nil
	}
	plain = toCRLF(plain)
	pbr := bufio.NewReader(bytes.NewReader(plain))
	innerFields, err := readHeader(pbr)
	if err != nil {
		res.Note = "the decrypted content is not a MIME entity"
		return res, nil
	}
	if md.IsSigned {
		res.Note = fmt.Sprintf("signed by key %016X inside the encryption; the signature is not verified and not kept", md.SignedByKeyId)
	}

	bw := bufio.NewWriter(dst)
	hasMIMEVersion := false
	for _, f := range fields {
		if strings.EqualFold(f.name, "mime-version") {
			hasMIMEVersion = true
		}
		if f.isContent() && !strings.EqualFold(f.name, "mime-version") {
			continue
		}
		bw.Write(f.raw)
	}
	if !hasMIMEVersion {
		bw.WriteString("MIME-Version: 1.0\r\n")
	}
	for _, f := range innerFields {
		// Only the entity's own fields: a protected Subject or From in the
		// encrypted part would duplicate the outer ones.
		if f.isContent() && !strings.EqualFold(f.name, "mime-version") {
			bw.Write(f.raw)
		}
	}
	bw.WriteString("\r\n")
	if _, err := io.Copy(bw, pbr); err != nil {
		return DecryptResult{}, err
	}
	if err := bw.Flush(); err != nil {
		return DecryptResult{}, err
	}
	res.Decrypted = true
	return res, nil
}

// encryptedPart returns the body of the second part of a
// multipart/encrypted body after checking the first (RFC 3156 §4).
func encryptedPart(body io.Reader, boundary string) (io.Reader, error) {
	mr := textproto.NewMultipartReader(body, boundary)
	p, err := mr.NextPart()
	if err != nil {
		return nil, fmt.Errorf("no control part: %v", err)
	}
	if t, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type")); !strings.EqualFold(t, "application/pgp-encrypted") {
		return nil, fmt.Errorf("first part is %q, not application/pgp-encrypted", t)
	}
	ctl, _ := io.ReadAll(io.LimitReader(p, 4096))
	if !bytes.Contains(ctl, []byte("Version: 1")) {
		return nil, errors.New("control part lacks \"Version: 1\"")
	}
	p, err = mr.NextPart()
	if err != nil {
		return nil, fmt.Errorf("no encrypted part: %v", err)
	}
	if t, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type")); !strings.EqualFold(t, "application/octet-stream") {
		return nil, fmt.Errorf("second part is %q, not application/octet-stream", t)
	}
	return p, nil
}

// fieldValue is a header field's unfolded value.
func fieldValue(f field) string {
	v := f.raw[bytes.IndexByte(f.raw, ':')+1:]
	v = bytes.ReplaceAll(v, []byte("\r\n"), nil)
	return strings.TrimSpace(string(v))
}

// toCRLF makes every line end CRLF: a sender's client may have encrypted
// an entity with bare LFs, and foxproxy never passes those on.
func toCRLF(b []byte) []byte {
	if !bytes.Contains(b, []byte("\n")) {
		return b
	}
	out := make([]byte, 0, len(b)+len(b)/40)
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			out = append(out, '\r')
		}
		if c == '\r' && (i+1 == len(b) || b[i+1] != '\n') {
			out = append(out, '\r', '\n') // a bare CR is a line end too
			continue
		}
		out = append(out, c)
	}
	return out
}

// recordingKeyRing notes the key IDs a message is encrypted to, for the note
// when none of them is ours.
type recordingKeyRing struct {
	openpgp.EntityList
	mu   sync.Mutex
	seen []uint64
}

func (k *recordingKeyRing) KeysById(id uint64) []openpgp.Key {
	k.mu.Lock()
	k.seen = append(k.seen, id)
	k.mu.Unlock()
	return k.EntityList.KeysById(id)
}

func (k *recordingKeyRing) ids() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.seen) == 0 {
		return "no key IDs given"
	}
	s := make([]string, len(k.seen))
	for i, id := range k.seen {
		s[i] = fmt.Sprintf("%016X", id)
	}
	return "key IDs " + strings.Join(s, ", ")
}
