// Command coredns is CoreDNS with its standard plugins, built from the Go
// module proxy: the cluster DNS of the test node. Not part of the sluice module.
package main

import (
	_ "github.com/coredns/coredns/core/plugin" // every plugin of the standard build
	"github.com/coredns/coredns/coremain"
)

func main() { coremain.Run() }
