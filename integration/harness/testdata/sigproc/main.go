// Command sigproc stands in for foxproxy in the harness's own tests of Build
// and RunProcess: it logs its start and each signal, and exits 0 on SIGTERM.
//
//	sigproc              run until SIGTERM
//	sigproc exit3        exit with status 3 at once
//	sigproc ignore-term  ignore SIGTERM (to test the SIGKILL after StopTimeout)
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	mode := ""
	if len(os.Args) > 1 {
		mode = os.Args[1]
	}
	if mode == "exit3" {
		fmt.Println("sigproc exiting with 3")
		os.Exit(3)
	}
	sigs := make(chan os.Signal, 4)
	if mode == "ignore-term" {
		signal.Ignore(syscall.SIGTERM)
		signal.Notify(sigs, syscall.SIGHUP)
	} else {
		signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM)
	}
	fmt.Printf("sigproc started pid=%d\n", os.Getpid())
	for sig := range sigs {
		fmt.Printf("sigproc got %v\n", sig)
		if sig == syscall.SIGTERM {
			fmt.Println("sigproc bye")
			return
		}
	}
}
