"""Drafts and publishing, on PostgreSQL through the CLI: the files on disk beside what
is live (status, reload after a rollback), `rules diff`, `rules simulate` over the last
days with the customers reached, `rules publish` and what it keeps, `rules
render-email`, and CLI output that logs never mix into."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session

from service.auth.service import Scope
from service.cli import main
from service.language import emails, templates
from service.rules import deployments, publish
from service.ruleset import repository
from service.ruleset.runtime import RUNTIME
from service.settings import Settings, get_settings
from tests.support import resolve_all
from tests.support.events import track
from tests.support.rules import NOW, at, send

SHIPPED = Path(__file__).resolve().parents[2] / "rules"

THANKS = """\
ruleset: thanks
version: 1
rules:
  - id: order_thanks
    trigger: {event: Order Completed}
    actions:
      - segment: {add: thanked}
tests:
  - name: an order is thanked
    events:
      - {at: 0h, event: Order Completed}
    expect:
      - {rule: order_thanks, at: 0h}
"""


@pytest.fixture
def keys(api_key) -> dict[str, dict[str, str]]:
    return {"ingest": api_key(Scope.INGEST), "marketer": api_key(Scope.MARKETER)}


@pytest.fixture
def rules_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "rules"
    shutil.copytree(SHIPPED, directory)
    monkeypatch.setattr(get_settings(), "rules_dir", directory)
    return directory


@pytest.fixture
def active(session: Session, rules_dir: Path) -> int:
    result = deployments.reload(session, directory=rules_dir, origin="cli")
    assert result.status == "active", result.errors
    assert result.deployment_id is not None
    return result.deployment_id


def rules(*args: str) -> Result:
    return CliRunner().invoke(main, ["rules", *args])


def edit(path: Path, old: str, new: str) -> None:
    source = path.read_text()
    assert old in source, old
    path.write_text(source.replace(old, new, 1))


def order(user: str, *, ago: timedelta) -> dict:
    return track("Order Completed", user=user, order_id=f"o-{user}", timestamp=at(-ago))


def identify(user: str, **traits: object) -> dict:
    return {
        "type": "identify",
        "userId": user,
        "timestamp": at(-timedelta(days=20)),
        "traits": {"consent": {"marketing": True}, **traits},
    }


# --- disk and live --------------------------------------------------------------------------


def test_after_a_rollback_status_says_the_files_differ_and_reload_deploys_them(
    client: TestClient, session: Session, keys, active: int, rules_dir: Path
) -> None:
    page = rules_dir / "high_value_homepage.yaml"
    edit(page, "version: 1", "version: 2")
    assert deployments.reload(session, directory=rules_dir, origin="cli").status == "active"
    rules("rollback", "--deployment", str(active))
    listed = rules("status")
    assert listed.exit_code == 0, listed.output
    assert "files in" in listed.stdout
    assert "1 differ from live" in listed.stdout
    assert "changed       high_value_homepage.yaml" in listed.stdout
    status = client.get("/v1/rules/status", headers=keys["marketer"]).json()
    assert status["files_live"] is False
    assert {"file": "high_value_homepage.yaml", "state": "changed"} in status["files"]
    # The watcher and restarts leave the rollback in place until the files change …
    held = deployments.reload(session, directory=rules_dir, origin="startup")
    assert held.status == "unchanged"
    # … a reload asked for deploys the files, since they differ from what is live.
    reloaded = rules("reload")
    assert reloaded.exit_code == 0, reloaded.output
    assert reloaded.stdout.startswith("active (deployment ")
    live = repository.get_deployment(session, repository.active_deployment_id(session) or 0)
    assert live is not None
    assert live.origin == "cli"
    names = {v.name: v.version for v in repository.versions(session, live.version_ids)}
    assert names["high_value_homepage"] == 2
    assert "the same as live" in rules("status").stdout
    assert client.get("/v1/rules/status", headers=keys["marketer"]).json()["files_live"] is True
    assert rules("reload").stdout.startswith("unchanged")


@pytest.mark.parametrize("command", ["reload", "publish"])
def test_after_a_rejected_attempt_the_live_files_are_recorded_again(
    session: Session, active: int, rules_dir: Path, command: str
) -> None:
    (rules_dir / "broken.yaml").write_text("ruleset: [unclosed\n")
    assert rules("reload").exit_code == 1
    assert rules("status").exit_code == 1  # the newest attempt was rejected
    (rules_dir / "broken.yaml").unlink()  # the files are what is live again
    done = rules(command, "--since", "1h") if command == "publish" else rules(command)
    assert done.exit_code == 0, done.output
    newest = repository.latest_deployment(session)
    assert newest is not None
    assert newest.status == "active"
    assert newest.id != active
    assert newest.version_ids == repository.get_deployment(session, active).version_ids
    assert rules("status").exit_code == 0


def test_status_lists_files_only_on_disk_and_only_live(
    session: Session, active: int, rules_dir: Path
) -> None:
    (rules_dir / "thanks.yaml").write_text(THANKS)
    (rules_dir / "win_back.yaml").unlink()
    listed = rules("status")
    assert "only on disk  thanks.yaml" in listed.stdout
    assert "only live     win_back.yaml" in listed.stdout


def test_the_watcher_is_on_in_development_only_unless_rules_watch_says() -> None:
    assert Settings(environment="development", rules_watch=None).watch_rules is True
    assert Settings(environment="production", rules_watch=None).watch_rules is False
    assert Settings(environment="production", rules_watch=True).watch_rules is True
    assert Settings(environment="development", rules_watch=False).watch_rules is False


# --- diff ------------------------------------------------------------------------------------


def test_diff_prints_what_changes_against_live(
    session: Session, active: int, rules_dir: Path
) -> None:
    cart = rules_dir / "cart_abandonment.yaml"
    edit(cart, "version: 1", "version: 2")
    edit(cart, "priority: 10", "priority: 20")
    edit(cart, "within: 24h", "within: 48h")
    (rules_dir / "thanks.yaml").write_text(THANKS)
    done = rules("diff")
    assert done.exit_code == 0, done.output
    lines = done.stdout.splitlines()
    assert lines[0] == f"files in {rules_dir} against live deployment {active}:"
    assert lines[1:] == [
        "ruleset cart_abandonment (cart_abandonment.yaml): changed: version 1 → 2",
        "  rule cart_abandoned: changed: priority 10 → 20, when.1.absent.within 24h → 48h",
        "ruleset thanks (thanks.yaml): added",
        "  rule order_thanks: added",
        "files: 1 added, 0 removed, 1 changed; rules: 1 added, 0 removed, 1 changed",
    ]


# --- simulate --------------------------------------------------------------------------------


def test_simulate_replays_the_last_seven_days_by_default_and_lists_the_customers(
    client: TestClient, session: Session, keys, active: int, rules_dir: Path
) -> None:
    send(
        client,
        keys,
        *(identify(u) for u in ("s1", "s2", "s3")),
        order("s1", ago=timedelta(hours=3)),
        order("s2", ago=timedelta(hours=5)),
        order("s3", ago=timedelta(days=9)),  # before the default period
    )
    resolve_all()
    (rules_dir / "thanks.yaml").write_text(THANKS)
    RUNTIME.forget()  # the live rules are compiled (and would log it) within the command
    done = rules("simulate", "--customers", "order_thanks", "--limit", "1")
    assert done.exit_code == 0, done.output
    lines = done.stdout.splitlines()
    assert lines[0].startswith("2 events from ")  # s3's order is 9 days old
    table = dict(line.split(None, 1) for line in lines[2:] if line and line[0] != " ")
    assert table["order_thanks"].split() == ["2", "0", "+2"]
    assert table["first_purchase_welcome"].split() == ["2", "2", "+0"]
    listed = lines[
        lines.index("customers order_thanks reaches: 2 with these files, 2 either way") :
    ]
    (first,) = [line for line in listed if "user_id:" in line]
    assert first.split()[1:3] == ["yes", "-"]
    more = listed[-1]
    assert more.startswith("more: --after ")
    rest = rules("simulate", "--customers", "order_thanks", "--after", more.split()[-1])
    (second,) = [line for line in rest.stdout.splitlines() if "user_id:" in line]
    assert {first.split()[-1], second.split()[-1]} == {"user_id:s1", "user_id:s2"}
    assert "more:" not in rest.stdout
    # Logs never mix into the table: stdout is the command's, info logs stay quiet.
    assert not [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert "rules_compiled" not in done.stderr


def test_simulate_says_when_the_files_are_what_is_live(session: Session, active: int) -> None:
    done = rules("simulate", "--since", "2d")
    assert done.exit_code == 0, done.output
    assert done.stdout.startswith("note: these files are what is live")


# --- publish ---------------------------------------------------------------------------------


def test_publish_refuses_when_a_test_fails_and_activates_nothing(
    session: Session, active: int, rules_dir: Path
) -> None:
    (rules_dir / "thanks.yaml").write_text(THANKS.replace("at: 0h}", "at: 2h}"))
    done = rules("publish")
    assert done.exit_code == 1, done.output
    assert "FAIL  thanks.yaml :: an order is thanked" in done.stdout
    assert "not published: 1 test(s) failed" in done.stderr
    assert "backtest" not in done.stdout
    assert repository.active_deployment_id(session) == active


def test_publish_activates_the_files_with_the_changes_and_the_backtest_kept(
    client: TestClient, session: Session, keys, active: int, rules_dir: Path
) -> None:
    send(client, keys, identify("p1"), order("p1", ago=timedelta(hours=2)))
    resolve_all()
    (rules_dir / "thanks.yaml").write_text(THANKS)
    dry = rules("publish", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "dry run: nothing was published" in dry.stdout
    assert repository.active_deployment_id(session) == active
    done = rules("publish", "--since", "1d", "-m", "thank every order")
    assert done.exit_code == 0, done.output
    assert "ruleset thanks (thanks.yaml): added" in done.stdout
    assert "backtest: 1 events from " in done.stdout
    published = repository.active_deployment_id(session)
    assert done.stdout.splitlines()[-1] == f"published: deployment {published} is live"
    deployment = repository.get_deployment(session, published or 0)
    assert deployment is not None
    assert deployment.origin == "publish"
    assert deployment.files_hash == deployments.files_hash(rules_dir)
    assert deployment.note == (
        "thank every order (files: 1 added, 0 removed, 0 changed; "
        "rules: 1 added, 0 removed, 0 changed)"
    )
    summary = deployment.summary
    assert summary is not None
    assert summary["compared_with"] == active
    assert summary["tests"]["failed"] == 0
    assert summary["tests"]["passed"] >= 20
    assert [(c["name"], c["change"]) for c in summary["changes"]] == [("thanks", "added")]
    assert summary["backtest"]["events"] == 1
    assert summary["backtest"]["rules"]["order_thanks"] == {"files": 1, "live": 0}
    listed = client.get("/v1/rules/deployments", headers=keys["marketer"]).json()
    assert listed[0]["id"] == published
    assert listed[0]["summary"] == summary
    # The files are live now: nothing more to publish.
    again = rules("publish")
    assert again.exit_code == 0, again.output
    assert "not published: nothing to publish" in again.stderr
    assert repository.active_deployment_id(session) == published
    history = rules("deployments").stdout.splitlines()
    assert history[0].startswith(f"*{published:>5}")
    assert "publish" in history[0]


def test_publish_refuses_when_the_live_rules_changed_during_the_review(
    session: Session, active: int, rules_dir: Path
) -> None:
    (rules_dir / "thanks.yaml").write_text(THANKS)
    checked = publish.review(session, directory=rules_dir, since=NOW - timedelta(days=1), until=NOW)
    deployments.rollback(session, deployment_id=active)
    with pytest.raises(publish.Refused, match="live rules changed"):
        publish.publish(session, checked=checked, directory=rules_dir)
    (rules_dir / "thanks.yaml").write_text(THANKS.replace("version: 1", "version: 2"))
    again = publish.review(session, directory=rules_dir, since=NOW - timedelta(days=1), until=NOW)
    (rules_dir / "thanks.yaml").write_text(THANKS)
    with pytest.raises(publish.Refused, match="files changed"):
        publish.publish(session, checked=again, directory=rules_dir)


# --- previews --------------------------------------------------------------------------------


def test_render_email_shows_what_the_customer_would_get_and_sends_nothing(
    client: TestClient, session: Session, keys, active: int
) -> None:
    send(client, keys, identify("r1", first_name="Ada", email="ada@example.com"))
    resolve_all()
    done = rules(
        "render-email", "cart_reminder", "--customer", "user_id:r1", "--property", "name=Mug"
    )
    assert done.exit_code == 0, done.output
    lines = done.stdout.splitlines()
    assert lines[0] == "to:      a***@example.com"
    assert lines[1] == "subject: You left Mug in your cart"
    assert lines[2].startswith("offer:   CART10 until ")
    assert "(rule cart_abandoned)" in lines[2]
    until = (NOW + timedelta(days=7)).date().isoformat()
    assert lines[4:] == [
        "Hi Ada,",
        "",
        f"Your cart is waiting. Use code CART10 for 10% off, until {until}.",
    ]
    assert session.execute(text("SELECT count(*) FROM actions")).scalar_one() == 0
    missing = rules("render-email", "cart_reminder", "--customer", "user_id:nobody")
    assert missing.exit_code == 1
    assert "no profile matches 'user_id:nobody'" in missing.stderr
    # What a template may read (checked by validate) is what the dispatch gives it.
    assert set(templates.email_context({}, {})) == set(emails.ROOTS)
    unknown = rules("render-email", "nope", "--customer", "user_id:r1")
    assert unknown.exit_code == 1
    assert "no email template templates/nope.yaml" in unknown.stderr
