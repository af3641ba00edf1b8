"""Records the client returns: jobs and online serving answers.

They are ``dict`` subclasses holding the server's JSON unchanged (so
``job["status"]`` and ``json.dumps(job)`` work), with typed accessors.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Sequence

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd


class Job(Dict[str, Any]):
    """A server-side job record (the JSON the server answers)."""

    @property
    def id(self) -> str:
        """The job's id."""
        return str(self["id"])

    @property
    def status(self) -> str:
        """``queued``, ``running``, ``succeeded`` or ``failed``."""
        return str(self.get("status", ""))

    @property
    def done(self) -> bool:
        """Whether the job has ended (succeeded or failed)."""
        return self.status in ("succeeded", "failed")

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    @property
    def error(self) -> Optional[str]:
        """Why the job failed (None otherwise)."""
        return self.get("error")


class MaterializationJob(Job):
    """A materialization run: ``feature_set``, ``start_date``, ``end_date``,
    ``completed_until``, ``rows_read``, ``rows_written_offline``,
    ``rows_written_online``, ``rows_rejected``, ``quality_report``, ..."""

    @property
    def feature_set(self) -> str:
        return str(self.get("feature_set", ""))

    @property
    def quality_report(self) -> Dict[str, Any]:
        """Feature -> rule -> {"count", "samples"} of validation failures."""
        return dict(self.get("quality_report") or {})


class BatchJob(Job):
    """A batch retrieval job: ``output`` (the Parquet file the server writes),
    ``rows_read``, ``rows_written``, ``batches``, ..."""

    @property
    def output(self) -> str:
        """The output Parquet file's path (on the server's file system)."""
        return str(self.get("output", ""))


_ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]00:?00)$")


class OnlineFeatures(Dict[str, Any]):
    """The answer of :meth:`FeatureStore.get_online_features`: the server's
    JSON (``["features"]`` -- entity key -> feature -> value -- and
    ``["metadata"]``; or ``["rows"]`` for the row form) plus :meth:`to_df`.
    """

    def __init__(self, body: Mapping[str, Any], entities: Any,
                 key_column_of: Optional[Callable[[str], str]] = None) -> None:
        super().__init__(body)
        self._entities = entities
        self._key_column_of = key_column_of

    @property
    def metadata(self) -> Dict[str, Any]:
        """``latency_ms``, ``cache_hit``, ``missing_entities``."""
        return dict(self.get("metadata") or {})

    @property
    def missing_entities(self) -> Dict[str, List[str]]:
        """Feature set -> entity keys without a live record (served defaults)."""
        return dict(self.metadata.get("missing_entities") or {})

    def to_df(self) -> "pd.DataFrame":
        """The features as a pandas DataFrame, one row per requested entity,
        in request order.

        Seed form (``entities={"user": ["u1", "u2"]}``): a key column named
        after the entity's join key (``user_id``; the name given when it is
        not an entity's name), then one column per feature. Row form
        (``entity_rows``): the rows as the server answers them (join keys,
        then features). Columns whose values are all ISO 8601 UTC strings
        (timestamp features) become tz-aware UTC datetimes.
        """
        import pandas as pd

        if "rows" in self:
            return _timestamps_to_utc(pd.DataFrame(list(self["rows"])))
        feats: Mapping[str, Mapping[str, Any]] = self.get("features") or {}
        records: List[Dict[str, Any]] = []
        entities: Mapping[str, Sequence[Any]] = self._entities or {}
        several = len(entities) > 1
        for name, keys in entities.items():
            column = self._key_column_of(name) if self._key_column_of else name
            for key in keys:
                values = feats.get(f"{name}:{key}" if several else str(key))
                if values is None:
                    values = feats.get(str(key), {})
                records.append({column: key, **values})
        return _timestamps_to_utc(pd.DataFrame(records))


def _timestamps_to_utc(df: "pd.DataFrame") -> "pd.DataFrame":
    """Columns whose values are all ISO 8601 UTC strings (timestamp
    features), as tz-aware UTC datetimes."""
    import pandas as pd

    for column in df.columns:
        series = df[column]
        values = [v for v in series.tolist() if v is not None and v == v]
        if values and all(isinstance(v, str) and _ISO_UTC.match(v) for v in values):
            df[column] = pd.to_datetime(series, utc=True, format="ISO8601")
    return df


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?\s*')


def _unescape_label(value: str) -> str:
    return value.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")


class Metrics:
    """``GET /monitoring/metrics``: the Prometheus text, parsed.

    ``samples`` holds ``(name, labels, value)`` for every sample line;
    :meth:`value` sums the samples of a name whose labels include the given
    ones, so ``m.value("fstore_http_requests_total", route="/health")`` counts
    the health checks whatever their status."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: List[tuple] = []
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            match = _SAMPLE.match(line)
            if not match:
                raise ValueError(f"not a Prometheus sample line: {line!r:.200}")
            labels = {k: _unescape_label(v) for k, v in _LABEL.findall(match.group(2) or "")}
            self.samples.append((match.group(1), labels, float(match.group(3))))

    def names(self) -> List[str]:
        """Every metric name with a sample, sorted."""
        return sorted({name for name, _, _ in self.samples})

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples of ``name`` whose labels include ``labels``
        (0.0 when none)."""
        return sum(v for n, ls, v in self.samples
                   if n == name and all(ls.get(k) == want for k, want in labels.items()))

    def __repr__(self) -> str:
        return f"Metrics({len(self.samples)} samples)"
