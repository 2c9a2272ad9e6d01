package heartbeatkey_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/herald-lb/herald/internal/heartbeatkey"
	"github.com/herald-lb/herald/internal/testenv"
)

// shared is the real etcd + kube-apiserver of this package's tests; each
// test works in a namespace of its own.
var shared = testenv.NewShared(testenv.Options{})

func TestMain(m *testing.M) { os.Exit(shared.Run(m)) }

// settle bounds "within seconds": how long an edit may take to reach a
// Watch callback (an informer's watch delivers in milliseconds).
const settle = 5 * time.Second

func apiServer(t *testing.T) (*testenv.Env, kubernetes.Interface) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs etcd and kube-apiserver")
	}
	env := shared.Env(t)
	return env, env.Clientset()
}

// namespace creates a namespace for the calling test.
func namespace(t *testing.T, kube kubernetes.Interface) string {
	t.Helper()
	ns, err := kube.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "hbkey-"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	return ns.Name
}

func getSecret(t *testing.T, kube kubernetes.Interface, ns, name string) *corev1.Secret {
	t.Helper()
	s, err := kube.CoreV1().Secrets(ns).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get secret %s/%s: %v", ns, name, err)
	}
	return s
}

func TestEnsure(t *testing.T) {
	_, kube := apiServer(t)
	ctx := t.Context()
	ns := namespace(t, kube)
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))

	created, err := heartbeatkey.Ensure(ctx, kube, ns, "herald-heartbeat-key", log)
	if err != nil || !created {
		t.Fatalf("Ensure = %v, %v; want created", created, err)
	}
	s := getSecret(t, kube, ns, "herald-heartbeat-key")
	if len(s.Data) != 1 || len(s.Data["key-1"]) != 64 {
		t.Errorf("created Secret data has entries %v, want key-1 of 64 characters", keysOf(s.Data))
	}
	keys, err := heartbeatkey.Parse(s.Data)
	if err != nil {
		t.Fatalf("created Secret: %v", err)
	}
	if !strings.Contains(logs.String(), keys.Keys[0].Fingerprint()) {
		t.Errorf("the creation log lacks the key's fingerprint: %s", logs.String())
	}
	if strings.Contains(logs.String(), string(keys.Keys[0].Value)) {
		t.Errorf("the log holds the key: %s", logs.String())
	}
	if s.Type != corev1.SecretTypeOpaque {
		t.Errorf("type %q", s.Type)
	}
	// Argo CD's default tracking label and Helm's ownership would get it
	// pruned or deleted: neither.
	want := map[string]string{
		"app.kubernetes.io/name":       "herald",
		"app.kubernetes.io/component":  "heartbeat-key",
		"app.kubernetes.io/managed-by": "herald-controller",
	}
	if len(s.Labels) != len(want) {
		t.Errorf("labels %v, want %v", s.Labels, want)
	}
	for k, v := range want {
		if s.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, s.Labels[k], v)
		}
	}
	if len(s.Annotations) != 0 {
		t.Errorf("annotations %v, want none (no Helm ownership)", s.Annotations)
	}
	if s.Immutable != nil && *s.Immutable {
		t.Error("created Secret is immutable: it could not be rotated")
	}

	// Again, and from several replicas at once: the Secret is never written.
	if created, err := heartbeatkey.Ensure(ctx, kube, ns, "herald-heartbeat-key", nil); err != nil || created {
		t.Errorf("second Ensure = %v, %v; want not created, no error", created, err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if created, err := heartbeatkey.Ensure(ctx, kube, ns, "herald-heartbeat-key", nil); err != nil || created {
				t.Errorf("concurrent Ensure of an existing Secret = %v, %v", created, err)
			}
		})
	}
	wg.Wait()
	if after := getSecret(t, kube, ns, "herald-heartbeat-key"); after.ResourceVersion != s.ResourceVersion || !bytes.Equal(after.Data["key-1"], s.Data["key-1"]) {
		t.Errorf("Ensure changed an existing Secret (resourceVersion %s → %s)", s.ResourceVersion, after.ResourceVersion)
	}

	// A race to create: one replica creates, the others find it made.
	var mu sync.Mutex
	creators := 0
	for range 8 {
		wg.Go(func() {
			created, err := heartbeatkey.Ensure(ctx, kube, ns, "raced", nil)
			if err != nil {
				t.Errorf("concurrent Ensure: %v", err)
			}
			if created {
				mu.Lock()
				creators++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if creators != 1 {
		t.Errorf("%d replicas created the Secret, want 1", creators)
	}
	raced := getSecret(t, kube, ns, "raced")
	if _, err := heartbeatkey.Parse(raced.Data); err != nil {
		t.Errorf("raced Secret: %v", err)
	}
}

// A Secret someone else made (existingSecret, or chart 0.1.0's with its
// "key" entry) is left exactly as it is, even one agents would refuse.
func TestEnsureKeepsExisting(t *testing.T) {
	_, kube := apiServer(t)
	ctx := t.Context()
	ns := namespace(t, kube)
	for name, data := range map[string]map[string][]byte{
		"legacy": {"key": []byte(k48)},
		"mine":   {"key-7": []byte(kA), "notes": []byte("n")},
		"broken": {"key-0": []byte("short")},
	} {
		before, err := kube.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"owner": "me"}},
			Data:       data,
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var logs bytes.Buffer
		created, err := heartbeatkey.Ensure(ctx, kube, ns, name, slog.New(slog.NewTextHandler(&logs, nil)))
		if err != nil || created {
			t.Errorf("%s: Ensure = %v, %v; want not created, no error", name, created, err)
		}
		if after := getSecret(t, kube, ns, name); after.ResourceVersion != before.ResourceVersion {
			t.Errorf("%s: Ensure changed the Secret", name)
		}
		if warned := strings.Contains(logs.String(), "level=WARN"); warned != (name == "broken") {
			t.Errorf("%s: warned %v: %s", name, warned, logs.String())
		}
	}
}

func TestEnsureMissingNamespace(t *testing.T) {
	_, kube := apiServer(t)
	_, err := heartbeatkey.Ensure(t.Context(), kube, "no-such-namespace", "herald-heartbeat-key", nil)
	if err == nil {
		t.Fatal("Ensure in a missing namespace succeeded")
	}
	for _, s := range []string{`namespace "no-such-namespace" does not exist`, "create it", "namespace the chart was installed into"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not say %q", err, s)
		}
	}
}

// event is one onChange call.
type event struct {
	keys heartbeatkey.Keys
	err  error
	at   time.Time
}

// watch runs heartbeatkey.Watch until the test ends and returns its
// events; the cleanup checks that Watch returns once its context is done.
func watch(t *testing.T, kube kubernetes.Interface, ns, name string) <-chan event {
	t.Helper()
	events := make(chan event, 100)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		heartbeatkey.Watch(ctx, kube, ns, name, func(k heartbeatkey.Keys, err error) {
			events <- event{k, err, time.Now()}
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Watch did not return within 10s of its context's end")
		}
	})
	return events
}

// next returns the next event, failing t if none comes within settle.
func next(t *testing.T, events <-chan event, what string) event {
	t.Helper()
	select {
	case e := <-events:
		return e
	case <-time.After(settle):
		t.Fatalf("%s: no change reported within %v", what, settle)
		return event{}
	}
}

// nextKeys waits for an event holding keys with exactly these entry names.
func nextKeys(t *testing.T, events <-chan event, what string, names ...string) heartbeatkey.Keys {
	t.Helper()
	e := next(t, events, what)
	if e.err != nil {
		t.Fatalf("%s: error %v, want keys %v", what, e.err, names)
	}
	var got []string
	for _, k := range e.keys.Keys {
		got = append(got, k.Name)
	}
	if strings.Join(got, ",") != strings.Join(names, ",") {
		t.Fatalf("%s: keys %v, want %v", what, got, names)
	}
	return e.keys
}

// quiet fails t if an event comes within d.
func quiet(t *testing.T, events <-chan event, d time.Duration, what string) {
	t.Helper()
	select {
	case e := <-events:
		t.Errorf("%s: reported %v, %v; want nothing (the keys did not change)", what, e.keys, e.err)
	case <-time.After(d):
	}
}

func TestWatch(t *testing.T) {
	_, kube := apiServer(t)
	ctx := t.Context()
	ns := namespace(t, kube)
	const name = "herald-heartbeat-key"
	secrets := kube.CoreV1().Secrets(ns)
	events := watch(t, kube, ns, name)

	// Not there yet: a NotFound that says who makes it.
	e := next(t, events, "missing Secret")
	if !apierrors.IsNotFound(e.err) || len(e.keys.Keys) != 0 {
		t.Fatalf("missing Secret: %v, %v; want a NotFound error", e.keys, e.err)
	}
	for _, s := range []string{ns + "/" + name, "the controller creates it", "existingSecret"} {
		if !strings.Contains(e.err.Error(), s) {
			t.Errorf("missing Secret: error %q does not say %q", e.err, s)
		}
	}

	// The controller creates it.
	start := time.Now()
	if _, err := heartbeatkey.Ensure(ctx, kube, ns, name, nil); err != nil {
		t.Fatal(err)
	}
	k1 := nextKeys(t, events, "created", "key-1")
	t.Logf("creation reported after %v", time.Since(start).Round(time.Millisecond))
	stored := getSecret(t, kube, ns, name)
	if !bytes.Equal(k1.Keys[0].Value, stored.Data["key-1"]) {
		t.Error("watched key differs from the stored one")
	}

	// Rotation: add key-2, then remove key-1.
	rotate := func(what string, edit func(s *corev1.Secret)) {
		t.Helper()
		s := getSecret(t, kube, ns, name)
		edit(s)
		if _, err := secrets.Update(ctx, s, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	start = time.Now()
	rotate("add key-2", func(s *corev1.Secret) { s.Data["key-2"] = []byte(kB + "\n") })
	k := nextKeys(t, events, "key-2 added", "key-2", "key-1")
	t.Logf("rotation step reported after %v", time.Since(start).Round(time.Millisecond))
	if string(k.Keys[0].Value) != kB || !bytes.Equal(k.Keys[1].Value, k1.Keys[0].Value) {
		t.Errorf("after adding key-2: %v", k)
	}
	rotate("remove key-1", func(s *corev1.Secret) { delete(s.Data, "key-1") })
	nextKeys(t, events, "key-1 removed", "key-2")

	// Edits that change no key are not reported.
	rotate("label", func(s *corev1.Secret) { s.Labels["rotated"] = "yes" })
	rotate("same key, other whitespace", func(s *corev1.Secret) { s.Data["key-2"] = []byte("  " + kB) })
	quiet(t, events, time.Second, "label and whitespace")

	// An ignored entry is reported (callers log it), once.
	rotate("notes", func(s *corev1.Secret) { s.Data["notes"] = []byte("rotated today") })
	if k := nextKeys(t, events, "notes added", "key-2"); len(k.Ignored) != 1 || k.Ignored[0] != "notes" {
		t.Errorf("ignored %v, want [notes]", k.Ignored)
	}

	// A bad edit is an error naming the entry; fixing it reports the keys.
	rotate("key-03", func(s *corev1.Secret) { s.Data["key-03"] = []byte(kC) })
	if e := next(t, events, "bad entry"); e.err == nil || !strings.Contains(e.err.Error(), `"key-03"`) || !strings.Contains(e.err.Error(), ns+"/"+name) {
		t.Errorf("bad entry: %v, %v; want an error naming key-03 and the Secret", e.keys, e.err)
	}
	rotate("fix", func(s *corev1.Secret) { delete(s.Data, "key-03"); s.Data["key-3"] = []byte(kC) })
	nextKeys(t, events, "fixed", "key-3", "key-2")

	// Deleted, and made again.
	if err := secrets.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if e := next(t, events, "deleted"); !apierrors.IsNotFound(e.err) {
		t.Errorf("deleted: %v, %v; want a NotFound error", e.keys, e.err)
	}
	if _, err := heartbeatkey.Ensure(ctx, kube, ns, name, nil); err != nil {
		t.Fatal(err)
	}
	if k := nextKeys(t, events, "recreated", "key-1"); bytes.Equal(k.Keys[0].Value, k1.Keys[0].Value) {
		t.Error("a recreated Secret has the first one's key")
	}

	// Other Secrets in the namespace are not its business.
	if _, err := secrets.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "other"}, Data: map[string][]byte{"key-1": []byte(kD)}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	quiet(t, events, time.Second, "another Secret")
}

// An existing Secret is reported once the first list is done: nothing else,
// and in particular no "not found" first.
func TestWatchExisting(t *testing.T) {
	_, kube := apiServer(t)
	ns := namespace(t, kube)
	if _, err := kube.CoreV1().Secrets(ns).Create(t.Context(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "legacy"}, Data: map[string][]byte{"key": []byte(k48)},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	events := watch(t, kube, ns, "legacy")
	if k := nextKeys(t, events, "existing", "key"); string(k.Keys[0].Value) != k48 {
		t.Errorf("legacy key %q", k.Keys[0].Value)
	}
	quiet(t, events, time.Second, "after the first list")
}

// TestWatchRBAC runs Watch as a ServiceAccount that may only get, list and
// watch the one Secret (the chart's agent Role), and checks it can read no
// other Secret; and as one without that grant, which sees a Forbidden.
func TestWatchRBAC(t *testing.T) {
	env, admin := apiServer(t)
	ctx := t.Context()
	ns := namespace(t, admin)
	const name = "herald-heartbeat-key"
	for _, sa := range []string{"agent", "nobody"} {
		if _, err := admin.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	bind(t, admin, ns, "agent", name)
	if _, err := heartbeatkey.Ensure(ctx, admin, ns, name, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "other"}, Data: map[string][]byte{"token": []byte("x")}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
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
	agent, nobody := client("agent"), client("nobody")

	events := watch(t, agent, ns, name)
	nextKeys(t, events, "as the agent", "key-1")
	s := getSecret(t, admin, ns, name)
	s.Data["key-2"] = []byte(kB)
	if _, err := admin.CoreV1().Secrets(ns).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	nextKeys(t, events, "rotation as the agent", "key-2", "key-1")

	// Nothing else: no other Secret, no listing, no writes.
	secrets := agent.CoreV1().Secrets(ns)
	for what, do := range map[string]func() error{
		"get another Secret": func() error { _, err := secrets.Get(ctx, "other", metav1.GetOptions{}); return err },
		"list every Secret":  func() error { _, err := secrets.List(ctx, metav1.ListOptions{}); return err },
		"watch every Secret": func() error { w, err := secrets.Watch(ctx, metav1.ListOptions{}); stopWatch(w); return err },
		"list another Secret": func() error {
			_, err := secrets.List(ctx, metav1.ListOptions{FieldSelector: "metadata.name=other"})
			return err
		},
		"list cluster-wide": func() error {
			_, err := agent.CoreV1().Secrets("").List(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + name})
			return err
		},
		"update the key": func() error {
			s := getSecret(t, admin, ns, name)
			_, err := secrets.Update(ctx, s, metav1.UpdateOptions{})
			return err
		},
		"delete the key": func() error { return secrets.Delete(ctx, name, metav1.DeleteOptions{}) },
		"create a Secret": func() error {
			_, err := secrets.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "new"}}, metav1.CreateOptions{})
			return err
		},
	} {
		if err := do(); !apierrors.IsForbidden(err) {
			t.Errorf("agent may %s: err = %v, want Forbidden", what, err)
		}
	}
	if _, err := secrets.Get(ctx, name, metav1.GetOptions{}); err != nil {
		t.Errorf("agent gets its Secret: %v", err)
	}

	// Without the grant: a Forbidden, reported as such.
	e := next(t, watch(t, nobody, ns, name), "without a grant")
	if !apierrors.IsForbidden(e.err) || len(e.keys.Keys) != 0 {
		t.Errorf("without a grant: %v, %v; want a Forbidden error", e.keys, e.err)
	}

	// Granted later, for a Secret that does not exist yet: the refusal
	// gives way to NotFound (no event says so: Watch must notice), then
	// to the keys.
	lateEvents := watch(t, nobody, ns, "late")
	if e := next(t, lateEvents, "late, without a grant"); !apierrors.IsForbidden(e.err) {
		t.Fatalf("late, without a grant: %v, %v; want Forbidden", e.keys, e.err)
	}
	bind(t, admin, ns, "nobody", "late")
	if e := nextAfter(t, lateEvents, 30*time.Second, "late, once granted"); !apierrors.IsNotFound(e.err) {
		t.Fatalf("late, once granted: %v, %v; want NotFound", e.keys, e.err)
	}
	if _, err := heartbeatkey.Ensure(ctx, admin, ns, "late", nil); err != nil {
		t.Fatal(err)
	}
	nextKeys(t, lateEvents, "late, created", "key-1")
}

// bind grants ServiceAccount sa get, list and watch on Secret name only,
// as the chart's agent Role does.
func bind(t *testing.T, admin kubernetes.Interface, ns, sa, name string) {
	t.Helper()
	ctx := t.Context()
	if _, err := admin.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: sa + "-" + name},
		Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{""}, Resources: []string{"secrets"},
			ResourceNames: []string{name}, Verbs: []string{"get", "list", "watch"},
		}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: sa + "-" + name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: sa + "-" + name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: sa}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The authorizer learns of the binding through a watch: wait for it.
	user := "system:serviceaccount:" + ns + ":" + sa
	deadline := time.Now().Add(30 * time.Second)
	for _, verb := range []string{"get", "list", "watch"} {
		for {
			res, err := admin.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
				User: user, Groups: []string{"system:serviceaccounts", "system:authenticated"},
				ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: ns, Verb: verb, Resource: "secrets", Name: name},
			}}, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if res.Status.Allowed {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s may not %s secret %s 30s after its binding", user, verb, name)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// nextAfter is next with a bound of its own (the informer retries a
// refused list with back-off).
func nextAfter(t *testing.T, events <-chan event, d time.Duration, what string) event {
	t.Helper()
	select {
	case e := <-events:
		return e
	case <-time.After(d):
		t.Fatalf("%s: no change reported within %v", what, d)
		return event{}
	}
}

func stopWatch(w interface{ Stop() }) {
	if w != nil {
		w.Stop()
	}
}

func keysOf(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
