// Command probe is the container the node test runs: without arguments it
// prints a line to stdout (for kubectl logs) and waits for SIGTERM; with
// "addrs" it prints the IPv4 addresses of its interfaces, one a line (for
// kubectl exec), with "status" its capability sets and whether / is
// writable, and with "echo" its other arguments.
package main

import (
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "addrs":
			addrs, err := net.InterfaceAddrs()
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			for _, a := range addrs {
				if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
					fmt.Println(n.IP)
				}
			}
			return
		case "status":
			// The capability lines of the process's status, and whether
			// the root file system can be written.
			status, err := os.ReadFile("/proc/self/status")
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			for _, line := range strings.Split(string(status), "\n") {
				if strings.HasPrefix(line, "Cap") {
					fmt.Println(line)
				}
			}
			if f, err := os.Create("/probe-write-check"); err != nil {
				fmt.Println("root: read-only")
			} else {
				f.Close()
				os.Remove("/probe-write-check")
				fmt.Println("root: writable")
			}
			return
		case "echo":
			fmt.Println(strings.Join(os.Args[2:], " "))
			return
		}
		fmt.Fprintln(os.Stderr, "usage: probe [addrs | status | echo words...]")
		os.Exit(2)
	}
	host, _ := os.Hostname()
	fmt.Printf("probe started on %s as uid %d\n", host, os.Getuid())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	fmt.Println("probe stopping")
}
