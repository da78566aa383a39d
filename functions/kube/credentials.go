package kube

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// CredentialsSecretName is the Secret that holds the NATS credentials of
// the pods of name: a worker Deployment or a trainer Job. The controller
// makes it with the workload, owned by the same owner, and never reads it.
func CredentialsSecretName(name string) string { return name + "-nats" }

// credentialsPath is where a pod finds its NATS credentials.
const credentialsPath = "/var/run/sluice/nats/nats.creds"

// credentialsSecret holds creds under the file name credentialsPath ends in.
func credentialsSecret(name, namespace string, labels map[string]string, creds []byte) *corev1.Secret {
	return &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: labels},
		Immutable:  ptr(true),
		Data:       map[string][]byte{"nats.creds": creds},
	}
}

// withCredentials mounts the Secret secret at credentialsPath's folder, in
// every container of pod: the pod holds nothing else to keep it from.
func withCredentials(pod *corev1.PodSpec, secret string) {
	pod.Volumes = append(pod.Volumes, corev1.Volume{Name: "nats-credentials", VolumeSource: corev1.VolumeSource{
		Secret: &corev1.SecretVolumeSource{SecretName: secret, DefaultMode: ptr(int32(0o444))},
	}})
	for i := range pod.Containers {
		pod.Containers[i].VolumeMounts = append(pod.Containers[i].VolumeMounts,
			corev1.VolumeMount{Name: "nats-credentials", MountPath: "/var/run/sluice/nats", ReadOnly: true})
	}
}

// natsCAPath is where a pod finds the CA of NATS's TLS certificate, from
// the ConfigMap withNATSCA mounts: its key ca.crt.
const natsCAPath = "/etc/sluice/nats-ca/ca.crt"

// withNATSCA mounts the ConfigMap configMap, which holds the CA that signed
// NATS's certificate under ca.crt, in every container of pod, and points
// $SLUICE_NATS_CA at it: for a tls:// NATS URL. An empty name mounts nothing.
func withNATSCA(pod *corev1.PodSpec, configMap string) {
	if configMap == "" {
		return
	}
	pod.Volumes = append(pod.Volumes, corev1.Volume{Name: "nats-ca", VolumeSource: corev1.VolumeSource{
		ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: configMap}},
	}})
	for i := range pod.Containers {
		container := &pod.Containers[i]
		container.VolumeMounts = append(container.VolumeMounts, corev1.VolumeMount{Name: "nats-ca", MountPath: "/etc/sluice/nats-ca", ReadOnly: true})
		container.Env = append(container.Env, corev1.EnvVar{Name: "SLUICE_NATS_CA", Value: natsCAPath})
	}
}
