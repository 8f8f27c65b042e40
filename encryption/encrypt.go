package encryption

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/smallstep/pkcs7"
)

func init() {
	// smallstep/pkcs7 takes its algorithms from package variables (the
	// default is DES-CBC). Set once here, before any goroutine can encrypt;
	// nothing else in foxproxy uses pkcs7. AES-256-CBC rather than GCM:
	// pkcs7 puts GCM into EnvelopedData, where RFC 5083 wants
	// AuthEnvelopedData, and OpenSSL refuses that. Key transport stays RSA
	// PKCS #1 v1.5, which RFC 8551 §2.3 makes every receiver support:
	// pkcs7's RSAES-OAEP with SHA-256 labels the mask function MGF1-SHA1 but
	// uses MGF1-SHA256, so OpenSSL cannot read it.
	pkcs7.ContentEncryptionAlgorithm = pkcs7.EncryptionAlgorithmAES256CBC
	pkcs7.KeyEncryptionAlgorithm = pkcs7.OIDEncryptionAlgorithmRSA
}

// errMalformedHeader marks a header that cannot be split into fields (as
// opposed to an error reading it).
var errMalformedHeader = errors.New("malformed header")

// field is one header field, raw, with CRLF line ends.
type field struct {
	name string // as written
	raw  []byte
}

func (f field) isContent() bool {
	n := strings.ToLower(f.name)
	return strings.HasPrefix(n, "content-") || n == "mime-version"
}

// readHeader reads the header block up to and including the empty line,
// leaving br at the first body byte. Line ends become CRLF.
func readHeader(br *bufio.Reader) ([]field, error) {
	var fields []field
	for {
		line, err := br.ReadBytes('\n')
		if err != nil && (err != io.EOF || len(line) == 0) {
			if err == io.EOF {
				return fields, nil // header only, no body
			}
			return nil, err
		}
		line = append(bytes.TrimRight(line, "\r\n"), '\r', '\n')
		if len(line) == 2 {
			return fields, nil
		}
		if line[0] == ' ' || line[0] == '\t' {
			if len(fields) == 0 {
				return nil, fmt.Errorf("%w: starts with a continuation line", errMalformedHeader)
			}
			last := &fields[len(fields)-1]
			last.raw = append(last.raw, line...)
			continue
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return nil, fmt.Errorf("%w: line %q", errMalformedHeader, truncate(line, 40))
		}
		fields = append(fields, field{name: string(bytes.TrimSpace(line[:colon])), raw: line})
		if err == io.EOF {
			return fields, nil
		}
	}
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}

// splitMessage reads src's header and returns the outer fields (routing,
// display, trace: everything but Content-* and MIME-Version), the inner
// entity's header (the Content-* fields, then the empty line), and the
// body.
func splitMessage(src io.Reader) (outer []field, inner []byte, body *bufio.Reader, err error) {
	br := bufio.NewReader(src)
	fields, err := readHeader(br)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("encryption: reading the message header: %w", err)
	}
	var ib bytes.Buffer
	for _, f := range fields {
		switch {
		case strings.EqualFold(f.name, "mime-version"):
			// The outer header gets its own.
		case f.isContent():
			ib.Write(f.raw)
		default:
			outer = append(outer, f)
		}
	}
	ib.WriteString("\r\n")
	return outer, ib.Bytes(), br, nil
}

// Encrypt writes the whole encrypted message (header and body, CRLF) to
// dst for recipients that Lookup found, all with the same Method. The outer
// header keeps every field of src except Content-* and MIME-Version; the
// encrypted entity holds those and the body. Nothing of the original body
// is written in the clear. On error dst may hold a partial message, which
// the caller must discard.
func (g *Gateway) Encrypt(rcpts []Recipient, src io.Reader, dst io.Writer) error {
	if len(rcpts) == 0 {
		return errors.New("encryption: no recipients")
	}
	method := rcpts[0].Method
	for _, r := range rcpts {
		if r.Outcome != Found || (r.pgp == nil && r.cert == nil) {
			return fmt.Errorf("encryption: no key for %s (outcome %q)", r.Addr, r.Outcome)
		}
		if r.Method != method {
			return fmt.Errorf("encryption: recipients need different methods (%s for %s, %s for %s); encrypt each group separately", method, rcpts[0].Addr, r.Method, r.Addr)
		}
	}
	outer, inner, body, err := splitMessage(src)
	if err != nil {
		return err
	}
	switch method {
	case MethodOpenPGP:
		to := make([]*openpgp.Entity, len(rcpts))
		for i, r := range rcpts {
			to[i] = r.pgp
		}
		return g.encryptPGP(to, outer, inner, body, dst)
	case MethodSMIME:
		certs := make([]*x509.Certificate, len(rcpts))
		for i, r := range rcpts {
			certs[i] = r.cert
		}
		return encryptSMIME(certs, outer, inner, body, dst)
	}
	return fmt.Errorf("encryption: unknown method %q", method)
}

func writeFields(w io.Writer, fields []field) error {
	for _, f := range fields {
		if _, err := w.Write(f.raw); err != nil {
			return err
		}
	}
	return nil
}

func boundary() string {
	var b [15]byte
	_, _ = rand.Read(b[:])
	return "foxproxy-" + hex.EncodeToString(b[:])
}

// encryptPGP writes PGP/MIME (RFC 3156 §4). It uses go-crypto directly
// rather than pgpmail.Encrypt: pgpmail puts the MIME fields above the trace
// fields, and encrypts in text mode, which lets a receiver rewrite line ends
// of what is a MIME entity (RFC 3156 §4 wants it exact); here the literal
// data is binary.
func (g *Gateway) encryptPGP(to []*openpgp.Entity, outer []field, inner []byte, body io.Reader, dst io.Writer) error {
	bw := bufio.NewWriter(dst)
	b := boundary()
	if err := writeFields(bw, outer); err != nil {
		return err
	}
	fmt.Fprintf(bw, "MIME-Version: 1.0\r\nContent-Type: multipart/encrypted;\r\n\tprotocol=\"application/pgp-encrypted\";\r\n\tboundary=\"%s\"\r\n\r\n", b)
	fmt.Fprintf(bw, "This is an OpenPGP/MIME encrypted message (RFC 3156).\r\n")
	fmt.Fprintf(bw, "--%s\r\nContent-Type: application/pgp-encrypted\r\nContent-Description: PGP/MIME version identification\r\n\r\nVersion: 1\r\n\r\n", b)
	fmt.Fprintf(bw, "--%s\r\nContent-Type: application/octet-stream; name=\"encrypted.asc\"\r\nContent-Description: OpenPGP encrypted message\r\nContent-Disposition: inline; filename=\"encrypted.asc\"\r\n\r\n", b)
	aw, err := armor.Encode(&crlfWriter{w: bw}, "PGP MESSAGE", nil)
	if err != nil {
		return err
	}
	cfg := &packet.Config{DefaultCipher: packet.CipherAES256}
	pw, err := openpgp.Encrypt(aw, to, nil, &openpgp.FileHints{IsBinary: true}, cfg)
	if err != nil {
		return fmt.Errorf("encryption: openpgp: %w", err)
	}
	if _, err := pw.Write(inner); err != nil {
		return err
	}
	if _, err := io.Copy(pw, body); err != nil {
		return fmt.Errorf("encryption: reading the message: %w", err)
	}
	if err := pw.Close(); err != nil {
		return err
	}
	if err := aw.Close(); err != nil {
		return err
	}
	fmt.Fprintf(bw, "\r\n--%s--\r\n", b)
	return bw.Flush()
}

// crlfWriter turns the armor's LF line ends into CRLF (armor never writes
// CR itself).
type crlfWriter struct{ w io.Writer }

func (c *crlfWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			m, err := c.w.Write(p)
			return n + m, err
		}
		if _, err := c.w.Write(p[:i]); err != nil {
			return n, err
		}
		if _, err := c.w.Write([]byte("\r\n")); err != nil {
			return n, err
		}
		n += i + 1
		p = p[i+1:]
	}
	return n, nil
}

// encryptSMIME writes an RFC 8551 §3.3 application/pkcs7-mime enveloped-data
// message. pkcs7 encrypts in memory; messages are bounded by
// max_message_bytes.
func encryptSMIME(certs []*x509.Certificate, outer []field, inner []byte, body io.Reader, dst io.Writer) error {
	content := bytes.NewBuffer(inner)
	if _, err := io.Copy(content, body); err != nil {
		return fmt.Errorf("encryption: reading the message: %w", err)
	}
	der, err := pkcs7.Encrypt(content.Bytes(), certs)
	if err != nil {
		return fmt.Errorf("encryption: s/mime: %w", err)
	}
	bw := bufio.NewWriter(dst)
	if err := writeFields(bw, outer); err != nil {
		return err
	}
	bw.WriteString("MIME-Version: 1.0\r\n" +
		"Content-Type: application/pkcs7-mime; smime-type=enveloped-data;\r\n\tname=\"smime.p7m\"\r\n" +
		"Content-Transfer-Encoding: base64\r\n" +
		"Content-Disposition: attachment; filename=\"smime.p7m\"\r\n" +
		"Content-Description: S/MIME Encrypted Message\r\n\r\n")
	enc := base64.StdEncoding.EncodeToString(der)
	for len(enc) > 76 { // RFC 2045 §6.8
		bw.WriteString(enc[:76])
		bw.WriteString("\r\n")
		enc = enc[76:]
	}
	bw.WriteString(enc)
	bw.WriteString("\r\n")
	return bw.Flush()
}
