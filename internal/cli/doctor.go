package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/herald-lb/herald/config/crd"
	"github.com/herald-lb/herald/internal/doctor"
	"github.com/herald-lb/herald/internal/kube"
	"github.com/herald-lb/herald/internal/migrate"
)

// ErrDoctorFailed is returned (wrapped) when a doctor check FAILs; the
// checks have been printed.
var ErrDoctorFailed = errors.New("checks failed")

func newDoctorCommand(hooks inspectHooks) *cobra.Command {
	var (
		f                    inspectFlags
		namespace, leaseName string
	)
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check an installation: CRDs, RBAC, agents, interfaces, keys, data plane, other load balancers",
		Long: `Check a cluster for what makes Herald's Services unreachable without an error
anywhere, before and after installing it, and say how to fix each: the API
server's version and Herald's CRDs (present, and the ones this herald was
built with: Helm never upgrades CRDs); the controller's Deployment and the
agent's DaemonSet in --namespace and their Pods; every permission each
ServiceAccount needs, asked of the API server (SubjectAccessReview); the
controller's leader; an agent on every node a policy selects; each policy's
interface patterns against each selected node's real interfaces; the
exclude-from-external-load-balancers label; the heartbeat keys; the data
plane (kube-proxy's IPVS mode without strictARP); pools; MetalLB or Cilium
objects that would announce or assign the same addresses; KubePrism under
the Talos preset. Each check is PASS, WARN or FAIL; exits 1 when one FAILs.
Reads only the API server; needs a user who may read these objects and
create access reviews (a cluster admin).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := f.connect(hooks)
			if err != nil {
				return err
			}
			dc, err := dynamic.NewForConfig(s.cfg)
			if err != nil {
				return err
			}
			in, err := gatherDoctor(cmd.Context(), s, dc, namespace, leaseName, f.defaultClass)
			if err != nil {
				return err
			}
			r := doctor.Run(in)
			w := cmd.OutOrStdout()
			if err := emit(w, f.output, r, nil, func() error { return writeDoctor(w, r) }); err != nil {
				return err
			}
			if r.Failed > 0 {
				return fmt.Errorf("%w: %d of %d (exit code 1)", ErrDoctorFailed, r.Failed, len(r.Checks))
			}
			return nil
		},
	}
	f.register(cmd, true)
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "herald-system", "the namespace Herald is installed in (its controller, agents, Lease and heartbeat Secret)")
	cmd.Flags().StringVar(&leaseName, "lease-name", "herald-controller", "the controller's leader Lease (its --lease-name)")
	return cmd
}

// gatherDoctor reads what the checks need.
func gatherDoctor(ctx context.Context, s *session, dc dynamic.Interface, namespace, leaseName string, defaultClass bool) (doctor.Input, error) {
	var in doctor.Input
	v, err := s.core.Discovery().ServerVersion()
	if err != nil {
		return in, fmt.Errorf("read the API server's version: %w", err)
	}
	in.Version = doctor.Version{Major: leadingInt(v.Major), Minor: leadingInt(v.Minor), GitVersion: v.GitVersion}

	if in.Want, err = crd.Definitions(); err != nil {
		return in, err
	}
	crdGVR := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	for _, w := range in.Want {
		u, err := dc.Resource(crdGVR).Get(ctx, w.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		if apierrors.IsForbidden(err) {
			in.CRDsUnreadable = err.Error()
			break
		}
		if err != nil {
			return in, fmt.Errorf("get CRD %s: %w", w.Name, err)
		}
		var c apiextensionsv1.CustomResourceDefinition
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &c); err != nil {
			return in, fmt.Errorf("decode CRD %s: %w", w.Name, err)
		}
		in.CRDs = append(in.CRDs, c)
	}
	crdsServed := len(in.CRDs) == len(in.Want)

	// Herald's objects, as status reads them; without the CRDs there are
	// none to read (the CRD check says so).
	k := kinds{nodes: true, services: true, lease: true, leaseNS: namespace, leaseName: leaseName}
	if crdsServed {
		k.pools, k.policies, k.reports, k.bgpAdvertisements = true, true, true, true
	}
	if in.Cluster, err = s.load(ctx, k, defaultClass); err != nil {
		return in, err
	}

	if in.Components, err = components(ctx, s, namespace); err != nil {
		return in, err
	}
	for _, c := range in.Components {
		if !c.Found {
			continue
		}
		var perms []kube.Permission
		if c.Name == "controller" {
			perms = kube.ControllerPermissions(c.HeartbeatSecret, c.CreatesSecret)
		} else {
			perms = kube.AgentPermissions(c.HeartbeatSecret)
		}
		for _, p := range perms {
			in.Access = append(in.Access, review(ctx, s, c, p))
		}
	}

	for src, product := range map[migrate.Source]string{migrate.MetalLB: "MetalLB", migrate.Cilium: "Cilium"} {
		for _, r := range peerResources[src] {
			po, err := listPeer(ctx, dc, product, r.group, r.resource, r.versions)
			if err != nil {
				return in, err
			}
			if len(po.Names) > 0 {
				in.Peers = append(in.Peers, po)
			}
		}
	}
	sort.Slice(in.Peers, func(i, j int) bool {
		return in.Peers[i].Product+in.Peers[i].Kind < in.Peers[j].Product+in.Peers[j].Kind
	})
	return in, nil
}

// leadingInt parses the number a version field starts with ("33+" → 33).
func leadingInt(s string) int {
	end := 0
	for end < len(s) && s[end] >= '0' && s[end] <= '9' {
		end++
	}
	n, _ := strconv.Atoi(s[:end])
	return n
}

// components finds the controller's Deployment and the agent's DaemonSet
// in namespace by the chart's labels, one LIST each.
func components(ctx context.Context, s *session, namespace string) ([]doctor.Component, error) {
	sel := metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=herald"}
	deps, err := s.core.AppsV1().Deployments(namespace).List(ctx, sel)
	if err := listError("deployments.apps in namespace "+namespace, err); err != nil {
		return nil, err
	}
	dss, err := s.core.AppsV1().DaemonSets(namespace).List(ctx, sel)
	if err := listError("daemonsets.apps in namespace "+namespace, err); err != nil {
		return nil, err
	}
	ctl := doctor.Component{Name: "controller", Namespace: namespace}
	for _, d := range sortedByName(deps.Items, func(d appsv1.Deployment) string { return d.Name }) {
		if d.Spec.Template.Labels["app.kubernetes.io/component"] != "controller" {
			continue
		}
		ctl = fromPodSpec("controller", "Deployment "+namespace+"/"+d.Name, namespace, &d.Spec.Template.Spec)
		if d.Spec.Replicas != nil {
			ctl.Desired = *d.Spec.Replicas
		}
		ctl.Ready = d.Status.ReadyReplicas
		break
	}
	agent := doctor.Component{Name: "agent", Namespace: namespace}
	for _, d := range sortedByName(dss.Items, func(d appsv1.DaemonSet) string { return d.Name }) {
		if d.Spec.Template.Labels["app.kubernetes.io/component"] != "agent" {
			continue
		}
		agent = fromPodSpec("agent", "DaemonSet "+namespace+"/"+d.Name, namespace, &d.Spec.Template.Spec)
		agent.Desired, agent.Ready = d.Status.DesiredNumberScheduled, d.Status.NumberReady
		break
	}
	if !ctl.Found || !agent.Found {
		// Say where Herald is, if it is elsewhere: one more LIST each.
		if all, err := s.core.AppsV1().Deployments("").List(ctx, sel); err == nil && !ctl.Found {
			for _, d := range all.Items {
				if d.Spec.Template.Labels["app.kubernetes.io/component"] == "controller" {
					ctl.Elsewhere = append(ctl.Elsewhere, d.Namespace)
				}
			}
		}
		if all, err := s.core.AppsV1().DaemonSets("").List(ctx, sel); err == nil && !agent.Found {
			for _, d := range all.Items {
				if d.Spec.Template.Labels["app.kubernetes.io/component"] == "agent" {
					agent.Elsewhere = append(agent.Elsewhere, d.Namespace)
				}
			}
		}
	}
	return []doctor.Component{ctl, agent}, nil
}

func sortedByName[T any](items []T, name func(T) string) []T {
	sort.SliceStable(items, func(i, j int) bool { return name(items[i]) < name(items[j]) })
	return items
}

// fromPodSpec reads a part's ServiceAccount, heartbeat Secret flags and
// API server address from its Pod template.
func fromPodSpec(name, workload, namespace string, spec *corev1.PodSpec) doctor.Component {
	c := doctor.Component{Name: name, Found: true, Workload: workload, Namespace: namespace,
		ServiceAccount: spec.ServiceAccountName, HeartbeatSecret: "herald-heartbeat-key", CreatesSecret: true}
	if c.ServiceAccount == "" {
		c.ServiceAccount = "default"
	}
	for _, ctr := range spec.Containers {
		host, port := "", ""
		for _, e := range ctr.Env {
			switch e.Name {
			case "KUBERNETES_SERVICE_HOST":
				host = e.Value
			case "KUBERNETES_SERVICE_PORT":
				port = e.Value
			}
		}
		if (host == "localhost" || host == "127.0.0.1") && port == "7445" {
			c.KubePrism = true
		}
		for _, a := range ctr.Args {
			if v, ok := strings.CutPrefix(a, "--heartbeat-secret="); ok {
				c.HeartbeatSecret = v
			}
			if v, ok := strings.CutPrefix(a, "--create-heartbeat-secret="); ok {
				c.CreatesSecret = v == "true"
			}
		}
	}
	return c
}

// review asks the API server whether c's ServiceAccount may do p.
func review(ctx context.Context, s *session, c doctor.Component, p kube.Permission) doctor.Access {
	a := doctor.Access{Component: c.Name, Permission: p}
	ns := ""
	if p.Namespaced {
		ns = c.Namespace
	}
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User:   "system:serviceaccount:" + c.Namespace + ":" + c.ServiceAccount,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + c.Namespace, "system:authenticated"},
		ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: ns, Verb: p.Verb, Group: p.Group, Resource: p.Resource, Subresource: p.Subresource, Name: p.Name,
		},
	}}
	res, err := s.core.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
	switch {
	case err != nil:
		a.Error = err.Error()
	case res.Status.EvaluationError != "" && !res.Status.Allowed:
		a.Error = res.Status.EvaluationError
	default:
		a.Allowed = res.Status.Allowed
	}
	return a
}

// listPeer lists one of another load balancer's resources in every
// namespace, at the first version served; a resource the cluster does not
// serve has no objects.
func listPeer(ctx context.Context, dc dynamic.Interface, product, group, resource string, versions []string) (doctor.PeerObjects, error) {
	po := doctor.PeerObjects{Product: product}
	for _, v := range versions {
		gvr := schema.GroupVersionResource{Group: group, Version: v, Resource: resource}
		list, err := dc.Resource(gvr).List(ctx, metav1.ListOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return po, listError(gvr.GroupResource().String(), err)
		}
		for _, o := range list.Items {
			po.Kind = o.GetKind()
			name := o.GetName()
			if o.GetNamespace() != "" {
				name = o.GetNamespace() + "/" + name
			}
			po.Names = append(po.Names, name)
		}
		break
	}
	return po, nil
}

// writeDoctor prints one line per check, then the fix under it.
func writeDoctor(w io.Writer, r doctor.Report) error {
	var b strings.Builder
	for _, c := range r.Checks {
		fmt.Fprintf(&b, "%-4s  %s: %s\n", c.Result, c.Name, c.Message)
		if c.Fix != "" && c.Result != doctor.Pass {
			fmt.Fprintf(&b, "      fix: %s\n", c.Fix)
		}
	}
	fmt.Fprintf(&b, "\n%d checks: %d passed, %d warnings, %d failed\n", len(r.Checks), len(r.Checks)-r.Failed-r.Warned, r.Warned, r.Failed)
	_, err := io.WriteString(w, b.String())
	return err
}
