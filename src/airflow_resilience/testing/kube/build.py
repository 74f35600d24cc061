"""Build the real control plane from ``k8s.io/kubernetes`` through the Go module proxy, cached per version.

``python -m airflow_resilience.testing.kube build`` (``make k8s``) writes a scratch Go module that requires
``k8s.io/kubernetes`` with a ``replace`` line per ``k8s.io/*`` staging module (the monorepo's own go.mod
points them at ``./staging``, which a dependent module cannot use), then ``go build``s ``kube-apiserver``,
``kube-controller-manager``, ``kube-scheduler`` and ``kubectl`` into
``${AIRFLOW_RESILIENCE_K8S_CACHE:-~/.cache/airflow-resilience/k8s}/<version>/bin``. A warm cache returns at
once; nothing in the checkout is written.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

VERSION = "v1.36.3"
COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
STAGED = (
    "api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider cluster-bootstrap "
    "code-generator component-base component-helpers controller-manager cri-api cri-client cri-streaming "
    "csi-translation-lib dynamic-resource-allocation endpointslice externaljwt kms kube-aggregator "
    "kube-controller-manager kube-proxy kube-scheduler kubectl kubelet metrics mount-utils pod-security-admission "
    "sample-apiserver sample-controller streaming"
).split()


def version() -> str:
    return os.environ.get("AIRFLOW_RESILIENCE_K8S_VERSION", VERSION)


def cache_dir(ver: str | None = None) -> Path:
    root = os.environ.get("AIRFLOW_RESILIENCE_K8S_CACHE") or str(Path.home() / ".cache" / "airflow-resilience" / "k8s")
    return Path(root) / (ver or version())


def cached(ver: str | None = None) -> Path | None:
    """The bin directory when every binary is there, else ``None``."""
    bin_dir = cache_dir(ver) / "bin"
    return bin_dir if all(os.access(bin_dir / c, os.X_OK) for c in COMPONENTS) else None


def go_mod(ver: str) -> str:
    staging = "v0." + ver.removeprefix("v1.")
    lines = ["module airflowresilience.local/k8sbuild", "", "go 1.26.0", "", f"require k8s.io/kubernetes {ver}", "", "replace ("]
    lines += [f"\tk8s.io/{m} => k8s.io/{m} {staging}" for m in STAGED]
    return "\n".join([*lines, ")", ""])


TOOLS_GO = """//go:build tools

package k8sbuild

import (
\t_ "k8s.io/kubernetes/cmd/kube-apiserver"
\t_ "k8s.io/kubernetes/cmd/kube-controller-manager"
\t_ "k8s.io/kubernetes/cmd/kube-scheduler"
\t_ "k8s.io/kubernetes/cmd/kubectl"
)
"""


def ensure_binaries(ver: str | None = None, log=print) -> Path:
    """The bin directory with the four binaries, building what is missing (minutes cold, instant warm)."""
    ver = ver or version()
    done = cached(ver)
    if done:
        return done
    go = shutil.which("go")
    if not go:
        raise RuntimeError(f"the Go toolchain (go) is needed to build Kubernetes {ver}: install Go 1.26 or set AIRFLOW_RESILIENCE_K8S_CACHE to a built cache")
    root = cache_dir(ver)
    module, bin_dir = root / "module", root / "bin"
    module.mkdir(parents=True, exist_ok=True)
    bin_dir.mkdir(parents=True, exist_ok=True)
    (module / "go.mod").write_text(go_mod(ver))
    (module / "tools.go").write_text(TOOLS_GO)
    env = {**os.environ, "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"}
    t0 = time.monotonic()
    subprocess.run([go, "mod", "tidy", "-e"], cwd=module, env=env, check=False, capture_output=True)
    for c in COMPONENTS:
        if os.access(bin_dir / c, os.X_OK):
            continue
        log(f"building {c} {ver} ...")
        ldflags = f"-s -w -X k8s.io/component-base/version.gitVersion={ver}"
        subprocess.run([go, "build", "-trimpath", "-ldflags", ldflags, "-o", str(bin_dir / f"{c}.tmp"), f"k8s.io/kubernetes/cmd/{c}"],
                       cwd=module, env=env, check=True)
        os.replace(bin_dir / f"{c}.tmp", bin_dir / c)
    seconds = time.monotonic() - t0
    size = sum((bin_dir / c).stat().st_size for c in COMPONENTS)
    (root / "build-seconds").write_text(f"{seconds:.0f}\n")
    log(f"built Kubernetes {ver} in {seconds:.0f} s: {size / 2**20:.0f} MiB in {bin_dir}")
    return bin_dir


def main(argv: list[str] | None = None) -> int:
    bin_dir = ensure_binaries(log=lambda m: print(m, file=sys.stderr))
    print(bin_dir)
    return 0
