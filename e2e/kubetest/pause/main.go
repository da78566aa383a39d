// Command pause is the sandbox image of the test node's pods: it holds a
// pod's namespaces and waits, as Kubernetes' pause does, until it is told
// to stop. Built static, it runs FROM scratch.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
}
