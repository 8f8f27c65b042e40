package main

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/foxproxy/foxproxy/update"
)

// bundleCmd is the publisher's tool:
//
//	foxproxy bundle keygen -out PRIVATEKEYFILE
//	foxproxy bundle sign -key PRIVATEKEYFILE -dir DIR -out FILE [-version V]
func bundleCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: foxproxy bundle keygen -out KEYFILE | sign -key KEYFILE -dir DIR -out FILE [-version V]")
		return exitUsage
	}
	switch args[0] {
	case "keygen":
		return bundleKeygen(args[1:], stdout, stderr)
	case "sign":
		return bundleSign(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "foxproxy bundle: unknown command %q (keygen, sign)\n", args[0])
	return exitUsage
}

func bundleKeygen(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("foxproxy bundle keygen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "", "write the private key here (mode 0600; never overwritten)")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 || *out == "" {
		fmt.Fprintln(stderr, "usage: foxproxy bundle keygen -out KEYFILE")
		return exitUsage
	}
	priv, pub, err := update.GenerateKey()
	if err != nil {
		fmt.Fprintln(stderr, "foxproxy bundle keygen:", err)
		return exitFailure
	}
	f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		fmt.Fprintln(stderr, "foxproxy bundle keygen:", err)
		return exitFailure
	}
	_, err = fmt.Fprintln(f, priv)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(*out)
		fmt.Fprintln(stderr, "foxproxy bundle keygen:", err)
		return exitFailure
	}
	fmt.Fprintf(stdout, "private key written to %s; keep it off the mail servers\n", *out)
	fmt.Fprintf(stdout, "public key (update.public_key): %s\n", pub)
	return 0
}

func bundleSign(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("foxproxy bundle sign", flag.ContinueOnError)
	fs.SetOutput(stderr)
	keyFile := fs.String("key", "", "private key file (foxproxy bundle keygen)")
	dir := fs.String("dir", "", "directory of list files: approved_clients.txt, blocked_clients.txt, approved_senders.txt, blocked_senders.txt, blocked_urls.txt")
	out := fs.String("out", "", "bundle file to write")
	version := fs.String("version", "", "bundle version (default: the creation time, e.g. 20261127T120000Z)")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 || *keyFile == "" || *dir == "" || *out == "" {
		fmt.Fprintln(stderr, "usage: foxproxy bundle sign -key KEYFILE -dir DIR -out FILE [-version V]")
		return exitUsage
	}
	priv, err := update.ReadPrivateKey(*keyFile)
	if err != nil {
		fmt.Fprintln(stderr, "foxproxy bundle sign:", err)
		return exitFailure
	}
	now := time.Now().UTC()
	if *version == "" {
		*version = now.Format("20060102T150405Z")
	}
	raw, m, err := update.Build(*dir, *version, now, priv)
	if err != nil {
		fmt.Fprintln(stderr, "foxproxy bundle sign:", err)
		return exitFailure
	}
	// Written whole and renamed, so a web server never serves half a
	// bundle (foxproxy would refuse it, but needlessly).
	tmp := *out + ".tmp"
	if err := os.WriteFile(tmp, raw, 0o644); err != nil {
		fmt.Fprintln(stderr, "foxproxy bundle sign:", err)
		return exitFailure
	}
	if err := os.Rename(tmp, *out); err != nil {
		os.Remove(tmp)
		fmt.Fprintln(stderr, "foxproxy bundle sign:", err)
		return exitFailure
	}
	fmt.Fprintf(stdout, "bundle    %s, %d bytes\n", *out, len(raw))
	fmt.Fprintf(stdout, "version   %s, created %s\n", m.Version, m.Created.Format(time.RFC3339))
	names := make([]string, 0, len(m.Files))
	for n := range m.Files {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		fmt.Fprintf(stdout, "  %-22s %8d bytes  sha256 %s\n", n, m.Files[n].Size, m.Files[n].SHA256)
	}
	pub, ok := priv.Public().(ed25519.PublicKey)
	if !ok {
		fmt.Fprintln(stderr, "foxproxy bundle sign:", errors.New("bad key"))
		return exitFailure
	}
	fmt.Fprintf(stdout, "verify with update.public_key: %s\n", base64.StdEncoding.EncodeToString(pub))
	return 0
}
