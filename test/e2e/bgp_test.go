package e2e

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/herald-lb/herald/internal/bgp/community"
	"github.com/herald-lb/herald/internal/bird"
	"github.com/herald-lb/herald/internal/lab"
	"github.com/herald-lb/herald/internal/lab/labnet"
)

// TestBGPLab runs the tutorial in a lab with a router (herald-lab up
// --bgp: FRR at 192.168.10.1, AS 64512, the nodes' default gateway, and a
// client behind it in 192.168.20.0/24), then adds examples/bgp.yaml: a
// pool outside the LAN advertised by every node to the router. Everything
// is real: FRR's bgpd, bfdd and zebra, the kernel's routing and ECMP, curl.
func TestBGPLab(t *testing.T) {
	l := newLab(t, "hle2eg-")
	l.env = append(l.env, "HERALD_LAB_BGP=true")
	l.labSh()
	s, err := lab.ReadState(l.dir)
	if err != nil {
		t.Fatal(err)
	}
	if s.Topology.Router == nil || s.Topology.Far == nil || s.RouterDir == "" {
		t.Fatalf("the lab has no router: %+v", s.Topology)
	}
	router := s.Topology.Router.NetNS
	vtyJSON := func(cmd string, v any) error {
		out, err := l.lab("vtysh", "-c", cmd)
		if err != nil {
			return fmt.Errorf("vtysh -c %q: %w: %s", cmd, err, out)
		}
		if err := json.Unmarshal([]byte(out), v); err != nil {
			return fmt.Errorf("vtysh -c %q: %w: %s", cmd, err, out)
		}
		return nil
	}
	far := func(args ...string) (string, error) { return l.lab(append([]string{"node", "far", "--"}, args...)...) }
	nodeIP := map[string]string{}
	var allNodes []string
	for _, n := range s.Topology.Nodes {
		nodeIP[n.Name] = n.IPv4.String()
		allNodes = append(allNodes, n.IPv4.String())
	}
	slices.Sort(allNodes)
	nextHops := func(addr string) []string { return routerNextHops(router, "-4", addr+"/32") }
	service := func(name, selector string, port, target int, extra string) {
		t.Helper()
		l.apply(fmt.Sprintf(`apiVersion: v1
kind: Service
metadata:
  name: %s
  labels: {network: routed}
  annotations: {herald.dev/pool: routed-pool}
spec:
  type: LoadBalancer
  selector: {app: %s}
  ports: [{port: %d, targetPort: %d}]
%s`, name, selector, port, target, extra), "apply")
	}
	ingress := func(svc string) string {
		t.Helper()
		var ip string
		eventually(t, 30*time.Second, svc+" gets an address from routed-pool", func() (bool, string) {
			ip = l.kubectl("get", "svc", svc, "-o", "jsonpath={.status.loadBalancer.ingress[0].ip}")
			return strings.HasPrefix(ip, "192.168.30."), ip
		})
		return ip
	}

	// announcedSays waits for web's Announced condition to say want: the
	// agents report their sessions and routes in their HeraldNodes, and
	// the controller words the condition from those, a moment after the
	// routers have the routes.
	announcedSays := func(t *testing.T, want string) {
		t.Helper()
		eventually(t, 30*time.Second, "web's Announced condition says "+want, func() (bool, string) {
			msg := l.kubectl("get", "svc", "web", "-o", `jsonpath={.status.conditions[?(@.type=="herald.dev/Announced")].message}`)
			return strings.Contains(msg, want), msg
		})
	}

	l.kubectl("apply", "-f", filepath.Join(l.root, "examples", "bgp.yaml"))
	service("web", "nginx", 80, 80, "")
	web := ingress("web")

	t.Run("every node's session with the router is established, with BFD", func(t *testing.T) {
		eventually(t, 60*time.Second, "FRR has every node Established and BFD up", func() (bool, string) {
			var summary struct {
				IPv4Unicast struct {
					Peers map[string]struct {
						State string `json:"state"`
					} `json:"peers"`
				} `json:"ipv4Unicast"`
			}
			if err := vtyJSON("show bgp summary json", &summary); err != nil {
				return false, err.Error()
			}
			var bfd []struct {
				Peer   string `json:"peer"`
				Status string `json:"status"`
			}
			if err := vtyJSON("show bfd peers json", &bfd); err != nil {
				return false, err.Error()
			}
			for _, ip := range allNodes {
				if summary.IPv4Unicast.Peers[ip].State != "Established" {
					return false, fmt.Sprintf("%s: %+v", ip, summary.IPv4Unicast.Peers)
				}
				if !slices.ContainsFunc(bfd, func(p struct {
					Peer   string `json:"peer"`
					Status string `json:"status"`
				}) bool {
					return p.Peer == ip && p.Status == "up"
				}) {
					return false, fmt.Sprintf("BFD: %+v", bfd)
				}
			}
			return true, ""
		})
		eventually(t, 30*time.Second, "every HeraldNode reports its session Established with BFD Up", func() (bool, string) {
			out := l.kubectl("get", "heraldnodes", "-o",
				`jsonpath={range .items[*]}{.metadata.name}:{range .status.bgp.sessions[*]}{.peer}={.state}/{.bfdState}/{.routesAdvertised}{end}{"\n"}{end}`)
			return strings.Count(out, "tor=Established/Up/") == len(s.Topology.Nodes), out
		})
		// herald doctor: the sessions, the routed pool outside the LAN
		// (advertised by BGP), the nodes' gateway (the router) outside
		// every pool.
		out, code := l.heraldExit("doctor")
		for _, want := range []string{"PASS  BGP sessions: 3 sessions established",
			"advertised by BGP instead: routed-pool (BGPAdvertisement routed)",
			"PASS  pools clear of the LAN's gateways: no pool holds a default gateway of the nodes (192.168.10.1)"} {
			if !strings.Contains(out, want) {
				t.Errorf("herald doctor lacks %q:\n%s", want, out)
			}
		}
		if code != 0 {
			t.Errorf("herald doctor exits %d on the BGP lab:\n%s", code, out)
		}
	})

	t.Run("the router routes the address to every node (ECMP), curl from the far subnet works, the community arrives", func(t *testing.T) {
		eventually(t, 30*time.Second, "an ECMP route over every node", func() (bool, string) {
			hops := nextHops(web)
			return slices.Equal(hops, allNodes), fmt.Sprint(hops)
		})
		for range 6 {
			out, err := far("curl", "-sS", "--max-time", "3", "http://"+web)
			if err != nil || !strings.Contains(out, "Welcome to nginx!") {
				t.Fatalf("curl http://%s from the far client: %v\n%s", web, err, out)
			}
		}
		var route struct {
			Paths []struct {
				Community *struct {
					String string `json:"string"`
				} `json:"community"`
			} `json:"paths"`
		}
		if err := vtyJSON("show bgp ipv4 unicast "+web+"/32 json", &route); err != nil {
			t.Fatal(err)
		}
		if len(route.Paths) != len(s.Topology.Nodes) {
			t.Errorf("%d paths at the router, want one per node", len(route.Paths))
		}
		for _, p := range route.Paths {
			if p.Community == nil || p.Community.String != "64513:100" {
				t.Errorf("a path without the advertisement's community 64513:100: %+v", p.Community)
			}
		}
		announcedSays(t, "advertised by BGP by nodes cp1, node1 and node2 to tor (192.168.10.1, AS 64512)")
		out := l.herald("explain", "svc/web", "-n", "default")
		if !strings.Contains(out, "Service default/web: announced") || !strings.Contains(out, "advertised by BGP") {
			t.Errorf("herald explain svc/web:\n%s", out)
		}
	})

	t.Run("L2 and BGP at once: the tutorial's address on the LAN, the routed one behind the router", func(t *testing.T) {
		out, err := l.client("curl", "-sS", "--max-time", "3", "http://192.168.10.75")
		if err != nil || !strings.Contains(out, "Welcome to nginx!") {
			t.Errorf("the LAN client's curl of the tutorial's nginx: %v\n%s", err, out)
		}
		// The router reaches the LAN's addresses by ARP, like any host.
		out, err = far("curl", "-sS", "--max-time", "3", "http://192.168.10.75")
		if err != nil || !strings.Contains(out, "Welcome to nginx!") {
			t.Errorf("the far client's curl of the tutorial's nginx through the router: %v\n%s", err, out)
		}
	})

	t.Run("externalTrafficPolicy Local: only the endpoint's node advertises, and the route follows it", func(t *testing.T) {
		service("echo-routed", "echo", 80, 8080, "  externalTrafficPolicy: Local\n")
		ip := ingress("echo-routed")
		// The node of the Running echo Pod, "" while there is none (the
		// tutorial's Pod may still be starting, or being replaced).
		podNode := func() string {
			out, err := l.lab("kubectl", "get", "pods", "-l", "app=echo", "--field-selector=status.phase=Running", "-o", "jsonpath={.items[*].spec.nodeName}")
			if err != nil {
				return ""
			}
			return out
		}
		var first string
		eventually(t, 60*time.Second, "a Running echo Pod", func() (bool, string) {
			first = podNode()
			return first != "" && !strings.Contains(first, " "), first
		})
		eventually(t, 30*time.Second, "the route's one next hop is "+first, func() (bool, string) {
			hops := nextHops(ip)
			return slices.Equal(hops, []string{nodeIP[first]}), fmt.Sprint(hops)
		})
		// The node's kube-proxy sees the endpoint about when its agent
		// does: give it a moment to program it.
		eventually(t, 10*time.Second, "Local keeps the client's address: /clientip says "+s.Topology.Far.IPv4.String(), func() (bool, string) {
			out, err := far("curl", "-sS", "--max-time", "3", "http://"+ip+"/clientip")
			return err == nil && strings.HasPrefix(out, s.Topology.Far.IPv4.String()+":"), fmt.Sprintf("%q %v", out, err)
		})
		// Move the Pod: its node leaves, another advertises.
		l.kubectl("cordon", first)
		l.kubectl("delete", "pods", "-l", "app=echo", "--wait")
		eventually(t, 90*time.Second, "the route follows the Pod to another node", func() (bool, string) {
			n := podNode()
			hops := nextHops(ip)
			return n != "" && n != first && slices.Equal(hops, []string{nodeIP[n]}), n + " " + fmt.Sprint(hops)
		})
		l.kubectl("uncordon", first)
		eventually(t, 30*time.Second, "curl through the new node", func() (bool, string) {
			out, err := far("curl", "-sS", "--max-time", "3", "http://"+ip+"/clientip")
			return err == nil && strings.HasPrefix(out, s.Topology.Far.IPv4.String()+":"), out
		})
		l.kubectl("delete", "svc", "echo-routed")
	})

	t.Run("a wrong peer ASN: the status and an Event say why, nothing crashes, the fix brings it back", func(t *testing.T) {
		restarts := l.kubectl("-n", "herald-system", "get", "pods", "-l", "app.kubernetes.io/component=agent", "-o",
			"jsonpath={range .items[*]}{.status.containerStatuses[0].restartCount}{end}")
		l.kubectl("patch", "bgppeer", "tor", "--type=merge", "-p", `{"spec":{"peerASN":64999}}`)
		eventually(t, 60*time.Second, "every node reports bad peer AS", func() (bool, string) {
			out := l.kubectl("get", "heraldnodes", "-o", `jsonpath={range .items[*]}{.status.bgp.sessions[0].state}: {.status.bgp.sessions[0].lastError}{"\n"}{end}`)
			return strings.Count(out, "bad peer as") == len(s.Topology.Nodes) && !strings.Contains(out, "Established"), out
		})
		eventually(t, 30*time.Second, "a BGPSessionDown Event on the BGPPeer", func() (bool, string) {
			out := l.kubectl("get", "events", "-A", "--field-selector", "involvedObject.kind=BGPPeer,involvedObject.name=tor,reason=BGPSessionDown",
				"-o", "jsonpath={range .items[*]}{.message}{\"\\n\"}{end}")
			return strings.Contains(out, "bad peer as"), out
		})
		if out := l.herald("explain", "svc/web", "-n", "default"); strings.Contains(out, "advertised by BGP") {
			t.Errorf("explain still says the address is advertised:\n%s", out)
		}
		if out, code := l.heraldExit("doctor"); code != 1 || !strings.Contains(out, "FAIL  BGP sessions: node cp1 with tor (192.168.10.1, AS 64999) is") ||
			!strings.Contains(out, "bad peer as") {
			t.Errorf("herald doctor with the wrong ASN: exit %d\n%s", code, out)
		}
		if out, code := l.heraldExit("status"); code != 1 || !strings.Contains(out, "BGPSessionDown") {
			t.Errorf("herald status with the wrong ASN: exit %d\n%s", code, out)
		}
		l.kubectl("patch", "bgppeer", "tor", "--type=merge", "-p", `{"spec":{"peerASN":64512}}`)
		eventually(t, 60*time.Second, "Established again and the route back", func() (bool, string) {
			hops := nextHops(web)
			return slices.Equal(hops, allNodes), fmt.Sprint(hops)
		})
		after := l.kubectl("-n", "herald-system", "get", "pods", "-l", "app.kubernetes.io/component=agent", "-o",
			"jsonpath={range .items[*]}{.status.containerStatuses[0].restartCount}{end}")
		if after != restarts {
			t.Errorf("agents restarted: restart counts %s → %s", restarts, after)
		}
	})

	t.Run("a TCP MD5 password: the right one establishes, a wrong one says so", func(t *testing.T) {
		helm := func(args ...string) {
			t.Helper()
			cmd := exec.Command(s.Tools.Helm, append(args, "--kubeconfig", s.Kubeconfig)...)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
			}
		}
		chart := filepath.Join(l.root, "deploy", "helm", "herald")
		l.kubectl("-n", "herald-system", "create", "secret", "generic", "tor-password", "--from-literal=password=lab-s3cret")
		helm("upgrade", lab.ReleaseName, chart, "-n", lab.ReleaseNamespace, "--reuse-values", "--set", "bgp.passwordSecrets={tor-password}", "--wait")
		if out, err := l.lab("vtysh", "-c", "configure terminal", "-c", "router bgp 64512", "-c", "neighbor nodes password lab-s3cret"); err != nil {
			t.Fatalf("vtysh: %v\n%s", err, out)
		}
		l.kubectl("patch", "bgppeer", "tor", "--type=merge", "-p", `{"spec":{"passwordSecretRef":{"name":"tor-password"}}}`)
		eventually(t, 90*time.Second, "Established with the password, the route back", func() (bool, string) {
			out := l.kubectl("get", "heraldnodes", "-o", `jsonpath={range .items[*]}{.status.bgp.sessions[0].state}{"\n"}{end}`)
			return strings.Count(out, "Established") == len(s.Topology.Nodes) && slices.Equal(nextHops(web), allNodes), out
		})
		// A wrong password: the router drops the node's segments unanswered.
		l.kubectl("-n", "herald-system", "patch", "secret", "tor-password", "--type=merge", "-p", `{"stringData":{"password":"wrong"}}`)
		eventually(t, 90*time.Second, "no session, and each node says it cannot connect", func() (bool, string) {
			out := l.kubectl("get", "heraldnodes", "-o", `jsonpath={range .items[*]}{.status.bgp.sessions[0].state}: {.status.bgp.sessions[0].lastError}{"\n"}{end}`)
			return !strings.Contains(out, "Established") && strings.Count(out, "timeout") == len(s.Topology.Nodes), out
		})
		// A Secret the agents may not read.
		l.kubectl("patch", "bgppeer", "tor", "--type=merge", "-p", `{"spec":{"passwordSecretRef":{"name":"other-secret"}}}`)
		eventually(t, 60*time.Second, "each node says it may not read the Secret", func() (bool, string) {
			out := l.kubectl("get", "heraldnodes", "-o", `jsonpath={range .items[*]}{.status.bgp.sessions[0].lastError}{"\n"}{end}`)
			return strings.Count(out, "bgp.passwordSecrets") == len(s.Topology.Nodes), out
		})
		// Back to the right one.
		l.kubectl("-n", "herald-system", "patch", "secret", "tor-password", "--type=merge", "-p", `{"stringData":{"password":"lab-s3cret"}}`)
		l.kubectl("patch", "bgppeer", "tor", "--type=merge", "-p", `{"spec":{"passwordSecretRef":{"name":"tor-password"}}}`)
		eventually(t, 90*time.Second, "Established again", func() (bool, string) {
			return slices.Equal(nextHops(web), allNodes), fmt.Sprint(nextHops(web))
		})
	})

	t.Run("a rolling restart of the agents loses no request from the far subnet", func(t *testing.T) {
		stop := make(chan struct{})
		type result struct{ ok, failed int }
		done := make(chan result)
		go func() {
			var r result
			deadline := time.Now().Add(5 * time.Minute) // bounded whatever happens
			for time.Now().Before(deadline) {
				select {
				case <-stop:
					done <- r
					return
				default:
				}
				if out, err := far("curl", "-sS", "--max-time", "2", "http://"+web); err == nil && strings.Contains(out, "Welcome to nginx!") {
					r.ok++
				} else {
					r.failed++
				}
			}
			done <- r
		}()
		time.Sleep(time.Second)
		l.kubectl("-n", "herald-system", "rollout", "restart", "daemonset/herald-agent")
		l.kubectl("-n", "herald-system", "rollout", "status", "daemonset/herald-agent", "--timeout=180s")
		time.Sleep(2 * time.Second)
		close(stop)
		r := <-done
		t.Logf("%d requests during the rolling restart, %d failed", r.ok+r.failed, r.failed)
		if r.failed > 0 || r.ok < 10 {
			t.Errorf("%d of %d requests failed", r.failed, r.ok+r.failed)
		}
		eventually(t, 60*time.Second, "every node advertises again", func() (bool, string) {
			return slices.Equal(nextHops(web), allNodes), fmt.Sprint(nextHops(web))
		})
	})

	t.Run("a node that loses power is routed around within BFD's detection time and back once it boots", func(t *testing.T) {
		// The node that loses power hosts no web backend: the Service must
		// stay reachable through the others (a backend on it would be
		// down until its kubelet restarted it, whatever Herald does).
		backends := strings.Fields(l.kubectl("get", "pods", "-l", "app=nginx", "-o", "jsonpath={.items[*].spec.nodeName}"))
		var lost lab.Host
		for _, n := range slices.Backward(s.Topology.Nodes) {
			if !slices.Contains(backends, n.Name) {
				lost = n
				break
			}
		}
		if lost.Name == "" {
			t.Fatalf("every node hosts a web backend (%v): none can lose power without taking the Service down", backends)
		}
		rest := slices.DeleteFunc(slices.Clone(allNodes), func(ip string) bool { return ip == lost.IPv4.String() })
		curlFar := func(when string) {
			t.Helper()
			for range 6 {
				out, err := far("curl", "-sS", "--max-time", "3", "http://"+web)
				if err != nil || !strings.Contains(out, "Welcome to nginx!") {
					t.Fatalf("curl http://%s from the far client %s: %v\n%s", web, when, err, out)
				}
			}
		}
		t0 := time.Now()
		if out, err := l.lab("crash-node", lost.Name); err != nil {
			t.Fatalf("herald-lab crash-node %s: %v\n%s", lost.Name, err, out)
		}
		if labnet.Exists(lost.NetNS) {
			t.Errorf("%s's network namespace is still there after crash-node", lost.NetNS)
		}
		// BFD (300 ms × 3) takes the node's path out; the hold timer (9 s)
		// would take far longer.
		eventually(t, 5*time.Second, "the router's route without "+lost.Name, func() (bool, string) {
			hops := nextHops(web)
			return slices.Equal(hops, rest), fmt.Sprint(hops)
		})
		t.Logf("%s's path left the router's route %v after the power cut", lost.Name, time.Since(t0).Round(100*time.Millisecond))
		curlFar("while " + lost.Name + " is down")
		if out, err := l.lab("crash-node", lost.Name); err == nil || !strings.Contains(out, "already down") {
			t.Errorf("a second crash-node of %s: %v %s", lost.Name, err, out)
		}
		if out, err := l.lab("boot-node", lost.Name); err != nil {
			t.Fatalf("herald-lab boot-node %s: %v\n%s", lost.Name, err, out)
		}
		eventually(t, 120*time.Second, "the booted node's agent advertises again", func() (bool, string) {
			hops := nextHops(web)
			return slices.Equal(hops, allNodes), fmt.Sprint(hops)
		})
		curlFar("after " + lost.Name + " booted")
	})

	// The core router (BIRD 2, AS 64514) is behind the router, on a
	// subnet of its own: the nodes reach it only through the router, so
	// the sessions are eBGP multihop, and it reaches the Service only by
	// the routes it learns from them.
	t.Run("eBGP multihop to BIRD behind the router: sessions, the routes as sent, curl from the core", func(t *testing.T) {
		core := s.Topology.Core
		if core == nil || s.CoreSocket == "" {
			t.Fatalf("the lab has no core router: %+v", s.Topology)
		}
		birdc := func(words ...string) ([]bird.Line, error) {
			out, err := l.lab(append([]string{"birdc", "-v"}, words...)...)
			lines, perr := bird.ParseReply(out)
			if err != nil || perr != nil {
				return nil, fmt.Errorf("birdc %s: %v %v: %s", strings.Join(words, " "), err, perr, out)
			}
			return lines, nil
		}
		routeFromCore := func() (string, error) {
			return labnet.IP("-n", core.NetNS, "-4", "route", "show", web+"/32")
		}
		if out, err := routeFromCore(); err != nil || out != "" {
			t.Fatalf("the core has a route to %s before any session: %q %v", web, out, err)
		}
		l.kubectl("apply", "-f", filepath.Join(l.root, "examples", "bgp-core.yaml"))
		eventually(t, 60*time.Second, "every HeraldNode reports its session with core Established, from its LAN address", func() (bool, string) {
			out := l.kubectl("get", "heraldnodes", "-o",
				`jsonpath={range .items[*]}{range .status.bgp.sessions[?(@.peer=="core")]}{.state}/{.localAddress}{"\n"}{end}{end}`)
			for _, ip := range allNodes {
				if !slices.Contains(strings.Fields(out), "Established/"+ip) {
					return false, out
				}
			}
			return true, ""
		})
		eventually(t, 30*time.Second, "BIRD has a session with every node in AS 64513", func() (bool, string) {
			lines, err := birdc("show", "protocols", "all")
			if err != nil {
				return false, err.Error()
			}
			ps, err := bird.ParseProtocols(lines)
			if err != nil {
				return false, err.Error()
			}
			for _, ip := range allNodes {
				p, ok, err := bird.FindBGPNeighbor(ps, netip.MustParseAddr(ip))
				if err != nil || !ok || p.BGPState() != "Established" || p.NeighborAS() != lab.NodeASN {
					return false, fmt.Sprintf("%s: %+v %v %v", ip, p, ok, err)
				}
			}
			return true, ""
		})
		eventually(t, 30*time.Second, "BIRD holds a route to "+web+" from every node, with the node as next hop and the community", func() (bool, string) {
			lines, err := birdc("show", "route", web+"/32", "all")
			if err != nil {
				return false, err.Error()
			}
			routes, err := bird.ParseRoutes(lines)
			if err != nil {
				return false, err.Error()
			}
			var hops []string
			for _, r := range routes {
				if r.BGP == nil || r.BGP.ASPath != "64513" || !slices.Contains(r.BGP.Communities, community.Community(64513<<16|100)) ||
					len(r.BGP.NextHop) != 1 {
					return false, fmt.Sprintf("a route without the node's AS path, the community or one next hop: %+v", r)
				}
				hops = append(hops, r.BGP.NextHop[0].String())
			}
			slices.Sort(hops)
			return slices.Equal(hops, allNodes), fmt.Sprintf("BGP next hops %v", hops)
		})
		eventually(t, 30*time.Second, "the core's kernel routes "+web+" through the router", func() (bool, string) {
			out, err := routeFromCore()
			return err == nil && strings.Contains(out, "via "+s.Topology.RouterCoreLink().Addr().String()), out
		})
		out, err := l.lab("node", "core", "--", "curl", "-sS", "--max-time", "3", "http://"+web)
		if err != nil || !strings.Contains(out, "Welcome to nginx!") {
			t.Errorf("curl http://%s from the core router: %v\n%s", web, err, out)
		}
		announcedSays(t, "core (192.168.21.2, AS 64514)")
		// The peer goes: the sessions close, BIRD forgets the routes and
		// its kernel the route; the router keeps its own.
		l.kubectl("delete", "bgppeer", "core")
		eventually(t, 30*time.Second, "no route to "+web+" at the core once the peer is gone", func() (bool, string) {
			lines, err := birdc("show", "route", web+"/32", "all")
			if err != nil {
				return strings.Contains(err.Error(), "Network not found"), err.Error()
			}
			out, _ := routeFromCore()
			return len(lines) == 0 && out == "", fmt.Sprintf("%d lines; kernel %q", len(lines), out)
		})
		if hops := nextHops(web); !slices.Equal(hops, allNodes) {
			t.Errorf("the router's route lost next hops with the core's peer: %v", hops)
		}
	})
}

// routerNextHops returns the next hops, sorted, of the kernel route to
// prefix in the router's namespace (family "-4" or "-6"); none when there
// is no route.
func routerNextHops(netns, family, prefix string) []string {
	out, err := labnet.IP("-n", netns, family, "route", "show", prefix)
	if err != nil {
		return nil
	}
	var hops []string
	f := strings.Fields(out)
	for i := range f {
		if f[i] == "via" && i+1 < len(f) {
			hops = append(hops, f[i+1])
		}
	}
	slices.Sort(hops)
	return hops
}
