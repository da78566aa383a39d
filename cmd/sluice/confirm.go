package main

import (
	"bufio"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// errNotConfirmed says a destructive command was not confirmed: nothing was done.
var errNotConfirmed = errors.New("not confirmed: nothing was done (--yes skips the question)")

// confirm asks question on the command's error output and reads the answer
// from its input, unless yes was given; only y or yes goes on. With no
// answer to read (a script's empty input), it does not go on either.
func confirm(cmd *cobra.Command, yes bool, question string) error {
	if yes {
		return nil
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "%s [y/N] ", question)
	answer, _ := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
	switch strings.ToLower(strings.TrimSpace(answer)) {
	case "y", "yes":
		return nil
	}
	fmt.Fprintln(cmd.ErrOrStderr())
	return errNotConfirmed
}
