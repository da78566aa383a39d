package e2e

import (
	"testing"

	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/e2e/kubetest"
)

// The namespace deploy/base installs into.
const sluiceNamespace = "sluice"

// Every overlay of deploy/ renders with kubectl's kustomize and the real API
// server accepts every object of it (a server-side dry run: admission,
// schemas and the CRD's validation, nothing stored).
func TestEveryOverlayIsAcceptedByTheAPIServer(t *testing.T) {
	cluster := kubetest.Start(t)
	out, err := cluster.Kubectl(t, "", "create", "namespace", sluiceNamespace)
	require.NoError(t, err, out)
	for _, overlay := range []string{"base", "overlays/cpu", "overlays/gpu", "overlays/dev"} {
		t.Run(overlay, func(t *testing.T) {
			rendered, err := cluster.Kubectl(t, "", "kustomize", "../deploy/"+overlay)
			require.NoError(t, err, rendered)
			out, err := cluster.Kubectl(t, rendered, "apply", "--dry-run=server", "-f", "-")
			require.NoError(t, err, out)
			require.Contains(t, out, "statefulset.apps/nats created (server dry run)")
			require.Contains(t, out, "deployment.apps/sluice-activator created (server dry run)")
		})
	}
}
