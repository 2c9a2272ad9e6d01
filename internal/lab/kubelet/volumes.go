package kubelet

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// defaultTokenSeconds is the lifetime of a projected ServiceAccount token
// whose source does not say.
const defaultTokenSeconds = 3600

// volumes writes the content of the Pod's volumes under dir/volumes and
// returns each volume's host path by name, and when the soonest token
// expires enough that the volumes must be written again (zero if never).
// Writing again replaces files atomically, so a running process sees a
// whole old or a whole new token.
func (k *Kubelet) volumes(ctx context.Context, pod *corev1.Pod, dir string) (map[string]string, time.Time, error) {
	paths := map[string]string{}
	var refresh time.Time
	sooner := func(t time.Time) {
		if refresh.IsZero() || t.Before(refresh) {
			refresh = t
		}
	}
	for _, v := range pod.Spec.Volumes {
		vdir := filepath.Join(dir, "volumes", v.Name)
		var files map[string]file
		var err error
		switch {
		case v.HostPath != nil:
			paths[v.Name] = v.HostPath.Path
			continue
		case v.EmptyDir != nil:
			err = os.MkdirAll(vdir, 0o777)
		case v.Secret != nil:
			files, err = k.secretFiles(ctx, pod.Namespace, v.Secret.SecretName, v.Secret.Items, v.Secret.DefaultMode, ptr.Deref(v.Secret.Optional, false))
		case v.ConfigMap != nil:
			files, err = k.configMapFiles(ctx, pod.Namespace, v.ConfigMap.Name, v.ConfigMap.Items, v.ConfigMap.DefaultMode, ptr.Deref(v.ConfigMap.Optional, false))
		case v.DownwardAPI != nil:
			files, err = downwardFiles(pod, v.DownwardAPI.Items, v.DownwardAPI.DefaultMode)
		case v.Projected != nil:
			var expires time.Time
			files, expires, err = k.projectedFiles(ctx, pod, v.Projected)
			if !expires.IsZero() {
				sooner(expires)
			}
		default:
			err = fmt.Errorf("volume type not supported by the lab kubelet (it supports secret, configMap, projected, downwardAPI, emptyDir and hostPath)")
		}
		if err == nil && files != nil {
			err = writeFiles(vdir, files)
		}
		if err != nil {
			return nil, time.Time{}, fmt.Errorf("volume %q: %w", v.Name, err)
		}
		paths[v.Name] = vdir
	}
	return paths, refresh, nil
}

// file is one file of a volume.
type file struct {
	data []byte
	mode fs.FileMode
}

func mode(m *int32, def fs.FileMode) fs.FileMode {
	if m == nil {
		return def
	}
	return fs.FileMode(*m)
}

// keyFiles selects keys from data as items say (all keys when none).
func keyFiles(data map[string][]byte, items []corev1.KeyToPath, defMode *int32, what string) (map[string]file, error) {
	files := map[string]file{}
	m := mode(defMode, 0o644)
	if len(items) == 0 {
		for key, v := range data {
			files[key] = file{v, m}
		}
		return files, nil
	}
	for _, it := range items {
		v, ok := data[it.Key]
		if !ok {
			return nil, fmt.Errorf("%s has no key %q", what, it.Key)
		}
		files[it.Path] = file{v, mode(it.Mode, m)}
	}
	return files, nil
}

func (k *Kubelet) secretFiles(ctx context.Context, ns, name string, items []corev1.KeyToPath, defMode *int32, optional bool) (map[string]file, error) {
	s, err := k.cfg.Client.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		if optional {
			return map[string]file{}, nil
		}
		return nil, fmt.Errorf("secret %s/%s: %w", ns, name, err)
	}
	return keyFiles(s.Data, items, defMode, "secret "+ns+"/"+name)
}

func (k *Kubelet) configMapFiles(ctx context.Context, ns, name string, items []corev1.KeyToPath, defMode *int32, optional bool) (map[string]file, error) {
	cm, err := k.cfg.Client.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		if optional {
			return map[string]file{}, nil
		}
		return nil, fmt.Errorf("configmap %s/%s: %w", ns, name, err)
	}
	data := map[string][]byte{}
	for key, v := range cm.Data {
		data[key] = []byte(v)
	}
	for key, v := range cm.BinaryData {
		data[key] = v
	}
	return keyFiles(data, items, defMode, "configmap "+ns+"/"+name)
}

func downwardFiles(pod *corev1.Pod, items []corev1.DownwardAPIVolumeFile, defMode *int32) (map[string]file, error) {
	files := map[string]file{}
	for _, it := range items {
		if it.FieldRef == nil {
			return nil, fmt.Errorf("downwardAPI item %q: only fieldRef is supported", it.Path)
		}
		v, err := fieldValue(pod, it.FieldRef.FieldPath)
		if err != nil {
			return nil, err
		}
		files[it.Path] = file{[]byte(v), mode(it.Mode, mode(defMode, 0o644))}
	}
	return files, nil
}

// projectedFiles materializes a projected volume; for ServiceAccount tokens
// it asks the TokenRequest API for a token bound to the Pod, and returns
// when it should be renewed (at 80% of its life, like the kubelet).
func (k *Kubelet) projectedFiles(ctx context.Context, pod *corev1.Pod, p *corev1.ProjectedVolumeSource) (map[string]file, time.Time, error) {
	files := map[string]file{}
	var renew time.Time
	for _, src := range p.Sources {
		var part map[string]file
		var err error
		switch {
		case src.ServiceAccountToken != nil:
			seconds := ptr.Deref(src.ServiceAccountToken.ExpirationSeconds, defaultTokenSeconds)
			req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
				ExpirationSeconds: &seconds,
				BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
			}}
			if a := src.ServiceAccountToken.Audience; a != "" {
				req.Spec.Audiences = []string{a}
			}
			var tr *authenticationv1.TokenRequest
			tr, err = k.cfg.Client.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, pod.Spec.ServiceAccountName, req, metav1.CreateOptions{})
			if err != nil {
				err = fmt.Errorf("token for serviceaccount %s/%s: %w", pod.Namespace, pod.Spec.ServiceAccountName, err)
				break
			}
			life := time.Until(tr.Status.ExpirationTimestamp.Time)
			if life > time.Duration(seconds)*time.Second {
				// The API server may extend tokens; renew on the asked
				// lifetime anyway.
				life = time.Duration(seconds) * time.Second
			}
			at := time.Now().Add(life * 8 / 10)
			if renew.IsZero() || at.Before(renew) {
				renew = at
			}
			part = map[string]file{src.ServiceAccountToken.Path: {[]byte(tr.Status.Token), mode(p.DefaultMode, 0o644)}}
		case src.ConfigMap != nil:
			part, err = k.configMapFiles(ctx, pod.Namespace, src.ConfigMap.Name, src.ConfigMap.Items, p.DefaultMode, ptr.Deref(src.ConfigMap.Optional, false))
		case src.Secret != nil:
			part, err = k.secretFiles(ctx, pod.Namespace, src.Secret.Name, src.Secret.Items, p.DefaultMode, ptr.Deref(src.Secret.Optional, false))
		case src.DownwardAPI != nil:
			part, err = downwardFiles(pod, src.DownwardAPI.Items, p.DefaultMode)
		default:
			err = fmt.Errorf("projected source not supported by the lab kubelet")
		}
		if err != nil {
			return nil, time.Time{}, err
		}
		for name, f := range part {
			files[name] = f
		}
	}
	return files, renew, nil
}

// writeFiles writes files into dir, each through a temporary file and a
// rename, and removes files that are no longer there.
func writeFiles(dir string, files map[string]file) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, f := range files {
		clean := filepath.Clean("/" + name)[1:]
		if clean == "" || strings.HasPrefix(clean, "..") {
			return fmt.Errorf("file path %q leaves the volume", name)
		}
		path := filepath.Join(dir, clean)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		tmp := path + ".herald-tmp"
		if err := os.WriteFile(tmp, f.data, f.mode); err != nil {
			return err
		}
		if err := os.Chmod(tmp, f.mode); err != nil {
			return err
		}
		if err := os.Rename(tmp, path); err != nil {
			return err
		}
	}
	return nil
}
