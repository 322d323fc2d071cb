// Command llmserve serves scripted models (internal/llmtest scenarios) on a loopback address, for
// trying `agent do` / `agent run` without a model endpoint and for benchmarks:
//
//	go run ./internal/cmd/llmserve -dir internal/llmtest/testdata -listen 127.0.0.1:8089
//	agent do --base-url http://127.0.0.1:8089/v1 --model write-and-test "…"
//
// Each scenario file serves the model id named by the file (or its name field). It prints the
// base URL, then serves until interrupted.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/agentrun/agent/internal/llmtest"
)

func main() {
	dir := flag.String("dir", "internal/llmtest/testdata", "directory of scenario files (*.yaml, *.yml, *.json)")
	listen := flag.String("listen", "127.0.0.1:0", "loopback address to serve on")
	flag.Parse()
	scs, err := llmtest.LoadDir(*dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "llmserve:", err)
		os.Exit(2)
	}
	if len(scs) == 0 {
		fmt.Fprintln(os.Stderr, "llmserve: no scenario in", *dir)
		os.Exit(2)
	}
	srv, err := llmtest.NewServerAt(*listen, scs...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "llmserve:", err)
		os.Exit(1)
	}
	fmt.Println(srv.URL())
	for _, sc := range scs {
		fmt.Fprintf(os.Stderr, "model %s: %s\n", sc.Name, sc.Description)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	srv.Close()
}
