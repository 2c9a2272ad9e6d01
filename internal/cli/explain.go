package cli

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/herald-lb/herald/internal/report"
)

// serviceArg reads svc/NAME, service/NAME, services/NAME or NAME.
func serviceArg(arg string) (string, error) {
	kind, name, ok := strings.Cut(arg, "/")
	if !ok {
		return arg, nil
	}
	switch kind {
	case "svc", "service", "services":
	default:
		return "", fmt.Errorf("%q: explain takes a Service: svc/NAME, service/NAME or NAME", arg)
	}
	if name == "" || strings.Contains(name, "/") {
		return "", fmt.Errorf("%q: want svc/NAME", arg)
	}
	return name, nil
}

func newExplainCommand(hooks inspectHooks) *cobra.Command {
	var (
		f         inspectFlags
		namespace string
	)
	cmd := &cobra.Command{
		Use:   "explain svc/NAME",
		Short: "Explain one Service end to end: class, pools, address, policies, each node, owner, endpoints",
		Long: `Follow one Service through Herald and say the decision at each step:
  1. class: does Herald serve it (type LoadBalancer; class herald.dev/l2, or
     none unless --default-class=false), and if not, why;
  2. pools: each pool, whether it may serve the Service and why not (pinned
     to another pool, serviceSelector, conflict, disabled, family, full), the
     address it got and from which pool, the sharing key, or the
     herald.dev/IPAllocated reason while it has none (OutOfIPs, …);
  3. policies: each L2AnnouncementPolicy, whether it selects the Service and
     why not (serviceSelector, invalid, loadBalancerIPs: false);
  4. nodes: for each node, eligible (on which interfaces) or why not
     (nodeSelector, the exclude label, the interface regexes against the
     interfaces its agent reports, no agent, externalTrafficPolicy Local
     without a ready endpoint there, no heartbeat key, a key mismatch on its
     segment);
  5. owner: the node answering for each address, its interface and MAC,
     since when; another host using it; the herald.dev/Announced condition;
  6. endpoints: the endpoints behind the Service and their nodes.
The decisions are the controller's and the agents' own functions applied to
what the API server holds. It reads, one LIST each: pools, policies,
HeraldNodes, Nodes, the Services of every namespace (to see the Services
sharing an address) and the EndpointSlices of the Service's namespace.
Exits 1 unless the Service is announced without a problem (not found, not
Herald's, pending, unannounced, an address conflict, a key mismatch).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, err := serviceArg(args[0])
			if err != nil {
				return err
			}
			s, err := f.connect(hooks)
			if err != nil {
				return err
			}
			ns := namespace
			if ns == "" {
				ns = s.namespace
			}
			return f.run(cmd, func(ctx context.Context, w io.Writer) error {
				in, err := s.load(ctx, kinds{pools: true, policies: true, reports: true, nodes: true, services: true,
					endpointSlices: true, endpointsNamespace: ns}, f.defaultClass)
				if err != nil {
					return err
				}
				r := report.Explain(in, ns, name)
				return emit(w, f.output, r, r.Problems, func() error { return report.WriteExplain(w, r, s.now) })
			})
		},
	}
	f.register(cmd, true)
	f.registerWatch(cmd)
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "", "namespace of the Service (default: the kubeconfig context's)")
	return cmd
}
