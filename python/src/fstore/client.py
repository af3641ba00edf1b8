"""The :class:`FeatureStore` client."""

from __future__ import annotations

import datetime as dt
import urllib.parse
from typing import (TYPE_CHECKING, Any, Dict, Iterable, List, Mapping, Optional, Sequence,
                    Tuple, Union)

from ._http import ARROW_STREAM, JSON, QueryValue, Response, Transport, format_time
from .errors import (BatchJobError, FeatureStoreError, MaterializationError, NotFoundError,
                     UnavailableError, error_from_response)
from .models import BatchJob, MaterializationJob, Metrics, OnlineFeatures
from .progress import wait_for_job

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import pyarrow as pa

TimeLike = Union[str, dt.datetime, dt.date]
EntitiesLike = Union[Mapping[str, Sequence[Union[str, int]]], Sequence[Mapping[str, Any]],
                     "pd.DataFrame"]

#: The names the server looks for, in order, as the entity rows' time column.
TIME_COLUMNS = ("event_timestamp", "timestamp")


def _quote(ref: str) -> str:
    """A path segment (ids, names and ``set:feature`` refs)."""
    return urllib.parse.quote(str(ref), safe=":")


class FeatureStore:
    """A client of one fstore server.

    Args:
        url: the server's base URL (a path prefix is kept, for proxies).
        api_key: sent as the ``X-API-Key`` header on every request (the
            server checks it once security is enabled).
        timeout: seconds to wait for each answer (connect, send, and each
            read); a timeout raises :class:`~fstore.FeatureStoreTimeoutError`
            and is never retried.
        retries: extra attempts after a ``503`` or a connection failure, with
            exponential backoff (0.25 s, 0.5 s, 1 s, ... with jitter, at most
            8 s). Creates, updates, deletes and materializations are retried
            only when the server cannot have applied them (a 503, or a
            connection that could not be opened); reads also after a
            connection that broke.
        backoff: the first retry's delay in seconds (doubled each time).

    Definitions are returned as the server's JSON (``dict``); jobs as
    :class:`~fstore.models.MaterializationJob` / :class:`~fstore.models.BatchJob`
    (``dict`` subclasses); online features as
    :class:`~fstore.models.OnlineFeatures`. Errors raise
    :class:`~fstore.FeatureStoreError` subclasses. Thread-safe (one kept-alive
    connection per thread). Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, url: str = "http://localhost:8002", api_key: Optional[str] = None,
                 timeout: float = 30.0, retries: int = 3, *, backoff: float = 0.25) -> None:
        self._http = Transport(url, api_key=api_key, timeout=timeout, retries=retries,
                               backoff=backoff)

    # ------------------------------------------------------------- plumbing
    @property
    def url(self) -> str:
        """The server's base URL."""
        return self._http.url

    @property
    def timeout(self) -> float:
        return self._http.timeout

    @property
    def retries(self) -> int:
        return self._http.retries

    def close(self) -> None:
        """Closes the kept-alive connection of the calling thread."""
        self._http.close()

    def __enter__(self) -> "FeatureStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FeatureStore(url={self.url!r})"

    @staticmethod
    def _object(resp: Response) -> Dict[str, Any]:
        body = resp.json()
        if not isinstance(body, dict):
            raise FeatureStoreError(f"expected a JSON object from the server, got {body!r:.200}",
                                    status=resp.status)
        return body

    def _get(self, path: str,
             params: Optional[Mapping[str, QueryValue]] = None) -> Dict[str, Any]:
        return self._object(self._http.request("GET", path, params=params))

    def _post(self, path: str, body: Any, *, idempotent: bool = False) -> Dict[str, Any]:
        return self._object(self._http.request("POST", path, json_body=body,
                                               idempotent=idempotent))

    def _patch(self, path: str, body: Any) -> Dict[str, Any]:
        return self._object(self._http.request("PATCH", path, json_body=body))

    def _delete(self, path: str) -> Dict[str, Any]:
        return self._object(self._http.request("DELETE", path))

    # ----------------------------------------------------------- operations
    def health(self) -> Dict[str, Any]:
        """``GET /health``: ``{"status": "ok"}`` while the process serves."""
        return self._get("/health")

    def ready(self) -> Dict[str, Any]:
        """``GET /ready``: ``{"status": "ready"}`` when the registry answers and
        the stores are open; raises :class:`~fstore.UnavailableError` saying
        what is down otherwise (at once, not retried)."""
        resp = self._http.request("GET", "/ready", ok_statuses=(503,))
        if resp.status == 503:
            raise error_from_response(503, resp.json())
        return self._object(resp)

    def is_ready(self) -> bool:
        """Whether :meth:`ready` succeeds."""
        try:
            self.ready()
        except UnavailableError:
            return False
        return True

    # -------------------------------------------------------------- entities
    def create_entity(self, name: str, join_keys: Optional[Union[str, Sequence[str]]] = None,
                      value_type: Optional[str] = None, description: Optional[str] = None,
                      **fields: Any) -> Dict[str, Any]:
        """``POST /api/v1/entities``: registers an entity (join keys default
        to ``[<name>_id]``, value_type ``string`` or ``int``). Returns it."""
        body: Dict[str, Any] = {"name": name}
        if join_keys is not None:
            body["join_keys"] = [join_keys] if isinstance(join_keys, str) else list(join_keys)
        if value_type is not None:
            body["value_type"] = value_type
        if description is not None:
            body["description"] = description
        body.update(fields)
        return self._post("/api/v1/entities", body)

    def get_entity(self, id_or_name: str) -> Dict[str, Any]:
        """``GET /api/v1/entities/{id or name}``."""
        return self._get(f"/api/v1/entities/{_quote(id_or_name)}")

    def list_entities(self) -> List[Dict[str, Any]]:
        """``GET /api/v1/entities``: every entity."""
        return list(self._get("/api/v1/entities")["entities"])

    # ---------------------------------------------------------- feature sets
    def create_feature_set(self, **fields: Any) -> Dict[str, Any]:
        """``POST /api/v1/feature-sets`` with the seed's fields (``name``,
        ``description``, ``owner``, ``entities``, ``source_type``,
        ``offline_enabled``, ``online_enabled``, ``materialization_schedule``)
        and fstore's (``source``, ``timestamp_field``, ``ttl``, ``tags``,
        ``on_invalid``, ...), passed through. Returns the feature set."""
        return self._post("/api/v1/feature-sets", fields)

    def get_feature_set(self, id_or_name: str, version: Optional[int] = None) -> Dict[str, Any]:
        """``GET /api/v1/feature-sets/{id or name}``: the current version (or
        ``version``), with its ``features``."""
        return self._get(f"/api/v1/feature-sets/{_quote(id_or_name)}", {"version": version})

    def list_feature_sets(self, owner: Optional[str] = None, entity: Optional[str] = None,
                          tag: Optional[str] = None, q: Optional[str] = None,
                          include_deleted: bool = False) -> List[Dict[str, Any]]:
        """``GET /api/v1/feature-sets`` with filters (combined with AND)."""
        params = {"owner": owner, "entity": entity, "tag": tag, "q": q,
                  "include_deleted": True if include_deleted else None}
        return list(self._get("/api/v1/feature-sets", params)["feature_sets"])

    def update_feature_set(self, id_or_name: str, **fields: Any) -> Dict[str, Any]:
        """``PATCH /api/v1/feature-sets/{id or name}``: the given fields replace
        the current ones (``None`` clears a field); a new version."""
        return self._patch(f"/api/v1/feature-sets/{_quote(id_or_name)}", fields)

    def delete_feature_set(self, id_or_name: str) -> Dict[str, Any]:
        """``DELETE /api/v1/feature-sets/{id or name}``: soft delete with its
        features (:class:`~fstore.ConflictError` while other sets' features
        use them)."""
        return self._delete(f"/api/v1/feature-sets/{_quote(id_or_name)}")

    def get_feature_set_versions(self, id_or_name: str) -> List[Dict[str, Any]]:
        """``GET /api/v1/feature-sets/{id or name}/versions``: oldest first."""
        return list(self._get(f"/api/v1/feature-sets/{_quote(id_or_name)}/versions")["versions"])

    # -------------------------------------------------------------- features
    def create_feature(self, **fields: Any) -> Dict[str, Any]:
        """``POST /api/v1/features`` with the seed's fields (``name``,
        ``feature_set_id`` -- an id or a name --, ``description``,
        ``data_type``, ``transformation``, ``validation_rules``,
        ``default_value``, ``allowed_values``, ``window_size``,
        ``source_features``, ...), passed through. Returns the feature."""
        return self._post("/api/v1/features", fields)

    def get_feature(self, ref: str, version: Optional[int] = None) -> Dict[str, Any]:
        """``GET /api/v1/features/{ref}``: ``ref`` an id, ``set:feature`` or a
        bare name unique among live features."""
        return self._get(f"/api/v1/features/{_quote(ref)}", {"version": version})

    def list_features(self, feature_set: Optional[str] = None, data_type: Optional[str] = None,
                      tag: Optional[str] = None, q: Optional[str] = None,
                      include_deleted: bool = False) -> List[Dict[str, Any]]:
        """``GET /api/v1/features`` with filters (combined with AND)."""
        params = {"feature_set": feature_set, "data_type": data_type, "tag": tag, "q": q,
                  "include_deleted": True if include_deleted else None}
        return list(self._get("/api/v1/features", params)["features"])

    def update_feature(self, ref: str, **fields: Any) -> Dict[str, Any]:
        """``PATCH /api/v1/features/{ref}``: a partial update, a new version."""
        return self._patch(f"/api/v1/features/{_quote(ref)}", fields)

    def delete_feature(self, ref: str) -> Dict[str, Any]:
        """``DELETE /api/v1/features/{ref}``: soft delete
        (:class:`~fstore.ConflictError` while derived features use it)."""
        return self._delete(f"/api/v1/features/{_quote(ref)}")

    def get_feature_versions(self, ref: str) -> List[Dict[str, Any]]:
        """``GET /api/v1/features/{ref}/versions``: oldest first."""
        return list(self._get(f"/api/v1/features/{_quote(ref)}/versions")["versions"])

    def get_feature_lineage(self, ref: str) -> Dict[str, Any]:
        """``GET /api/v1/features/{ref}/lineage``: ``upstream`` (source,
        columns, feature set, source features) and ``downstream``."""
        return self._get(f"/api/v1/features/{_quote(ref)}/lineage")

    def search(self, q: str, limit: Optional[int] = None) -> List[Dict[str, Any]]:
        """``GET /api/v1/search``: ranked hits (``kind``, ``id``, ``name``,
        ``score``, ``matched``, ...) across entities, feature sets, features."""
        return list(self._get("/api/v1/search", {"q": q, "limit": limit})["results"])

    # -------------------------------------------------------- materialization
    def materialize(self, feature_set: str, start: Optional[TimeLike] = None,
                    end: Optional[TimeLike] = None, wait: bool = True, *,
                    progress: bool = True, poll_interval: float = 0.5,
                    wait_timeout: Optional[float] = None) -> MaterializationJob:
        """Materializes a feature set over ``[start, end)`` (datetimes -- naive
        ones are UTC --, dates or ISO 8601 strings; both None: an incremental
        run from the watermark to now).

        Submits the job (``POST .../materialize``, answered 202), then, with
        ``wait``, polls ``GET /api/v1/materialization-jobs/{id}`` showing
        progress (tqdm when installed, else a status line on stderr;
        ``progress=False``: none) until it ends.

        Returns the job: queued (``wait=False``) or succeeded. Raises
        :class:`~fstore.MaterializationError` (its ``job`` is the record,
        ``job["error"]`` says why) when it failed, and
        :class:`~fstore.FeatureStoreTimeoutError` after ``wait_timeout``
        seconds (the job goes on).
        """
        body: Dict[str, Any] = {}
        if start is not None:
            body["start_date"] = format_time(start)
        if end is not None:
            body["end_date"] = format_time(end)
        job = MaterializationJob(self._post(f"/api/v1/feature-sets/{_quote(feature_set)}/"
                                            "materialize", body))
        if not wait:
            return job
        return self.wait_for_materialization(job, progress=progress, poll_interval=poll_interval,
                                             timeout=wait_timeout,
                                             description=f"materialize {feature_set}")

    def wait_for_materialization(self, job: Union[str, Mapping[str, Any]], *,
                                 progress: bool = True, poll_interval: float = 0.5,
                                 timeout: Optional[float] = None,
                                 description: Optional[str] = None) -> MaterializationJob:
        """Polls a materialization job (a record or an id) until it ends;
        returns it succeeded or raises :class:`~fstore.MaterializationError`."""
        first = MaterializationJob(job) if isinstance(job, Mapping) \
            else self.get_materialization_job(job)
        last = wait_for_job(lambda: self.get_materialization_job(first.id), first,
                            description or f"materialize {first.get('feature_set', first.id)}",
                            progress=progress, poll_interval=poll_interval, timeout=timeout)
        result = MaterializationJob(last)
        if result.failed:
            raise MaterializationError(result)
        return result

    def get_materialization_job(self, job_id: str) -> MaterializationJob:
        """``GET /api/v1/materialization-jobs/{id}``."""
        return MaterializationJob(self._get(f"/api/v1/materialization-jobs/{_quote(job_id)}"))

    def list_materialization_jobs(self, feature_set: str,
                                  limit: Optional[int] = None) -> List[MaterializationJob]:
        """``GET /api/v1/feature-sets/{id or name}/materialization-jobs``: newest first."""
        body = self._get(f"/api/v1/feature-sets/{_quote(feature_set)}/materialization-jobs",
                         {"limit": limit})
        return [MaterializationJob(j) for j in body["jobs"]]

    def retry_materialization_job(self, job_id: str, wait: bool = True, *,
                                  progress: bool = True,
                                  wait_timeout: Optional[float] = None) -> MaterializationJob:
        """``POST /api/v1/materialization-jobs/{id}/retry``: re-queues a failed
        job (it resumes at ``completed_until``); waits like :meth:`materialize`."""
        job = MaterializationJob(self._post(f"/api/v1/materialization-jobs/{_quote(job_id)}/retry",
                                            None))
        if not wait:
            return job
        return self.wait_for_materialization(job, progress=progress, timeout=wait_timeout)

    # ---------------------------------------------------------------- online
    def get_online_features(self, features: Optional[Sequence[str]],
                            entities: EntitiesLike,
                            feature_sets: Optional[Sequence[str]] = None) -> OnlineFeatures:
        """``POST /api/v1/serving/online``: the latest values.

        Args:
            features: names, bare when unambiguous among the feature sets or
                ``"feature_set:feature"``; None: every feature of the sets.
            entities: the seed form ``{"user": ["u1", "u2"]}`` (entity name or
                join key -> keys), or rows of join keys -- a list of dicts or a
                pandas DataFrame -- for feature sets keyed by several entities
                (``entity_rows``).
            feature_sets: the sets to read; None: those named by qualified
                features, and for bare ones the set the registry says owns
                them (the name must then be unique; two registry requests
                per bare name, so pass feature_sets on latency-bound paths).

        Returns an :class:`~fstore.models.OnlineFeatures` (``["features"]`` or
        ``["rows"]``, ``["metadata"]``, ``.to_df()``).
        """
        body: Dict[str, Any] = {}
        sets = list(feature_sets) if feature_sets is not None else None
        if sets is None:
            if features is None:
                raise ValueError("give feature_sets, or features to derive them from")
            sets = self._derive_feature_sets(features)
        body["feature_sets"] = sets
        if features is not None:
            body["features"] = list(features)
        seed_entities: Optional[Dict[str, List[Any]]] = None
        if isinstance(entities, Mapping):
            seed_entities = {k: list(v) for k, v in entities.items()}
            body["entities"] = seed_entities
        else:
            body["entity_rows"] = _entity_rows(entities)
        answer = self._post("/api/v1/serving/online", body, idempotent=True)
        return OnlineFeatures(answer, seed_entities, self._key_column_lookup())

    def _key_column_lookup(self) -> Any:
        cache: Dict[str, str] = {}

        def key_column(name: str) -> str:
            if name not in cache:
                try:
                    keys = self.get_entity(name).get("join_keys") or [name]
                    cache[name] = str(keys[0]) if len(keys) == 1 else name
                except NotFoundError:
                    cache[name] = name  # a join key given instead of an entity name
            return cache[name]

        return key_column

    def _derive_feature_sets(self, features: Iterable[str]) -> List[str]:
        """The feature sets of ``features``: the prefix of ``set:feature``,
        and for a bare name the set of the one live feature so named."""
        sets: List[str] = []
        for ref in features:
            if ":" in ref:
                name = ref.rsplit(":", 1)[0]
            else:
                try:
                    feature = self.get_feature(ref)
                except NotFoundError as e:
                    raise ValueError(f"unknown feature {ref!r}: give feature_sets or write "
                                     f"'feature_set:{ref}'") from e
                except FeatureStoreError as e:
                    if e.status == 400:  # ambiguous bare name
                        raise ValueError(f"{e.message}: give feature_sets or write "
                                         f"'feature_set:{ref}'") from e
                    raise
                name = self.get_feature_set(feature["feature_set_id"])["name"]
            if name not in sets:
                sets.append(name)
        return sets

    # ------------------------------------------------------------ historical
    def get_historical_features(self, entities: Union["pd.DataFrame", "pa.Table"],
                                features: Sequence[str], as_of: Optional[TimeLike] = None,
                                feature_sets: Optional[Sequence[str]] = None,
                                as_arrow: bool = False) -> Union["pd.DataFrame", "pa.Table"]:
        """Point-in-time correct features for training sets
        (``POST /api/v1/serving/historical``), transferred as Arrow IPC both
        ways (never JSON).

        Args:
            entities: a pandas DataFrame or pyarrow Table with the join key
                columns and one time column: ``event_timestamp``, else
                ``timestamp``, else the only timestamp-typed column (several:
                ValueError). Naive timestamps are UTC. Other columns (labels)
                pass through.
            features: feature names, bare or ``"feature_set:feature"``.
            as_of: time travel: only offline rows materialized by then.
            feature_sets: derived from ``features`` when None (see
                :meth:`get_online_features`).
            as_arrow: return a pyarrow Table instead of a DataFrame.

        Returns the entity rows in their order (duplicates kept), their
        columns, then one column per feature named as requested; the time
        column (under its original name) and timestamp features tz-aware UTC.
        Bodies above the server's limit raise
        :class:`~fstore.PayloadTooLargeError`: use :meth:`submit_batch_retrieval`.
        """
        import pyarrow as pa
        import pyarrow.ipc as ipc

        if isinstance(features, str):
            features = [features]
        features = list(features)
        if not features:
            raise ValueError("name at least one feature")
        table = _to_arrow(entities)
        time_column = find_time_column(table.schema)
        renamed = time_column not in TIME_COLUMNS
        if renamed:
            table = table.rename_columns(["event_timestamp" if n == time_column else n
                                          for n in table.column_names])
        sets = list(feature_sets) if feature_sets is not None \
            else self._derive_feature_sets(features)
        sink = pa.BufferOutputStream()
        with ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        params = {"feature_sets": ",".join(sets), "features": ",".join(features),
                  "as_of": format_time(as_of) if as_of is not None else None}
        resp = self._http.request("POST", "/api/v1/serving/historical", params=params,
                                  body=sink.getvalue().to_pybytes(), content_type=ARROW_STREAM,
                                  accept=ARROW_STREAM, idempotent=True)
        if resp.content_type != ARROW_STREAM:
            raise FeatureStoreError(f"historical serving answered {resp.content_type!r}, not an "
                                    "Arrow IPC stream", status=resp.status)
        result = ipc.open_stream(pa.py_buffer(resp.body)).read_all()
        if renamed:
            result = result.rename_columns([time_column if n == "event_timestamp" else n
                                            for n in result.column_names])
        result = _utc_timestamps(result)
        if as_arrow:
            return result
        return result.to_pandas()

    # ----------------------------------------------------------------- batch
    def submit_batch_retrieval(self, feature_sets: Sequence[str], features: Sequence[str],
                               entity_source: Union[str, Mapping[str, Any]],
                               output: Union[str, Mapping[str, Any]], *,
                               as_of: Optional[TimeLike] = None, overwrite: bool = False,
                               batch_rows: Optional[int] = None, wait: bool = False,
                               progress: bool = True,
                               wait_timeout: Optional[float] = None) -> BatchJob:
        """``POST /api/v1/serving/batch``: historical retrieval over a Parquet
        entity source (a path on the server: file, directory or glob) as a
        job writing a Parquet ``output`` (a file path, or a directory ending
        in ``/``). Returns the queued job; with ``wait``, waits like
        :meth:`wait_for_batch_job`."""
        body: Dict[str, Any] = {
            "feature_sets": list(feature_sets),
            "features": list(features),
            "entity_source": {"path": entity_source} if isinstance(entity_source, str)
            else dict(entity_source),
            "output": {"path": output} if isinstance(output, str) else dict(output),
        }
        if as_of is not None:
            body["as_of"] = format_time(as_of)
        if overwrite:
            body["overwrite"] = True
        if batch_rows is not None:
            body["batch_rows"] = batch_rows
        job = BatchJob(self._post("/api/v1/serving/batch", body))
        if not wait:
            return job
        return self.wait_for_batch_job(job, progress=progress, timeout=wait_timeout)

    def get_batch_job(self, job_id: str) -> BatchJob:
        """``GET /api/v1/serving/batch/{id}``."""
        return BatchJob(self._get(f"/api/v1/serving/batch/{_quote(job_id)}"))

    def list_batch_jobs(self, status: Optional[str] = None,
                        limit: Optional[int] = None) -> List[BatchJob]:
        """``GET /api/v1/serving/batch``: the jobs the server keeps, newest
        first (``status``: queued, running, succeeded or failed)."""
        body = self._get("/api/v1/serving/batch", {"status": status, "limit": limit})
        return [BatchJob(j) for j in body.get("jobs", [])]

    def cancel_batch_job(self, job_id: str) -> BatchJob:
        """``POST /api/v1/serving/batch/{id}/cancel``: a queued job fails at
        once, a running one before its next record batch (poll, or
        :meth:`wait_for_batch_job`, which then raises BatchJobError)."""
        return BatchJob(self._post(f"/api/v1/serving/batch/{_quote(job_id)}/cancel", None))

    def wait_for_batch_job(self, job: Union[str, Mapping[str, Any]], *, progress: bool = True,
                           poll_interval: float = 0.5,
                           timeout: Optional[float] = None) -> BatchJob:
        """Polls a batch job (a record or an id) until it ends; returns it
        succeeded or raises :class:`~fstore.BatchJobError` (carrying ``job``)."""
        first = BatchJob(job) if isinstance(job, Mapping) else self.get_batch_job(job)
        last = wait_for_job(lambda: self.get_batch_job(first.id), first,
                            f"batch retrieval {first.id[:8]}", progress=progress,
                            poll_interval=poll_interval, timeout=timeout)
        result = BatchJob(last)
        if result.failed:
            raise BatchJobError(result)
        return result

    # ------------------------------------------------------------ monitoring
    def get_metrics(self) -> Metrics:
        """``GET /monitoring/metrics``: the server's Prometheus metrics
        (requests and latency per endpoint, serving cache, online store,
        materialization, process), parsed into a :class:`~fstore.Metrics`
        (``.text`` keeps the exposition text)."""
        resp = self._http.request("GET", "/monitoring/metrics", accept="text/plain")
        return Metrics(resp.body.decode("utf-8"))

    def get_statistics(self, days: Optional[int] = None, *,
                       feature_set: Optional[str] = None,
                       psi_threshold: Optional[float] = None) -> Dict[str, Any]:
        """``GET /monitoring/statistics?days=``: per feature, statistics of the
        materialization runs of the last ``days`` days and the drift (PSI) of
        the latest run against the previous one."""
        return self._get("/monitoring/statistics", {"days": days, "feature_set": feature_set,
                                                    "psi_threshold": psi_threshold})

    def get_data_freshness(self) -> Dict[str, Any]:
        """``GET /monitoring/data-freshness``: per feature set, the newest
        event time in each store, its age, and whether it is stale."""
        return self._get("/monitoring/data-freshness")

    def get_usage(self, start_date: Optional[TimeLike] = None,
                  end_date: Optional[TimeLike] = None, *,
                  feature_set: Optional[str] = None,
                  key_id: Optional[str] = None) -> Dict[str, Any]:
        """``GET /monitoring/usage?start_date=``: requests per feature, feature
        set and API key per day, entities requested and coverage."""
        return self._get("/monitoring/usage", {"start_date": _day(start_date),
                                               "end_date": _day(end_date),
                                               "feature_set": feature_set, "key_id": key_id})


    # ------------------------------------------------------------- security
    def create_api_key(self, role: str, feature_sets: Optional[Sequence[str]] = None,
                       name: Optional[str] = None) -> Dict[str, Any]:
        """``POST /api/v1/keys`` (admin): a new key of ``role`` (admin, writer
        or reader), limited to ``feature_sets`` when given. The answer's
        ``"key"`` is the secret, shown this once; ``"id"`` names it later."""
        body: Dict[str, Any] = {"role": role}
        if feature_sets is not None:
            body["feature_sets"] = list(feature_sets)
        if name is not None:
            body["name"] = name
        return self._post("/api/v1/keys", body)

    def list_api_keys(self) -> List[Dict[str, Any]]:
        """``GET /api/v1/keys`` (admin): every key, revoked ones too, without
        secrets."""
        return list(self._get("/api/v1/keys").get("keys", []))

    def revoke_api_key(self, key_id: str) -> Dict[str, Any]:
        """``DELETE /api/v1/keys/{id}`` (admin): the key stops working within
        a second on every server sharing the registry."""
        return self._delete(f"/api/v1/keys/{_quote(key_id)}")

    def get_audit_log(self, *, since: Optional[TimeLike] = None,
                      until: Optional[TimeLike] = None, key_id: Optional[str] = None,
                      action: Optional[str] = None, target: Optional[str] = None,
                      outcome: Optional[str] = None,
                      limit: Optional[int] = None) -> List[Dict[str, Any]]:
        """``GET /api/v1/audit`` (admin): audit entries, newest first.
        ``action`` is exact, or a prefix ending in ``.`` ("feature_set.")."""
        params: Dict[str, QueryValue] = {
            "since": None if since is None else format_time(since),
            "until": None if until is None else format_time(until),
            "key_id": key_id, "action": action, "target": target, "outcome": outcome,
            "limit": limit}
        return list(self._get("/api/v1/audit", params).get("entries", []))


# ------------------------------------------------------------------ helpers
def _day(value: Optional[TimeLike]) -> Optional[str]:
    """A date parameter as YYYY-MM-DD (datetimes in UTC)."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return format_time(value)[:10]
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)[:10]


def _entity_rows(entities: Any) -> List[Dict[str, Any]]:
    """Rows of join keys from a list of mappings or a DataFrame."""
    to_dict = getattr(entities, "to_dict", None)
    if callable(to_dict) and hasattr(entities, "columns"):
        rows = to_dict(orient="records")
    else:
        rows = [dict(r) for r in entities]
    if not rows:
        raise ValueError("entities is empty")
    return [{k: _plain(v) for k, v in r.items()} for r in rows]


def _plain(value: Any) -> Any:
    item = getattr(value, "item", None)  # numpy scalars -> Python
    return item() if callable(item) and not isinstance(value, (str, bytes)) else value


def _to_arrow(entities: Any) -> "pa.Table":
    """A pyarrow Table of the entity rows: dictionary columns decoded,
    large strings as utf8."""
    import pyarrow as pa

    if isinstance(entities, pa.RecordBatch):
        table = pa.Table.from_batches([entities])
    elif isinstance(entities, pa.Table):
        table = entities
    elif hasattr(entities, "columns") and hasattr(entities, "dtypes"):
        table = pa.Table.from_pandas(entities, preserve_index=False)
    else:
        raise TypeError("entities must be a pandas DataFrame or a pyarrow Table, got "
                        f"{type(entities).__name__}")
    if table.num_rows == 0:
        raise ValueError("entities has no rows")
    columns = []
    for col in table.columns:
        if pa.types.is_dictionary(col.type):
            col = col.cast(col.type.value_type)
        if pa.types.is_large_string(col.type):  # pandas >= 3's strings
            col = col.cast(pa.string())
        columns.append(col)
    return pa.Table.from_arrays(columns, names=table.column_names).replace_schema_metadata(None)


def find_time_column(schema: "pa.Schema") -> str:
    """The entity rows' time column: ``event_timestamp``, else ``timestamp``,
    else the only timestamp-typed column. ValueError when there is none or
    several candidates."""
    import pyarrow as pa

    names = schema.names
    for name in TIME_COLUMNS:
        if name in names:
            return name
    typed = [f.name for f in schema if pa.types.is_timestamp(f.type) or pa.types.is_date(f.type)]
    if len(typed) == 1:
        return str(typed[0])
    if not typed:
        raise ValueError("entities need a time column: 'event_timestamp', 'timestamp', or one "
                         f"timestamp-typed column; columns: {names}")
    raise ValueError(f"entities have several timestamp columns {typed}: name the rows' time "
                     "column 'event_timestamp'")


def _utc_timestamps(table: "pa.Table") -> "pa.Table":
    """Naive timestamp columns declared UTC (the server's times are UTC)."""
    import pyarrow as pa

    fields = []
    changed = False
    for f in table.schema:
        if pa.types.is_timestamp(f.type) and f.type.tz is None:
            f = f.with_type(pa.timestamp(f.type.unit, tz="UTC"))
            changed = True
        fields.append(f)
    return table.cast(pa.schema(fields)) if changed else table


__all__ = ["FeatureStore", "find_time_column", "TIME_COLUMNS", "Response", "JSON"]
