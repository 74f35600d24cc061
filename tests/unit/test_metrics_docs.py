"""The metrics docs are held to the code: the statsd_exporter mapping loads (as statsd_exporter v0.22 would read
it), matches only names the package sends and covers all of them; the dashboard queries only metrics the
mapping produces; docs/metrics.md lists every metric with its dotted form."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from airflow_resilience.airflow import metrics

DOCS = Path(__file__).resolve().parents[2] / "docs"
PREFIX = "airflow."

# statsd_exporter's own checks (pkg/mapper/mapper.go) of a glob mapping, and the keys v0.22.8 knows (it reads the
# file strictly: an unknown key fails the whole file).
METRIC_LINE = re.compile(r"^(\*|[a-zA-Z_][a-zA-Z0-9_\-]*)(\.\*|\.[a-zA-Z0-9_][a-zA-Z0-9_\-]*)*$")
METRIC_NAME = re.compile(r"^([a-zA-Z_]|\$\{?\d+\}?)([a-zA-Z0-9_]|\$\{?\d+\}?)*$")
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]+$")
KEYS_V0_22 = {
    "match", "name", "labels", "observer_type", "timer_type", "buckets", "quantiles", "match_type", "help",
    "action", "match_metric_type", "ttl", "summary_options", "histogram_options",
}


@pytest.fixture(scope="module")
def mapping() -> list[dict]:
    loaded = yaml.safe_load((DOCS / "statsd-exporter-mapping.yml").read_text())
    assert set(loaded) == {"mappings"}
    return loaded["mappings"]


def test_mapping_is_valid_for_statsd_exporter(mapping: list[dict]) -> None:
    for rule in mapping:
        assert set(rule) <= KEYS_V0_22, rule
        assert rule.get("match_type", "glob") == "glob"
        assert METRIC_LINE.match(rule["match"]), rule["match"]
        assert METRIC_NAME.match(rule["name"]), rule["name"]
        stars = rule["match"].count("*")
        for label, value in (rule.get("labels") or {}).items():
            assert LABEL_NAME.match(label), label
            assert all(int(n) <= stars for n in re.findall(r"\$\{?(\d+)\}?", str(value))), rule
        if rule.get("observer_type") == "histogram":
            buckets = rule["histogram_options"]["buckets"]
            assert buckets == sorted(buckets) and len(set(buckets)) == len(buckets)
    matches = [rule["match"] for rule in mapping]
    assert len(matches) == len(set(matches))
    # statsd_exporter's glob FSM gives a rule its result only when it creates the rule's last state: a rule
    # whose components are the beginning of an earlier, longer rule would never match (drop rules go first).
    for i, match in enumerate(matches):
        parts = match.split(".")
        for earlier in matches[:i]:
            assert earlier.split(".")[: len(parts)] != parts, f"{match} never matches: it follows {earlier}"


def test_mapping_matches_what_the_code_sends_and_covers_all_of_it(mapping: list[dict]) -> None:
    sendable = metrics.dotted_patterns(PREFIX)
    matched = {rule["match"] for rule in mapping}
    assert matched <= set(sendable), matched - set(sendable)
    assert set(sendable) <= matched, set(sendable) - matched
    for rule in mapping:
        metric = sendable[rule["match"]]
        if rule.get("action") == "drop":
            # only the untagged total of a metric whose dotted form carries its labels
            assert rule["match"] == PREFIX + metric.name and metric.dotted, rule
            continue
        stars = rule["match"].count("*")
        assert stars in (0, len(metric.dotted))
        if stars:
            assert {k: v for k, v in rule["labels"].items()} == {
                tag: f"${i}" for i, tag in enumerate(metric.dotted, start=1)
            }
        if metric.type == metrics.TIMER:
            assert rule["name"].endswith("_seconds") and rule.get("observer_type") == "histogram"
        if metric.type == metrics.COUNTER:
            assert rule["name"].endswith("_total")


def test_each_dotted_name_the_code_builds_matches_a_rule(mapping: list[dict]) -> None:
    globs = [re.compile("^" + re.escape(rule["match"]).replace(r"\*", r"[^.]+") + "$") for rule in mapping]
    for metric in metrics.CATALOG.values():
        tags = {tag: "signal.sigkill" for tag in metric.dotted}
        for stat, _tags in metrics.emitted(metric.name, tags):
            assert sum(1 for g in globs if g.match(PREFIX + stat)) == 1, stat


def prometheus_names(mapping: list[dict]) -> set[str]:
    names = set()
    for rule in mapping:
        if rule.get("action") == "drop":
            continue
        if rule.get("observer_type") == "histogram":
            names |= {rule["name"] + s for s in ("_bucket", "_sum", "_count")}
        else:
            names.add(rule["name"])
    return names


def test_dashboard_queries_only_mapped_metrics(mapping: list[dict]) -> None:
    dash = json.loads((DOCS / "grafana" / "airflow-resilience.json").read_text())
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    known = prometheus_names(mapping)
    used = set()
    for panel in dash["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            found = set(re.findall(r"\bairflow_resilience_[a-z_]+", target["expr"]))
            assert found and found <= known, (panel["title"], found - known)
            used |= found
    titles = " ".join(p["title"].lower() for p in dash["panels"])
    for topic in ("failed attempts", "verdicts", "bookkeeping", "checkpoint write p50 / p99", "time to recover",
                  "last round age", "workers seen"):
        assert topic in titles, topic
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("name", sorted(metrics.CATALOG))
def test_metrics_doc_lists_every_metric(name: str) -> None:
    text = (DOCS / "metrics.md").read_text()
    metric = metrics.CATALOG[name]
    row = next((line for line in text.splitlines() if line.startswith(f"| `{name}` |")), None)
    assert row is not None, f"{name} missing from the table of docs/metrics.md"
    assert f"| {metric.type}" in row
    if metric.dotted:
        assert "`" + name + "".join(f".<{tag}>" for tag in metric.dotted) + "`" in row
