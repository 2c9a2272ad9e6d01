package lab

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// Client returns an admin clientset for a running lab.
func (s State) Client() (kubernetes.Interface, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", s.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("lab kubeconfig: %w", err)
	}
	return kubernetes.NewForConfig(cfg)
}

// PrintStatus writes what the lab runs: hosts, nodes, Herald's Pods and
// the LoadBalancer Services.
func PrintStatus(ctx context.Context, s State, out io.Writer) error {
	c, err := s.Client()
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "Lab daemon pid %d, API server %s\nkubeconfig %s\n\n", s.PID, s.APIServer, s.Kubeconfig)

	nodes, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list nodes: %w", err)
	}
	fmt.Fprintln(tw, "HOST\tNETNS\tADDRESS\tREADY\tPOD CIDR")
	byName := map[string]corev1.Node{}
	for _, n := range nodes.Items {
		byName[n.Name] = n
	}
	for _, h := range s.Topology.Hosts() {
		addr := h.IPv4.String()
		if h.IPv6.IsValid() {
			addr += "," + h.IPv6.String()
		}
		ready, cidr := "-", "-"
		if n, ok := byName[h.Name]; ok {
			ready, cidr = "False", n.Spec.PodCIDR
			for _, cond := range n.Status.Conditions {
				if cond.Type == corev1.NodeReady {
					ready = string(cond.Status)
				}
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", h.Name, h.NetNS, addr, ready, cidr)
	}

	pods, err := c.CoreV1().Pods("").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=herald"})
	if err != nil {
		return fmt.Errorf("list pods: %w", err)
	}
	fmt.Fprintln(tw, "\nHERALD POD\tNODE\tPHASE\tREADY\tRESTARTS")
	for _, p := range pods.Items {
		ready, restarts := "false", int32(0)
		for _, cs := range p.Status.ContainerStatuses {
			ready = fmt.Sprint(cs.Ready)
			restarts += cs.RestartCount
		}
		fmt.Fprintf(tw, "%s/%s\t%s\t%s\t%s\t%d\n", p.Namespace, p.Name, p.Spec.NodeName, p.Status.Phase, ready, restarts)
	}

	svcs, err := c.CoreV1().Services("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list services: %w", err)
	}
	fmt.Fprintln(tw, "\nLOADBALANCER SERVICE\tEXTERNAL-IP\tPORTS")
	for _, svc := range svcs.Items {
		if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
			continue
		}
		var ips, ports []string
		for _, in := range svc.Status.LoadBalancer.Ingress {
			ips = append(ips, in.IP)
		}
		for _, p := range svc.Spec.Ports {
			ports = append(ports, fmt.Sprintf("%d/%s", p.Port, p.Protocol))
		}
		ext := strings.Join(ips, ",")
		if ext == "" {
			ext = "<pending>"
		}
		fmt.Fprintf(tw, "%s/%s\t%s\t%s\n", svc.Namespace, svc.Name, ext, strings.Join(ports, ","))
	}
	return tw.Flush()
}
