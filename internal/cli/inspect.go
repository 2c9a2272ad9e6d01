package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	heraldv1 "github.com/herald-lb/herald/api/v1alpha1"
	"github.com/herald-lb/herald/internal/report"
)

// The read-only operator commands: pools, services, announcements, status.
// They read only the API server (so they work from a laptop with a
// kubeconfig), with one LIST per kind and no per-object GET, hand the
// objects to internal/report and print its report. Something wrong in it
// (a pending Service, a conflict, a key mismatch, a node without its
// agent, no controller leader) makes them exit 1.

// ErrProblems is returned (wrapped) by a command whose report found
// something wrong; the report itself has been printed.
var ErrProblems = errors.New("problems found")

// inspectHooks lets tests count requests and fix the clock.
type inspectHooks struct {
	// wrap, if set, is applied to the client configuration.
	wrap func(*rest.Config)
	// now, if set, replaces time.Now.
	now func() time.Time
}

// inspectFlags are the flags every operator command takes.
type inspectFlags struct {
	kubeconfig, context, output string
	defaultClass                bool
	// watch and interval: --watch re-reads every interval.
	watch    bool
	interval time.Duration
}

// register adds the flags; services says whether the command reads
// Services (and so needs --default-class).
func (f *inspectFlags) register(cmd *cobra.Command, services bool) {
	fl := cmd.Flags()
	fl.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, else ~/.kube/config, as kubectl)")
	fl.StringVar(&f.context, "context", "", "kubeconfig context to use (default: the current context)")
	fl.StringVarP(&f.output, "output", "o", "table", "output format: table, json or yaml")
	f.defaultClass = true
	if services {
		fl.BoolVar(&f.defaultClass, "default-class", true, "Herald serves LoadBalancer Services without a loadBalancerClass (set as the controller's --default-class)")
	}
	_ = cmd.RegisterFlagCompletionFunc("output", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return []string{"table", "json", "yaml"}, cobra.ShellCompDirectiveNoFileComp
	})
}

// registerWatch adds --watch and --interval.
func (f *inspectFlags) registerWatch(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.BoolVarP(&f.watch, "watch", "w", false, "read and print again every --interval until interrupted, printing only when the output changed (the screen is cleared first on a terminal)")
	fl.DurationVar(&f.interval, "interval", 2*time.Second, "how often --watch reads again")
}

// run runs once, or with --watch again every --interval until the context
// ends. once writes one complete report to w.
func (f *inspectFlags) run(cmd *cobra.Command, once func(ctx context.Context, w io.Writer) error) error {
	w := cmd.OutOrStdout()
	if !f.watch {
		return once(cmd.Context(), w)
	}
	return watchLoop(cmd.Context(), w, f.interval, isTerminal(w), once)
}

// watchLoop is --watch: it prints once's report whenever it differs from
// the last one printed, until ctx ends. Failures (the API server away, a
// report with problems) are printed as part of the report and do not end
// the loop: watching is for seeing them come and go.
func watchLoop(ctx context.Context, w io.Writer, interval time.Duration, terminal bool, once func(ctx context.Context, w io.Writer) error) error {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	last := ""
	for {
		var b bytes.Buffer
		err := once(ctx, &b)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			fmt.Fprintf(&b, "%v\n", err)
		}
		if out := b.String(); out != last {
			if terminal {
				_, _ = io.WriteString(w, "\x1b[H\x1b[2J") // cursor home, clear screen
			} else {
				fmt.Fprintf(w, "--- %s\n", time.Now().Format(time.RFC3339))
			}
			if _, err := io.WriteString(w, out); err != nil {
				return err
			}
			last = out
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// session is one command's connection to the API server.
type session struct {
	// cfg is the client configuration the clients were made from.
	cfg    *rest.Config
	core   kubernetes.Interface
	herald rest.Interface
	// namespace is the kubeconfig context's namespace (default "default").
	namespace string
	// clock is read by each load; now is what the last load read.
	clock func() time.Time
	now   time.Time
}

func (f *inspectFlags) connect(hooks inspectHooks) (*session, error) {
	switch f.output {
	case "table", "json", "yaml":
	default:
		return nil, fmt.Errorf("--output %q: want table, json or yaml", f.output)
	}
	if f.watch && f.interval <= 0 {
		return nil, fmt.Errorf("--interval %s: want a positive duration", f.interval)
	}
	cfg, ns, err := loadConfig(f.kubeconfig, f.context, hooks)
	if err != nil {
		return nil, err
	}
	core, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	scheme := runtime.NewScheme()
	if err := heraldv1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	hcfg := rest.CopyConfig(cfg)
	hcfg.GroupVersion = &heraldv1.GroupVersion
	hcfg.APIPath = "/apis"
	hcfg.NegotiatedSerializer = serializer.NewCodecFactory(scheme).WithoutConversion()
	herald, err := rest.RESTClientFor(hcfg)
	if err != nil {
		return nil, err
	}
	s := &session{cfg: cfg, core: core, herald: herald, namespace: ns, clock: time.Now}
	if hooks.now != nil {
		s.clock = hooks.now
	}
	return s, nil
}

// listHerald lists one kind of Herald's API (cluster-scoped) into out.
func (s *session) listHerald(ctx context.Context, resource string, out runtime.Object) error {
	err := s.herald.Get().Resource(resource).Do(ctx).Into(out)
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("list %s.%s: the API server does not serve it: Herald's CRDs are not installed (kubectl apply -f config/crd/, or install the Helm chart)",
			resource, heraldv1.GroupVersion.Group)
	}
	return listError(resource+"."+heraldv1.GroupVersion.Group, err)
}

// listError says what to do about a failed LIST: RBAC that forbids it, or
// credentials the server refuses.
func listError(resource string, err error) error {
	switch {
	case err == nil:
		return nil
	case apierrors.IsForbidden(err):
		msg := err.Error()
		if _, after, ok := strings.Cut(msg, " is forbidden: "); ok {
			msg = after
		}
		return fmt.Errorf("list %s: forbidden by RBAC: %s; grant your user the list verb on %s", resource, msg, resource)
	case apierrors.IsUnauthorized(err):
		return fmt.Errorf("list %s: the API server does not accept your credentials (check the kubeconfig's user): %w", resource, err)
	default:
		return fmt.Errorf("list %s: %w", resource, err)
	}
}

// kinds are what a command lists; each is one LIST.
type kinds struct {
	pools, policies, reports, nodes, services, lease bool
	// bgpAdvertisements: BGP advertisements (doctor: pools they select
	// need not be on the LAN).
	bgpAdvertisements bool
	// servicesNamespace is the namespace of the Services; empty: all.
	servicesNamespace string
	// endpointSlices lists the EndpointSlices of endpointsNamespace.
	endpointSlices     bool
	endpointsNamespace string
	leaseNS, leaseName string
}

func (s *session) load(ctx context.Context, k kinds, defaultClass bool) (report.Input, error) {
	s.now = s.clock()
	in := report.Input{Now: s.now, DefaultClass: defaultClass, LeaseNS: k.leaseNS, LeaseName: k.leaseName}
	if k.pools {
		var l heraldv1.LoadBalancerIPPoolList
		if err := s.listHerald(ctx, "loadbalancerippools", &l); err != nil {
			return in, err
		}
		in.Pools = l.Items
	}
	if k.policies {
		var l heraldv1.L2AnnouncementPolicyList
		if err := s.listHerald(ctx, "l2announcementpolicies", &l); err != nil {
			return in, err
		}
		in.Policies = l.Items
	}
	if k.reports {
		var l heraldv1.HeraldNodeList
		if err := s.listHerald(ctx, "heraldnodes", &l); err != nil {
			return in, err
		}
		in.Reports = l.Items
	}
	if k.bgpAdvertisements {
		var l heraldv1.BGPAdvertisementList
		if err := s.listHerald(ctx, "bgpadvertisements", &l); err != nil {
			return in, err
		}
		in.BGPAdvertisements = l.Items
	}
	if k.nodes {
		l, err := s.core.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err := listError("nodes", err); err != nil {
			return in, err
		}
		in.Nodes = l.Items
	}
	if k.services {
		l, err := s.core.CoreV1().Services(k.servicesNamespace).List(ctx, metav1.ListOptions{})
		if err := listError("services", err); err != nil {
			return in, err
		}
		in.Services = l.Items
	}
	if k.endpointSlices {
		l, err := s.core.DiscoveryV1().EndpointSlices(k.endpointsNamespace).List(ctx, metav1.ListOptions{})
		if err := listError("endpointslices.discovery.k8s.io in namespace "+k.endpointsNamespace, err); err != nil {
			return in, err
		}
		in.EndpointSlices = l.Items
	}
	if k.lease {
		// A LIST by name, not a GET: a missing Lease is an empty list.
		l, err := s.core.CoordinationV1().Leases(k.leaseNS).List(ctx, metav1.ListOptions{
			FieldSelector: fields.OneTermEqualSelector("metadata.name", k.leaseName).String(),
		})
		if err := listError("leases.coordination.k8s.io in namespace "+k.leaseNS, err); err != nil {
			return in, err
		}
		in.Leases = l.Items
	}
	return in, nil
}

// emit prints r as the chosen format and returns ErrProblems when it holds
// any problem.
func emit(w io.Writer, format string, r any, problems []report.Problem, table func() error) error {
	var err error
	switch format {
	case "json":
		var b []byte
		if b, err = json.MarshalIndent(r, "", "  "); err == nil {
			_, err = w.Write(append(b, '\n'))
		}
	case "yaml":
		var b []byte
		if b, err = yaml.Marshal(r); err == nil {
			_, err = w.Write(b)
		}
	default:
		if err = table(); err == nil {
			err = report.WriteProblems(w, problems)
		}
	}
	if err != nil {
		return err
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %d (exit code 1)", ErrProblems, len(problems))
	}
	return nil
}

func newInspectCommands(hooks inspectHooks) []*cobra.Command {
	return []*cobra.Command{
		newPoolsCommand(hooks), newServicesCommand(hooks),
		newAnnouncementsCommand(hooks), newStatusCommand(hooks), newExplainCommand(hooks),
		newImportCommand(hooks), newDoctorCommand(hooks),
	}
}

func newPoolsCommand(hooks inspectHooks) *cobra.Command {
	var f inspectFlags
	cmd := &cobra.Command{
		Use:   "pools",
		Short: "List the address pools: size, use, addresses other hosts use",
		Long: `List the LoadBalancerIPPools with the controller's counts: size, used, free,
the addresses excluded because another host on the LAN uses them (CONFLICT),
and the Services each pool serves (SELECTOR). Exits 1 when a pool conflicts
or has addresses in use by another host.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := f.connect(hooks)
			if err != nil {
				return err
			}
			return f.run(cmd, func(ctx context.Context, w io.Writer) error {
				in, err := s.load(ctx, kinds{pools: true}, f.defaultClass)
				if err != nil {
					return err
				}
				r := report.Pools(in)
				return emit(w, f.output, r, r.Problems, func() error { return report.WritePools(w, r) })
			})
		},
	}
	f.register(cmd, false)
	f.registerWatch(cmd)
	return cmd
}

func newServicesCommand(hooks inspectHooks) *cobra.Command {
	var (
		f         inspectFlags
		namespace string
		all       bool
	)
	cmd := &cobra.Command{
		Use:   "services",
		Short: "List the Services Herald serves: addresses, pool, policy, announcing node, state",
		Long: `List the LoadBalancer Services Herald serves (class herald.dev/l2, or no class
unless --default-class=false) in the current namespace, -n NS, or every
namespace with -A: their addresses, the pool holding them, the policies
announcing them, the node and interface answering for them (from the agents'
HeraldNode reports), the sharing key, and the state: announced, or pending
with the reason of the controller's condition (OutOfIPs, NoPolicy,
NoMatchingInterface, NoEligibleNode, …). Exits 1 when a Service is pending
or announced with a problem (KeyMismatch, AddressConflict).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := f.connect(hooks)
			if err != nil {
				return err
			}
			ns := namespace
			switch {
			case all:
				ns = ""
			case ns == "":
				ns = s.namespace
			}
			return f.run(cmd, func(ctx context.Context, w io.Writer) error {
				in, err := s.load(ctx, kinds{pools: true, policies: true, reports: true, nodes: true, services: true, servicesNamespace: ns}, f.defaultClass)
				if err != nil {
					return err
				}
				r := report.Services(in)
				return emit(w, f.output, r, r.Problems, func() error { return report.WriteServices(w, r) })
			})
		},
	}
	f.register(cmd, true)
	f.registerWatch(cmd)
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "", "namespace of the Services (default: the kubeconfig context's)")
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "Services of every namespace")
	cmd.MarkFlagsMutuallyExclusive("namespace", "all-namespaces")
	return cmd
}

func newAnnouncementsCommand(hooks inspectHooks) *cobra.Command {
	var f inspectFlags
	cmd := &cobra.Command{
		Use:   "announcements",
		Short: "List which node answers ARP/NDP for each address, on which interface, since when",
		Long: `List every address a node answers ARP/NDP for, from the agents' HeraldNode
reports: the node, the interfaces (and their MACs), since when, the other
agents heard on that segment, and the Services holding the address. A report
the controller no longer counts (its Node is not Ready, or another node took
the address over) is marked stale. Exits 1 when another host uses an
announced address, or agents on a segment use different heartbeat keys.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := f.connect(hooks)
			if err != nil {
				return err
			}
			return f.run(cmd, func(ctx context.Context, w io.Writer) error {
				in, err := s.load(ctx, kinds{reports: true, nodes: true, services: true}, f.defaultClass)
				if err != nil {
					return err
				}
				r := report.Announcements(in)
				return emit(w, f.output, r, r.Problems, func() error { return report.WriteAnnouncements(w, r, s.now) })
			})
		},
	}
	f.register(cmd, true)
	f.registerWatch(cmd)
	return cmd
}

func newStatusCommand(hooks inspectHooks) *cobra.Command {
	var (
		f                    inspectFlags
		namespace, leaseName string
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show Herald at a glance: controller leader, agents, pools, Services that are not well",
		Long: `Show the controller's leader (the holder of its Lease), each node's agent
(version, heartbeat key fingerprints, segments, peers heard, addresses owned,
when it last reported; a node that a policy selects but whose agent never
reported), the pools, and the Services that are pending or announced with a
problem, each with its reason. Exits 1 when anything is wrong.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := f.connect(hooks)
			if err != nil {
				return err
			}
			return f.run(cmd, func(ctx context.Context, w io.Writer) error {
				in, err := s.load(ctx, kinds{pools: true, policies: true, reports: true, nodes: true, services: true, lease: true,
					leaseNS: namespace, leaseName: leaseName}, f.defaultClass)
				if err != nil {
					return err
				}
				r := report.Status(in)
				return emit(w, f.output, r, r.Problems, func() error { return report.WriteStatus(w, r, s.now) })
			})
		},
	}
	f.register(cmd, true)
	f.registerWatch(cmd)
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "herald-system", "the controller's namespace, where its leader Lease is (herald-system as the chart's README and values-talos.yaml install it; else the chart's release namespace)")
	cmd.Flags().StringVar(&leaseName, "lease-name", "herald-controller", "the controller's leader Lease (its --lease-name)")
	return cmd
}
