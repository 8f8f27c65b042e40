// Package update keeps foxproxy's local lists current from a signed list
// bundle served over HTTPS, the way the appliance pulled its pattern
// files: when the server cannot be reached or serves something wrong, the
// lists in force stay and the next attempt catches up (the appliance's
// failure table, row 8).
//
// A bundle is one gzip-compressed tar file holding:
//
//	manifest.json   {"version": "...", "created": RFC 3339 time,
//	                 "files": {"blocked_clients.txt": {"sha256": hex, "size": n}, ...}}
//	manifest.sig    base64 Ed25519 signature over the exact bytes of manifest.json
//	<list>.txt      one file per list named in the manifest: approved_clients,
//	                blocked_clients, approved_senders, blocked_senders, blocked_urls
//
// Nothing in a bundle is trusted before its signature is checked against
// the configured public key, and a bundle is taken whole or not at all:
// a file missing, extra, of the wrong size or hash, or with one invalid
// entry refuses the bundle.
package update

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/foxproxy/foxproxy/lists"
)

// Names inside a bundle.
const (
	ManifestName  = "manifest.json"
	SignatureName = "manifest.sig"
)

// Manifest describes a bundle.
type Manifest struct {
	Version string              `json:"version"`
	Created time.Time           `json:"created"`
	Files   map[string]FileInfo `json:"files"`
}

// FileInfo is one list file's size and SHA-256 (hex).
type FileInfo struct {
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// Bundle is a verified bundle.
type Bundle struct {
	Manifest Manifest
	// ManifestBytes are the signed bytes, which identify the bundle.
	ManifestBytes []byte
	Lists         *lists.Set
	// Raw is the bundle file as received.
	Raw []byte
}

// Reasons a bundle or an attempt fails, as Error.Reason and in the
// failure counter's label.
const (
	ReasonUnreachable = "unreachable" // connect, TLS, timeout
	ReasonHTTP        = "http_status" // not 200 or 304 (5xx included)
	ReasonTooLarge    = "too_large"   // over max_bytes
	ReasonTruncated   = "truncated"   // not a complete gzip/tar stream
	ReasonHash        = "hash"        // a file's size or SHA-256 differs from the manifest
	ReasonSignature   = "signature"   // manifest.sig missing or not by the configured key
	ReasonManifest    = "manifest"    // manifest unreadable, a file missing, extra or unknown
	ReasonMalformed   = "malformed_list"
	ReasonOlder       = "older" // created before the bundle in force (a replay)
	ReasonState       = "state_write"
)

// Error is a failed attempt with its reason.
type Error struct {
	Reason string
	Err    error
}

func (e *Error) Error() string { return e.Reason + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

func fail(reason string, format string, args ...any) error {
	return &Error{Reason: reason, Err: fmt.Errorf(format, args...)}
}

// ReasonOf returns err's reason ("" when it has none).
func ReasonOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

// Parse verifies a bundle file against pub and parses its lists.
// maxBytes bounds the unpacked content as well.
func Parse(raw []byte, pub ed25519.PublicKey, maxBytes int64) (*Bundle, error) {
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		return nil, fail(ReasonTruncated, "not a gzip file: %v", err)
	}
	tr := tar.NewReader(zr)
	files := map[string][]byte{}
	var total int64
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fail(ReasonTruncated, "reading the archive: %v", err)
		}
		if h.Typeflag != tar.TypeReg {
			return nil, fail(ReasonManifest, "%q is not a regular file", h.Name)
		}
		name := h.Name
		if strings.ContainsAny(name, "/\\") || name == "." || name == ".." {
			return nil, fail(ReasonManifest, "%q: bundle files have plain names", name)
		}
		if _, dup := files[name]; dup {
			return nil, fail(ReasonManifest, "%q appears twice", name)
		}
		if total+h.Size > maxBytes {
			return nil, fail(ReasonTooLarge, "unpacked content over %d bytes", maxBytes)
		}
		data, err := io.ReadAll(io.LimitReader(tr, h.Size))
		if err != nil || int64(len(data)) != h.Size {
			return nil, fail(ReasonTruncated, "%q cut short", name)
		}
		total += h.Size
		files[name] = data
	}
	// The gzip trailer's CRC and length are checked only at its end.
	if _, err := io.Copy(io.Discard, zr); err != nil {
		return nil, fail(ReasonTruncated, "reading the archive: %v", err)
	}

	mb, ok := files[ManifestName]
	if !ok {
		return nil, fail(ReasonManifest, "no %s", ManifestName)
	}
	sigText, ok := files[SignatureName]
	if !ok {
		return nil, fail(ReasonSignature, "no %s", SignatureName)
	}
	sig, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(sigText)))
	if err != nil || len(sig) != ed25519.SignatureSize {
		return nil, fail(ReasonSignature, "%s is not a base64 Ed25519 signature", SignatureName)
	}
	if !ed25519.Verify(pub, mb, sig) {
		return nil, fail(ReasonSignature, "the manifest's signature does not verify with the configured public key")
	}

	var m Manifest
	if err := json.Unmarshal(mb, &m); err != nil {
		return nil, fail(ReasonManifest, "%s: %v", ManifestName, err)
	}
	if m.Version == "" || m.Created.IsZero() {
		return nil, fail(ReasonManifest, "%s lacks version or created", ManifestName)
	}
	b := lists.NewBuilder()
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for n := range m.Files {
			if !yield(n) {
				return
			}
		}
	}) {
		fi := m.Files[name]
		k, ok := lists.KindOf(strings.TrimSuffix(name, ".txt"))
		if !ok || !strings.HasSuffix(name, ".txt") {
			return nil, fail(ReasonManifest, "%q is not a list file (%s.txt...)", name, lists.Names[0])
		}
		data, ok := files[name]
		if !ok {
			return nil, fail(ReasonManifest, "%q is in the manifest but not in the bundle", name)
		}
		if int64(len(data)) != fi.Size {
			return nil, fail(ReasonHash, "%q has %d bytes, the manifest says %d", name, len(data), fi.Size)
		}
		sum := sha256.Sum256(data)
		if hex.EncodeToString(sum[:]) != strings.ToLower(fi.SHA256) {
			return nil, fail(ReasonHash, "%q: SHA-256 differs from the manifest", name)
		}
		b.AddBytes(k, name, data)
	}
	for name := range files {
		if _, listed := m.Files[name]; !listed && name != ManifestName && name != SignatureName {
			return nil, fail(ReasonManifest, "%q is not in the manifest", name)
		}
	}
	set, err := b.Set()
	if err != nil {
		return nil, &Error{Reason: ReasonMalformed, Err: err}
	}
	return &Bundle{Manifest: m, ManifestBytes: mb, Lists: set, Raw: raw}, nil
}

// Build makes a signed bundle from the list files in dir (files named
// <list>.txt; other files are ignored). It refuses a list with an invalid
// entry, as foxproxy would refuse the bundle.
func Build(dir, version string, created time.Time, priv ed25519.PrivateKey) ([]byte, *Manifest, error) {
	m := &Manifest{Version: version, Created: created.UTC().Truncate(time.Second), Files: map[string]FileInfo{}}
	contents := map[string][]byte{}
	b := lists.NewBuilder()
	for _, k := range lists.Kinds() {
		name := k.String() + ".txt"
		data, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		b.AddBytes(k, filepath.Join(dir, name), data)
		sum := sha256.Sum256(data)
		m.Files[name] = FileInfo{SHA256: hex.EncodeToString(sum[:]), Size: int64(len(data))}
		contents[name] = data
	}
	if len(contents) == 0 {
		return nil, nil, fmt.Errorf("%s has no list files (%s.txt, ...)", dir, lists.Names[0])
	}
	if _, err := b.Set(); err != nil {
		return nil, nil, err
	}
	mb, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, nil, err
	}
	mb = append(mb, '\n')
	sig := base64.StdEncoding.EncodeToString(ed25519.Sign(priv, mb)) + "\n"
	raw, err := Pack(map[string][]byte{ManifestName: mb, SignatureName: []byte(sig)}, contents)
	return raw, m, err
}

// Pack writes files (manifest and signature first, then the lists in name
// order) as a tar.gz. Exported for tests that need to build broken bundles.
func Pack(head, rest map[string][]byte) ([]byte, error) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, group := range []map[string][]byte{head, rest} {
		for _, name := range slices.Sorted(func(yield func(string) bool) {
			for n := range group {
				if !yield(n) {
					return
				}
			}
		}) {
			data := group[name]
			h := &tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}
			if err := tw.WriteHeader(h); err != nil {
				return nil, err
			}
			if _, err := tw.Write(data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// GenerateKey returns a new key pair as base64 text: the private key file's
// content (the 64-byte Ed25519 private key) and the public key for
// update.public_key.
func GenerateKey() (private, public string, err error) {
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		return "", "", err
	}
	return base64.StdEncoding.EncodeToString(priv), base64.StdEncoding.EncodeToString(pub), nil
}

// ReadPrivateKey reads a private key file written by GenerateKey's output.
func ReadPrivateKey(path string) (ed25519.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(data)))
	if err != nil || len(b) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("%s: not a base64 Ed25519 private key (foxproxy bundle keygen writes one)", path)
	}
	return ed25519.PrivateKey(b), nil
}
