package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/herald-lb/herald/internal/migrate"
)

// ErrNotTranslated is returned (wrapped) by import when part of the
// configuration could not be translated; what could be is printed.
var ErrNotTranslated = errors.New("not everything could be translated")

// peerResources are the resources import --cluster lists, per source, each
// with the versions to try (newest first).
var peerResources = map[migrate.Source][]struct {
	group, resource string
	versions        []string
}{
	migrate.MetalLB: {
		{"metallb.io", "ipaddresspools", []string{"v1beta1"}},
		{"metallb.io", "l2advertisements", []string{"v1beta1"}},
		{"metallb.io", "bgpadvertisements", []string{"v1beta1"}},
		{"metallb.io", "bgppeers", []string{"v1beta2", "v1beta1"}},
	},
	migrate.Cilium: {
		{"cilium.io", "ciliumloadbalancerippools", []string{"v2", "v2alpha1"}},
		{"cilium.io", "ciliuml2announcementpolicies", []string{"v2alpha1"}},
	},
}

func newImportCommand(hooks inspectHooks) *cobra.Command {
	var (
		from, kubeconfig, kubeContext string
		cluster                       bool
	)
	cmd := &cobra.Command{
		Use:   "import --from metallb|cilium (FILE… | --cluster)",
		Short: "Translate MetalLB's or Cilium's pools and L2 announcement objects into Herald's",
		Long: `Translate the LB-IPAM and L2 announcement configuration of MetalLB
(IPAddressPool, L2Advertisement) or Cilium (CiliumLoadBalancerIPPool,
CiliumL2AnnouncementPolicy) into Herald's LoadBalancerIPPool and
L2AnnouncementPolicy, written to standard output as YAML for
kubectl apply -f -.

It reads the files given (YAML or JSON, several documents or a List as
kubectl get -o yaml prints it; - is standard input), or with --cluster lists
the objects from the API server of the kubeconfig. It writes nothing to the
cluster.

The translation keeps the addresses handed out and announced: defaults that
differ are written out (MetalLB and Cilium hand out a CIDR's first and last
addresses, Cilium's policies announce no load-balancer address unless
loadBalancerIPs is true). What has no Herald equivalent is listed on
standard error, field by field, with what to do; an object that could only
be translated by widening it (a MetalLB pool with autoAssign: false or
namespaceSelectors, an advertisement of some pools only when those pools
serve every Service) is not written at all. Services keep working without
edits: Herald honours MetalLB's and Cilium's Service annotations for
requested addresses and sharing.

Exits 1 when something could not be translated.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			src, err := migrate.ParseSource(from)
			if err != nil {
				return fmt.Errorf("--from: %w", err)
			}
			var objs []migrate.Object
			switch {
			case cluster && len(args) > 0:
				return errors.New("give files or --cluster, not both")
			case cluster:
				cfg, _, err := loadConfig(kubeconfig, kubeContext, hooks)
				if err != nil {
					return err
				}
				if objs, err = listPeerObjects(cmd.Context(), cfg, src); err != nil {
					return err
				}
			case len(args) == 0:
				return errors.New("give the files to translate (- for standard input), or --cluster")
			default:
				for _, name := range args {
					o, err := readObjects(name, cmd.InOrStdin())
					if err != nil {
						return err
					}
					objs = append(objs, o...)
				}
			}
			res, err := migrate.Translate(src, objs)
			if err != nil {
				return err
			}
			if err := res.WriteYAML(cmd.OutOrStdout()); err != nil {
				return err
			}
			if err := writeNotes(cmd.ErrOrStderr(), res); err != nil {
				return err
			}
			if res.Lost() {
				return fmt.Errorf("%w (exit code 1)", ErrNotTranslated)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&from, "from", "", "the load balancer whose configuration to translate: metallb or cilium")
	fl.BoolVar(&cluster, "cluster", false, "read the objects from the API server instead of files")
	fl.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file for --cluster (default: $KUBECONFIG, else ~/.kube/config, as kubectl)")
	fl.StringVar(&kubeContext, "context", "", "kubeconfig context for --cluster (default: the current context)")
	_ = cmd.MarkFlagRequired("from")
	return cmd
}

// readObjects reads the objects of one file (- is in).
func readObjects(name string, in io.Reader) ([]migrate.Object, error) {
	r := in
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	objs, err := migrate.Parse(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return objs, nil
}

// loadConfig loads the client configuration and the default namespace as
// kubectl would.
func loadConfig(kubeconfig, kubeContext string, hooks inspectHooks) (*rest.Config, string, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: kubeContext})
	cfg, err := cc.ClientConfig()
	if err != nil {
		return nil, "", fmt.Errorf("load kubeconfig: %w", err)
	}
	ns, _, err := cc.Namespace()
	if err != nil {
		return nil, "", fmt.Errorf("load kubeconfig: %w", err)
	}
	cfg = rest.CopyConfig(cfg)
	cfg.UserAgent = "herald-cli/" + Version
	if cfg.QPS == 0 && cfg.Burst == 0 {
		// kubectl's limits: client-go's default (5/s) would make doctor's
		// fifty access reviews take ten seconds.
		cfg.QPS, cfg.Burst = 50, 300
	}
	if hooks.wrap != nil {
		hooks.wrap(cfg)
	}
	return cfg, ns, nil
}

// listPeerObjects lists src's objects in every namespace: one LIST per
// resource, at the first version the API server serves. A resource the
// cluster does not have (the peer is not installed, or an older version
// without it) is skipped.
func listPeerObjects(ctx context.Context, cfg *rest.Config, src migrate.Source) ([]migrate.Object, error) {
	dc, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	var objs []migrate.Object
	found := 0
	for _, r := range peerResources[src] {
		for _, v := range r.versions {
			gvr := schema.GroupVersionResource{Group: r.group, Version: v, Resource: r.resource}
			list, err := dc.Resource(gvr).List(ctx, metav1.ListOptions{})
			if apierrors.IsNotFound(err) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("list %s: %w", gvr.GroupResource(), err)
			}
			found++
			data, err := list.MarshalJSON()
			if err != nil {
				return nil, fmt.Errorf("list %s: %w", gvr.GroupResource(), err)
			}
			o, err := migrate.Parse(strings.NewReader(string(data)))
			if err != nil {
				return nil, fmt.Errorf("list %s: %w", gvr.GroupResource(), err)
			}
			objs = append(objs, o...)
			break
		}
	}
	if found == 0 {
		return nil, fmt.Errorf("the cluster serves none of %s's resources: is it installed?", src)
	}
	return objs, nil
}

// writeNotes lists what was not translated, then what to check.
func writeNotes(w io.Writer, res migrate.Result) error {
	if len(res.Notes) == 0 {
		_, err := fmt.Fprintf(w, "translated %s and %s; nothing left out\n", count(len(res.Pools), "pool"), count(len(res.Policies), "policy"))
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, lost := range []bool{true, false} {
		title := "NOT TRANSLATED"
		if !lost {
			title = "CHECK"
		}
		first := true
		for _, n := range res.Notes {
			if n.Lost != lost {
				continue
			}
			if first {
				fmt.Fprintf(tw, "%s\tFIELD\tWHY\n", title)
				first = false
			}
			field := n.Field
			if field == "" {
				field = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", n.Object, field, n.Reason)
		}
		if !first {
			fmt.Fprintln(tw)
		}
	}
	fmt.Fprintf(tw, "translated %s and %s\n", count(len(res.Pools), "pool"), count(len(res.Policies), "policy"))
	return tw.Flush()
}

// count writes n things: "1 pool", "2 pools", "0 policies".
func count(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	if strings.HasSuffix(thing, "y") {
		return fmt.Sprintf("%d %sies", n, strings.TrimSuffix(thing, "y"))
	}
	return fmt.Sprintf("%d %ss", n, thing)
}
