package node

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"text/template"
)

// kernelTunables are the sysctls the kubelet insists on (its
// setupKernelTunables). With protectKernelDefaults it only reads them and
// fails when one differs; the node's mount namespace gets files with these
// values over the /proc/sys entries that differ, so the host keeps its own.
func kernelTunables() map[string]int {
	return map[string]int{
		"vm/overcommit_memory":      1,
		"vm/panic_on_oom":           0,
		"kernel/panic":              10,
		"kernel/panic_on_oops":      1,
		"kernel/keys/root_maxkeys":  1000000,
		"kernel/keys/root_maxbytes": 25000000,
	}
}

// containerdConfig is containerd's configuration (version 3, containerd
// 2.x): everything under the node's directory, the CRI plugin with runc
// from the machine, cgroupfs, the OOM score restriction root without
// CAP_SYS_RESOURCE needs, network namespaces under the state directory,
// and the CNI configuration written from a template once the kubelet
// passes the Node's podCIDR.
const containerdConfig = `version = 3
root = {{q .Root}}
state = {{q .State}}

[grpc]
  address = {{q .Socket}}

[ttrpc]
  address = {{q .TTRPCSocket}}

[plugins]
  [plugins.'io.containerd.internal.v1.opt']
    path = {{q .Opt}}

  [plugins.'io.containerd.nri.v1.nri']
    disable = true

  [plugins.'io.containerd.cri.v1.images']
    snapshotter = 'overlayfs'
    [plugins.'io.containerd.cri.v1.images'.registry]
      config_path = {{q .RegistryHosts}}
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = {{q .SandboxImage}}

  [plugins.'io.containerd.cri.v1.runtime']
    enable_selinux = false
    disable_apparmor = true
    restrict_oom_score_adj = true
    netns_mounts_under_state_dir = true
    enable_cdi = false
    enable_criu = false

    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = 'runc'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = 'io.containerd.runc.v2'
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = {{q .Runc}}
          SystemdCgroup = false

    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = [{{q .CNIBinDir}}]
      conf_dir = {{q .CNIConfDir}}
      conf_template = {{q .CNITemplate}}
      max_conf_num = 1

  [plugins.'io.containerd.grpc.v1.cri']
    disable_tcp_service = true
    stream_server_address = '127.0.0.1'
    stream_server_port = '0'
`

// kubeletConfig is the KubeletConfiguration of a node on a cgroup v1
// machine where root lacks CAP_SYS_RESOURCE (see the package comment):
// cgroupfs under a cgroup root of
// the node's own, cgroup v1 allowed, the kernel's sysctls only checked,
// no DNS (the lab has none yet). The API server reaches it anonymously
// (AlwaysAllow) through its egress proxy only: the node's address exists
// in the node's network namespace alone.
const kubeletConfig = `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: {{q .IP}}
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
containerRuntimeEndpoint: {{q .RuntimeEndpoint}}
cgroupDriver: cgroupfs
cgroupRoot: {{q .CgroupRoot}}
cgroupsPerQOS: true
enforceNodeAllocatable: []
failCgroupV1: false
failSwapOn: false
protectKernelDefaults: true
resolvConf: ""
clusterDNS: []
clusterDomain: cluster.local
rotateCertificates: false
serializeImagePulls: false
staticPodPath: ""
evictionHard:
  memory.available: 50Mi
  nodefs.available: 1%
  imagefs.available: 1%
  nodefs.inodesFree: 1%
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
`

// kubeProxyConfig is kube-proxy's configuration: the mode asked for, and
// no conntrack table size (a node's network namespace cannot set the
// host-wide nf_conntrack_max).
const kubeProxyConfig = `apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: {{q .Kubeconfig}}
hostnameOverride: {{q .Name}}
mode: {{q .Mode}}
clusterCIDR: {{q .ClusterCIDR}}
healthzBindAddress: "0.0.0.0:10256"
metricsBindAddress: "127.0.0.1:10249"
conntrack:
  maxPerCore: 0
  min: 0
`

// cniTemplate is the CNI configuration containerd writes once the kubelet
// tells it the Node's podCIDRs: a cni0 bridge in the node's network
// namespace, with the first address of each podCIDR as the Pods' gateway,
// host-local addresses from every podCIDR (dual stack when the Node has
// two; state under the node's own /var/lib) and a default route per
// family.
const cniTemplate = `{
  "cniVersion": "1.0.0",
  "name": "herald-lab",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [{{range $i, $r := .PodCIDRRanges}}{{if $i}}, {{end}}[{"subnet": "{{$r}}"}]{{end}}],
        "routes": [{{range $i, $r := .Routes}}{{if $i}}, {{end}}{"dst": "{{$r}}"}{{end}}]
      }
    }
  ]
}
`

// registryHosts is containerd's hosts.toml for one registry the node
// pulls from: every request goes to the lab's registry, the registry's own
// server included, so that no pull ever leaves the machine.
const registryHosts = `server = {{q .URL}}

[host.{{q .URL}}]
  capabilities = ["pull", "resolve"]
`

// renderConfig renders text with data; q quotes a string for TOML and YAML
// alike (a double-quoted string with Go escapes, which both read).
func renderConfig(name, text string, data any) ([]byte, error) {
	t, err := template.New(name).Funcs(template.FuncMap{"q": strconv.Quote}).Parse(text)
	if err != nil {
		return nil, fmt.Errorf("parse %s template: %w", name, err)
	}
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		return nil, fmt.Errorf("render %s: %w", name, err)
	}
	return b.Bytes(), nil
}

// writeConfigs writes containerd's and the kubelet's configuration and the
// CNI template into the node's directory.
func (n *Node) writeConfigs() error {
	p := n.paths
	files := []struct {
		path, name, text string
		data             any
	}{
		{p.containerdConfig, "containerd config", containerdConfig, map[string]string{
			"Root": p.containerdRoot, "State": p.containerdState, "Socket": p.socket,
			"TTRPCSocket": p.socket + ".ttrpc", "Opt": p.opt, "SandboxImage": n.cfg.SandboxImage,
			"Runc": n.cfg.Runc, "CNIBinDir": n.cfg.CNIBinDir, "CNIConfDir": p.cniConfDir,
			"CNITemplate": p.cniTemplate, "RegistryHosts": p.registryHosts,
		}},
		{p.kubeletConfig, "kubelet config", kubeletConfig, map[string]string{
			"IP": n.cfg.IP.String(), "RuntimeEndpoint": "unix://" + p.socket, "CgroupRoot": "/" + n.cfg.cgroupName(),
		}},
		{p.cniTemplate, "CNI template", cniTemplate, nil},
	}
	if n.cfg.KubeProxy.Mode != "" {
		files = append(files, struct {
			path, name, text string
			data             any
		}{p.kubeProxyConfig, "kube-proxy config", kubeProxyConfig, map[string]string{
			"Kubeconfig": n.cfg.KubeProxy.Kubeconfig, "Name": n.cfg.Name, "Mode": n.cfg.KubeProxy.Mode,
			"ClusterCIDR": n.cfg.KubeProxy.ClusterCIDR,
		}})
	}
	if n.cfg.Registry != "" {
		for _, host := range n.cfg.Mirrored {
			files = append(files, struct {
				path, name, text string
				data             any
			}{filepath.Join(p.registryHosts, host, "hosts.toml"), "registry hosts of " + host, registryHosts,
				map[string]string{"URL": "http://" + n.cfg.Registry}})
		}
	}
	for _, f := range files {
		// Without data the text is written as it is (the CNI template is
		// containerd's to render).
		data := []byte(f.text)
		if f.data != nil {
			var err error
			if data, err = renderConfig(f.name, f.text, f.data); err != nil {
				return err
			}
		}
		if err := os.MkdirAll(filepath.Dir(f.path), 0o755); err != nil {
			return fmt.Errorf("write %s: %w", f.name, err)
		}
		if err := os.WriteFile(f.path, data, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", f.name, err)
		}
	}
	return nil
}
