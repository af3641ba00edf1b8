#!/usr/bin/env python3
"""The seed's "Integration" section end to end, with the fstore Python SDK.

1. writes sample raw data as Parquet (user profiles and purchase events);
2. defines the entity ``user`` and the feature sets ``user_profile`` and
   ``user_activity`` with their features (a SQL transformation and 30-day
   windowed aggregations);
3. materializes both (offline Parquet store + online store);
4. builds a training set with point-in-time correct features
   (``get_historical_features``) and trains a scikit-learn LogisticRegression;
5. scores users with their latest features (``get_online_features``).

Usage::

    python examples/integration_example.py --url http://localhost:8002
    FSTORE_URL=http://localhost:8002 python examples/integration_example.py

The server must be able to read ``--data-dir`` (default: a new temporary
directory): it reads the Parquet sources itself. ``--suffix`` is appended to
the feature set names so that the example can run again on the same server.
Needs ``pip install ./python scikit-learn``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import pathlib
import sys
import tempfile

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score

from fstore import ConflictError, FeatureStore

UTC = dt.timezone.utc
START = dt.datetime(2023, 12, 1, tzinfo=UTC)   # materialized range [START, END)
END = dt.datetime(2024, 2, 1, tzinfo=UTC)


def write_sample_data(data_dir: pathlib.Path, users: int, seed: int) -> dict:
    """Profiles (one row per user, at sign-up) and purchases (January 2024)."""
    rng = np.random.default_rng(seed)
    ids = [f"user_{i:04d}" for i in range(users)]
    born = [dt.date(int(y), int(m), 1) for y, m in
            zip(rng.integers(1950, 2005, users), rng.integers(1, 13, users))]
    signup = [START + dt.timedelta(hours=int(h)) for h in rng.integers(0, 24 * 14, users)]
    profiles = pd.DataFrame({"user_id": ids, "date_of_birth": pd.to_datetime(born, utc=True),
                             "event_timestamp": pd.to_datetime(signup, utc=True)})
    # Activity differs per user: some buy daily, some rarely.
    rate = rng.gamma(1.5, 2.0, users)  # purchases per week
    rows = []
    for uid, r in zip(ids, rate):
        n = rng.poisson(r * 9)  # about nine weeks of history
        for t in rng.uniform(0, (END - START).total_seconds(), n):
            rows.append((uid, START + dt.timedelta(seconds=float(t)),
                         round(float(rng.gamma(2.0, 15.0)), 2)))
    purchases = pd.DataFrame(rows, columns=["user_id", "timestamp", "amount"])
    purchases["timestamp"] = pd.to_datetime(purchases["timestamp"], utc=True)
    data_dir.mkdir(parents=True, exist_ok=True)
    write_parquet(profiles, data_dir / "profiles.parquet")
    write_parquet(purchases, data_dir / "purchases.parquet")
    return {"ids": ids, "profiles": data_dir / "profiles.parquet",
            "purchases": data_dir / "purchases.parquet"}


def write_parquet(df: pd.DataFrame, path: pathlib.Path) -> None:
    """Writes df with plain utf8 strings: fstore's sources take int64 or utf8
    keys, and pandas >= 3 would write its strings as large_string."""
    table = pa.Table.from_pandas(df, preserve_index=False)
    schema = pa.schema([f.with_type(pa.string()) if pa.types.is_large_string(f.type) else f
                        for f in table.schema])
    pq.write_table(table.cast(schema), path)


def define_features(fs: FeatureStore, data: dict, suffix: str) -> tuple:
    """The entity, the two feature sets and their features."""
    try:
        fs.create_entity("user", join_keys=["user_id"], value_type="string",
                         description="A registered customer")
    except ConflictError:
        pass  # defined by an earlier run
    profile = f"user_profile{suffix}"
    activity = f"user_activity{suffix}"
    fs.create_feature_set(
        name=profile, description="User demographic features", owner="data-team",
        entities=["user"], source_type="batch", offline_enabled=True, online_enabled=True,
        source={"type": "file", "path": str(data["profiles"]), "format": "parquet"})
    fs.create_feature(
        name="user_age", feature_set_id=profile, description="User age in years",
        data_type="int", transformation="EXTRACT(YEAR FROM AGE(current_date, date_of_birth))",
        validation_rules={"min_value": 0, "max_value": 150})
    fs.create_feature_set(
        name=activity, description="Purchases per user", owner="data-team",
        entities=["user"], tags=["behavior"], timestamp_field="timestamp",
        source={"type": "file", "path": str(data["purchases"]), "format": "parquet"})
    fs.create_feature(name="purchase_count", feature_set_id=activity, data_type="int",
                      description="Purchases in the last 30 days", window_size="30d",
                      transformation="COUNT(*)", default_value=0)
    fs.create_feature(name="spend_30d", feature_set_id=activity, data_type="float",
                      description="Amount spent in the last 30 days", window_size="30d",
                      transformation="SUM(amount)", default_value=0.0)
    return profile, activity


def training_frame(ids: list, seed: int) -> pd.DataFrame:
    """Labelled entity rows: each user at two times in January."""
    rng = np.random.default_rng(seed + 1)
    times = rng.choice(pd.date_range("2024-01-10", "2024-01-31", freq="h", tz="UTC"),
                       size=2 * len(ids))
    return pd.DataFrame({"user_id": ids * 2, "timestamp": times})


def main(argv: list | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default=os.environ.get("FSTORE_URL", "http://localhost:8002"))
    p.add_argument("--data-dir", default=None, help="where to write the sample Parquet data")
    p.add_argument("--suffix", default="", help="appended to the feature set names")
    p.add_argument("--users", type=int, default=200)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)

    data_dir = pathlib.Path(args.data_dir or tempfile.mkdtemp(prefix="fstore-example-"))
    fs = FeatureStore(args.url)
    print(f"server {fs.url}: {fs.health()['status']}")

    data = write_sample_data(data_dir, args.users, args.seed)
    profile, activity = define_features(fs, data, args.suffix)
    print(f"defined {profile} and {activity}")

    for name in (profile, activity):
        job = fs.materialize(name, start=START, end=END, progress=not args.no_progress)
        print(f"materialized {name}: {job['rows_read']} rows read, "
              f"{job['rows_written_offline']} offline, {job['rows_written_online']} online")

    # Training set: the seed's call, point in time correct at each row's timestamp.
    train_df = training_frame(data["ids"], args.seed)
    features_df = fs.get_historical_features(
        entities=train_df[["user_id", "timestamp"]],
        features=[f"{profile}:user_age", "purchase_count", "spend_30d"])
    feature_list = [f"{profile}:user_age", "purchase_count", "spend_30d"]
    X_train = features_df[feature_list].fillna(0).to_numpy(dtype=float)
    # The label: whether the user is a frequent buyer at that time (what a
    # churn or propensity model would learn, here from the features themselves
    # plus noise so that the model has something to fit).
    rng = np.random.default_rng(args.seed + 2)
    score = (X_train[:, 1] - X_train[:, 1].mean()) / (X_train[:, 1].std() or 1.0)
    y_train = (score + rng.normal(0, 0.5, len(score)) > 0).astype(int)
    model = LogisticRegression(max_iter=1000).fit(X_train, y_train)
    accuracy = accuracy_score(y_train, model.predict(X_train))
    print(f"training set: {len(features_df)} rows, columns {list(features_df.columns)}")
    print(f"trained LogisticRegression: training accuracy {accuracy:.3f}")

    # Serving: the latest features of a few users, scored by the model.
    users = data["ids"][:5]
    online = fs.get_online_features(features=feature_list, entities={"user": users},
                                    feature_sets=[profile, activity])
    online_df = online.to_df()
    X_online = online_df[feature_list].fillna(0).to_numpy(dtype=float)
    online_df["score"] = model.predict_proba(X_online)[:, 1]
    print(f"online lookup: {online['metadata']['latency_ms']} ms server-side")
    print(online_df[["user_id", "score"]].to_string(index=False))
    print(f"scored {len(online_df)} users")
    return 0


if __name__ == "__main__":
    sys.exit(main())
