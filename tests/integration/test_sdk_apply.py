"""``fstore-py apply`` (definitions as code) against a real server: creates
what is missing, PATCHes only the fields given that differ, a second apply
changes nothing, ``--dry-run`` prints the diff and changes nothing; JSON
files without PyYAML; the example script end to end."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

import fstore
from fstore import FeatureStore
from fstore.apply import ApplyError, apply, load_definitions, plan
from fstore.cli import main as cli_main

from conftest import uniq

REPO = pathlib.Path(__file__).resolve().parents[2]
VENV_BIN = pathlib.Path(sys.executable).parent


def definitions(tmp_path, entity, fset, ttl="30d", age_max=150, extra=""):
    src = tmp_path / "src.parquet"
    if not src.exists():
        import datetime as dt
        import pyarrow as pa
        import pyarrow.parquet as pq
        pq.write_table(pa.table({
            "customer_id": ["c1"],
            "event_timestamp": pa.array([dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)],
                                        pa.timestamp("us", tz="UTC")),
            "age": [30], "spend": [1.5]}), src)
    text = textwrap.dedent(f"""\
        entities:
          - name: {entity}
            join_keys: customer_id
            value_type: string
            description: A customer
        feature_sets:
          - name: {fset}
            entities: [{entity}]
            owner: growth
            description: Customer profile
            tags: [core]
            ttl: {ttl}
            source: {{type: file, path: {src}}}
            features:
              - name: age
                data_type: integer
                validation_rules: {{min_value: 0, max_value: {age_max}}}
              - name: spend
                data_type: float64
                default_value: 0.0
        """) + extra
    path = tmp_path / "defs.yaml"
    path.write_text(text)
    return path


def run_cli(*args):
    """fstore-py as installed in the venv (the console entry point)."""
    return subprocess.run([str(VENV_BIN / "fstore-py"), *args], capture_output=True, text=True,
                          timeout=120)


def test_apply_creates_then_is_idempotent(server, tmp_path):
    entity, fset = uniq("customer"), uniq("profile")
    path = definitions(tmp_path, entity, fset)

    dry = run_cli("apply", str(path), "--url", server.base_url, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"+ create entity {entity}" in dry.stdout
    assert f"+ create feature_set {fset}" in dry.stdout
    assert f"+ create feature {fset}:age" in dry.stdout
    assert "Plan: 4 to create, 0 to update, 0 unchanged." in dry.stdout
    assert "Dry run: nothing was changed." in dry.stdout
    fs = FeatureStore(server.base_url)
    with pytest.raises(fstore.NotFoundError):
        fs.get_feature_set(fset)

    first = run_cli("apply", str(path), "--url", server.base_url)
    assert first.returncode == 0, first.stderr
    assert "Applied." in first.stdout
    got = fs.get_feature_set(fset)
    assert got["ttl"] == "30d" and got["owner"] == "growth" and got["version"] == 1
    assert sorted(f["name"] for f in got["features"]) == ["age", "spend"]
    assert fs.get_entity(entity)["join_keys"] == ["customer_id"]
    assert fs.get_feature(f"{fset}:age")["data_type"] == "int"

    second = run_cli("apply", str(path), "--url", server.base_url)
    assert second.returncode == 0, second.stderr
    assert "Plan: 0 to create, 0 to update, 4 unchanged." in second.stdout
    assert "Nothing to do." in second.stdout
    assert fs.get_feature_set(fset)["version"] == 1  # no new version: nothing was sent
    assert fs.get_feature(f"{fset}:age")["version"] == 1


def test_apply_updates_only_the_fields_that_differ(server, tmp_path):
    entity, fset = uniq("customer"), uniq("profile")
    fs = FeatureStore(server.base_url)
    apply(fs, load_definitions(str(definitions(tmp_path, entity, fset))))
    # Changed out of band: a field the file does not mention stays as it is.
    fs.update_feature_set(fset, materialization_schedule="0 * * * *")
    path = definitions(tmp_path, entity, fset, ttl="7d", age_max=120,
                       extra="features:\n  - name: big\n    feature_set_id: %s\n"
                             "    data_type: bool\n    transformation: spend > 100\n" % fset)

    dry = run_cli("apply", str(path), "--url", server.base_url, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"~ update feature_set {fset}" in dry.stdout
    assert '    ttl: "30d" -> "7d"' in dry.stdout
    assert f"~ update feature {fset}:age" in dry.stdout
    assert '"max_value": 150' in dry.stdout and '"max_value": 120' in dry.stdout
    assert f"= unchanged feature {fset}:spend" in dry.stdout
    assert f"+ create feature {fset}:big" in dry.stdout
    assert "Plan: 1 to create, 2 to update, 2 unchanged." in dry.stdout
    assert fs.get_feature_set(fset)["ttl"] == "30d"  # dry run: unchanged

    assert run_cli("apply", str(path), "--url", server.base_url).returncode == 0
    got = fs.get_feature_set(fset)
    assert got["ttl"] == "7d" and got["materialization_schedule"] == "0 * * * *"
    versions = fs.get_feature_set_versions(fset)
    patch = {k for k in versions[-1] if versions[-1][k] != versions[-2][k]}
    assert patch <= {"ttl", "version", "updated_at"}, patch  # only the differing field
    assert fs.get_feature(f"{fset}:age")["validation_rules"]["max_value"] == 120
    assert fs.get_feature(f"{fset}:big")["data_type"] == "bool"

    again = plan(fs, load_definitions(str(path)))
    assert not again.has_changes and again.count("unchanged") == 5


def test_apply_refuses_a_differing_entity_before_changing_anything(server, tmp_path):
    entity, fset = uniq("customer"), uniq("profile")
    fs = FeatureStore(server.base_url)
    fs.create_entity(entity, join_keys=["other_id"])
    path = definitions(tmp_path, entity, fset)
    out = run_cli("apply", str(path), "--url", server.base_url)
    assert out.returncode == 1
    assert f"! conflict entity {entity}" in out.stdout and "join_keys" in out.stdout
    assert "entities cannot be updated" in out.stderr
    with pytest.raises(fstore.NotFoundError):
        fs.get_feature_set(fset)


def test_apply_reports_server_errors(server, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"feature_sets": [{"name": "%s", "entities": ["user"], '
                    '"materialization_schedule": "not cron"}]}' % uniq("bad"))
    out = run_cli("apply", str(path), "--url", server.base_url)
    assert out.returncode == 1
    assert "400 invalid_argument" in out.stderr and "materialization_schedule" in out.stderr


def test_apply_json_without_pyyaml(server, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "yaml", None)  # as if PyYAML were not installed
    yaml_path = definitions(tmp_path, uniq("customer"), uniq("profile"))
    assert cli_main(["apply", str(yaml_path), "--url", server.base_url]) == 1
    assert "pip install 'fstore[yaml]'" in capsys.readouterr().err
    fset = uniq("profile")
    json_path = tmp_path / "defs.json"
    json_path.write_text('{"feature_sets": [{"name": "%s", "entities": ["user"], '
                         '"features": [{"name": "x", "data_type": "int"}]}]}' % fset)
    assert cli_main(["apply", str(json_path), "--url", server.base_url]) == 0
    assert FeatureStore(server.base_url).get_feature(f"{fset}:x")["version"] == 1
    assert cli_main(["apply", str(json_path), "--url", server.base_url, "--dry-run"]) == 0
    assert "0 to create, 0 to update, 2 unchanged" in capsys.readouterr().out


def test_apply_rejects_malformed_files(tmp_path):
    bad = tmp_path / "x.yaml"
    bad.write_text("feature_sets:\n  - entities: [user]\n")
    with pytest.raises(ApplyError, match="no name"):
        load_definitions(str(bad))
    bad.write_text("tables: []\n")
    with pytest.raises(ApplyError, match="unknown top-level"):
        load_definitions(str(bad))


def test_python_m_fstore_apply(server, tmp_path):
    json_path = tmp_path / "defs.json"
    json_path.write_text('{"entities": [{"name": "%s"}]}' % uniq("ent"))
    out = subprocess.run([sys.executable, "-m", "fstore", "apply", str(json_path), "--url",
                          server.base_url, "--dry-run"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "Plan: 1 to create" in out.stdout


def test_integration_example_runs_end_to_end(server, tmp_path):
    env = dict(os.environ, FSTORE_URL=server.base_url)
    out = subprocess.run([sys.executable, str(REPO / "examples" / "integration_example.py"),
                          "--data-dir", str(tmp_path / "data"), "--suffix", "_" + uniq("ex"),
                          "--users", "60"], capture_output=True, text=True, env=env,
                         timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "trained LogisticRegression" in out.stdout
    assert "training set: 120 rows" in out.stdout
    assert "scored 5 users" in out.stdout
    assert "materialize user_profile" in out.stderr  # the progress display
