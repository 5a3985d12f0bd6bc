"""Reading the Prometheus metrics of a local stack's processes (tests and benches)."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

#: Every sample of a /metrics page, by (name, labels).
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    """Every sample a ``/metrics`` URL serves."""
    text = httpx.get(url, timeout=10).raise_for_status().text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name`` over the samples whose labels include ``labels`` (0 when there is none)."""
    wanted = set(labels.items())
    return sum(v for (n, have), v in samples.items() if n == name and wanted <= have)
