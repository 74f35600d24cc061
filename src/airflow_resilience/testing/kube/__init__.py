"""A real Kubernetes control plane for tests (built from ``k8s.io/kubernetes``) with node agents."""

from airflow_resilience.testing.kube.cluster import NAMESPACE, KubeCluster

__all__ = ["NAMESPACE", "KubeCluster"]
