"""deploy/prometheus and deploy/grafana agree with the code and with each other.

promtool checks the syntax and the rules' behaviour (`make promtool`); this checks what it cannot:
every series a rule or a dashboard panel reads is one the services export (or a recording rule),
every alert is documented and unit-tested, and Prometheus scrapes each compose service on the port
its health checks use.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import REGISTRY

import shared.metrics  # noqa: F401  (registers the catalogue)

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "deploy" / "prometheus"
GRAFANA = ROOT / "deploy" / "grafana"
APP_PORTS = {"aggregator": 8081, "publisher": 8082, "mapping": 8083, "gateway": 8000}

PROMQL_WORDS = {
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "by",
    "without",
    "rate",
    "increase",
    "deriv",
    "histogram_quantile",
    "and",
    "or",
    "unless",
    "offset",
    "bool",
    "on",
    "ignoring",
    "vector",
    "time",
    "abs",
    "clamp_min",
    "le",
    "inf",
    "nan",
    "round",
}


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def rules() -> list[dict[str, Any]]:
    return [
        rule for name in ("alerts.yml", "slo.yml") for group in load(PROM / name)["groups"] for rule in group["rules"]
    ]


def exported() -> set[str]:
    names = {"up"}
    for family in REGISTRY.collect():
        names.add(family.name)  # a labelled series has no samples before its first use
        names.update(sample.name for sample in family.samples)
        if family.type == "histogram":
            names.update(f"{family.name}{suffix}" for suffix in ("_bucket", "_count", "_sum"))
        if family.type == "counter":
            names.add(f"{family.name}_total")
    return names


def series_in(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are not functions, keywords, labels or strings."""
    text = re.sub(r'"[^"]*"', '""', expr)  # label values
    text = re.sub(r"\{[^}]*\}", "{}", text)  # matchers
    text = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", text)  # grouping labels
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    text = re.sub(r"\$\w+", "", text)  # Grafana variables
    names = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text))
    return {n for n in names if n.lower() not in PROMQL_WORDS and not re.fullmatch(r"\d+[smhd]", n)}


def dashboard() -> dict[str, Any]:
    return json.loads((GRAFANA / "dashboards" / "procore-publishing.json").read_text())


def test_every_series_a_rule_reads_is_exported_by_the_services_or_recorded() -> None:
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    known = exported() | recorded
    for rule in rules():
        missing = series_in(rule["expr"]) - known
        assert not missing, f"{rule.get('alert') or rule.get('record')} reads unknown series {missing}"


def test_every_series_a_dashboard_panel_reads_is_exported_or_recorded() -> None:
    known = exported() | {rule["record"] for rule in rules() if "record" in rule}
    panels = [p for p in dashboard()["panels"] if p["type"] != "row"]
    assert len(panels) >= 20
    for panel in panels:
        for target in panel["targets"]:
            missing = series_in(target["expr"]) - known
            assert not missing, f"panel {panel['title']!r} reads unknown series {missing}"


def test_the_checker_would_notice_a_misspelt_series() -> None:
    assert series_in('sum by (job) (rate(messaging_retries_totl{retry_kind="transient"}[5m])) > 0') == {
        "messaging_retries_totl"
    }
    assert "messaging_retries_totl" not in exported()


def test_every_alert_is_documented_and_unit_tested() -> None:
    alerts = {rule["alert"] for rule in rules() if "alert" in rule}
    assert len(alerts) >= 15
    readme = (PROM / "README.md").read_text()
    tested = "".join(path.read_text() for path in (PROM / "tests").glob("*.yml"))
    for alert in alerts:
        assert f"`{alert}`" in readme, f"{alert} is not in deploy/prometheus/README.md"
        assert f"alertname: {alert}\n" in tested, f"{alert} has no promtool unit test"
        rule = next(r for r in rules() if r.get("alert") == alert)
        assert rule["labels"]["severity"] in ("page", "ticket", "warning"), alert
        assert rule["annotations"]["runbook"] == f"docs/runbook.md#{alert.lower()}", alert


def test_every_exported_series_is_documented() -> None:
    readme = (PROM / "README.md").read_text()
    ours = {
        family.name + ("_total" if family.type == "counter" else "")
        for family in REGISTRY.collect()
        if not family.name.startswith(("python_", "process_"))
    }
    for name in ours:
        assert f"`{name}" in readme, f"{name} is not in deploy/prometheus/README.md"


def test_prometheus_scrapes_each_service_where_compose_serves_it() -> None:
    config = load(PROM / "prometheus.yml")
    jobs = {job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]}
    for service, port in APP_PORTS.items():
        assert jobs[service] == [f"{service}:{port}"], service
    compose = load(ROOT / "docker-compose.yml")["services"]
    for service, port in APP_PORTS.items():
        assert int(compose[service]["environment"]["HTTP_PORT"]) == port, service
    assert set(config["rule_files"]) == {"alerts.yml", "slo.yml"}


def test_compose_runs_prometheus_and_grafana_on_these_files() -> None:
    compose = load(ROOT / "docker-compose.yml")["services"]
    prometheus, grafana = compose["prometheus"], compose["grafana"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in grafana["volumes"]
    assert grafana["depends_on"]["prometheus"]["condition"] == "service_healthy"
    for service in (prometheus, grafana):
        assert all(port.startswith("127.0.0.1:") for port in service["ports"]), "monitoring stays on loopback"
    provider = load(GRAFANA / "provisioning" / "dashboards" / "dashboards.yml")["providers"][0]
    mounted = next(v.split(":")[1] for v in grafana["volumes"] if v.startswith("./deploy/grafana/dashboards:"))
    assert provider["options"]["path"] == mounted
    source = load(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")["datasources"][0]
    assert source["url"] == "http://prometheus:9090"
    uids = {t["datasource"]["uid"] for p in dashboard()["panels"] if p["type"] != "row" for t in p["targets"]}
    assert uids == {source["uid"]}
