// Package migrate translates the LB-IPAM and L2-announcement objects of
// MetalLB (IPAddressPool, L2Advertisement) and Cilium
// (CiliumLoadBalancerIPPool, CiliumL2AnnouncementPolicy) into Herald's
// LoadBalancerIPPool and L2AnnouncementPolicy, and says exactly what it
// could not translate and why.
//
// The rule is that an imported configuration hands out and announces the
// same addresses as the original, or says where it cannot: a field with no
// Herald equivalent is listed, never silently dropped, and an object whose
// meaning cannot be kept without widening it (announcing addresses on more
// nodes, or handing out a pool's addresses to more Services) is not
// written at all, since a wrong announcement on a LAN is worse than a
// missing one (which Herald reports as NoPolicy on the Service).
//
// The package reads the peers' objects as plain YAML or JSON (one or more
// documents, or a List as `kubectl get -o yaml` prints it); it imports
// neither peer's Go types.
package migrate

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	heraldv1 "github.com/herald-lb/herald/api/v1alpha1"
)

// Source is the load balancer whose objects are translated.
type Source string

// The sources Translate knows.
const (
	MetalLB Source = "metallb"
	Cilium  Source = "cilium"
)

// ParseSource returns the Source named s ("metallb" or "cilium").
func ParseSource(s string) (Source, error) {
	switch Source(strings.ToLower(s)) {
	case MetalLB:
		return MetalLB, nil
	case Cilium:
		return Cilium, nil
	}
	return "", fmt.Errorf("unknown source %q: want metallb or cilium", s)
}

// Object is one object as read from a manifest or the API server: its type,
// identity and spec, still in the peer's own shape.
type Object struct {
	APIVersion string
	Kind       string
	Name       string
	Namespace  string
	Labels     map[string]string
	// Spec is the object's spec as JSON.
	Spec []byte
}

// ref names o in notes: "Kind namespace/name" or "Kind name".
func (o Object) ref() string {
	if o.Namespace != "" {
		return o.Kind + " " + o.Namespace + "/" + o.Name
	}
	return o.Kind + " " + o.Name
}

// group is the API group of o's apiVersion.
func (o Object) group() string {
	g, _, ok := strings.Cut(o.APIVersion, "/")
	if !ok {
		return ""
	}
	return g
}

// Parse reads every object of r: YAML or JSON, several documents separated
// by "---", and the items of a List. Empty documents are skipped.
func Parse(r io.Reader) ([]Object, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(r, 4096)
	var out []Object
	for doc := 1; ; doc++ {
		var raw map[string]any
		err := dec.Decode(&raw)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", doc, err)
		}
		if raw == nil {
			continue
		}
		objs, err := objectsOf(raw)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", doc, err)
		}
		out = append(out, objs...)
	}
}

// objectsOf converts one decoded document (an object or a List).
func objectsOf(raw map[string]any) ([]Object, error) {
	if kind, _ := raw["kind"].(string); strings.HasSuffix(kind, "List") {
		items, _ := raw["items"].([]any)
		var out []Object
		for i, it := range items {
			m, ok := it.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("item %d of the %s is not an object", i, kind)
			}
			o, err := objectOf(m)
			if err != nil {
				return nil, fmt.Errorf("item %d: %w", i, err)
			}
			out = append(out, o)
		}
		return out, nil
	}
	o, err := objectOf(raw)
	if err != nil {
		return nil, err
	}
	return []Object{o}, nil
}

func objectOf(raw map[string]any) (Object, error) {
	var head struct {
		APIVersion string            `json:"apiVersion"`
		Kind       string            `json:"kind"`
		Metadata   metav1.ObjectMeta `json:"metadata"`
	}
	data, err := yaml.Marshal(raw)
	if err != nil {
		return Object{}, fmt.Errorf("re-encode: %w", err)
	}
	if err := yaml.Unmarshal(data, &head); err != nil {
		return Object{}, fmt.Errorf("read apiVersion, kind and metadata: %w", err)
	}
	if head.Kind == "" || head.APIVersion == "" {
		return Object{}, errors.New("not a Kubernetes object: apiVersion or kind missing")
	}
	if head.Metadata.Name == "" {
		return Object{}, fmt.Errorf("%s without metadata.name", head.Kind)
	}
	o := Object{APIVersion: head.APIVersion, Kind: head.Kind, Name: head.Metadata.Name,
		Namespace: head.Metadata.Namespace, Labels: head.Metadata.Labels}
	if spec, ok := raw["spec"]; ok {
		if o.Spec, err = yaml.Marshal(spec); err != nil {
			return Object{}, fmt.Errorf("%s: re-encode spec: %w", o.ref(), err)
		}
		if o.Spec, err = yaml.YAMLToJSON(o.Spec); err != nil {
			return Object{}, fmt.Errorf("%s: spec: %w", o.ref(), err)
		}
	}
	return o, nil
}

// Note is one thing Translate could not carry over, or carried over with
// a change of meaning the user must know about.
type Note struct {
	// Object is the peer's object: "Kind namespace/name".
	Object string
	// Field is the field concerned (empty: the whole object).
	Field string
	// Reason says what happened and what to do.
	Reason string
	// Lost is true when something was not translated (a field dropped or
	// an object not written); false for a translation whose meaning the
	// user should check.
	Lost bool
}

// Result is what Translate produced.
type Result struct {
	Pools    []heraldv1.LoadBalancerIPPool
	Policies []heraldv1.L2AnnouncementPolicy
	Notes    []Note
}

// Lost reports whether anything was not translated.
func (r Result) Lost() bool {
	return slices.ContainsFunc(r.Notes, func(n Note) bool { return n.Lost })
}

// notes collects the notes of one translation.
type notes struct{ list []Note }

func (n *notes) lost(o Object, field, format string, args ...any) {
	n.list = append(n.list, Note{Object: o.ref(), Field: field, Reason: fmt.Sprintf(format, args...), Lost: true})
}

func (n *notes) changed(o Object, field, format string, args ...any) {
	n.list = append(n.list, Note{Object: o.ref(), Field: field, Reason: fmt.Sprintf(format, args...)})
}

// decodeSpec decodes o's spec into v and notes every spec field v does
// not know (which the translation would otherwise silently drop).
func decodeSpec(o Object, v any, n *notes) error {
	if len(o.Spec) == 0 {
		return nil
	}
	if err := yaml.Unmarshal(o.Spec, v); err != nil {
		return fmt.Errorf("%s: spec: %w", o.ref(), err)
	}
	var all map[string]any
	if err := yaml.Unmarshal(o.Spec, &all); err != nil {
		return fmt.Errorf("%s: spec: %w", o.ref(), err)
	}
	known, err := yaml.Marshal(v)
	if err != nil {
		return fmt.Errorf("%s: spec: %w", o.ref(), err)
	}
	var kept map[string]any
	if err := yaml.Unmarshal(known, &kept); err != nil {
		return fmt.Errorf("%s: spec: %w", o.ref(), err)
	}
	var unknown []string
	for k := range all {
		if _, ok := kept[k]; !ok && !isZero(all[k]) {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		n.lost(o, "spec."+k, "not a field this importer knows; not translated")
	}
	return nil
}

// isZero reports whether a decoded JSON value is empty (absent in effect).
func isZero(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case bool:
		return !x
	case string:
		return x == ""
	case []any:
		return len(x) == 0
	case map[string]any:
		return len(x) == 0
	}
	return false
}

// Translate translates the objects of src among objs. Objects of other
// kinds are noted (another source's, or a kind Herald has no counterpart
// for, such as BGP) and skipped. Objects are sorted by name, notes by
// object and field.
func Translate(src Source, objs []Object) (Result, error) {
	var n notes
	var res Result
	var err error
	switch src {
	case MetalLB:
		res, err = fromMetalLB(objs, &n)
	case Cilium:
		res, err = fromCilium(objs, &n)
	default:
		return Result{}, fmt.Errorf("unknown source %q", src)
	}
	if err != nil {
		return Result{}, err
	}
	for i := range res.Pools {
		res.Pools[i].TypeMeta = metav1.TypeMeta{APIVersion: heraldv1.GroupVersion.String(), Kind: "LoadBalancerIPPool"}
	}
	for i := range res.Policies {
		res.Policies[i].TypeMeta = metav1.TypeMeta{APIVersion: heraldv1.GroupVersion.String(), Kind: "L2AnnouncementPolicy"}
	}
	slices.SortFunc(res.Pools, func(a, b heraldv1.LoadBalancerIPPool) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(res.Policies, func(a, b heraldv1.L2AnnouncementPolicy) int { return strings.Compare(a.Name, b.Name) })
	// Notes in object and field order, whatever order the objects came
	// in (files, or the API server's LIST).
	slices.SortStableFunc(n.list, func(a, b Note) int {
		if c := strings.Compare(a.Object, b.Object); c != 0 {
			return c
		}
		return strings.Compare(a.Field, b.Field)
	})
	res.Notes = n.list
	return res, nil
}

// WriteYAML writes the result's objects as YAML documents, ready for
// kubectl apply -f.
func (r Result) WriteYAML(w io.Writer) error {
	var buf bytes.Buffer
	write := func(obj any) error {
		data, err := yaml.Marshal(obj)
		if err != nil {
			return fmt.Errorf("encode: %w", err)
		}
		buf.WriteString("---\n")
		buf.Write(data)
		return nil
	}
	for i := range r.Pools {
		if err := write(clean(&r.Pools[i])); err != nil {
			return err
		}
	}
	for i := range r.Policies {
		if err := write(clean(&r.Policies[i])); err != nil {
			return err
		}
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// clean drops what a new object must not carry (an empty status, a null
// creationTimestamp) by going through a generic map.
func clean(obj any) any {
	data, err := yaml.Marshal(obj)
	if err != nil {
		return obj
	}
	var m map[string]any
	if err := yaml.Unmarshal(data, &m); err != nil {
		return obj
	}
	delete(m, "status")
	if md, ok := m["metadata"].(map[string]any); ok {
		delete(md, "creationTimestamp")
	}
	return m
}
