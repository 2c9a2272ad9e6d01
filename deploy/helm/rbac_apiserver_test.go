package helm_test

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/herald-lb/herald/internal/testenv"
)

var shared = testenv.NewShared(testenv.Options{CRDDirs: []string{"../../config/crd"}})

func TestMain(m *testing.M) { os.Exit(shared.Run(m)) }

// allVerbs are the verbs checked for each resource a part is granted: the
// ones not granted must be denied by the API server.
var allVerbs = []string{"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}

// denied are grants neither part may have, checked by the API server.
var denied = []rule{
	{"", "pods", "create"},
	{"", "pods", "list"},
	{"", "secrets", "get"},
	{"", "secrets", "list"},
	{"", "configmaps", "get"},
	{"", "serviceaccounts/token", "create"},
	{"", "nodes/status", "update"},
	{"", "namespaces", "create"},
	{"apps", "daemonsets", "update"},
	{"rbac.authorization.k8s.io", "clusterroles", "escalate"},
	{"rbac.authorization.k8s.io", "clusterrolebindings", "create"},
	{"apiextensions.k8s.io", "customresourcedefinitions", "update"},
	{"discovery.k8s.io", "endpointslices", "create"},
	{"herald.dev", "loadbalancerippools/status", "patch"},
	{"herald.dev", "l2announcementpolicies/status", "update"},
}

// chartNamespace is where the tests install the chart's RBAC.
const chartNamespace = "herald-system"

var applied struct {
	sync.Mutex
	done bool
}

// applyRBAC creates the chart's namespace, ServiceAccounts, roles and
// bindings (rendered for chartNamespace) on the shared API server, once,
// and returns the namespace.
func applyRBAC(t *testing.T, env *testenv.Env) string {
	t.Helper()
	applied.Lock()
	defer applied.Unlock()
	if !applied.done {
		apply(t, t.Context(), env.Clientset(), chartNamespace)
		applied.done = true
	}
	return chartNamespace
}

// apply creates the chart's ServiceAccounts, roles and bindings, rendered
// for namespace ns, with the admin client.
func apply(t *testing.T, ctx context.Context, admin kubernetes.Interface, ns string) {
	t.Helper()
	o := mustRender(t, ns, nil, nil)
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	for _, u := range o.all {
		var err error
		switch u.GetKind() {
		case "ServiceAccount":
			_, err = admin.CoreV1().ServiceAccounts(ns).Create(ctx, get[corev1.ServiceAccount](t, o, u.GetKind(), u.GetName()), metav1.CreateOptions{})
		case "ClusterRole":
			_, err = admin.RbacV1().ClusterRoles().Create(ctx, get[rbacv1.ClusterRole](t, o, u.GetKind(), u.GetName()), metav1.CreateOptions{})
		case "ClusterRoleBinding":
			_, err = admin.RbacV1().ClusterRoleBindings().Create(ctx, get[rbacv1.ClusterRoleBinding](t, o, u.GetKind(), u.GetName()), metav1.CreateOptions{})
		case "Role":
			_, err = admin.RbacV1().Roles(ns).Create(ctx, get[rbacv1.Role](t, o, u.GetKind(), u.GetName()), metav1.CreateOptions{})
		case "RoleBinding":
			_, err = admin.RbacV1().RoleBindings(ns).Create(ctx, get[rbacv1.RoleBinding](t, o, u.GetKind(), u.GetName()), metav1.CreateOptions{})
		default:
			continue
		}
		if err != nil {
			t.Fatalf("create %s %s: %v", u.GetKind(), u.GetName(), err)
		}
	}
	// The authorizer learns of new bindings through a watch: wait until
	// every grant is in force, so no test sees a refusal from that lag.
	for _, w := range wantRBAC {
		scope := ""
		if w.kind == "Role" {
			scope = ns
		}
		user := "system:serviceaccount:" + ns + ":" + w.subject
		for _, rs := range w.rules {
			for _, r := range rs {
				resource, sub, _ := strings.Cut(r.resource, "/")
				sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
					User:   user,
					Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
					ResourceAttributes: &authorizationv1.ResourceAttributes{
						Namespace: scope, Verb: r.verb, Group: r.group, Resource: resource, Subresource: sub,
					},
				}}
				deadline := time.Now().Add(30 * time.Second)
				for {
					res, err := admin.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
					if err != nil {
						t.Fatalf("subject access review: %v", err)
					}
					if res.Status.Allowed {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("%s is not allowed to %s 30s after the chart's RBAC was applied", user, r)
					}
					time.Sleep(50 * time.Millisecond)
				}
			}
		}
	}
}

// allowed asks the API server, as the client's own identity, whether it may
// do verb on group/resource[/subresource] in namespace ns ("" = all).
func allowed(ctx context.Context, c kubernetes.Interface, r rule, ns string) (bool, error) {
	resource, sub, _ := strings.Cut(r.resource, "/")
	res, err := c.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
		Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: ns, Verb: r.verb, Group: r.group, Resource: resource, Subresource: sub,
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		return false, err
	}
	return res.Status.Allowed, nil
}

// TestRBACOnAPIServer applies the chart's RBAC to a real API server and
// checks, as each part's ServiceAccount, that every verb it needs is
// allowed where it needs it and nothing more is.
func TestRBACOnAPIServer(t *testing.T) {
	if testing.Short() {
		t.Skip("needs etcd and kube-apiserver")
	}
	env := shared.Env(t)
	ctx := t.Context()
	ns := applyRBAC(t, env)

	// Every grant each ServiceAccount holds, and in which namespace.
	type grant struct {
		rule
		ns string
	}
	holds := map[string][]grant{}
	for _, w := range wantRBAC {
		scope := ""
		if w.kind == "Role" {
			scope = ns
		}
		for _, rs := range w.rules {
			for _, r := range rs {
				holds[w.subject] = append(holds[w.subject], grant{r, scope})
			}
		}
	}

	for _, sa := range []string{"herald-controller", "herald-agent"} {
		t.Run(sa, func(t *testing.T) {
			cfg, err := env.ServiceAccountConfig(ctx, ns, sa)
			if err != nil {
				t.Fatal(err)
			}
			c, err := kubernetes.NewForConfig(cfg)
			if err != nil {
				t.Fatal(err)
			}
			type check struct {
				r    rule
				ns   string
				want bool
			}
			var checks []check
			granted := map[rule]bool{}
			for _, g := range holds[sa] {
				granted[g.rule] = true
				checks = append(checks, check{g.rule, g.ns, true})
			}
			// Every verb not granted on a resource the part uses is denied;
			// a Role's grants hold in its namespace only.
			for _, g := range holds[sa] {
				for _, v := range allVerbs {
					r := rule{g.group, g.resource, v}
					if !granted[r] {
						checks = append(checks, check{r, "", false}, check{r, ns, false})
					}
				}
				if g.ns != "" {
					checks = append(checks, check{g.rule, "default", false}, check{g.rule, "", false})
				}
			}
			for _, r := range denied {
				checks = append(checks, check{r, "", false}, check{r, ns, false})
			}
			seen := map[check]bool{}
			for _, ck := range checks {
				if seen[ck] {
					continue
				}
				seen[ck] = true
				got, err := allowed(ctx, c, ck.r, ck.ns)
				if err != nil {
					t.Fatalf("access review %s in %q: %v", ck.r, ck.ns, err)
				}
				if got != ck.want {
					where := "cluster-wide"
					if ck.ns != "" {
						where = "in namespace " + ck.ns
					}
					t.Errorf("%s may %s %s: %v, want %v", sa, ck.r, where, got, ck.want)
				}
			}
		})
	}

	// The operations themselves, with each part's token.
	t.Run("operations", func(t *testing.T) {
		clients := map[string]kubernetes.Interface{}
		dyn := map[string]dynamic.Interface{}
		for _, sa := range []string{"herald-controller", "herald-agent"} {
			cfg, err := env.ServiceAccountConfig(ctx, ns, sa)
			if err != nil {
				t.Fatal(err)
			}
			if clients[sa], err = kubernetes.NewForConfig(cfg); err != nil {
				t.Fatal(err)
			}
			if dyn[sa], err = dynamic.NewForConfig(cfg); err != nil {
				t.Fatal(err)
			}
		}
		ctl, agent := clients["herald-controller"], clients["herald-agent"]
		pools := schema.GroupVersionResource{Group: "herald.dev", Version: "v1alpha1", Resource: "loadbalancerippools"}
		policies := schema.GroupVersionResource{Group: "herald.dev", Version: "v1alpha1", Resource: "l2announcementpolicies"}
		event := func(name string) *corev1.Event {
			return &corev1.Event{
				ObjectMeta:     metav1.ObjectMeta{GenerateName: name + "-"},
				InvolvedObject: corev1.ObjectReference{Kind: "Service", Namespace: "default", Name: "web"},
				Reason:         "Test", Message: "test", Type: corev1.EventTypeNormal,
			}
		}
		lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "rbac-test"}}
		_ = env.Clientset().CoordinationV1().Leases(ns).Delete(ctx, lease.Name, metav1.DeleteOptions{}) // from an earlier -count

		for _, op := range []struct {
			name string
			do   func() error
			ok   bool
		}{
			{"controller lists services", func() error { _, err := ctl.CoreV1().Services("").List(ctx, metav1.ListOptions{}); return err }, true},
			{"controller lists nodes", func() error { _, err := ctl.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); return err }, true},
			{"controller lists pools", func() error {
				_, err := dyn["herald-controller"].Resource(pools).List(ctx, metav1.ListOptions{})
				return err
			}, true},
			{"controller creates an event", func() error {
				_, err := ctl.CoreV1().Events("default").Create(ctx, event("ctl"), metav1.CreateOptions{})
				return err
			}, true},
			{"controller creates the lease", func() error {
				_, err := ctl.CoordinationV1().Leases(ns).Create(ctx, lease, metav1.CreateOptions{})
				return err
			}, true},
			{"controller renews the lease", func() error {
				l, err := ctl.CoordinationV1().Leases(ns).Get(ctx, lease.Name, metav1.GetOptions{})
				if err != nil {
					return err
				}
				l.Spec.HolderIdentity = new("replica-1")
				_, err = ctl.CoordinationV1().Leases(ns).Update(ctx, l, metav1.UpdateOptions{})
				return err
			}, true},
			{"controller creates a lease elsewhere", func() error {
				_, err := ctl.CoordinationV1().Leases("default").Create(ctx, lease, metav1.CreateOptions{})
				return err
			}, false},
			{"controller deletes the lease", func() error {
				return ctl.CoordinationV1().Leases(ns).Delete(ctx, lease.Name, metav1.DeleteOptions{})
			}, false},
			{"controller lists policies", func() error {
				_, err := dyn["herald-controller"].Resource(policies).List(ctx, metav1.ListOptions{})
				return err
			}, false},
			{"controller deletes a service", func() error {
				return ctl.CoreV1().Services("default").Delete(ctx, "kubernetes", metav1.DeleteOptions{})
			}, false},
			{"agent lists services", func() error { _, err := agent.CoreV1().Services("").List(ctx, metav1.ListOptions{}); return err }, true},
			{"agent lists endpointslices", func() error {
				_, err := agent.DiscoveryV1().EndpointSlices("").List(ctx, metav1.ListOptions{})
				return err
			}, true},
			{"agent gets a node list", func() error { _, err := agent.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); return err }, true},
			{"agent lists policies", func() error {
				_, err := dyn["herald-agent"].Resource(policies).List(ctx, metav1.ListOptions{})
				return err
			}, true},
			{"agent creates an event", func() error {
				_, err := agent.CoreV1().Events("default").Create(ctx, event("agent"), metav1.CreateOptions{})
				return err
			}, true},
			{"agent lists pools", func() error {
				_, err := dyn["herald-agent"].Resource(pools).List(ctx, metav1.ListOptions{})
				return err
			}, false},
			{"agent creates a pod", func() error {
				_, err := agent.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
					ObjectMeta: metav1.ObjectMeta{Name: "x"},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "x", Image: "x"}}},
				}, metav1.CreateOptions{})
				return err
			}, false},
			{"agent reads the heartbeat secret", func() error {
				_, err := agent.CoreV1().Secrets(ns).Get(ctx, "herald-heartbeat-key", metav1.GetOptions{})
				return err
			}, false},
			{"agent takes the lease", func() error {
				_, err := agent.CoordinationV1().Leases(ns).Get(ctx, lease.Name, metav1.GetOptions{})
				return err
			}, false},
		} {
			err := op.do()
			switch {
			case op.ok && err != nil:
				t.Errorf("%s: %v", op.name, err)
			case !op.ok && !apierrors.IsForbidden(err):
				t.Errorf("%s: err = %v, want Forbidden", op.name, err)
			}
		}
	})
}
