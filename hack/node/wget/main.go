// Command wget is the subset of wget the chart's `helm test` pod runs
// (`wget -q -O- -T 5 URL`), as a static binary for the test node's own image: no image registry
// is reachable from the test machines, and Debian's busybox segfaults on `wget -T`.
//
// It GETs URL, writes the body to stdout and exits 0 on a 2xx answer, 1 otherwise (as busybox
// wget does).
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"
)

func main() {
	timeout := 10 * time.Second
	quiet := false
	url := ""
	args := os.Args[1:]
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "-q":
			quiet = true
		case a == "-O-":
		case a == "-O" && i+1 < len(args) && args[i+1] == "-":
			i++
		case a == "-T" && i+1 < len(args):
			i++
			s, err := strconv.Atoi(args[i])
			if err != nil || s <= 0 {
				fail("bad -T %q", args[i])
			}
			timeout = time.Duration(s) * time.Second
		case len(a) > 0 && a[0] == '-':
			fail("unsupported option %q (this wget knows -q, -O-, -T N)", a)
		default:
			url = a
		}
	}
	if url == "" {
		fail("usage: wget [-q] [-O-] [-T SECONDS] URL")
	}
	resp, err := (&http.Client{Timeout: timeout}).Get(url)
	if err != nil {
		fail("%v", err)
	}
	defer resp.Body.Close()
	if !quiet {
		fmt.Fprintf(os.Stderr, "wget: %s: %s\n", url, resp.Status)
	}
	if _, err := io.Copy(os.Stdout, resp.Body); err != nil {
		fail("reading the body: %v", err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		fail("server returned %s", resp.Status)
	}
}

func fail(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "wget: "+format+"\n", a...)
	os.Exit(1)
}
