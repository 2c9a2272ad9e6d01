package helm_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/herald-lb/herald/internal/cli"
	"github.com/herald-lb/herald/internal/heartbeatkey"
	"github.com/herald-lb/herald/internal/kube"
	"github.com/herald-lb/herald/internal/testenv"
)

var shared = testenv.NewShared(testenv.Options{CRDDirs: []string{"../../config/crd"}})

func TestMain(m *testing.M) { os.Exit(shared.Run(m)) }

// allVerbs are the verbs checked for each resource a part is granted: the
// ones not granted must be denied by the API server.
var allVerbs = []string{"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}

// denied are grants neither part may have, checked by the API server.
var denied = []rule{
	{"", "pods", "create", ""},
	{"", "pods", "list", ""},
	{"", "secrets", "get", ""},
	{"", "secrets", "list", ""},
	{"", "secrets", "watch", ""},
	{"", "secrets", "get", "some-other-secret"},
	{"", "secrets", "watch", "some-other-secret"},
	{"", "configmaps", "get", ""},
	{"", "serviceaccounts/token", "create", ""},
	{"", "nodes/status", "update", ""},
	{"", "namespaces", "create", ""},
	{"apps", "daemonsets", "update", ""},
	{"rbac.authorization.k8s.io", "clusterroles", "escalate", ""},
	{"rbac.authorization.k8s.io", "clusterrolebindings", "create", ""},
	{"apiextensions.k8s.io", "customresourcedefinitions", "update", ""},
	{"discovery.k8s.io", "endpointslices", "create", ""},
	{"herald.dev", "loadbalancerippools/status", "patch", ""},
	{"herald.dev", "heraldnodes", "delete", ""},
	{"herald.dev", "heraldnodes/status", "update", ""},
}

// chartNamespace is where the tests install the chart's RBAC.
const chartNamespace = "herald-system"

var applied struct {
	sync.Mutex
	done bool
}

// applyRBAC creates the chart's namespace, ServiceAccounts, roles and
// bindings (rendered for chartNamespace with the default values) on the
// shared API server, once, and returns the namespace.
func applyRBAC(t *testing.T, env *testenv.Env) string {
	t.Helper()
	applied.Lock()
	defer applied.Unlock()
	if !applied.done {
		apply(t, t.Context(), env.Clientset(), chartNamespace, nil, defaultRBAC())
		applied.done = true
	}
	return chartNamespace
}

// apply creates namespace ns and the chart's ServiceAccounts, roles and
// bindings, rendered for ns with the values in set, with the admin client,
// and waits until every grant in want is in force. want's names are those
// of release name herald: with a fullnameOverride in set, its subjects'
// names are mapped (herald- → <fullnameOverride>-).
func apply(t *testing.T, ctx context.Context, admin kubernetes.Interface, ns string, set map[string]any, want []role) {
	t.Helper()
	o := mustRender(t, ns, nil, set)
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
	for _, w := range want {
		scope := ""
		if w.kind == "Role" {
			scope = ns
		}
		user := "system:serviceaccount:" + ns + ":" + subjectName(w.subject, set)
		for _, rs := range w.rules {
			for _, r := range rs {
				resource, sub, _ := strings.Cut(r.resource, "/")
				sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
					User:   user,
					Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
					ResourceAttributes: &authorizationv1.ResourceAttributes{
						Namespace: scope, Verb: r.verb, Group: r.group, Resource: resource, Subresource: sub, Name: r.name,
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

// subjectName is the name of ServiceAccount sa (named for release herald)
// when rendered with the values in set.
func subjectName(sa string, set map[string]any) string {
	if o, ok := set["fullnameOverride"].(string); ok && o != "" {
		return o + strings.TrimPrefix(sa, "herald")
	}
	return sa
}

// allowed asks the API server, as the client's own identity, whether it may
// do verb on group/resource[/subresource] (named r.name, if set) in
// namespace ns ("" = all).
func allowed(ctx context.Context, c kubernetes.Interface, r rule, ns string) (bool, error) {
	resource, sub, _ := strings.Cut(r.resource, "/")
	res, err := c.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
		Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: ns, Verb: r.verb, Group: r.group, Resource: resource, Subresource: sub, Name: r.name,
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
	for _, w := range defaultRBAC() {
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
			// A grant without resourceNames covers every name.
			covered := func(r rule) bool {
				unnamed := r
				unnamed.name = ""
				return granted[r] || granted[unnamed]
			}
			// Every verb not granted on a resource the part uses is denied;
			// a Role's grants hold in its namespace only; a grant on one
			// object by name holds for no other object, nor for all.
			for _, g := range holds[sa] {
				names := []string{g.name}
				if g.name != "" {
					names = append(names, "", "some-other-secret")
				}
				for _, name := range names {
					for _, v := range allVerbs {
						r := rule{g.group, g.resource, v, name}
						if !covered(r) {
							checks = append(checks, check{r, "", false}, check{r, ns, false})
						}
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
		const heartbeatSecret, otherSecret = "herald-heartbeat-key", "rbac-test-other"
		for _, name := range []string{heartbeatSecret, otherSecret} {
			_ = env.Clientset().CoreV1().Secrets(ns).Delete(ctx, name, metav1.DeleteOptions{})
		}
		ensure := func(wantCreated bool) error {
			created, err := heartbeatkey.Ensure(ctx, ctl, ns, heartbeatSecret, nil)
			if err == nil && created != wantCreated {
				return fmt.Errorf("Ensure created = %v, want %v", created, wantCreated)
			}
			return err
		}
		secretOf := func(c kubernetes.Interface) func() error {
			return func() error {
				s, err := env.Clientset().CoreV1().Secrets(ns).Get(ctx, heartbeatSecret, metav1.GetOptions{})
				if err != nil {
					return fmt.Errorf("as admin: %w", err)
				}
				s.Labels["touched"] = "yes"
				_, err = c.CoreV1().Secrets(ns).Update(ctx, s, metav1.UpdateOptions{})
				return err
			}
		}
		// Watch as the agent (and the controller, to recreate a deleted
		// Secret) does, until the first report: keys, or the error (a
		// refusal) it reports.
		watchKeys := func(c kubernetes.Interface) func() error {
			return func() error {
				wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				defer cancel()
				first := make(chan error, 1)
				done := make(chan struct{})
				go func() {
					defer close(done)
					heartbeatkey.Watch(wctx, c, ns, heartbeatSecret, func(k heartbeatkey.Keys, err error) {
						if err == nil && len(k.Keys) == 0 {
							err = errors.New("no keys")
						}
						select {
						case first <- err:
						default:
						}
					})
				}()
				defer func() { cancel(); <-done }()
				select {
				case err := <-first:
					return err
				case <-wctx.Done():
					return errors.New("Watch reported nothing within 10s")
				}
			}
		}

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
			}, true},
			{"controller deletes a policy", func() error {
				return dyn["herald-controller"].Resource(policies).Delete(ctx, "none", metav1.DeleteOptions{})
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
			// BGP advertisements select by pool labels: the agent reads
			// pools, and changes none.
			{"agent lists pools", func() error {
				_, err := dyn["herald-agent"].Resource(pools).List(ctx, metav1.ListOptions{})
				return err
			}, true},
			{"agent deletes a pool", func() error {
				return dyn["herald-agent"].Resource(pools).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
			}, false},
			{"agent creates a pod", func() error {
				_, err := agent.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
					ObjectMeta: metav1.ObjectMeta{Name: "x"},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "x", Image: "x"}}},
				}, metav1.CreateOptions{})
				return err
			}, false},
			// The heartbeat key Secret: the controller creates it when
			// missing and reads it; the agent reads and watches it; neither
			// reads another Secret or changes one.
			{"controller creates the missing heartbeat secret", func() error { return ensure(true) }, true},
			{"controller finds the heartbeat secret", func() error { return ensure(false) }, true},
			{"controller watches the heartbeat secret", watchKeys(ctl), true},
			{"controller updates the heartbeat secret", secretOf(ctl), false},
			{"controller deletes the heartbeat secret", func() error {
				return ctl.CoreV1().Secrets(ns).Delete(ctx, heartbeatSecret, metav1.DeleteOptions{})
			}, false},
			{"controller lists secrets", func() error { _, err := ctl.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{}); return err }, false},
			// RBAC cannot restrict a create by name: the price of letting the
			// controller create the Secret (none with existingSecret).
			{"controller creates another secret", func() error {
				_, err := ctl.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: otherSecret}}, metav1.CreateOptions{})
				return err
			}, true},
			{"controller reads another secret", func() error {
				_, err := ctl.CoreV1().Secrets(ns).Get(ctx, otherSecret, metav1.GetOptions{})
				return err
			}, false},
			{"controller creates a secret elsewhere", func() error {
				_, err := ctl.CoreV1().Secrets("default").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: otherSecret}}, metav1.CreateOptions{})
				return err
			}, false},
			{"agent reads the heartbeat secret", func() error {
				_, err := agent.CoreV1().Secrets(ns).Get(ctx, heartbeatSecret, metav1.GetOptions{})
				return err
			}, true},
			{"agent watches the heartbeat secret", watchKeys(agent), true},
			{"agent updates the heartbeat secret", secretOf(agent), false},
			{"agent lists secrets", func() error { _, err := agent.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{}); return err }, false},
			{"agent reads another secret", func() error {
				_, err := agent.CoreV1().Secrets(ns).Get(ctx, otherSecret, metav1.GetOptions{})
				return err
			}, false},
			{"agent creates a secret", func() error {
				_, err := agent.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "agent-made"}}, metav1.CreateOptions{})
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

// TestExistingSecretRBACOnAPIServer applies the chart's RBAC rendered with
// heartbeat.existingSecret: the controller may create no Secret at all
// (Ensure is refused, saying why), and both parts reach that one Secret.
func TestExistingSecretRBACOnAPIServer(t *testing.T) {
	if testing.Short() {
		t.Skip("needs etcd and kube-apiserver")
	}
	env := shared.Env(t)
	ctx := t.Context()
	admin := env.Clientset()
	// Names of their own per run: the cluster-wide roles stay (-count).
	release := fmt.Sprintf("herald-existing-%d", time.Now().UnixNano()%1_000_000)
	ns := release
	set := map[string]any{"fullnameOverride": release, "heartbeat": map[string]any{"existingSecret": "my-key"}}
	apply(t, ctx, admin, ns, set, wantRBAC("my-key", false))
	t.Cleanup(func() {
		for _, part := range []string{"-controller", "-agent"} {
			_ = admin.RbacV1().ClusterRoleBindings().Delete(context.Background(), release+part, metav1.DeleteOptions{})
			_ = admin.RbacV1().ClusterRoles().Delete(context.Background(), release+part, metav1.DeleteOptions{})
		}
	})
	client := func(sa string) kubernetes.Interface {
		cfg, err := env.ServiceAccountConfig(ctx, ns, sa)
		if err != nil {
			t.Fatal(err)
		}
		c, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	ctl, agent := client(release+"-controller"), client(release+"-agent")

	for _, ck := range []struct {
		c    kubernetes.Interface
		who  string
		r    rule
		want bool
	}{
		{ctl, "controller", rule{"", "secrets", "create", ""}, false},
		{ctl, "controller", rule{"", "secrets", "create", "my-key"}, false},
		{ctl, "controller", rule{"", "secrets", "get", "my-key"}, true},
		{ctl, "controller", rule{"", "secrets", "get", release + "-heartbeat-key"}, false},
		{agent, "agent", rule{"", "secrets", "watch", "my-key"}, true},
		{agent, "agent", rule{"", "secrets", "list", "my-key"}, true},
		{agent, "agent", rule{"", "secrets", "get", release + "-heartbeat-key"}, false},
	} {
		got, err := allowed(ctx, ck.c, ck.r, ns)
		if err != nil {
			t.Fatal(err)
		}
		if got != ck.want {
			t.Errorf("%s may %s: %v, want %v", ck.who, ck.r, got, ck.want)
		}
	}

	// The agent waits for the Secret; the controller cannot make it.
	reports := make(chan error, 10)
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		heartbeatkey.Watch(wctx, agent, ns, "my-key", func(k heartbeatkey.Keys, err error) {
			if err == nil && len(k.Keys) == 0 {
				err = errors.New("no keys")
			}
			reports <- err
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
	next := func(what string) error {
		t.Helper()
		select {
		case err := <-reports:
			return err
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: Watch reported nothing within 10s", what)
			return nil
		}
	}
	if err := next("missing Secret"); !apierrors.IsNotFound(err) {
		t.Errorf("agent watching a missing existingSecret: %v, want NotFound", err)
	}
	if _, err := heartbeatkey.Ensure(ctx, ctl, ns, "my-key", nil); !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "existingSecret") {
		t.Errorf("controller's Ensure with existingSecret: err = %v, want a Forbidden that mentions existingSecret", err)
	}
	// The user creates it, in the legacy form, as with chart 0.1.0.
	if _, err := admin.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "my-key"},
		StringData: map[string]string{"key": "a-key-of-my-own-at-least-16-bytes"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := next("created by the user"); err != nil {
		t.Errorf("agent after the user created the Secret: %v", err)
	}
	if created, err := heartbeatkey.Ensure(ctx, ctl, ns, "my-key", nil); err != nil || created {
		t.Errorf("controller's Ensure of an existing Secret: %v, %v", created, err)
	}
}

// TestViewClusterRoleOnAPIServer: a user bound to the chart's herald-view
// ClusterRole runs every read-only operator command without a refusal
// (problems found are fine: nothing runs here), and may change nothing.
func TestViewClusterRoleOnAPIServer(t *testing.T) {
	if testing.Short() {
		t.Skip("needs etcd and kube-apiserver")
	}
	env := shared.Env(t)
	ctx := t.Context()
	ns := applyRBAC(t, env)
	admin := env.Clientset()
	const viewer = "herald-viewer"
	if _, err := admin.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: viewer}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	crb := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: viewer},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "herald-view"},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: viewer, Namespace: ns}}}
	if _, err := admin.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	cfg, err := env.ServiceAccountConfig(ctx, ns, viewer)
	if err != nil {
		t.Fatal(err)
	}
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The authorizer learns of the binding through a watch.
	deadline := time.Now().Add(30 * time.Second)
	for _, p := range kube.ViewPermissions() {
		r := rule{p.Group, p.Resource, p.Verb, p.Name}
		for {
			ok, err := allowed(ctx, c, r, "")
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the viewer may not %s 30 s after the binding", r)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	for _, r := range []rule{{"", "services", "patch", ""}, {"", "secrets", "get", ""}, {"herald.dev", "loadbalancerippools", "create", ""},
		{"herald.dev", "heraldnodes/status", "patch", ""}, {"", "pods", "list", ""}} {
		if ok, err := allowed(ctx, c, r, ""); err != nil || ok {
			t.Errorf("the viewer may %s: %v, %v", r, ok, err)
		}
	}

	kc := clientcmdapi.NewConfig()
	kc.Clusters["lab"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["viewer"] = &clientcmdapi.AuthInfo{Token: cfg.BearerToken}
	kc.Contexts["viewer"] = &clientcmdapi.Context{Cluster: "lab", AuthInfo: "viewer", Namespace: "default"}
	kc.CurrentContext = "viewer"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"status", "-n", ns}, {"pools"}, {"services", "-A"}, {"announcements"}, {"explain", "svc/kubernetes", "-n", "default"},
	} {
		root := cli.NewRoot("herald")
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs(append(args, "--kubeconfig", path))
		err := root.ExecuteContext(ctx)
		if err != nil && !errors.Is(err, cli.ErrProblems) || strings.Contains(out.String(), "forbidden") {
			t.Errorf("herald %s as the viewer: %v\n%s", strings.Join(args, " "), err, out.String())
		}
	}
}
