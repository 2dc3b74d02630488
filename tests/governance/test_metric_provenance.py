"""Metric gates judge numbers the platform computed, on enough rows (SQLite and PostgreSQL).

The attack from the review: a 0.958 model claimed 0.99999 and passed a 0.999 gate. Now an uploaded
(reported) number never passes a metric gate unless the environment allows reported metrics, a
platform-trained version is judged on its computed number, and a 5-row evaluation is unfit.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from harbourmaster.client import Client
from harbourmaster.errors import PromotionRefusedError
from harbourmaster.services.platform import Platform
from served import serve_champion

from .helpers import PROJECT, actor, create_users, live_server, train

TARGET = "malignant"


def gate(platform: Platform, metric_min: float, **config: object) -> None:
    gates = [{"kind": "metric", "metric": "accuracy", "min": metric_min}]
    platform.environments.configure(actor(platform, "root"), "test", {"gates": gates, **config})


def test_reported_metrics_do_not_pass_metric_gates(platform: Platform, demo_project: Path, tmp_path: Path) -> None:
    tokens = create_users(platform)
    dana = actor(platform, "dana")
    frame = pd.read_csv(demo_project / "data" / "train.csv")
    features = frame.drop(columns=[TARGET])
    weak = Pipeline([("scale", StandardScaler()), ("model", LogisticRegression(C=0.01, max_iter=500))])
    weak.fit(features.head(200), frame[TARGET].head(200))

    # The attack, through the control plane as a data scientist: a claimed 0.99999, uploaded.
    with (
        live_server(platform) as live,
        Client(url=live.url, token=tokens["dana"], settings=platform.settings) as remote,
    ):
        claimed = remote.register(PROJECT, weak, frame, target=TARGET, metrics={"accuracy": 0.99999})
        evaluated = remote.register(
            PROJECT, weak, frame.head(300), target=TARGET, metrics=["accuracy"], eval_data=frame.tail(200)
        )
    assert (claimed.metrics_source, claimed.evaluation_rows) == ("reported", None)
    assert (evaluated.metrics_source, evaluated.evaluation_rows) == ("reported", 200)  # rows as claimed

    gate(platform, 0.999)
    platform.deployments.deploy(dana, PROJECT, claimed.number, "dev")
    serve_champion(platform, PROJECT, "dev")
    with pytest.raises(PromotionRefusedError) as raised:
        platform.promotions.promote(dana, PROJECT, claimed.number, "test")
    assert "accuracy = 1.0000 is reported by its registrant, not computed by the platform" in raised.value.message
    assert "harbourmaster train" in raised.value.hint and "allow_reported_metrics" in raised.value.hint

    # An environment may choose to take reported numbers (then the claim is all it has), still on enough rows.
    gate(platform, 0.999, allow_reported_metrics=True)
    with pytest.raises(PromotionRefusedError, match="unfit for metric gates: evaluated on an unknown number"):
        platform.promotions.promote(dana, PROJECT, claimed.number, "test")
    gate(platform, 0.5, allow_reported_metrics=True)
    platform.deployments.deploy(dana, PROJECT, evaluated.number, "dev")
    serve_champion(platform, PROJECT, "dev")
    assert platform.promotions.promote(dana, PROJECT, evaluated.number, "test").outcome == "promoted"

    # A version the platform trained is judged on the number it computed on its own held-out split.
    computed = platform.registry.get_version(dana, PROJECT, train(platform, demo_project))
    assert computed.metrics_source == "computed" and computed.evaluation_rows == 143  # 25% of 569
    assert 0.9 < computed.metrics["accuracy"] < 0.999
    platform.deployments.deploy(dana, PROJECT, computed.number, "dev")
    serve_champion(platform, PROJECT, "dev")
    gate(platform, 0.999)
    with pytest.raises(PromotionRefusedError, match=f"accuracy = {computed.metrics['accuracy']:.4f} \\(needs >= 0.999"):
        platform.promotions.promote(dana, PROJECT, computed.number, "test")
    gate(platform, 0.9)
    assert platform.promotions.promote(dana, PROJECT, computed.number, "test").outcome == "promoted"


def test_a_version_evaluated_on_five_rows_is_unfit(platform: Platform, demo_project: Path) -> None:
    create_users(platform)
    data = demo_project / "data" / "train.csv"
    pd.read_csv(data).groupby(TARGET).head(10).to_csv(data, index=False)  # 20 rows: 5 held out
    toml = demo_project / "harbourmaster.toml"  # training refuses so few rows unless the project lowers its minimum
    toml.write_text(toml.read_text().replace("seed = 7", "seed = 7\nmin_rows = 5"))
    tiny = platform.registry.get_version(actor(platform, "dana"), PROJECT, train(platform, demo_project))
    assert (tiny.metrics_source, tiny.evaluation_rows) == ("computed", 5)
    platform.deployments.deploy(actor(platform, "dana"), PROJECT, tiny.number, "dev")
    serve_champion(platform, PROJECT, "dev")
    gate(platform, 0.1)
    with pytest.raises(PromotionRefusedError) as raised:
        platform.promotions.promote(actor(platform, "dana"), PROJECT, tiny.number, "test")
    assert "is unfit for metric gates: evaluated on 5 row(s), test needs at least 30" in raised.value.message
    assert "larger [evaluation] holdout" in raised.value.hint
    gate(platform, 0.1, min_evaluation_rows=5)  # the minimum is the environment's to set
    assert platform.promotions.promote(actor(platform, "dana"), PROJECT, tiny.number, "test").outcome == "promoted"
