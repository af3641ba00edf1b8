"""Definitions as code: apply a YAML (or JSON) file of entities, feature sets
and features to a server, idempotently.

File format::

    entities:                      # optional
      - name: user
        join_keys: [user_id]
        value_type: string
    feature_sets:
      - name: user_activity
        entities: [user]
        owner: data-team
        source: {type: file, path: /data/purchases.parquet, format: parquet}
        ttl: 30d
        features:                  # features of this set (feature_set_id implied)
          - name: amount
            data_type: float
    features:                      # optional: features of sets defined elsewhere
      - name: big_spender
        feature_set_id: user_activity
        data_type: bool
        transformation: amount > 100

What is missing is created; an existing object whose fields differ from the
ones *given in the file* is PATCHed with just those fields (fields the file
does not mention are left as they are); the rest is unchanged, so a second
apply changes nothing. Fields are compared after the server's
canonicalizations (``integer`` -> ``int``, ``ttl: 60`` -> ``60s``, a join
key string -> a list), and objects given in the file are compared as subsets
(a source without ``format`` matches the server's ``format: parquet``).
Entities cannot be updated through the API: an entity that differs is a
conflict, and nothing is applied. The plan is computed before the first
change.
"""

from __future__ import annotations

import json
import pathlib
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, TextIO, Tuple

from .client import FeatureStore
from .errors import NotFoundError

#: Fields the server assigns: never compared or sent.
SERVER_FIELDS = frozenset({"id", "version", "status", "created_at", "updated_at", "deleted_at",
                           "features"})

_TYPE_ALIASES = {
    "int64": "int", "integer": "int", "long": "int", "bigint": "int", "int32": "int",
    "float64": "float", "double": "float", "float32": "float", "real": "float",
    "str": "string", "text": "string", "varchar": "string",
    "boolean": "bool", "datetime": "timestamp", "timestamptz": "timestamp",
}


class ApplyError(Exception):
    """The file is invalid, or the plan has conflicts (nothing was applied)."""


@dataclass
class Change:
    """One object of the file and what applying does to it."""

    kind: str                      # "entity", "feature_set" or "feature"
    name: str                      # the entity/set name, or "set:feature"
    action: str                    # "create", "update", "unchanged" or "conflict"
    body: Dict[str, Any]           # what the file gives (create) / the differing fields (update)
    diff: Dict[str, Tuple[Any, Any]] = field(default_factory=dict)  # field -> (old, new)
    ref: Optional[str] = None      # the path reference for updates

    def describe(self) -> List[str]:
        """Human-readable lines for this change."""
        sign = {"create": "+", "update": "~", "unchanged": "=", "conflict": "!"}[self.action]
        lines = [f"{sign} {self.action} {self.kind} {self.name}"]
        for key, (old, new) in self.diff.items():
            lines.append(f"    {key}: {_show(old)} -> {_show(new)}")
        if self.action == "create":
            for key, value in self.body.items():
                if key not in ("name",):
                    lines.append(f"    {key}: {_show(value)}")
        return lines


@dataclass
class Plan:
    """The changes, in the order they are applied."""

    changes: List[Change]

    def count(self, action: str) -> int:
        return sum(1 for c in self.changes if c.action == action)

    @property
    def has_changes(self) -> bool:
        return any(c.action in ("create", "update") for c in self.changes)

    def summary(self) -> str:
        return (f"{self.count('create')} to create, {self.count('update')} to update, "
                f"{self.count('unchanged')} unchanged"
                + (f", {self.count('conflict')} in conflict" if self.count("conflict") else ""))

    def render(self) -> str:
        lines: List[str] = []
        for change in self.changes:
            lines.extend(change.describe())
        lines.append(f"Plan: {self.summary()}.")
        return "\n".join(lines)


def load_definitions(path: str) -> Dict[str, Any]:
    """Reads a definitions file: JSON (``.json``, or text starting with ``{``)
    without extra dependencies, YAML with PyYAML (``pip install 'fstore[yaml]'``)."""
    text = pathlib.Path(path).read_text(encoding="utf-8")
    if path.endswith(".json") or text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ApplyError(f"{path}: invalid JSON: {e}") from e
    else:
        try:
            import yaml
        except ImportError as e:
            raise ApplyError(f"{path}: reading YAML needs PyYAML: pip install 'fstore[yaml]' "
                             "(or write the definitions as JSON)") from e
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ApplyError(f"{path}: invalid YAML: {e}") from e
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ApplyError(f"{path}: expected a mapping with entities, feature_sets, features")
    unknown = set(data) - {"entities", "feature_sets", "features"}
    if unknown:
        raise ApplyError(f"{path}: unknown top-level keys {sorted(unknown)} (expected entities, "
                         "feature_sets, features)")
    for key in ("entities", "feature_sets", "features"):
        items = data.get(key) or []
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise ApplyError(f"{path}: '{key}' must be a list of mappings")
        for i, item in enumerate(items):
            if not isinstance(item.get("name"), str) or not item["name"]:
                raise ApplyError(f"{path}: {key}[{i}] has no name")
    return data


def plan(fs: FeatureStore, spec: Mapping[str, Any]) -> Plan:
    """What applying ``spec`` would do, read from the server (nothing changes)."""
    changes: List[Change] = []
    for ent in spec.get("entities") or []:
        body = _given(ent)
        try:
            current = fs.get_entity(ent["name"])
        except NotFoundError:
            changes.append(Change("entity", ent["name"], "create", body))
            continue
        diff = _diff(current, body, ("name",))
        changes.append(Change("entity", ent["name"], "conflict" if diff else "unchanged",
                              {}, diff))

    set_names: Dict[str, str] = {}  # a ref given in the file -> the set's name
    new_sets = set()
    features: List[Tuple[str, Dict[str, Any]]] = []
    for fset in spec.get("feature_sets") or []:
        name = fset["name"]
        body = _given(fset)
        set_names[name] = name
        try:
            current = fs.get_feature_set(name)
        except NotFoundError:
            changes.append(Change("feature_set", name, "create", body))
            new_sets.add(name)
        else:
            diff = _diff(current, body, ("name",))
            changes.append(Change("feature_set", name, "update" if diff else "unchanged",
                                  {k: new for k, (_, new) in diff.items()}, diff, ref=name))
        for i, feat in enumerate(fset.get("features") or []):
            if not isinstance(feat, dict) or not isinstance(feat.get("name"), str):
                raise ApplyError(f"feature_sets '{name}': features[{i}] has no name")
            owner = feat.get("feature_set_id", feat.get("feature_set", name))
            if owner != name:
                raise ApplyError(f"feature '{feat['name']}' is listed under feature set "
                                 f"'{name}' but names feature set '{owner}'")
            features.append((name, feat))
    for feat in spec.get("features") or []:
        owner = feat.get("feature_set_id", feat.get("feature_set"))
        if not isinstance(owner, str) or not owner:
            raise ApplyError(f"feature '{feat['name']}' needs feature_set_id (the set's name)")
        if owner not in set_names:
            try:
                set_names[owner] = fs.get_feature_set(owner)["name"]
            except NotFoundError:
                raise ApplyError(f"feature '{feat['name']}': unknown feature set "
                                 f"'{owner}'") from None
        features.append((set_names[owner], feat))

    for set_name, feat in features:
        body = _given(feat)
        body.pop("feature_set", None)
        body["feature_set_id"] = set_name
        ref = f"{set_name}:{feat['name']}"
        existing: Optional[Dict[str, Any]] = None
        if set_name not in new_sets:
            try:
                existing = fs.get_feature(ref)
            except NotFoundError:
                existing = None
        if existing is None:
            changes.append(Change("feature", ref, "create", body))
            continue
        diff = _diff(existing, body, ("name", "feature_set_id"))
        changes.append(Change("feature", ref, "update" if diff else "unchanged",
                              {k: new for k, (_, new) in diff.items()}, diff, ref=ref))
    return Plan(changes)


def apply(fs: FeatureStore, spec: Mapping[str, Any], dry_run: bool = False,
          out: Optional[TextIO] = None) -> Plan:
    """Plans, prints the plan to ``out`` (when given) and, unless ``dry_run``,
    carries it out. Raises ApplyError, before changing anything, when the plan
    has conflicts; API errors raise the SDK's exceptions (changes made before
    the failing one stay: apply again after fixing the file)."""
    the_plan = plan(fs, spec)
    if out is not None:
        out.write(the_plan.render() + "\n")
    conflicts = [c for c in the_plan.changes if c.action == "conflict"]
    if conflicts:
        raise ApplyError("entities cannot be updated through the API; these differ from the "
                         "file: " + ", ".join(c.name for c in conflicts) + " (nothing applied)")
    if dry_run:
        return the_plan
    for change in the_plan.changes:
        if change.action == "create":
            if change.kind == "entity":
                fs.create_entity(**change.body)
            elif change.kind == "feature_set":
                fs.create_feature_set(**change.body)
            else:
                fs.create_feature(**change.body)
        elif change.action == "update":
            if change.kind == "feature_set":
                fs.update_feature_set(change.ref or change.name, **change.body)
            else:
                fs.update_feature(change.ref or change.name, **change.body)
    return the_plan


# ------------------------------------------------------------------ helpers
def _given(obj: Mapping[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in SERVER_FIELDS}


def _canonical(key: str, value: Any) -> Any:
    """The server's canonical form of a field value given in a file."""
    if key == "data_type" and isinstance(value, str):
        v = value.strip().lower()
        for prefix in ("list<", "array<"):
            if v.startswith(prefix) and v.endswith(">"):
                return "list<" + str(_canonical(key, v[len(prefix):-1])) + ">"
        return _TYPE_ALIASES.get(v, v)
    if key in ("ttl",) and isinstance(value, int) and not isinstance(value, bool):
        return f"{value}s"
    if key == "join_keys" and isinstance(value, str):
        return [value]
    if key == "value_type" and isinstance(value, str):
        return {"str": "string", "text": "string", "int64": "int", "integer": "int",
                "long": "int"}.get(value.lower(), value.lower())
    return value


def _matches(current: Any, given: Any) -> bool:
    """Whether the server's value already is what the file gives (mappings:
    every given key matches; the server may hold more, e.g. defaults)."""
    if isinstance(given, Mapping):
        if not isinstance(current, Mapping):
            return False
        return all(_matches(current.get(k), v) for k, v in given.items())
    if isinstance(given, list):
        return isinstance(current, list) and len(current) == len(given) and \
            all(_matches(c, g) for c, g in zip(current, given))
    if isinstance(given, bool) or isinstance(current, bool):
        return given is current
    return bool(current == given)


def _diff(current: Mapping[str, Any], given: Mapping[str, Any],
          skip: Tuple[str, ...]) -> Dict[str, Tuple[Any, Any]]:
    diff: Dict[str, Tuple[Any, Any]] = {}
    for key, value in given.items():
        if key in skip:
            continue
        want = _canonical(key, value)
        have = current.get(key)
        if key == "join_keys" and want == [] and have:
            continue  # empty: the default keys
        if not _matches(have, want):
            diff[key] = (have, value)
    return diff


def _show(value: Any) -> str:
    return json.dumps(value, default=str, sort_keys=True)
