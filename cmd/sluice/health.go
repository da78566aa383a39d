package main

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/spf13/cobra"
)

// defaultHealthURL is the readiness of `sluice up` and `sluice activator`
// in their container; a worker's is http://127.0.0.1:9090/readyz.
const defaultHealthURL = "http://127.0.0.1:8080/v2/health/ready"

func newHealthCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "health [URL]",
		Short: "Exit 0 when a component answers its readiness probe: the image's health check, which has no shell or curl",
		Long: `health asks URL (default: $SLUICE_HEALTH_URL, else ` + defaultHealthURL + `) and exits 0 on
a 2xx answer within 3 seconds, 1 otherwise. The image's HEALTHCHECK runs it.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			url := envOr("SLUICE_HEALTH_URL", defaultHealthURL)
			if len(args) == 1 {
				url = args[0]
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 3*time.Second)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			if err != nil {
				return err
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return fmt.Errorf("health: %w", err)
			}
			resp.Body.Close()
			if resp.StatusCode/100 != 2 {
				return fmt.Errorf("health: %s answered %s", url, resp.Status)
			}
			return nil
		},
	}
}
