package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/foxproxy/foxproxy/console"
)

// maxPasswdInput bounds the line passwd reads (the console refuses longer
// passwords at login anyway).
const maxPasswdInput = 1024

// passwdCmd runs "foxproxy passwd": it reads a password, the first line of
// standard input, and prints its argon2id hash for console.users. The
// password never appears in the arguments (ps shows those to everyone).
func passwdCmd(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		if isHelpFlag(args[0]) {
			fmt.Fprint(stdout, passwdUsage)
			return exitOK
		}
		fmt.Fprintf(stderr, "foxproxy passwd: unexpected argument %q\n%s", args[0], passwdUsage)
		return exitUsage
	}
	if f, ok := stdin.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			fmt.Fprint(stderr, "Password (shown as you type; pipe it in to keep it off the screen): ")
		}
	}
	pw, err := readPasswordLine(stdin)
	if err != nil {
		fmt.Fprintf(stderr, "foxproxy passwd: %v\n", err)
		return exitFailure
	}
	h, err := console.HashPassword(pw)
	if err != nil {
		fmt.Fprintf(stderr, "foxproxy passwd: %v\n", err)
		return exitFailure
	}
	fmt.Fprintln(stdout, h)
	return exitOK
}

const passwdUsage = `usage: foxproxy passwd < FILE
Reads a password (the first line of standard input) and prints its argon2id
hash, for a password_hash of console.users. Exit status: 0 done, 1 failed,
2 usage error.
`

func readPasswordLine(r io.Reader) (string, error) {
	line, err := bufio.NewReader(io.LimitReader(r, maxPasswdInput+2)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	if len(line) > maxPasswdInput && !strings.HasSuffix(line, "\n") {
		return "", fmt.Errorf("the password is longer than %d bytes", maxPasswdInput)
	}
	line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	if line == "" {
		return "", errors.New("no password on standard input (the first line is the password)")
	}
	return line, nil
}
