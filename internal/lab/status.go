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

// PrintStatus writes what the lab runs: hosts and their Nodes (as
// `kubectl get nodes -o wide` would, with the netns and Pod CIDR), every
// Pod (as `kubectl get pods -A -o wide`) and the LoadBalancer Services.
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
	fmt.Fprintln(tw, "HOST\tNETNS\tADDRESS\tREADY\tVERSION\tCONTAINER-RUNTIME\tPOD CIDR")
	byName := map[string]corev1.Node{}
	for _, n := range nodes.Items {
		byName[n.Name] = n
	}
	for _, h := range s.Topology.Hosts() {
		addr := h.IPv4.String()
		if h.IPv6.IsValid() {
			addr += "," + h.IPv6.String()
		}
		ready, cidr, version, runtime := "-", "-", "-", "-"
		if n, ok := byName[h.Name]; ok {
			ready, cidr = "False", strings.Join(podCIDRs(&n), ",")
			version, runtime = n.Status.NodeInfo.KubeletVersion, n.Status.NodeInfo.ContainerRuntimeVersion
			for _, cond := range n.Status.Conditions {
				if cond.Type == corev1.NodeReady {
					ready = string(cond.Status)
				}
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", h.Name, h.NetNS, addr, ready, version, runtime, cidr)
	}

	pods, err := c.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list pods: %w", err)
	}
	fmt.Fprintln(tw, "\nPOD\tREADY\tSTATUS\tRESTARTS\tIP\tNODE")
	for _, p := range pods.Items {
		ready, restarts := 0, int32(0)
		status := string(p.Status.Phase)
		for _, cs := range p.Status.ContainerStatuses {
			if cs.Ready {
				ready++
			}
			restarts += cs.RestartCount
			if w := cs.State.Waiting; w != nil && w.Reason != "" {
				status = w.Reason
			}
		}
		if p.DeletionTimestamp != nil {
			status = "Terminating"
		}
		ip := p.Status.PodIP
		if ip == "" {
			ip = "<none>"
		}
		fmt.Fprintf(tw, "%s/%s\t%d/%d\t%s\t%d\t%s\t%s\n", p.Namespace, p.Name, ready, len(p.Spec.Containers),
			status, restarts, ip, p.Spec.NodeName)
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
